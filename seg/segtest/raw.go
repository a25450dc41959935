// Package segtest builds IPv4 packets for tests, with any field wrong on
// purpose: the malformed-packet tests of the stack (in memory) and of the
// integration suite (on a TUN) send the same kinds of damage.
package segtest

import (
	"encoding/binary"
	"net/netip"

	"utcp/seg"
)

// Raw describes one hand-built IPv4 packet. Unlike seg.Segment.AppendTo it
// writes what it is told: a zero field is computed (lengths, offsets,
// checksums), anything else goes out as given.
type Raw struct {
	Src, Dst   netip.Addr
	Proto      uint8 // 0 means TCP
	IPOpts     []byte
	IHL        int  // IHL in words; 0 means computed
	TotalLen   int  // 0 means computed; -1 means computed minus one
	FragOff    int  // bytes, a multiple of 8
	MF         bool // more fragments
	ID         uint16
	BadIPCsum  bool
	Sport      uint16
	Dport      uint16
	Seq, Ack   uint32
	Flags      seg.Flags
	Window     uint16
	Urgent     uint16
	TCPOpts    []byte // raw, padded by the caller
	DataOff    int    // words; 0 means computed
	Payload    []byte
	BadTCPCsum bool
	L4         []byte // when set, the IP payload verbatim (fragments, other protocols)
}

// Bytes builds the packet.
func (r Raw) Bytes() []byte {
	proto := r.Proto
	if proto == 0 {
		proto = seg.ProtoTCP
	}
	l4 := r.L4
	if l4 == nil && proto == seg.ProtoTCP {
		off := 20 + len(r.TCPOpts)
		l4 = make([]byte, off, off+len(r.Payload))
		binary.BigEndian.PutUint16(l4[0:], r.Sport)
		binary.BigEndian.PutUint16(l4[2:], r.Dport)
		binary.BigEndian.PutUint32(l4[4:], r.Seq)
		binary.BigEndian.PutUint32(l4[8:], r.Ack)
		do := off / 4
		if r.DataOff != 0 {
			do = r.DataOff
		}
		l4[12] = byte(do << 4)
		l4[13] = byte(r.Flags)
		binary.BigEndian.PutUint16(l4[14:], r.Window)
		binary.BigEndian.PutUint16(l4[18:], r.Urgent)
		copy(l4[20:], r.TCPOpts)
		l4 = append(l4, r.Payload...)
		cs := ^seg.Checksum(l4, seg.PseudoHeaderSum(r.Src, r.Dst, seg.ProtoTCP, len(l4)))
		if r.BadTCPCsum {
			cs ^= 0x5a5a
		}
		binary.BigEndian.PutUint16(l4[16:], cs)
	}
	hl := 20 + len(r.IPOpts)
	p := make([]byte, hl, hl+len(l4))
	ihl := hl / 4
	if r.IHL != 0 {
		ihl = r.IHL
	}
	p[0] = 0x40 | byte(ihl&0x0f)
	tl := hl + len(l4)
	switch {
	case r.TotalLen > 0:
		tl = r.TotalLen
	case r.TotalLen < 0:
		tl--
	}
	binary.BigEndian.PutUint16(p[2:], uint16(tl))
	binary.BigEndian.PutUint16(p[4:], r.ID)
	fo := uint16(r.FragOff / 8)
	if r.MF {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(p[6:], fo)
	p[8] = 64
	p[9] = proto
	s4, d4 := r.Src.As4(), r.Dst.As4()
	copy(p[12:], s4[:])
	copy(p[16:], d4[:])
	copy(p[20:], r.IPOpts)
	// The checksum covers what IHL says, when that lies inside the buffer.
	if n := min(ihl*4, len(p)); n >= 20 {
		cs := ^seg.Checksum(p[:n], 0)
		if r.BadIPCsum {
			cs ^= 0x5a5a
		}
		binary.BigEndian.PutUint16(p[10:], cs)
	}
	return append(p, l4...)
}
