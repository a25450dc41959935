package stack

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"utcp/seg"
	"utcp/timers"
)

func newManual(t *testing.T) (*Stack, *timers.ManualClock) {
	t.Helper()
	clk := &timers.ManualClock{}
	s, err := New(Config{Manual: true, Clock: clk, Addr: addrB, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return s, clk
}

func synPacket(sport, dport uint16, seq seg.Seq) []byte {
	sg := seg.Segment{Src: addrA, Dst: addrB, SrcPort: sport, DstPort: dport, Seq: seq, Flags: seg.SYN, Window: 65535}
	sg.Opts.HasMSS, sg.Opts.MSS = true, 1460
	return sg.AppendTo(nil)
}

// fragment splits an IPv4 packet into fragments whose payloads start at
// the given offsets (multiples of 8), recomputing header checksums.
func fragment(pkt []byte, offsets ...int) [][]byte {
	ip := seg.IPv4(pkt)
	hl := ip.HeaderLen()
	payload := ip.Payload()
	var out [][]byte
	for i, off := range offsets {
		end := len(payload)
		if i+1 < len(offsets) {
			end = offsets[i+1]
		}
		f := append([]byte(nil), pkt[:hl]...)
		f = append(f, payload[off:end]...)
		binary.BigEndian.PutUint16(f[2:4], uint16(len(f)))
		fo := uint16(off / 8)
		if end < len(payload) {
			fo |= 0x2000 // MF
		}
		binary.BigEndian.PutUint16(f[6:8], fo)
		f[10], f[11] = 0, 0
		binary.BigEndian.PutUint16(f[10:12], ^seg.Checksum(f[:hl], 0))
		out = append(out, f)
	}
	return out
}

func parseOut(t *testing.T, pkts [][]byte) []seg.Segment {
	t.Helper()
	var out []seg.Segment
	for _, p := range pkts {
		var s seg.Segment
		if err := s.Parse(p); err != nil {
			t.Fatalf("stack sent an unparsable packet: %v", err)
		}
		out = append(out, s)
	}
	return out
}

// RFC 1122 §3.3.2: a host reassembles fragments. A SYN split in three
// fragments, delivered out of order, reaches the listener.
func TestFragmentedSYNReassembled(t *testing.T) {
	s, _ := newManual(t)
	s.Listen(80, 8)
	frags := fragment(synPacket(40000, 80, 1000), 0, 8, 16)
	s.Inject(frags[2])
	s.Inject(frags[0])
	if out := s.TakeOutput(); len(out) != 0 {
		t.Fatalf("answered before the datagram was complete: %d packets", len(out))
	}
	s.Inject(frags[1])
	out := parseOut(t, s.TakeOutput())
	if len(out) != 1 || out[0].Flags != seg.SYN|seg.ACK || out[0].Ack != 1001 {
		t.Fatalf("want one SYN-ACK acking 1001, got %v", out)
	}
	c := s.Counters()
	if c.ReasmReqds != 3 || c.ReasmOKs != 1 || c.ReasmFails != 0 {
		t.Fatalf("reassembly counters %d/%d/%d", c.ReasmReqds, c.ReasmOKs, c.ReasmFails)
	}
}

// Overlapping fragments drop the whole datagram (as Linux does since the
// FragmentSmack fixes); incomplete ones time out after 30 s; the number of
// datagrams held is bounded.
func TestFragmentBounds(t *testing.T) {
	s, clk := newManual(t)
	s.Listen(80, 8)
	pkt := synPacket(40001, 80, 1000)
	fr := fragment(pkt, 0, 8)
	ov := fragment(pkt, 0, 16) // its first piece overlaps fr[1]
	s.Inject(fr[1])
	s.Inject(ov[0])
	s.Inject(fr[0])
	if out := s.TakeOutput(); len(out) != 0 {
		t.Fatalf("overlapping fragments produced output")
	}
	if c := s.Counters(); c.ReasmFails == 0 || c.ReasmOKs != 0 {
		t.Fatalf("overlap not rejected: %+v", c)
	}
	// 200 datagrams that never complete: at most maxReasmDatagrams held.
	for i := 0; i < 200; i++ {
		p := synPacket(uint16(41000+i), 80, 1)
		binary.BigEndian.PutUint16(p[4:6], uint16(i+100)) // distinct IP IDs
		p[10], p[11] = 0, 0
		binary.BigEndian.PutUint16(p[10:12], ^seg.Checksum(p[:20], 0))
		s.Inject(fragment(p, 0, 8)[0])
	}
	s.mu.Lock()
	held := len(s.reasm.dgram)
	s.mu.Unlock()
	if held > maxReasmDatagrams {
		t.Fatalf("%d datagrams held, bound is %d", held, maxReasmDatagrams)
	}
	clk.Advance(31 * time.Second)
	s.Advance()
	s.mu.Lock()
	held, bytes := len(s.reasm.dgram), s.reasm.bytes
	s.mu.Unlock()
	if held != 0 || bytes != 0 {
		t.Fatalf("after the timeout %d datagrams (%d bytes) still held", held, bytes)
	}
	if c := s.Counters(); c.ReasmTimeout == 0 {
		t.Fatal("ReasmTimeout not counted")
	}
}

// ICMP echo: ping works; the reply swaps addresses and keeps id, sequence
// and payload.
func TestPingReply(t *testing.T) {
	s, _ := newManual(t)
	icmp := []byte{8, 0, 0, 0, 0x12, 0x34, 0, 7, 'h', 'e', 'l', 'l', 'o'}
	binary.BigEndian.PutUint16(icmp[2:4], ^seg.Checksum(icmp, 0))
	pkt := seg.AppendIPv4Header(nil, addrA, addrB, seg.ProtoICMP, 64, 9, len(icmp))
	pkt = append(pkt, icmp...)
	s.Inject(pkt)
	out := s.TakeOutput()
	if len(out) != 1 {
		t.Fatalf("want one reply, got %d", len(out))
	}
	ip := seg.IPv4(out[0])
	if err := ip.Validate(); err != nil {
		t.Fatal(err)
	}
	m := seg.ICMPv4(ip.Payload())
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if ip.Src() != addrB || ip.Dst() != addrA || m.Type() != seg.ICMPEchoReply || m.ID() != 0x1234 || m.SeqNum() != 7 || string(m.Payload()) != "hello" {
		t.Fatalf("bad echo reply % x", out[0])
	}
	if c := s.Counters(); c.InEchos != 1 || c.OutEchoReps != 1 {
		t.Fatalf("ICMP counters %d/%d", c.InEchos, c.OutEchoReps)
	}
}

// IPv6 (which the kernel sends into a TUN), unknown protocols, packets for
// other addresses and bad checksums are dropped and counted, never
// answered.
func TestDropsAreCounted(t *testing.T) {
	s, _ := newManual(t)
	s.Listen(80, 8)
	v6 := make([]byte, 40)
	v6[0] = 0x60
	s.Inject(v6)
	udp := seg.AppendIPv4Header(nil, addrA, addrB, seg.ProtoUDP, 64, 1, 8)
	udp = append(udp, make([]byte, 8)...)
	s.Inject(udp)
	other := seg.Segment{Src: addrA, Dst: netip.MustParseAddr("198.18.0.9"), SrcPort: 1, DstPort: 80, Flags: seg.SYN}
	s.Inject(other.AppendTo(nil))
	bad := synPacket(40000, 80, 5)
	bad[len(bad)-1] ^= 0xff // corrupt the TCP checksum (last byte of options)
	s.Inject(bad)
	s.Inject(nil)
	if out := s.TakeOutput(); len(out) != 0 {
		t.Fatalf("answered a dropped packet: %d", len(out))
	}
	c := s.Counters()
	if c.InIPv6 != 1 || c.InUnknownProtos != 1 || c.InAddrErrors != 1 || c.InCsumErrors != 1 || c.InErrs != 1 || c.InHdrErrors != 1 {
		t.Fatalf("counters: v6 %d unknown %d addr %d csum %d inerrs %d hdr %d", c.InIPv6, c.InUnknownProtos, c.InAddrErrors, c.InCsumErrors, c.InErrs, c.InHdrErrors)
	}
}

// tcp_tw_reuse: a Dial may take over the 4-tuple of its own TIME_WAIT
// entry only if enabled, with timestamps, and after one second.
func TestTimeWaitReuse(t *testing.T) {
	for _, reuse := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			p := newPair(t, pairOpts{cfgA: func(c *Config) { c.TWReuse = reuse }})
			ln, _ := p.b.Listen(80, 8)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() { c.Read(make([]byte, 1)); c.Close() }()
				}
			}()
			raddr := netip.AddrPortFrom(addrB, 80)
			c, err := p.a.DialFrom(context.Background(), 45000, raddr)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			synctest.Wait()
			if p.a.StateCounts()[TimeWait] != 1 {
				t.Fatalf("no TIME_WAIT: %v", p.a.StateCounts())
			}
			if _, err := p.a.DialFrom(context.Background(), 45000, raddr); !errors.Is(err, syscall.EADDRINUSE) {
				t.Fatalf("young TIME_WAIT: dial err %v, want EADDRINUSE", err)
			}
			time.Sleep(1500 * time.Millisecond)
			c2, err := p.a.DialFrom(context.Background(), 45000, raddr)
			if !reuse {
				if !errors.Is(err, syscall.EADDRINUSE) {
					t.Fatalf("tw_reuse off: dial err %v, want EADDRINUSE", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("tw_reuse on: %v", err)
			}
			c2.Close()
			if n := p.a.Counters().TWRecycled; n != 1 {
				t.Fatalf("TWRecycled %d", n)
			}
		})
	}
}
