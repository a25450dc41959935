package seg

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
)

var (
	addrA = netip.MustParseAddr("198.18.0.1")
	addrB = netip.MustParseAddr("198.18.0.2")
)

// diffSeg lists the fields in which got and want differ ("" if none).
// Payloads compare by content (nil equals empty); only the first NumSACK
// SACK blocks are compared.
func diffSeg(got, want *Segment) string {
	var d []string
	f := func(name string, g, w any) {
		if g != w {
			d = append(d, fmt.Sprintf("%s: got %v, want %v", name, g, w))
		}
	}
	f("Src", got.Src, want.Src)
	f("Dst", got.Dst, want.Dst)
	f("SrcPort", got.SrcPort, want.SrcPort)
	f("DstPort", got.DstPort, want.DstPort)
	f("Seq", got.Seq, want.Seq)
	f("Ack", got.Ack, want.Ack)
	f("Flags", got.Flags, want.Flags)
	f("Window", got.Window, want.Window)
	f("Urgent", got.Urgent, want.Urgent)
	f("TTL", got.TTL, want.TTL)
	f("ID", got.ID, want.ID)
	g, w := got.Opts, want.Opts
	f("HasMSS", g.HasMSS, w.HasMSS)
	f("MSS", g.MSS, w.MSS)
	f("HasWScale", g.HasWScale, w.HasWScale)
	f("WScale", g.WScale, w.WScale)
	f("SACKPermitted", g.SACKPermitted, w.SACKPermitted)
	f("HasTS", g.HasTS, w.HasTS)
	f("TSVal", g.TSVal, w.TSVal)
	f("TSEcr", g.TSEcr, w.TSEcr)
	f("NumSACK", g.NumSACK, w.NumSACK)
	if g.NumSACK == w.NumSACK && g.NumSACK >= 0 && g.NumSACK <= 4 {
		for i := range g.NumSACK {
			f(fmt.Sprintf("SACK[%d]", i), g.SACK[i], w.SACK[i])
		}
	}
	if !bytes.Equal(got.Payload, want.Payload) {
		d = append(d, fmt.Sprintf("Payload: got %d bytes %.16x, want %d bytes %.16x", len(got.Payload), got.Payload, len(want.Payload), want.Payload))
	}
	return strings.Join(d, "\n")
}

// canonical returns what Parse(AppendTo(s)) must yield for s: TTL 0 is
// sent as DefaultTTL, only the SACK blocks that fit are sent, and blocks
// past NumSACK do not exist.
func canonical(s Segment) Segment {
	if s.TTL == 0 {
		s.TTL = DefaultTTL
	}
	n := s.Opts.SACKBlocksFit()
	var blocks [4]SACKBlock
	copy(blocks[:n], s.Opts.SACK[:n])
	s.Opts.SACK = blocks
	s.Opts.NumSACK = n
	return s
}

// randSeg returns a random segment between the test addresses with a
// random subset of options and a payload of up to maxPayload bytes.
func randSeg(r *rand.Rand, maxPayload int) Segment {
	s := Segment{
		Src:     addrA,
		Dst:     addrB,
		SrcPort: uint16(r.Uint32()),
		DstPort: uint16(r.Uint32()),
		Seq:     Seq(r.Uint32()),
		Ack:     Seq(r.Uint32()),
		Flags:   Flags(r.Uint32()),
		Window:  uint16(r.Uint32()),
		Urgent:  uint16(r.Uint32()),
		TTL:     uint8(r.Uint32()),
		ID:      uint16(r.Uint32()),
	}
	if r.IntN(2) == 0 {
		s.Src, s.Dst = s.Dst, s.Src
	}
	o := &s.Opts
	if r.IntN(2) == 0 {
		o.HasMSS, o.MSS = true, uint16(r.Uint32())
	}
	if r.IntN(2) == 0 {
		o.HasWScale, o.WScale = true, uint8(r.IntN(15))
	}
	o.SACKPermitted = r.IntN(2) == 0
	if r.IntN(2) == 0 {
		o.HasTS, o.TSVal, o.TSEcr = true, r.Uint32(), r.Uint32()
	}
	o.NumSACK = r.IntN(5)
	for i := range o.NumSACK {
		st := Seq(r.Uint32())
		o.SACK[i] = SACKBlock{st, st.Add(r.Uint32N(1 << 20))}
	}
	if maxPayload > 0 {
		s.Payload = make([]byte, r.IntN(maxPayload+1))
		for i := range s.Payload {
			s.Payload[i] = byte(r.Uint32())
		}
	}
	return s
}
