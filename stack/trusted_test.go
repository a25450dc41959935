package stack

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"utcp/seg"
)

// trustLink is a Link with ReadPacketsTrusted: each injected packet comes
// with the flag the test chose.
type trustLink struct {
	in     chan trustPkt
	out    chan []byte
	closed chan struct{}
}

type trustPkt struct {
	p       []byte
	trusted bool
}

func newTrustLink() *trustLink {
	return &trustLink{in: make(chan trustPkt, 8), out: make(chan []byte, 64), closed: make(chan struct{})}
}

func (l *trustLink) ReadPacketsTrusted(bufs [][]byte, sizes []int, trusted []bool) (int, error) {
	select {
	case p := <-l.in:
		sizes[0] = copy(bufs[0], p.p)
		trusted[0] = p.trusted
		return 1, nil
	case <-l.closed:
		return 0, os.ErrClosed
	}
}

func (l *trustLink) ReadPackets(bufs [][]byte, sizes []int) (int, error) {
	panic("the stack must use ReadPacketsTrusted when the link has it")
}

func (l *trustLink) WritePackets(bufs [][]byte) (int, error) {
	for _, b := range bufs {
		select {
		case l.out <- append([]byte(nil), b...):
		default:
		}
	}
	return len(bufs), nil
}

func (l *trustLink) MTU() int       { return 1500 }
func (l *trustLink) BatchSize() int { return 1 }
func (l *trustLink) Close() error   { close(l.closed); return nil }

// A SYN whose checksum is wrong is answered when the link vouched for it
// (the stack did not verify it) and dropped as InCsumErrors when it did
// not (the stack verified it): the trust is per packet.
func TestTrustedLinkSkipsVerifyPerPacket(t *testing.T) {
	link := newTrustLink()
	s, err := New(Config{Link: link, Addr: addrB, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Listen(80, 8); err != nil {
		t.Fatal(err)
	}
	syn := func(port uint16) []byte {
		sg := seg.Segment{Src: addrA, Dst: addrB, SrcPort: port, DstPort: 80, Seq: 1000, Flags: seg.SYN, Window: 65535}
		sg.Opts.HasMSS, sg.Opts.MSS = true, 1460
		p := sg.AppendTo(nil)
		p[20+16] ^= 0x40 // a wrong TCP checksum
		return p
	}
	waitCounter := func(name string, f func(Counters) uint64) {
		for deadline := time.Now().Add(5 * time.Second); f(s.Counters()) == 0; {
			if time.Now().After(deadline) {
				t.Fatalf("%s never counted", name)
			}
			time.Sleep(time.Millisecond)
		}
	}

	link.in <- trustPkt{syn(40000), false}
	waitCounter("InCsumErrors", func(c Counters) uint64 { return c.InCsumErrors })
	select {
	case p := <-link.out:
		t.Fatalf("answered an unverified SYN with a bad checksum: % x", p[:40])
	default:
	}

	link.in <- trustPkt{syn(40001), true}
	select {
	case p := <-link.out:
		var sg seg.Segment
		if err := sg.Parse(p); err != nil || sg.Flags != seg.SYN|seg.ACK || sg.DstPort != 40001 || sg.Dst != netip.MustParseAddr("198.18.0.1") {
			t.Fatalf("reply %v (%v), want a SYN-ACK to port 40001", sg, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no SYN-ACK for the trusted SYN")
	}
	if c := s.Counters(); c.InCsumErrors != 1 || c.InSegs != 1 {
		t.Fatalf("InCsumErrors %d InSegs %d, want 1 and 1", c.InCsumErrors, c.InSegs)
	}
}
