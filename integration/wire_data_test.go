package integration

// Data-path scenarios: windows, out-of-order data and SACK, duplicates and
// D-SACK, retransmission timing, MSS and timestamps.

import (
	"bytes"
	"testing"
	"time"

	"utcp/seg"
)

// Out-of-order data is answered at once by a duplicate ACK carrying a SACK
// block for it (RFC 5681 §4.2, RFC 2018 §4); the hole filled, the ACK
// covers everything and the reader gets the bytes in order.
func TestWireOutOfOrderSACK(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		hole := c.snd
		s := c.seg(seg.ACK, []byte("world"))
		s.Seq = hole.Add(6)
		d.inject(t, s)
		a := c.next(t, time.Second, "dup ACK")
		c.wantAck(t, a, hole)
		if a.Opts.NumSACK != 1 || a.Opts.SACK[0] != (seg.SACKBlock{Start: hole.Add(6), End: hole.Add(11)}) {
			t.Fatalf("%s: want SACK %d-%d, got %v", d.kind, hole.Add(6), hole.Add(11), &a)
		}
		c.send(t, seg.ACK, []byte("hello "))
		c.snd = hole.Add(11)
		a = c.next(t, time.Second, "ACK")
		c.wantAck(t, a, c.snd)
		if a.Opts.NumSACK != 0 {
			t.Errorf("%s: SACK after the hole filled: %v", d.kind, &a)
		}
		if got := c.dutRead(t, 11, time.Second); string(got) != "hello world" {
			t.Fatalf("%s: read %q", d.kind, got)
		}
	})
}

// Two holes: the SACK option lists the most recently received block first
// (RFC 2018 §4).
func TestWireSACKTwoBlocks(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		base := c.snd
		s := c.seg(seg.ACK, []byte("bbbb"))
		s.Seq = base.Add(10)
		d.inject(t, s)
		c.next(t, time.Second, "first dup ACK")
		s.Seq = base.Add(30)
		d.inject(t, s)
		a := c.next(t, time.Second, "second dup ACK")
		c.wantAck(t, a, base)
		want := []seg.SACKBlock{{Start: base.Add(30), End: base.Add(34)}, {Start: base.Add(10), End: base.Add(14)}}
		if a.Opts.NumSACK != 2 || a.Opts.SACK[0] != want[0] || a.Opts.SACK[1] != want[1] {
			t.Fatalf("%s: want SACK %v, got %v", d.kind, want, &a)
		}
	})
}

// Without SACK negotiated, out-of-order data still gets an immediate
// duplicate ACK, with no SACK option.
func TestWireOutOfOrderNoSACK(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		o := defaultSyn()
		o.SACKPerm = false
		c := d.established(t, 80, o)
		s := c.seg(seg.ACK, []byte("later"))
		s.Seq = c.snd.Add(100)
		d.inject(t, s)
		a := c.next(t, time.Second, "dup ACK")
		c.wantAck(t, a, c.snd)
		if a.Opts.NumSACK != 0 {
			t.Errorf("%s: SACK without SACK-permitted: %v", d.kind, &a)
		}
	})
}

// Data already received is acknowledged at once, with a D-SACK block
// naming the duplicate (RFC 2883 §4).
func TestWireDuplicateDSACK(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		s := c.send(t, seg.ACK|seg.PSH, []byte("dup!"))
		c.dutRead(t, 4, time.Second)
		c.next(t, time.Second, "ACK")
		d.inject(t, s)
		a := c.next(t, time.Second, "ACK of duplicate")
		c.wantAck(t, a, c.snd)
		if a.Opts.NumSACK != 1 || a.Opts.SACK[0] != (seg.SACKBlock{Start: s.Seq, End: s.Seq.Add(4)}) {
			t.Fatalf("%s: want D-SACK %d-%d, got %v", d.kind, s.Seq, s.Seq.Add(4), &a)
		}
	})
}

// A segment overlapping old and new data delivers only the new part.
func TestWirePartialOverlap(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		c.send(t, seg.ACK|seg.PSH, []byte("abcd"))
		c.next(t, time.Second, "ACK")
		s := c.seg(seg.ACK|seg.PSH, []byte("cdefgh"))
		s.Seq = c.snd.Add(^uint32(1)) // RCV.NXT-2
		d.inject(t, s)
		c.snd = c.snd.Add(4)
		if got := c.dutRead(t, 8, time.Second); string(got) != "abcdefgh" {
			t.Fatalf("%s: read %q", d.kind, got)
		}
		a := c.next(t, time.Second, "ACK")
		if a.Ack != c.snd {
			t.Fatalf("%s: want ack %d, got %v", d.kind, c.snd, &a)
		}
	})
}

// The DUT never sends beyond the window we advertise (RFC 9293 §3.8.6):
// with 1000 bytes offered and 3000 written, what goes out ends exactly at
// the window's edge until our ACK opens it again. The small window is
// offered from the handshake on: Linux ignores a window that shrinks on a
// duplicate ACK (same SEQ and ACK, tcp_may_update_window), where RFC 9293's
// SND.WL2 =< SEG.ACK test would take it. Segment sizes differ (Linux
// bounds them to half the largest window, tcp_bound_to_half_wnd, and may
// resend the last one as a tail loss probe), so only the edge is checked;
// Nagle is off so that utcp does not hold back the window's last bytes.
func TestWireSendWindow(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		o := defaultSyn()
		o.Win = 1000
		c := d.established(t, 80, o)
		c.cw(t).SetNoDelay(true)
		c.dutWrite(t, pattern(3000))
		if edge := c.highestSent(t, 300*time.Millisecond); edge != c.rcv.Add(1000) {
			t.Fatalf("%s: sent up to %d, window edge is %d", d.kind, edge, c.rcv.Add(1000))
		}
		c.rcv = c.rcv.Add(1000)
		c.send(t, seg.ACK, nil)
		if edge := c.highestSent(t, 300*time.Millisecond); edge != c.rcv.Add(1000) {
			t.Fatalf("%s: after the ACK sent up to %d, window edge is %d", d.kind, edge, c.rcv.Add(1000))
		}
	})
}

// With window scaling negotiated (we offer shift 4), our raw window field
// is multiplied by 16 (RFC 7323 §2.3): raw 80 in the final ACK allows
// exactly 1280 bytes. (The SYN's window is never scaled, §2.2.) The window
// is below one MSS on purpose: with 1600, utcp sends 1460 and holds the
// last 140 bytes under the sender's silly-window rule (RFC 9293
// §3.8.6.2.1: less than half the largest window), while Linux sends two
// half-window segments (tcp_bound_to_half_wnd).
func TestWireWindowScaleApplied(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		o := defaultSyn()
		o.WS = 4
		o.Win = 80
		c := d.established(t, 80, o)
		if !c.synAck.Opts.HasWScale {
			t.Fatalf("%s: no window scale in %v", d.kind, &c.synAck)
		}
		c.cw(t).SetNoDelay(true)
		c.dutWrite(t, pattern(5000))
		if edge := c.highestSent(t, 300*time.Millisecond); edge != c.rcv.Add(1280) {
			t.Fatalf("%s: sent up to %d, scaled window edge is %d", d.kind, edge, c.rcv.Add(1280))
		}
	})
}

// highestSent watches the DUT's data for dur and returns the highest
// sequence number it reached (SEG.SEQ+SEG.LEN).
func (c *wireConn) highestSent(t *testing.T, dur time.Duration) seg.Seq {
	t.Helper()
	edge := c.rcv
	deadline := time.Now().Add(dur)
	for {
		s, ok := c.d.await(t, time.Until(deadline), c.mine)
		if !ok {
			return edge
		}
		if end := s.Seq.Add(uint32(len(s.Payload))); end.GreaterThan(edge) {
			edge = end
		}
	}
}

// A zero window stops the DUT; it probes it (persist timer, RFC 9293
// §3.8.6.1) and resumes when the window opens. Linux probes with a
// zero-length segment at SND.UNA-1 (tcp_xmit_probe_skb); RFC 9293 and
// utcp send one byte of new data. Both are probes: what matters is that
// one comes, that no more than one byte goes beyond the window, and that
// the answer's window opening lets the data flow.
func TestWireZeroWindowProbe(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		c.win = 0
		c.send(t, seg.ACK, nil)
		time.Sleep(20 * time.Millisecond)
		c.dutWrite(t, []byte("blocked"))
		p := c.next(t, 2*time.Second, "zero-window probe")
		if len(p.Payload) > 1 {
			t.Fatalf("%s: probe carries %d bytes: %v", d.kind, len(p.Payload), &p)
		}
		c.win = 65535
		c.send(t, seg.ACK, nil)
		got := c.collect(t, 7, time.Second)
		if string(got) != "blocked" {
			t.Fatalf("%s: got %q", d.kind, got)
		}
	})
}

// Unacknowledged data is retransmitted, the first time no sooner than
// 200 ms (Linux TCP_RTO_MIN; RFC 6298 §2.4 says 1 s, Linux and utcp use
// 200 ms), and the RTO doubles each time (RFC 6298 §5.5). Linux's first
// retransmission is a tail loss probe (RFC 8985 §7, PTO = 2*SRTT plus
// 200 ms for a lone segment) followed by the RTO proper; utcp has no TLP.
// So the check is on the last two gaps, which are RTO backoffs on both.
func TestWireRetransmitBackoff(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		c.dutWrite(t, []byte("lost"))
		first := c.next(t, time.Second, "data")
		var gaps []time.Duration
		t0 := time.Now()
		for range 3 {
			r := c.next(t, 2*time.Second, "retransmission")
			gaps = append(gaps, time.Since(t0))
			t0 = time.Now()
			if r.Seq != first.Seq || !bytes.Equal(r.Payload, first.Payload) {
				t.Fatalf("%s: retransmission %v differs from %v", d.kind, &r, &first)
			}
		}
		if gaps[0] < 180*time.Millisecond || gaps[0] > 1200*time.Millisecond {
			t.Errorf("%s: first retransmission after %v", d.kind, gaps[0])
		}
		if ratio := float64(gaps[2]) / float64(gaps[1]); ratio < 1.6 || ratio > 2.6 {
			t.Errorf("%s: retransmission gaps %v (last ratio %.2f), want the RTO to double", d.kind, gaps, ratio)
		}
	})
}

// Three duplicate ACKs with SACK trigger a fast retransmit of the first
// segment, well before the RTO (RFC 5681 §3.2, RFC 6675).
func TestWireFastRetransmit(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		c.dutWrite(t, pattern(5*1460))
		segs := make([]seg.Segment, 0, 5)
		for len(segs) < 5 {
			s := c.next(t, time.Second, "data")
			if len(s.Payload) == 0 {
				continue
			}
			segs = append(segs, s)
		}
		t0 := time.Now()
		una := segs[0].Seq
		for i := 1; i <= 3; i++ {
			a := c.seg(seg.ACK, nil)
			a.Ack = una
			a.Opts.NumSACK = 1
			a.Opts.SACK[0] = seg.SACKBlock{Start: segs[1].Seq, End: segs[i].Seq.Add(uint32(len(segs[i].Payload)))}
			d.inject(t, a)
		}
		r := c.next(t, time.Second, "fast retransmission")
		if r.Seq != una || len(r.Payload) != len(segs[0].Payload) {
			t.Fatalf("%s: want retransmission of %d, got %v", d.kind, una, &r)
		}
		if gap := time.Since(t0); gap > 150*time.Millisecond {
			t.Errorf("%s: retransmitted after %v: not fast", d.kind, gap)
		}
	})
}

// The peer's MSS bounds the DUT's segments (RFC 9293 §3.7.1).
func TestWireMSSClamp(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		o := defaultSyn()
		o.MSS = 536
		c := d.established(t, 80, o)
		c.dutWrite(t, pattern(3000))
		s := c.next(t, time.Second, "data")
		if len(s.Payload) != 536 {
			t.Fatalf("%s: first segment %d bytes, want 536: %v", d.kind, len(s.Payload), &s)
		}
	})
}

// No MSS option means 536 (RFC 9293 §3.7.1, RFC 1122 §4.2.2.6).
func TestWireMSSDefault(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		o := defaultSyn()
		o.MSS = 0
		c := d.established(t, 80, o)
		c.dutWrite(t, pattern(3000))
		s := c.next(t, time.Second, "data")
		if len(s.Payload) != 536 {
			t.Fatalf("%s: first segment %d bytes, want 536: %v", d.kind, len(s.Payload), &s)
		}
	})
}

// With timestamps, the MSS is reduced by the 12 option bytes every
// segment carries: 1460-12 = 1448 per segment.
func TestWireMSSWithTimestamps(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		o := defaultSyn()
		o.TS = true
		c := d.established(t, 80, o)
		c.dutWrite(t, pattern(3000))
		s := c.next(t, time.Second, "data")
		if len(s.Payload) != 1448 || !s.Opts.HasTS {
			t.Fatalf("%s: first segment %d bytes, want 1448 with TS: %v", d.kind, len(s.Payload), &s)
		}
	})
}

// The DUT echoes our latest TSVal in TSEcr (RFC 7323 §4.3).
func TestWireTimestampEcho(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		o := defaultSyn()
		o.TS = true
		c := d.established(t, 80, o)
		c.tsVal = 900000
		c.send(t, seg.ACK|seg.PSH, []byte("tick"))
		a := c.next(t, time.Second, "ACK")
		if !a.Opts.HasTS || a.Opts.TSEcr != 900001 {
			t.Fatalf("%s: want TSEcr 900001, got %v", d.kind, &a)
		}
		if a.Opts.TSVal < c.synAck.Opts.TSVal {
			t.Errorf("%s: TSVal went backwards: %d < %d", d.kind, a.Opts.TSVal, c.synAck.Opts.TSVal)
		}
	})
}

// PAWS (RFC 7323 §5.3): a segment whose TSVal is older than TS.Recent is
// dropped and answered with an ACK; its data is not delivered.
func TestWirePAWS(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		o := defaultSyn()
		o.TS = true
		c := d.established(t, 80, o)
		s := c.seg(seg.ACK|seg.PSH, []byte("old!"))
		s.Opts.TSVal = c.tsVal - 1000
		d.inject(t, s)
		a := c.next(t, time.Second, "ACK of PAWS-rejected segment")
		c.wantAck(t, a, c.snd)
		if n, err := c.dutReadErr(200 * time.Millisecond); n != 0 || err == nil {
			t.Fatalf("%s: PAWS-rejected data delivered (%d bytes, %v)", d.kind, n, err)
		}
	})
}

// collect gathers n bytes of in-order data from the DUT starting at c.rcv
// (without acknowledging them).
func (c *wireConn) collect(t *testing.T, n int, timeout time.Duration) []byte {
	t.Helper()
	var out []byte
	deadline := time.Now().Add(timeout)
	for len(out) < n {
		s := c.next(t, time.Until(deadline), "data")
		if len(s.Payload) == 0 {
			continue
		}
		if s.Seq != c.rcv.Add(uint32(len(out))) {
			t.Fatalf("%s: want data at %d, got %v", c.d.kind, c.rcv.Add(uint32(len(out))), &s)
		}
		out = append(out, s.Payload...)
	}
	if len(out) > n {
		t.Fatalf("%s: got %d bytes, want %d", c.d.kind, len(out), n)
	}
	return out
}
