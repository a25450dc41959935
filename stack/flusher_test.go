package stack

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"testing"
	"testing/synctest"
)

// orderLink checks, as packets reach the link, that a stack's output
// leaves in the order it was produced: per connection, the ACK field never
// goes back (it is RCV.NXT when the segment is built, and RCV.NXT only
// grows), and on a link that loses nothing no segment starts below the
// highest sequence number already sent.
type orderLink struct {
	Link
	mu       sync.Mutex
	flows    map[[12]byte]*flowOrder
	problems []string
}

type flowOrder struct {
	maxEnd, lastAck uint32
	seen, ackSeen   bool
	segs            int
}

func (l *orderLink) WritePackets(bufs [][]byte) (int, error) {
	for _, b := range bufs {
		l.check(b, nil)
	}
	return l.Link.WritePackets(bufs)
}

func (l *orderLink) WritePacketsSplit(bufs, pays [][]byte) (int, error) {
	for i, b := range bufs {
		l.check(b, pays[i])
	}
	if sl, ok := l.Link.(SplitLink); ok {
		return sl.WritePacketsSplit(bufs, pays)
	}
	return l.Link.WritePackets(joinSplit(bufs, pays))
}

// check reads the IPv4 and TCP headers at the front of hdr (pay, when not
// nil, is the rest of the payload) and records any step backwards.
func (l *orderLink) check(hdr, pay []byte) {
	if len(hdr) < 20 || hdr[0]>>4 != 4 || hdr[9] != 6 {
		return
	}
	ihl := int(hdr[0]&0xf) * 4
	if len(hdr) < ihl+20 {
		return
	}
	tcp := hdr[ihl:]
	doff := int(tcp[12]>>4) * 4
	var key [12]byte
	copy(key[:8], hdr[12:20])
	copy(key[8:], tcp[:4])
	seq, ack, flags := binary.BigEndian.Uint32(tcp[4:]), binary.BigEndian.Uint32(tcp[8:]), tcp[13]
	end := seq + uint32(len(hdr)+len(pay)-ihl-doff)
	if flags&0x02 != 0 { // SYN
		end++
	}
	if flags&0x01 != 0 { // FIN
		end++
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.flows[key]
	if f == nil {
		f = &flowOrder{}
		l.flows[key] = f
	}
	f.segs++
	if f.seen {
		if flags&0x10 != 0 && f.ackSeen && int32(ack-f.lastAck) < 0 && len(l.problems) < 10 {
			l.problems = append(l.problems, fmt.Sprintf("segment %d: ack %d after ack %d", f.segs, ack, f.lastAck))
		}
		if int32(seq-f.maxEnd) < 0 && end != seq && len(l.problems) < 10 {
			l.problems = append(l.problems, fmt.Sprintf("segment %d: seq %d..%d after data up to %d", f.segs, seq, end, f.maxEnd))
		}
	}
	if flags&0x10 != 0 && (!f.ackSeen || int32(ack-f.lastAck) > 0) {
		f.lastAck, f.ackSeen = ack, true
	}
	if !f.seen || int32(end-f.maxEnd) > 0 {
		f.maxEnd = end
	}
	f.seen = true
}

// TestFlusherKeepsOrder runs four connections that each move data both
// ways at once, so output comes from every producer together: the read
// loops (ACKs), the applications' Writes and Reads (data, window updates)
// and the timers (delayed ACKs). Side A hands it all to the flusher
// goroutine, side B writes inline; on a link that loses nothing, neither
// may send a segment behind one it produced later.
func TestFlusherKeepsOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var oa, ob *orderLink
		p := newPair(t, pairOpts{
			cfgA: func(c *Config) { oa = &orderLink{Link: c.Link, flows: map[[12]byte]*flowOrder{}}; c.Link = oa },
			cfgB: func(c *Config) {
				ob = &orderLink{Link: c.Link, flows: map[[12]byte]*flowOrder{}}
				c.Link, c.InlineFlush = ob, true
			},
		})
		if p.a.flushKick == nil || p.b.flushKick != nil {
			t.Fatalf("side A must use the flusher and side B write inline")
		}
		ln, err := p.b.Listen(5001, 8)
		if err != nil {
			t.Fatal(err)
		}
		const conns, size = 4, 2 << 20
		var wg sync.WaitGroup
		for i := range conns {
			client, server := dialAccept(t, p, ln)
			for _, side := range []struct {
				name string
				w, r *Conn
				seed uint64
			}{{"a->b", client, server, uint64(i)}, {"b->a", server, client, uint64(i) + 100}} {
				data := make([]byte, size)
				fillRandom(data, side.seed)
				wg.Add(2)
				go func() {
					defer wg.Done()
					// Writes of varied sizes, so segments of every length
					// and runts leave from the application's goroutine.
					for off, k := 0, 1; off < len(data); k++ {
						n := min(len(data)-off, 1+(k*7919)%20000)
						if _, err := side.w.Write(data[off : off+n]); err != nil {
							t.Errorf("%s write: %v", side.name, err)
							return
						}
						off += n
					}
					side.w.CloseWrite()
				}()
				go func() {
					defer wg.Done()
					got, err := io.ReadAll(side.r)
					if err != nil || len(got) != size {
						t.Errorf("%s read %d bytes, err %v", side.name, len(got), err)
					}
				}()
			}
		}
		wg.Wait()
		for _, s := range []struct {
			name string
			st   *Stack
			l    *orderLink
		}{{"A (flusher)", p.a, oa}, {"B (inline)", p.b, ob}} {
			c := s.st.Counters()
			s.l.mu.Lock()
			if len(s.l.problems) > 0 {
				t.Errorf("%s wrote segments out of order (RetransSegs %d): %v", s.name, c.RetransSegs, s.l.problems)
			}
			if len(s.l.flows) != conns {
				t.Errorf("%s: output seen on %d connections, want %d", s.name, len(s.l.flows), conns)
			}
			s.l.mu.Unlock()
			if c.RetransSegs != 0 {
				t.Errorf("%s retransmitted %d segments on a link that loses nothing", s.name, c.RetransSegs)
			}
		}
	})
}
