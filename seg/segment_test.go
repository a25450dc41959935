package seg

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func TestRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	buf := make([]byte, 0, 2000)
	for i := range 5000 {
		s := randSeg(r, 1400)
		pkt := s.AppendTo(buf[:0])
		if len(pkt) != s.HeaderLen()+len(s.Payload) {
			t.Fatalf("#%d: built %d bytes, HeaderLen %d + payload %d", i, len(pkt), s.HeaderLen(), len(s.Payload))
		}
		if ol := s.Opts.Len(); ol%4 != 0 || ol > MaxOptionsLen {
			t.Fatalf("#%d: Options.Len %d", i, ol)
		}
		var got Segment
		if err := got.Parse(pkt); err != nil {
			t.Fatalf("#%d: Parse(AppendTo(%v)): %v", i, &s, err)
		}
		want := canonical(s)
		if d := diffSeg(&got, &want); d != "" {
			t.Fatalf("#%d: %v\n%s", i, &s, d)
		}
		// Parse must alias, not copy, the payload.
		if len(got.Payload) > 0 && &got.Payload[0] != &pkt[s.HeaderLen()] {
			t.Fatalf("#%d: payload does not alias the packet", i)
		}
	}
}

// TestAppendToAppends checks AppendTo keeps what is already in b.
func TestAppendToAppends(t *testing.T) {
	s := Segment{Src: addrA, Dst: addrB, SrcPort: 1, DstPort: 2, Flags: ACK, Payload: []byte("x")}
	b := s.AppendTo([]byte("prefix"))
	if !bytes.HasPrefix(b, []byte("prefix")) {
		t.Fatal("prefix lost")
	}
	var got Segment
	if err := got.Parse(b[6:]); err != nil {
		t.Fatal(err)
	}
	if string(got.Payload) != "x" || got.TTL != DefaultTTL {
		t.Errorf("%v ttl %d", &got, got.TTL)
	}
}

// TestOptionLayout pins the exact bytes AppendTo writes for each option
// combination: Linux's tcp_options_write layout.
func TestOptionLayout(t *testing.T) {
	blocks := [4]SACKBlock{{0x01020304, 0x05060708}, {0x11121314, 0x15161718}, {0x21222324, 0x25262728}, {0x31323334, 0x35363738}}
	tests := []struct {
		name string
		o    Options
		hex  string
	}{
		{"none", Options{}, ""},
		{"mss", Options{HasMSS: true, MSS: 1460}, "020405b4"},
		{"linux SYN", Options{HasMSS: true, MSS: 1460, SACKPermitted: true, HasTS: true, TSVal: 1, TSEcr: 2, HasWScale: true, WScale: 7},
			"020405b4" + "0402080a0000000100000002" + "01030307"},
		{"SYN without TS", Options{HasMSS: true, MSS: 1460, SACKPermitted: true, HasWScale: true, WScale: 7},
			"020405b4" + "01010402" + "01030307"},
		{"TS only", Options{HasTS: true, TSVal: 0xaabbccdd, TSEcr: 0x11223344}, "0101080aaabbccdd11223344"},
		{"wscale only", Options{HasWScale: true, WScale: 14}, "0103030e"},
		{"one SACK", Options{NumSACK: 1, SACK: blocks}, "0101050a" + "0102030405060708"},
		{"TS + 3 SACK", Options{HasTS: true, TSVal: 1, TSEcr: 2, NumSACK: 3, SACK: blocks},
			"0101080a0000000100000002" + "0101051a" + "0102030405060708" + "1112131415161718" + "2122232425262728"},
		{"TS + 4 SACK keeps 3", Options{HasTS: true, TSVal: 1, TSEcr: 2, NumSACK: 4, SACK: blocks},
			"0101080a0000000100000002" + "0101051a" + "0102030405060708" + "1112131415161718" + "2122232425262728"},
		{"4 SACK", Options{NumSACK: 4, SACK: blocks},
			"01010522" + "0102030405060708" + "1112131415161718" + "2122232425262728" + "3132333435363738"},
		{"everything keeps 2 SACK", Options{HasMSS: true, MSS: 536, SACKPermitted: true, HasTS: true, HasWScale: true, NumSACK: 4, SACK: blocks},
			"02040218" + "0402080a0000000000000000" + "01030300" + "01010512" + "0102030405060708" + "1112131415161718"},
		{"negative NumSACK", Options{NumSACK: -3, SACK: blocks}, ""},
		{"NumSACK too big", Options{NumSACK: 9, SACK: blocks},
			"01010522" + "0102030405060708" + "1112131415161718" + "2122232425262728" + "3132333435363738"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := hex.EncodeToString(tc.o.appendOptions(nil))
			if got != tc.hex {
				t.Errorf("bytes\n got %s\nwant %s", got, tc.hex)
			}
			if tc.o.Len() != len(tc.hex)/2 {
				t.Errorf("Len %d, emitted %d", tc.o.Len(), len(tc.hex)/2)
			}
			// The layout parses back.
			var back Options
			if err := parseOptions(tc.o.appendOptions(nil), &back); err != nil {
				t.Fatal(err)
			}
			if back.NumSACK != tc.o.SACKBlocksFit() {
				t.Errorf("parsed %d SACK blocks, SACKBlocksFit %d", back.NumSACK, tc.o.SACKBlocksFit())
			}
		})
	}
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name string
		hex  string
		want Options
		err  error
	}{
		{"empty", "", Options{}, nil},
		{"EOL stops", "00" + "020405b4", Options{}, nil},
		{"NOPs then EOL then garbage", "010100ff", Options{}, nil},
		{"unknown kind skipped", "1e0400000204ffff", Options{HasMSS: true, MSS: 0xffff}, nil},
		{"unaligned options", "030305040202040401", Options{HasWScale: true, WScale: 5, SACKPermitted: true, HasMSS: true, MSS: 0x0401}, nil},
		{"wscale above 14 kept raw", "01030363", Options{HasWScale: true, WScale: 99}, nil},
		{"repeated MSS, last wins", "020400010204000201010101", Options{HasMSS: true, MSS: 2}, nil},
		{"length 0", "1e00", Options{}, ErrOptionLen},
		{"length 1", "1e01", Options{}, ErrOptionLen},
		{"overlong", "1e05aaaa", Options{}, ErrOptionLen},
		{"missing length byte", "0101011e", Options{}, ErrOptionLen},
		{"MSS wrong length", "02030500", Options{}, ErrOptionLen},
		{"MSS truncated", "0204", Options{}, ErrOptionLen},
		{"WS wrong length", "03040700", Options{}, ErrOptionLen},
		{"SACK-permitted wrong length", "04030000", Options{}, ErrOptionLen},
		{"TS wrong length", "080800000000000001010101", Options{}, ErrOptionLen},
		{"SACK empty", "0502", Options{}, ErrOptionLen},
		{"SACK not multiple of 8", "050b" + "00000000000000000000", Options{}, ErrOptionLen},
		{"SACK 5 blocks", "052a" + strings.Repeat("00", 40), Options{}, ErrOptionLen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := hex.DecodeString(tc.hex)
			if err != nil {
				t.Fatal(err)
			}
			var got Options
			err = parseOptions(b, &got)
			if err != tc.err {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err == nil && got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestSegmentLen(t *testing.T) {
	p := []byte("abc")
	for _, tc := range []struct {
		s    Segment
		want uint32
	}{
		{Segment{Flags: ACK}, 0},
		{Segment{Flags: SYN}, 1},
		{Segment{Flags: FIN | ACK}, 1},
		{Segment{Flags: SYN | FIN}, 2},
		{Segment{Flags: PSH | ACK, Payload: p}, 3},
		{Segment{Flags: SYN | FIN, Payload: p}, 5},
		{Segment{Flags: RST, Payload: p}, 3},
	} {
		if got := tc.s.Len(); got != tc.want {
			t.Errorf("%v: Len %d, want %d", tc.s.Flags, got, tc.want)
		}
	}
}

func TestSegmentString(t *testing.T) {
	s := Segment{Src: addrA, Dst: addrB, SrcPort: 40000, DstPort: 80, Seq: 100, Flags: SYN, Window: 65535,
		Opts: Options{HasMSS: true, MSS: 1460, SACKPermitted: true, HasTS: true, TSVal: 1, HasWScale: true, WScale: 7}}
	want := "198.18.0.1.40000 > 198.18.0.2.80: Flags [S], seq 100, win 65535, options [mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0"
	if got := s.String(); got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
	s = Segment{Src: addrB, Dst: addrA, SrcPort: 80, DstPort: 40000, Seq: 4294967295, Ack: 7, Flags: ACK | URG, Window: 10, Urgent: 3,
		Payload: []byte("hi"), Opts: Options{NumSACK: 2, SACK: [4]SACKBlock{{10, 20}, {30, 40}}}}
	want = "198.18.0.2.80 > 198.18.0.1.40000: Flags [.U], seq 4294967295:1, ack 7, win 10, urg 3, options [nop,nop,sack 2 {10:20}{30:40}], length 2"
	if got := s.String(); got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
	o := Options{SACKPermitted: true}
	if got := o.String(); got != "nop,nop,sackOK" {
		t.Errorf("Options.String %q", got)
	}
}

func TestParseTCPAddresses(t *testing.T) {
	s := Segment{Src: addrA, Dst: addrB, SrcPort: 5, DstPort: 6, Flags: ACK, Payload: []byte("data")}
	pkt := s.AppendTo(nil)
	tcp := IPv4(pkt).Payload()
	var got Segment
	if err := got.ParseTCP(addrA, addrB, tcp); err != nil {
		t.Fatal(err)
	}
	if got.TTL != 0 || got.ID != 0 || string(got.Payload) != "data" || got.Src != addrA {
		t.Errorf("%v ttl %d id %d", &got, got.TTL, got.ID)
	}
	// IPv4-mapped addresses are the same addresses.
	if err := got.ParseTCP(netip.AddrFrom16(addrA.As16()), addrB, tcp); err != nil {
		t.Errorf("mapped: %v", err)
	}
	// Wrong addresses break the pseudo-header checksum.
	if err := got.ParseTCP(addrB, addrA, tcp); err != nil && err != ErrTCPChecksum {
		t.Errorf("swapped: %v", err)
	}
	if err := got.ParseTCP(addrA, netip.MustParseAddr("198.18.0.3"), tcp); err != ErrTCPChecksum {
		t.Errorf("other dst: %v, want ErrTCPChecksum", err)
	}
	if err := got.ParseTCP(netip.IPv6Loopback(), addrB, tcp); err != ErrVersion {
		t.Errorf("IPv6: %v, want ErrVersion", err)
	}
	if err := got.ParseTCP(netip.Addr{}, addrB, tcp); err != ErrVersion {
		t.Errorf("zero addr: %v, want ErrVersion", err)
	}
	if err := got.ParseTCP(addrA, addrB, make([]byte, 70000)); err != ErrTotalLen {
		t.Errorf("oversized: %v, want ErrTotalLen", err)
	}
}

func TestAppendIPv4Header(t *testing.T) {
	h := IPv4(AppendIPv4Header(nil, addrA, addrB, ProtoUDP, 0, 0xbeef, 8))
	h = append(h, make([]byte, 8)...)
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	if h.TTL() != DefaultTTL || h.ID() != 0xbeef || !h.DontFragment() || h.Protocol() != ProtoUDP ||
		h.TotalLen() != 28 || h.Src() != addrA || h.Dst() != addrB || len(h.Payload()) != 8 {
		t.Errorf("%x", h)
	}
	h = IPv4(AppendIPv4Header(nil, addrA, addrB, ProtoTCP, 1, 0, 0))
	if h.TTL() != 1 {
		t.Errorf("ttl %d", h.TTL())
	}
}

func TestAppendEchoReply(t *testing.T) {
	data := []byte("0123456789abcdefg") // odd length
	icmp := append([]byte{ICMPEchoRequest, 0, 0, 0, 0xab, 0xcd, 0x00, 0x07}, data...)
	c := ^Checksum(icmp, 0)
	icmp[2], icmp[3] = byte(c>>8), byte(c)
	req := IPv4(append(AppendIPv4Header(nil, addrA, addrB, ProtoICMP, 17, 0x4242, len(icmp)), icmp...))
	if err := req.Validate(); err != nil {
		t.Fatal(err)
	}
	rep := IPv4(AppendEchoReply([]byte{}, req))
	if err := rep.Validate(); err != nil {
		t.Fatal(err)
	}
	m := ICMPv4(rep.Payload())
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if rep.Src() != addrB || rep.Dst() != addrA || rep.Protocol() != ProtoICMP || rep.TTL() != DefaultTTL ||
		rep.DontFragment() || rep.ID() != 0x4242 {
		t.Errorf("reply IP header %x", rep[:20])
	}
	if m.Type() != ICMPEchoReply || m.Code() != 0 || m.ID() != 0xabcd || m.SeqNum() != 7 || !bytes.Equal(m.Payload(), data) {
		t.Errorf("reply %x", m)
	}
	// A payload too short to be ICMP yields nothing.
	short := IPv4(append(AppendIPv4Header(nil, addrA, addrB, ProtoICMP, 0, 0, 4), 8, 0, 0, 0))
	if got := AppendEchoReply([]byte("x"), short); string(got) != "x" {
		t.Errorf("short request gave %x", got)
	}
}

func TestZeroAllocs(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	s := randSeg(r, 1400)
	s.Opts = Options{HasTS: true, NumSACK: 3}
	buf := make([]byte, 0, 2000)
	pkt := s.AppendTo(nil)
	var got Segment
	if n := testing.AllocsPerRun(100, func() { _ = got.Parse(pkt) }); n != 0 {
		t.Errorf("Parse: %v allocs", n)
	}
	if n := testing.AllocsPerRun(100, func() { buf = s.AppendTo(buf[:0]) }); n != 0 {
		t.Errorf("AppendTo: %v allocs", n)
	}
	bad := append([]byte(nil), pkt...)
	bad[len(bad)-1] ^= 1
	if n := testing.AllocsPerRun(100, func() { _ = got.Parse(bad) }); n != 0 {
		t.Errorf("Parse error path: %v allocs", n)
	}
}

// TestAppendPartial checks the CHECKSUM_PARTIAL form: identical to AppendTo
// but for the TCP checksum field, which holds the folded pseudo-header sum,
// and completing it as a NIC does (the one's complement of the sum from the
// TCP header to the end, field included) gives AppendTo's packet exactly.
func TestAppendPartial(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for i := range 2000 {
		s := randSeg(r, 9000)
		full := s.AppendTo(nil)
		part := s.AppendPartial(nil)
		if len(part) != len(full) {
			t.Fatalf("#%d: partial %d bytes, full %d", i, len(part), len(full))
		}
		csum := IPv4MinHeaderLen + 16
		if !bytes.Equal(part[:csum], full[:csum]) || !bytes.Equal(part[csum+2:], full[csum+2:]) {
			t.Fatalf("#%d: partial packet differs from AppendTo's outside the TCP checksum", i)
		}
		tcpLen := len(part) - IPv4MinHeaderLen
		want := fold32(PseudoHeaderSum(s.Src, s.Dst, ProtoTCP, tcpLen))
		if got := uint16(part[csum])<<8 | uint16(part[csum+1]); got != want {
			t.Fatalf("#%d: partial checksum field %#04x, want pseudo-header sum %#04x", i, got, want)
		}
		// AppendHeaders is the same packet minus the payload.
		hdr := s.AppendHeaders(nil, false)
		if !bytes.Equal(append(hdr, s.Payload...), full) {
			t.Fatalf("#%d: AppendHeaders + payload differs from AppendTo", i)
		}
		if hdr = s.AppendHeaders(nil, true); !bytes.Equal(append(hdr, s.Payload...), part) {
			t.Fatalf("#%d: AppendHeaders(partial) + payload differs from AppendPartial", i)
		}
		done := ^Checksum(part[IPv4MinHeaderLen:], 0)
		part[csum], part[csum+1] = byte(done>>8), byte(done)
		if !bytes.Equal(part, full) {
			t.Fatalf("#%d: completed partial checksum %#04x differs from AppendTo's", i, done)
		}
	}
}
