package seg

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// gVisor's header package is an independent implementation of the same
// wire format; these tests decode our packets with it and parse its
// packets with ours.

// gvDecode decodes an IPv4/TCP packet with gVisor into a Segment, failing
// the test if gVisor finds the IP header or either checksum invalid.
func gvDecode(t *testing.T, pkt []byte) Segment {
	t.Helper()
	ip := header.IPv4(pkt)
	if !ip.IsValid(len(pkt)) || !ip.IsChecksumValid() {
		t.Fatalf("gVisor: invalid IPv4 header %x", pkt[:min(len(pkt), 20)])
	}
	tcp := header.TCP(ip.Payload())
	payload := tcp.Payload()
	if !tcp.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), checksum.Checksum(payload, 0), uint16(len(payload))) {
		t.Fatalf("gVisor: bad TCP checksum")
	}
	s := Segment{
		Src:     netip.AddrFrom4(ip.SourceAddress().As4()),
		Dst:     netip.AddrFrom4(ip.DestinationAddress().As4()),
		SrcPort: tcp.SourcePort(),
		DstPort: tcp.DestinationPort(),
		Seq:     Seq(tcp.SequenceNumber()),
		Ack:     Seq(tcp.AckNumber()),
		Flags:   Flags(tcp.Flags()),
		Window:  tcp.WindowSize(),
		Urgent:  tcp.UrgentPointer(),
		Payload: payload,
		TTL:     ip.TTL(),
		ID:      ip.ID(),
	}
	if ip.Flags()&header.IPv4FlagDontFragment == 0 {
		t.Errorf("gVisor: DF not set")
	}
	// gVisor parses SYN options separately and clamps MSS/WS; compare the
	// raw values through ParseSynOptions only where the ranges agree.
	syn := header.ParseSynOptions(tcp.Options(), s.Flags.Has(ACK))
	if hasKind(tcp.Options(), OptMSS) {
		s.Opts.HasMSS, s.Opts.MSS = true, syn.MSS
	}
	if syn.WS >= 0 {
		s.Opts.HasWScale, s.Opts.WScale = true, uint8(syn.WS)
	}
	s.Opts.SACKPermitted = syn.SACKPermitted
	o := header.ParseTCPOptions(tcp.Options())
	s.Opts.HasTS, s.Opts.TSVal, s.Opts.TSEcr = o.TS, o.TSVal, o.TSEcr
	s.Opts.NumSACK = len(o.SACKBlocks)
	for i, b := range o.SACKBlocks {
		s.Opts.SACK[i] = SACKBlock{Seq(b.Start), Seq(b.End)}
	}
	return s
}

// hasKind walks well-formed options (independently of parseOptions) to
// tell "MSS absent" from gVisor's default of 536.
func hasKind(opts []byte, kind byte) bool {
	for i := 0; i < len(opts); {
		switch {
		case opts[i] == OptEOL:
			return false
		case opts[i] == OptNOP:
			i++
		case opts[i] == kind:
			return true
		case i+1 < len(opts) && opts[i+1] >= 2:
			i += int(opts[i+1])
		default:
			return false
		}
	}
	return false
}

// gvSafe keeps a random segment inside the value ranges gVisor reports
// unclamped: MSS >= its minimum send MSS, window scale <= 14.
func gvSafe(s Segment) Segment {
	if s.Opts.HasMSS && s.Opts.MSS < header.TCPMinimumSendMSS {
		s.Opts.MSS = header.TCPMinimumSendMSS + s.Opts.MSS%1000
	}
	if s.Opts.WScale > header.MaxWndScale {
		s.Opts.WScale = header.MaxWndScale
	}
	return s
}

func TestOracleGVisorDecodesOurs(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for i := range 3000 {
		s := gvSafe(randSeg(r, 1400))
		if i%3 == 0 {
			s.TTL = 0
		}
		pkt := s.AppendTo(nil)
		got := gvDecode(t, pkt)
		want := canonical(s)
		if !want.Opts.HasTS {
			// ParseSynOptions reports TS values only for SYN-ACK;
			// nothing to compare when absent.
			got.Opts.TSVal, got.Opts.TSEcr = 0, 0
		}
		if d := diffSeg(&got, &want); d != "" {
			t.Fatalf("#%d %v\n%s\n%x", i, &s, d, pkt)
		}
	}
}

func TestOracleGVisorDecodesKernelGolden(t *testing.T) {
	for i, g := range loadGolden(t) {
		if IPv4(g.data).Protocol() != ProtoTCP {
			continue
		}
		var ours Segment
		if err := ours.Parse(g.data); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		theirs := gvDecode(t, g.data)
		if d := diffSeg(&ours, &theirs); d != "" {
			t.Errorf("packet %d:\n%s", i, d)
		}
	}
}

// gvBuild builds a packet with gVisor's encoders. Options are laid out the
// way gVisor's own endpoint does (option, then NOP padding), which differs
// from Linux's, so this also exercises unaligned parsing.
func gvBuild(s Segment) []byte {
	var opts [header.TCPOptionsMaximumSize]byte
	n := 0
	if s.Opts.HasMSS {
		n += header.EncodeMSSOption(uint32(s.Opts.MSS), opts[n:])
	}
	if s.Opts.HasWScale {
		n += header.EncodeWSOption(int(s.Opts.WScale), opts[n:])
	}
	if s.Opts.SACKPermitted {
		n += header.EncodeSACKPermittedOption(opts[n:])
	}
	if s.Opts.HasTS {
		n += header.EncodeTSOption(s.Opts.TSVal, s.Opts.TSEcr, opts[n:])
	}
	if s.Opts.NumSACK > 0 {
		var blocks []header.SACKBlock
		for _, b := range s.Opts.SACK[:s.Opts.NumSACK] {
			blocks = append(blocks, header.SACKBlock{Start: seqnumValue(b.Start), End: seqnumValue(b.End)})
		}
		n += header.EncodeSACKBlocks(blocks, opts[n:])
	}
	n += header.AddTCPOptionPadding(opts[:], n)

	tcpLen := header.TCPMinimumSize + n + len(s.Payload)
	pkt := make([]byte, header.IPv4MinimumSize+tcpLen)
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(pkt)),
		ID:          s.ID,
		Flags:       header.IPv4FlagDontFragment,
		TTL:         s.TTL,
		Protocol:    uint8(header.TCPProtocolNumber),
		SrcAddr:     tcpip.AddrFrom4(s.Src.As4()),
		DstAddr:     tcpip.AddrFrom4(s.Dst.As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(ip.Payload())
	tcp.Encode(&header.TCPFields{
		SrcPort:       s.SrcPort,
		DstPort:       s.DstPort,
		SeqNum:        uint32(s.Seq),
		AckNum:        uint32(s.Ack),
		DataOffset:    uint8(header.TCPMinimumSize + n),
		Flags:         header.TCPFlags(s.Flags),
		WindowSize:    s.Window,
		UrgentPointer: s.Urgent,
	})
	copy(tcp[header.TCPMinimumSize:], opts[:n])
	copy(tcp.Payload(), s.Payload)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(tcpLen))
	xsum = checksum.Checksum(s.Payload, xsum)
	tcp.SetChecksum(^tcp.CalculateChecksum(xsum))
	return pkt
}

func TestOracleWeParseGVisors(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for i := range 3000 {
		s := randSeg(r, 1400)
		if s.TTL == 0 {
			s.TTL = 1
		}
		// gVisor's encoders have no 40-byte budget logic across options;
		// keep what we ask for within 40 bytes as a real sender would.
		for gvOptLen(s.Opts) > header.TCPOptionsMaximumSize {
			s.Opts.NumSACK--
		}
		pkt := gvBuild(s)
		var got Segment
		if err := got.Parse(pkt); err != nil {
			t.Fatalf("#%d: %v\n%x", i, err, pkt)
		}
		if d := diffSeg(&got, &s); d != "" {
			t.Fatalf("#%d %v\n%s\n%x", i, &s, d, pkt)
		}
		// And our rebuild of it is accepted by gVisor with the same fields.
		safe := gvSafe(got)
		if again := gvDecode(t, safe.AppendTo(nil)); !bytes.Equal(again.Payload, s.Payload) {
			t.Fatalf("#%d: payload changed", i)
		}
	}
}

func gvOptLen(o Options) int {
	n := 0
	if o.HasMSS {
		n += 4
	}
	if o.HasWScale {
		n += 3
	}
	if o.SACKPermitted {
		n += 2
	}
	if o.HasTS {
		n += 10
	}
	if o.NumSACK > 0 {
		n += 2 + 8*o.NumSACK
	}
	return (n + 3) &^ 3
}

// TestOracleChecksum compares Checksum with gVisor's on random data.
func TestOracleChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	buf := make([]byte, 9001)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	for n := 0; n <= len(buf); n += 1 + n/64 {
		init := uint16(r.Uint32())
		if got, want := Checksum(buf[:n], uint32(init)), checksum.Checksum(buf[:n], init); got != want {
			t.Fatalf("len %d: got %#04x, gVisor %#04x", n, got, want)
		}
	}
}

// TestOracleEchoReply has gVisor check our ICMP echo reply.
func TestOracleEchoReply(t *testing.T) {
	icmp := header.ICMPv4(make([]byte, header.ICMPv4MinimumSize+5))
	icmp.SetType(header.ICMPv4Echo)
	icmp.SetIdent(0x77)
	icmp.SetSequence(0x1234)
	copy(icmp.Payload(), "abcde")
	icmp.SetChecksum(^checksum.Checksum(icmp, 0))
	req := IPv4(append(AppendIPv4Header(nil, addrA, addrB, ProtoICMP, 64, 1, len(icmp)), icmp...))
	rep := header.IPv4(AppendEchoReply(nil, req))
	if !rep.IsValid(len(rep)) || !rep.IsChecksumValid() {
		t.Fatal("gVisor rejects reply IP header")
	}
	m := header.ICMPv4(rep.Payload())
	if m.Type() != header.ICMPv4EchoReply || m.Ident() != 0x77 || m.Sequence() != 0x1234 ||
		string(m.Payload()) != "abcde" || checksum.Checksum(m, 0) != 0xffff {
		t.Errorf("gVisor sees %x", m)
	}
}

func seqnumValue(s Seq) seqnum.Value { return seqnum.Value(s) }

// BenchmarkChecksumGVisor is gVisor's checksum on the same 1500 bytes, for
// comparison with BenchmarkChecksum/1500.
func BenchmarkChecksumGVisor(b *testing.B) {
	buf := make([]byte, 1500)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	b.SetBytes(int64(len(buf)))
	var sink uint16
	for b.Loop() {
		sink += checksum.Checksum(buf, 0)
	}
	_ = sink
}
