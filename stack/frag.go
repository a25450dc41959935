package stack

import (
	"time"

	"utcp/seg"
	"utcp/timers"
)

// IPv4 reassembly (RFC 791 §3.2, required of hosts by RFC 1122 §3.3.2),
// with hard bounds so fragments cannot exhaust memory: at most
// maxReasmDatagrams datagrams and maxReasmBytes bytes pending, each for at
// most reasmTimeout (Linux's ipfrag_time). A datagram with overlapping
// fragments is dropped whole, as Linux does since the FragmentSmack fixes.
const (
	maxReasmDatagrams = 64
	maxReasmBytes     = 4 << 20
	maxDatagram       = 65535
	reasmTimeout      = 30 * time.Second
)

type fragKey struct {
	src   [4]byte
	id    uint16
	proto uint8
}

type fragPiece struct {
	off  int
	data []byte
}

type fragDatagram struct {
	r      *reassembler
	key    fragKey
	pieces []fragPiece // sorted by offset
	total  int         // datagram length once the last fragment is seen, else -1
	bytes  int
	item   timers.Item[timerTarget]
}

type reassembler struct {
	s     *Stack
	dgram map[fragKey]*fragDatagram
	bytes int
	out   []byte // the last reassembled datagram's payload
}

func (r *reassembler) init(s *Stack) {
	r.s = s
	r.dgram = make(map[fragKey]*fragDatagram)
}

// add files one fragment; when it completes a datagram it returns the
// whole payload (valid until the next call) and true.
func (r *reassembler) add(ip seg.IPv4) ([]byte, bool) {
	s := r.s
	s.ctr.ReasmReqds++
	data := ip.Payload()
	off := ip.FragmentOffset()
	end := off + len(data)
	if end > maxDatagram-ip.HeaderLen() || (ip.MoreFragments() && len(data)%8 != 0) || len(data) == 0 {
		s.ctr.ReasmFails++
		return nil, false
	}
	k := fragKey{src: ip.Src().As4(), id: ip.ID(), proto: ip.Protocol()}
	d := r.dgram[k]
	if d == nil {
		if len(r.dgram) >= maxReasmDatagrams || r.bytes+len(data) > maxReasmBytes {
			s.ctr.ReasmFails++
			return nil, false
		}
		d = &fragDatagram{r: r, key: k, total: -1}
		d.item.Value = d
		r.dgram[k] = d
		s.tq.Schedule(&d.item, s.now().Add(reasmTimeout))
		s.rearm()
	} else if r.bytes+len(data) > maxReasmBytes {
		r.drop(d)
		s.ctr.ReasmFails++
		return nil, false
	}
	if !ip.MoreFragments() {
		// The last fragment fixes the datagram's length (RFC 791 §3.2);
		// a different last fragment, or a piece already held beyond
		// that end, makes the datagram inconsistent. Without the second
		// check such a stray piece would be counted towards the total and
		// glued on in place of a missing one.
		if (d.total >= 0 && d.total != end) ||
			(len(d.pieces) > 0 && d.pieces[len(d.pieces)-1].off+len(d.pieces[len(d.pieces)-1].data) > end) {
			r.drop(d)
			s.ctr.ReasmFails++
			return nil, false
		}
		d.total = end
	}
	// Insert in order; any overlap drops the datagram.
	i := 0
	for i < len(d.pieces) && d.pieces[i].off < off {
		i++
	}
	if (i > 0 && d.pieces[i-1].off+len(d.pieces[i-1].data) > off) ||
		(i < len(d.pieces) && d.pieces[i].off < end) ||
		(d.total >= 0 && end > d.total) {
		r.drop(d)
		s.ctr.ReasmFails++
		return nil, false
	}
	p := fragPiece{off: off, data: append([]byte(nil), data...)}
	d.pieces = append(d.pieces, fragPiece{})
	copy(d.pieces[i+1:], d.pieces[i:])
	d.pieces[i] = p
	d.bytes += len(data)
	r.bytes += len(data)
	if d.total < 0 || d.bytes != d.total {
		return nil, false
	}
	// No overlaps and bytes == total: the pieces tile [0, total).
	r.out = r.out[:0]
	for _, p := range d.pieces {
		r.out = append(r.out, p.data...)
	}
	r.drop(d)
	s.ctr.ReasmOKs++
	return r.out, true
}

func (r *reassembler) drop(d *fragDatagram) {
	delete(r.dgram, d.key)
	r.bytes -= d.bytes
	r.s.tq.Cancel(&d.item)
}

// fire is the reassembly timeout (RFC 791: the timer bounds how long
// fragments are held).
func (d *fragDatagram) fire(now timers.Instant) {
	if d.r.dgram[d.key] != d {
		return
	}
	d.r.drop(d)
	d.r.s.ctr.ReasmTimeout++
	d.r.s.ctr.ReasmFails++
}
