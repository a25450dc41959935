package seg

import (
	"bytes"
	"testing"
)

// TestGoldenKernelPackets parses the stored Linux capture and checks every
// field against values read off the hex by hand.
func TestGoldenKernelPackets(t *testing.T) {
	pkts := loadGolden(t)
	if len(pkts) != 18 {
		t.Fatalf("%d golden packets, want 18", len(pkts))
	}
	a, b := addrA, addrB
	ts := func(val, ecr uint32) Options { return Options{HasTS: true, TSVal: val, TSEcr: ecr} }
	synOpts := func(val, ecr uint32) Options {
		return Options{HasMSS: true, MSS: 1460, SACKPermitted: true, HasTS: true, TSVal: val, TSEcr: ecr, HasWScale: true, WScale: 10}
	}
	want := map[int]Segment{
		0: {Src: a, Dst: b, SrcPort: 40000, DstPort: 80, Seq: 1997336541, Flags: SYN, Window: 64240,
			Opts: synOpts(3552857254, 0), TTL: 64, ID: 0x949d},
		1: {Src: b, Dst: a, SrcPort: 80, DstPort: 40000, Seq: 3599435211, Ack: 1997336542, Flags: SYN | ACK, Window: 65160,
			Opts: synOpts(3273371447, 3552857254), TTL: 64, ID: 0},
		2: {Src: a, Dst: b, SrcPort: 40000, DstPort: 80, Seq: 1997336542, Ack: 3599435212, Flags: ACK, Window: 63,
			Opts: ts(3552857254, 3273371447), TTL: 64, ID: 0x949e},
		3: {Src: a, Dst: b, SrcPort: 40000, DstPort: 80, Seq: 1997336542, Ack: 3599435212, Flags: PSH | ACK, Window: 63,
			Opts: ts(3552857254, 3273371447), Payload: []byte("hello\n"), TTL: 64, ID: 0x949f},
		5: {Src: b, Dst: a, SrcPort: 80, DstPort: 40000, Seq: 3599435212, Ack: 1997336548, Flags: PSH | ACK, Window: 64,
			Opts: ts(3273371447, 3552857254), Payload: []byte("world\n"), TTL: 64, ID: 0xf9a0},
		7: {Src: a, Dst: b, SrcPort: 40000, DstPort: 80, Seq: 1997336548, Ack: 3599435218, Flags: FIN | ACK, Window: 63,
			Opts: ts(3552857357, 3273371447), TTL: 64, ID: 0x94a1},
		8: {Src: b, Dst: a, SrcPort: 80, DstPort: 40000, Seq: 3599435218, Ack: 1997336549, Flags: FIN | ACK, Window: 64,
			Opts: ts(3273371551, 3552857357), TTL: 64, ID: 0xf9a1},
		11: {Src: b, Dst: a, SrcPort: 81, DstPort: 40001, Seq: 0, Ack: 723700634, Flags: RST | ACK, Window: 0,
			TTL: 64, ID: 0},
		15: {Src: a, Dst: b, SrcPort: 40002, DstPort: 80, Seq: 3627522146, Ack: 3149794969, Flags: RST | ACK, Window: 63,
			Opts: ts(3728688058, 727251839), TTL: 64, ID: 0x79f4},
	}
	for i, w := range want {
		var s Segment
		if err := s.Parse(pkts[i].data); err != nil {
			t.Errorf("packet %d: %v", i, err)
			continue
		}
		if d := diffSeg(&s, &w); d != "" {
			t.Errorf("packet %d (%v):\n%s", i, &s, d)
		}
	}

	// The view accessors agree on a packet with options and data.
	ip := IPv4(pkts[3].data)
	if err := ip.Validate(); err != nil {
		t.Fatal(err)
	}
	if ip.HeaderLen() != 20 || ip.TotalLen() != 58 || !ip.DontFragment() || ip.MoreFragments() ||
		ip.IsFragment() || ip.FragmentOffset() != 0 || ip.Protocol() != ProtoTCP || ip.TTL() != 64 || ip.ID() != 0x949f {
		t.Errorf("IPv4 view of packet 3: %x", ip[:20])
	}
	tcp := TCP(ip.Payload())
	if err := tcp.Validate(); err != nil {
		t.Fatal(err)
	}
	if tcp.DataOffset() != 32 || tcp.Checksum() != 0x33da || tcp.Flags() != PSH|ACK ||
		!bytes.Equal(tcp.Options(), []byte{1, 1, 8, 10, 0xd3, 0xc4, 0x4c, 0xa6, 0xc3, 0x1b, 0xaf, 0x37}) ||
		string(tcp.Payload()) != "hello\n" || !tcp.VerifyChecksum(ip.Src().As4(), ip.Dst().As4()) {
		t.Errorf("TCP view of packet 3: %x", tcp)
	}

	// ICMP echo request and Linux's reply.
	req, rep := IPv4(pkts[16].data), IPv4(pkts[17].data)
	for _, p := range []IPv4{req, rep} {
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		if err := ICMPv4(p.Payload()).Validate(); err != nil {
			t.Fatal(err)
		}
	}
	if req.Src() != a || req.Dst() != b || req.ID() != 0x466a || !req.DontFragment() {
		t.Errorf("echo request IP header %x", req[:20])
	}
	if rep.Src() != b || rep.Dst() != a || rep.ID() != 0x9213 || rep.DontFragment() || rep.Protocol() != ProtoICMP {
		t.Errorf("echo reply IP header %x", rep[:20])
	}
	mq, mp := ICMPv4(req.Payload()), ICMPv4(rep.Payload())
	if mq.Type() != ICMPEchoRequest || mq.Code() != 0 || mq.ID() != 0x1234 || mq.SeqNum() != 1 || string(mq.Payload()) != "utcp-ping" ||
		mp.Type() != ICMPEchoReply || mp.Code() != 0 || mp.ID() != 0x1234 || mp.SeqNum() != 1 || string(mp.Payload()) != "utcp-ping" {
		t.Errorf("ICMP request %x reply %x", mq, mp)
	}
	if mp.Checksum() != 0x1707 {
		t.Errorf("reply checksum %#x", mp.Checksum())
	}
	// Parse refuses ICMP by name.
	var s Segment
	if err := s.Parse(req); err != ErrNotTCP {
		t.Errorf("Parse(ICMP) = %v, want ErrNotTCP", err)
	}

	// Everything that must hold for any capture holds for this one too,
	// including byte-for-byte rebuilds and our echo reply matching Linux's.
	checkCapture(t, pkts)
}

// TestGoldenString pins the tcpdump-style rendering of kernel packets.
func TestGoldenString(t *testing.T) {
	pkts := loadGolden(t)
	want := map[int]string{
		0:  "198.18.0.1.40000 > 198.18.0.2.80: Flags [S], seq 1997336541, win 64240, options [mss 1460,sackOK,TS val 3552857254 ecr 0,nop,wscale 10], length 0",
		2:  "198.18.0.1.40000 > 198.18.0.2.80: Flags [.], ack 3599435212, win 63, options [nop,nop,TS val 3552857254 ecr 3273371447], length 0",
		3:  "198.18.0.1.40000 > 198.18.0.2.80: Flags [P.], seq 1997336542:1997336548, ack 3599435212, win 63, options [nop,nop,TS val 3552857254 ecr 3273371447], length 6",
		11: "198.18.0.2.81 > 198.18.0.1.40001: Flags [R.], seq 0, ack 723700634, win 0, length 0",
	}
	for i, w := range want {
		var s Segment
		if err := s.Parse(pkts[i].data); err != nil {
			t.Fatal(err)
		}
		if got := s.String(); got != w {
			t.Errorf("packet %d:\n got %s\nwant %s", i, got, w)
		}
	}
}
