package integration

// RST and acceptability rules in a synchronized state: RFC 5961 §3 (RST),
// §4 (SYN), §5 (ACK) and RFC 9293 §3.10.7.4 (unacceptable segments).

import (
	"syscall"
	"testing"
	"time"

	"utcp/seg"
)

// A RST whose sequence number is exactly RCV.NXT resets the connection
// (RFC 5961 §3.2): the socket reports ECONNRESET and the 4-tuple is gone,
// so a later segment is answered with a RST.
func TestWireRSTExact(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		d.inject(t, c.seg(seg.RST, nil))
		c.expectNone(t, 100*time.Millisecond, "reply to exact RST")
		if _, err := c.dutReadErr(time.Second); !isErrno(err, syscall.ECONNRESET) {
			t.Fatalf("%s: read after RST: %v, want ECONNRESET", d.kind, err)
		}
		s := c.send(t, seg.ACK|seg.PSH, []byte("late"))
		r := c.next(t, time.Second, "RST")
		wantSeg(t, d.kind, r, seg.RST, s.Ack, 0)
	})
}

// A RST inside the window but not at RCV.NXT gets a challenge ACK (RFC
// 5961 §3.2) and the connection survives.
func TestWireRSTInWindow(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		r := c.seg(seg.RST, nil)
		r.Seq = c.snd.Add(100)
		d.inject(t, r)
		a := c.next(t, time.Second, "challenge ACK")
		c.wantAck(t, a, c.snd)
		c.send(t, seg.ACK|seg.PSH, []byte("alive"))
		if got := c.dutRead(t, 5, time.Second); string(got) != "alive" {
			t.Fatalf("%s: read %q", d.kind, got)
		}
	})
}

// A RST outside the window is silently dropped (RFC 5961 §3.2).
func TestWireRSTOutOfWindow(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		r := c.seg(seg.RST, nil)
		r.Seq = c.snd.Add(1 << 30)
		d.inject(t, r)
		r.Seq = c.snd.Add(^uint32(0) - 100) // just below RCV.NXT
		d.inject(t, r)
		c.expectNone(t, 200*time.Millisecond, "reply to out-of-window RST")
		c.send(t, seg.ACK|seg.PSH, []byte("alive"))
		if got := c.dutRead(t, 5, time.Second); string(got) != "alive" {
			t.Fatalf("%s: read %q", d.kind, got)
		}
	})
}

// A RST|ACK at RCV.NXT also resets (the ACK bit does not matter).
func TestWireRSTAckExact(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		d.inject(t, c.seg(seg.RST|seg.ACK, nil))
		if _, err := c.dutReadErr(time.Second); !isErrno(err, syscall.ECONNRESET) {
			t.Fatalf("%s: read after RST: %v, want ECONNRESET", d.kind, err)
		}
	})
}

// A SYN in ESTABLISHED, in window or not, gets a challenge ACK and changes
// nothing (RFC 5961 §4.2).
func TestWireSynInEstablished(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		s := c.seg(seg.SYN, nil)
		s.Opts.HasMSS, s.Opts.MSS = true, 1460
		d.inject(t, s)
		a := c.next(t, time.Second, "challenge ACK")
		c.wantAck(t, a, c.snd)
		c.send(t, seg.ACK|seg.PSH, []byte("alive"))
		if got := c.dutRead(t, 5, time.Second); string(got) != "alive" {
			t.Fatalf("%s: read %q", d.kind, got)
		}
	})
}

// Data whose ACK is older than SND.UNA but within the largest window the
// peer ever advertised is acceptable (RFC 5961 §5.2): it is delivered and
// acknowledged.
func TestWireDataOldAck(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		c.dutWrite(t, []byte("hello"))
		s := c.next(t, time.Second, "data")
		c.rcv = s.Seq.Add(uint32(len(s.Payload)))
		c.send(t, seg.ACK, nil)
		old := c.seg(seg.ACK|seg.PSH, []byte("data"))
		old.Ack = c.iss.Add(1) // before SND.UNA, within MAX.SND.WND
		d.inject(t, old)
		c.snd = c.snd.Add(4)
		if got := c.dutRead(t, 4, time.Second); string(got) != "data" {
			t.Fatalf("%s: read %q", d.kind, got)
		}
		a := c.next(t, time.Second, "ACK")
		c.wantAck(t, a, c.snd)
	})
}

// Data whose ACK lies more than MAX.SND.WND before SND.UNA is dropped and
// answered with a challenge ACK (RFC 5961 §5.2).
func TestWireDataAncientAck(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		old := c.seg(seg.ACK|seg.PSH, []byte("data"))
		old.Ack = c.rcv.Add(^uint32(0) - 200000) // 200 kB behind
		d.inject(t, old)
		a := c.next(t, time.Second, "challenge ACK")
		c.wantAck(t, a, c.snd)
		if n, err := c.dutReadErr(200 * time.Millisecond); n != 0 || err == nil {
			t.Fatalf("%s: the data was delivered (%d bytes, %v)", d.kind, n, err)
		}
	})
}

// A segment acknowledging data never sent (SEG.ACK > SND.NXT) is dropped
// and answered with an ACK (RFC 9293 §3.10.7.4, ESTABLISHED: "If the ACK
// acks something not yet sent ... send an ACK, drop the segment").
func TestWireAckUnsentData(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		s := c.seg(seg.ACK|seg.PSH, []byte("data"))
		s.Ack = c.rcv.Add(1000)
		d.inject(t, s)
		a := c.next(t, time.Second, "ACK")
		c.wantAck(t, a, c.snd)
		if n, err := c.dutReadErr(200 * time.Millisecond); n != 0 || err == nil {
			t.Fatalf("%s: the data was delivered (%d bytes, %v)", d.kind, n, err)
		}
	})
}

// A segment entirely beyond the receive window is unacceptable: it is
// answered with <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and dropped (RFC 9293
// §3.10.7.4 first check).
func TestWireDataBeyondWindow(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		s := c.seg(seg.ACK|seg.PSH, []byte("far"))
		s.Seq = c.snd.Add(1 << 24)
		d.inject(t, s)
		a := c.next(t, time.Second, "ACK")
		c.wantAck(t, a, c.snd)
		if a.Opts.NumSACK != 0 {
			t.Errorf("%s: SACK for unacceptable data: %v", d.kind, &a)
		}
	})
}

// A zero-length segment at RCV.NXT-1 (the keepalive shape, and Linux's
// zero-window probe) fails the acceptability test of RFC 9293 §3.10.7.4
// (RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND), so it is answered with
// <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>: that ACK is what the prober wants.
func TestWireKeepaliveProbe(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		s := c.seg(seg.ACK, nil)
		s.Seq = c.snd.Add(^uint32(0))
		d.inject(t, s)
		a := c.next(t, time.Second, "ACK")
		c.wantAck(t, a, c.snd)
	})
}
