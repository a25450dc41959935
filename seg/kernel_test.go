package seg

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"utcp/seg/internal/kcap"
)

// Golden packets come from Linux itself: kcap runs a scripted exchange
// between two kernels in two throw-away network namespaces joined by TUN
// devices and records every packet. Regenerate with
//
//	go test ./seg -run TestKernelLive -update
var updateGolden = flag.Bool("update", false, "rewrite "+goldenFile+" from a live kernel capture")

const goldenFile = "testdata/kernel_golden.txt"

type goldenPacket struct {
	fromA bool
	data  []byte
}

func loadGolden(tb testing.TB) []goldenPacket {
	tb.Helper()
	f, err := os.Open(goldenFile)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []goldenPacket
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		dir, hx, ok := strings.Cut(line, " ")
		if !ok || (dir != "A" && dir != "B") {
			tb.Fatalf("bad golden line %q", line)
		}
		b, err := hex.DecodeString(hx)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, goldenPacket{fromA: dir == "A", data: b})
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

func writeGolden(t *testing.T, pkts []kcap.Packet) {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString("# Captured from Linux by seg/internal/kcap (go test ./seg -run TestKernelLive -update).\n")
	buf.WriteString("# A = 198.18.0.1 (client kernel), B = 198.18.0.2 (server kernel). Comments are informational.\n")
	for i, p := range pkts {
		var s Segment
		desc := "ICMP"
		if err := s.Parse(p.Data); err == nil {
			desc = s.String()
		}
		dir := "B"
		if p.FromA {
			dir = "A"
		}
		fmt.Fprintf(&buf, "# %d: %s\n%s %x\n", i, desc, dir, p.Data)
	}
	if err := os.WriteFile(goldenFile, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestKernelLive runs the capture now, against this machine's kernel, and
// checks relations that hold on any run (sequence numbers are random):
// every TCP packet parses and rebuilds byte for byte, the handshake and
// data line up, and our echo reply matches the kernel's.
func TestKernelLive(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("no /dev/net/tun")
	}
	pkts, err := kcap.Capture()
	if err != nil {
		t.Fatal(err)
	}
	var gp []goldenPacket
	for _, p := range pkts {
		gp = append(gp, goldenPacket{fromA: p.FromA, data: p.Data})
	}
	checkCapture(t, gp)
	if *updateGolden && !t.Failed() {
		writeGolden(t, pkts)
	}
}

// checkCapture asserts what every capture of kcap's script must show.
func checkCapture(t *testing.T, pkts []goldenPacket) {
	t.Helper()
	a := netip.AddrFrom4(kcap.AddrA)
	b := netip.AddrFrom4(kcap.AddrB)
	var segs []Segment
	var icmp []goldenPacket
	for i, p := range pkts {
		ip := IPv4(p.data)
		if err := ip.Validate(); err != nil {
			t.Fatalf("packet %d: IPv4 %v", i, err)
		}
		if ip.Protocol() == ProtoICMP {
			icmp = append(icmp, p)
			continue
		}
		var s Segment
		if err := s.Parse(p.data); err != nil {
			t.Fatalf("packet %d: Parse: %v\n%x", i, err, p.data)
		}
		wantSrc, wantDst := b, a
		if p.fromA {
			wantSrc, wantDst = a, b
		}
		if s.Src != wantSrc || s.Dst != wantDst {
			t.Errorf("packet %d: %v > %v, want %v > %v", i, s.Src, s.Dst, wantSrc, wantDst)
		}
		// Linux lays out options exactly as AppendTo does, so a kernel
		// packet must come back byte for byte.
		if got := s.AppendTo(nil); !bytes.Equal(got, p.data) {
			t.Errorf("packet %d: rebuild differs\n got %x\nwant %x\n%v", i, got, p.data, &s)
		}
		segs = append(segs, s)
	}
	find := func(what string, f func(*Segment) bool) *Segment {
		t.Helper()
		for i := range segs {
			if f(&segs[i]) {
				return &segs[i]
			}
		}
		t.Fatalf("no %s in capture", what)
		return nil
	}
	syn := find("SYN", func(s *Segment) bool { return s.Flags == SYN && s.SrcPort == kcap.ClientPort })
	if !syn.Opts.HasMSS || syn.Opts.MSS != 1460 || !syn.Opts.SACKPermitted || !syn.Opts.HasTS || !syn.Opts.HasWScale || syn.Opts.TSEcr != 0 {
		t.Errorf("SYN options %+v, want MSS 1460 (MTU 1500), sackOK, TS ecr 0, wscale", syn.Opts)
	}
	synack := find("SYN-ACK", func(s *Segment) bool { return s.Flags == SYN|ACK && s.DstPort == kcap.ClientPort })
	if synack.Ack != syn.Seq.Add(1) || synack.Opts.TSEcr != syn.Opts.TSVal {
		t.Errorf("SYN-ACK %v does not answer %v", synack, syn)
	}
	hello := find("hello", func(s *Segment) bool { return string(s.Payload) == kcap.Hello })
	if hello.Seq != syn.Seq.Add(1) || hello.Ack != synack.Seq.Add(1) || !hello.Flags.Has(PSH|ACK) {
		t.Errorf("data segment %v after %v / %v", hello, syn, synack)
	}
	world := find("world", func(s *Segment) bool { return string(s.Payload) == kcap.World })
	if world.Ack != hello.Seq.Add(hello.Len()) {
		t.Errorf("reply %v does not ack %v", world, hello)
	}
	fin := find("client FIN", func(s *Segment) bool { return s.Flags.Has(FIN) && s.SrcPort == kcap.ClientPort })
	if fin.Seq != hello.Seq.Add(hello.Len()) || fin.Len() != 1 {
		t.Errorf("FIN %v", fin)
	}
	refused := find("RST-ACK", func(s *Segment) bool { return s.Flags.Has(RST) && s.SrcPort == kcap.ClosedPort })
	// RFC 9293 §3.10.7.1: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
	if refused.Flags != RST|ACK || refused.Seq != 0 || refused.Window != 0 || refused.Len() != 0 {
		t.Errorf("refusal %v", refused)
	}
	abort := find("abort RST", func(s *Segment) bool { return s.Flags.Has(RST) && s.SrcPort == kcap.AbortPort })
	if abort.Flags != RST|ACK {
		t.Errorf("abort %v", abort)
	}

	if len(icmp) != 2 || !icmp[0].fromA || icmp[1].fromA {
		t.Fatalf("want echo request from A and reply from B, got %d ICMP packets", len(icmp))
	}
	req, rep := IPv4(icmp[0].data), IPv4(icmp[1].data)
	m := ICMPv4(req.Payload())
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if m.Type() != ICMPEchoRequest || m.ID() != kcap.PingID || m.SeqNum() != kcap.PingSeq || string(m.Payload()) != kcap.PingData {
		t.Errorf("echo request %d/%d id %#x seq %d %q", m.Type(), m.Code(), m.ID(), m.SeqNum(), m.Payload())
	}
	ours := IPv4(AppendEchoReply(nil, req))
	if err := ours.Validate(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours.Payload(), rep.Payload()) {
		t.Errorf("ICMP reply\n ours %x\nLinux %x", ours.Payload(), rep.Payload())
	}
	if ours.Src() != rep.Src() || ours.Dst() != rep.Dst() || ours.TTL() != rep.TTL() ||
		ours.TotalLen() != rep.TotalLen() || ours.DontFragment() != rep.DontFragment() {
		t.Errorf("reply IP header\n ours %x\nLinux %x", ours[:20], rep[:20])
	}
}
