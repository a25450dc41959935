package integration

// Teardown scenarios: passive close (CLOSE-WAIT, LAST-ACK), active close
// (FIN-WAIT-1/2, TIME-WAIT), simultaneous close, aborts (RFC 9293 §3.6,
// §3.10.4, §3.10.7.4 eighth check; Linux's RST-on-close rules).

import (
	"io"
	"testing"
	"time"

	"utcp/seg"
)

// A FIN is acknowledged (ack = FIN's seq + 1) and read() returns EOF; the
// DUT is in CLOSE-WAIT and can still send.
func TestWireFinAcked(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		c.send(t, seg.FIN|seg.ACK, nil)
		a := c.next(t, time.Second, "ACK of FIN")
		c.wantAck(t, a, c.snd)
		if _, err := c.dutReadErr(time.Second); err != io.EOF {
			t.Fatalf("%s: read after FIN: %v, want EOF", d.kind, err)
		}
		c.dutWrite(t, []byte("bye"))
		s := c.next(t, time.Second, "data in CLOSE-WAIT")
		if string(s.Payload) != "bye" || s.Seq != c.rcv {
			t.Fatalf("%s: want \"bye\" at %d, got %v", d.kind, c.rcv, &s)
		}
	})
}

// CLOSE-WAIT then close(): the DUT sends FIN (LAST-ACK); our ACK of it ends
// the connection, after which the 4-tuple answers with RST.
func TestWireLastAck(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		c.send(t, seg.FIN|seg.ACK, nil)
		c.next(t, time.Second, "ACK of FIN")
		c.dutReadErr(time.Second) // EOF
		c.conn.Close()
		f := c.next(t, time.Second, "FIN")
		wantSeg(t, d.kind, f, seg.FIN|seg.ACK, c.rcv, c.snd)
		c.rcv = c.rcv.Add(1)
		c.send(t, seg.ACK, nil)
		c.expectNone(t, 100*time.Millisecond, "reply to the last ACK")
		s := c.send(t, seg.ACK|seg.PSH, []byte("late"))
		r := c.next(t, time.Second, "RST")
		wantSeg(t, d.kind, r, seg.RST, s.Ack, 0)
	})
}

// In LAST-ACK, an unanswered FIN is retransmitted after the RTO.
func TestWireLastAckRetransmit(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		c.send(t, seg.FIN|seg.ACK, nil)
		c.next(t, time.Second, "ACK of FIN")
		c.conn.Close()
		f := c.next(t, time.Second, "FIN")
		again := c.next(t, 2*time.Second, "retransmitted FIN")
		wantSeg(t, d.kind, again, seg.FIN|seg.ACK, f.Seq, f.Ack)
	})
}

// close(): FIN; our ACK moves the DUT to FIN-WAIT-2, where our data is
// still acceptable... only if the application did not close the receive
// side. After a full close, Linux resets on new data (TCPAbortOnData), and
// so does utcp; with CloseWrite (half close) the data is delivered.
func TestWireFinWait2HalfClose(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		c.cw(t).CloseWrite()
		f := c.next(t, time.Second, "FIN")
		wantSeg(t, d.kind, f, seg.FIN|seg.ACK, c.rcv, c.snd)
		c.rcv = c.rcv.Add(1)
		c.send(t, seg.ACK, nil)
		c.send(t, seg.ACK|seg.PSH, []byte("more"))
		if got := c.dutRead(t, 4, time.Second); string(got) != "more" {
			t.Fatalf("%s: read %q", d.kind, got)
		}
		a := c.next(t, time.Second, "ACK of data")
		c.wantAck(t, a, c.snd)
		c.send(t, seg.FIN|seg.ACK, nil)
		a = c.next(t, time.Second, "ACK of FIN")
		c.wantAck(t, a, c.snd)
	})
}

// Data arriving after a full close() is answered with RST (RFC 9293
// §3.10.7.4 leaves it open and RFC 1122 §4.2.2.13 allows it). Linux has by
// then turned the orphaned FIN-WAIT-2 socket into a timewait minisocket,
// which resets without counting (tcp_timewait_state_process); utcp keeps
// the connection and counts TCPAbortOnData, as Linux does for data on a
// closed socket that is still a full socket.
func TestWireDataAfterClose(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		before := d.counter(t, "TCPAbortOnData")
		c.conn.Close()
		f := c.next(t, time.Second, "FIN")
		c.rcv = f.Seq.Add(1)
		c.send(t, seg.ACK, nil)
		c.send(t, seg.ACK|seg.PSH, []byte("more"))
		r := c.next(t, time.Second, "RST")
		if !r.Flags.Has(seg.RST) || r.Seq != c.rcv {
			t.Fatalf("%s: want RST seq=%d, got %v", d.kind, c.rcv, &r)
		}
		if after := d.counter(t, "TCPAbortOnData"); d.kind == "utcp" && after != before+1 {
			t.Errorf("%s: TCPAbortOnData %d -> %d, want +1", d.kind, before, after)
		}
	})
}

// FIN-WAIT-2 then the peer's FIN: the DUT ACKs it and sits in TIME-WAIT,
// where a retransmitted FIN is ACKed again (RFC 9293 §3.10.7.4 eighth
// check, TIME-WAIT: "acknowledge it, and restart the 2 MSL timeout").
func TestWireTimeWaitReAck(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		c.conn.Close()
		f := c.next(t, time.Second, "FIN")
		c.rcv = f.Seq.Add(1)
		c.send(t, seg.ACK, nil)
		fin := c.send(t, seg.FIN|seg.ACK, nil)
		a := c.next(t, time.Second, "ACK of FIN")
		c.wantAck(t, a, c.snd)
		// The ACK "was lost": retransmit the FIN.
		d.inject(t, fin)
		a = c.next(t, time.Second, "ACK of retransmitted FIN")
		c.wantAck(t, a, c.snd)
	})
}

// FIN-WAIT-1 with a FIN|ACK that acknowledges our FIN goes straight to
// TIME-WAIT and ACKs the FIN.
func TestWireFinWait1FinAck(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		c.conn.Close()
		f := c.next(t, time.Second, "FIN")
		c.rcv = f.Seq.Add(1)
		c.send(t, seg.FIN|seg.ACK, nil)
		a := c.next(t, time.Second, "ACK of FIN")
		c.wantAck(t, a, c.snd)
	})
}

// Simultaneous close: our FIN crosses the DUT's (it does not ACK theirs);
// the DUT, in CLOSING, ACKs our FIN; our ACK of theirs completes.
func TestWireSimultaneousClose(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		c.conn.Close()
		f := c.next(t, time.Second, "FIN")
		wantSeg(t, d.kind, f, seg.FIN|seg.ACK, c.rcv, c.snd)
		c.send(t, seg.FIN|seg.ACK, nil) // ack = their FIN's seq: not acknowledged
		a := c.next(t, time.Second, "ACK of our FIN")
		if !a.Flags.Has(seg.ACK) || a.Ack != c.snd {
			t.Fatalf("%s: want ACK of %d, got %v", d.kind, c.snd, &a)
		}
		c.rcv = c.rcv.Add(1)
		c.send(t, seg.ACK, nil)
		c.expectNone(t, 100*time.Millisecond, "reply to the last ACK")
	})
}

// SO_LINGER 0 then close(): an abortive close sends RST at SND.NXT
// (RFC 9293 §3.10.4 ABORT) and no FIN.
func TestWireLingerZero(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		c.cw(t).SetLinger(0)
		c.conn.Close()
		r := c.next(t, time.Second, "RST")
		if !r.Flags.Has(seg.RST) || r.Seq != c.rcv {
			t.Fatalf("%s: want RST seq=%d, got %v", d.kind, c.rcv, &r)
		}
	})
}

// close() with unread received data resets instead of closing gracefully
// (RFC 2525 §2.17, Linux TCPAbortOnClose).
func TestWireCloseUnread(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		c := d.established(t, 80, defaultSyn())
		c.send(t, seg.ACK|seg.PSH, []byte("unread"))
		c.next(t, time.Second, "ACK of data")
		before := d.counter(t, "TCPAbortOnClose")
		c.conn.Close()
		r := c.next(t, time.Second, "RST")
		if r.Flags != seg.RST|seg.ACK || r.Seq != c.rcv || r.Ack != c.snd {
			t.Fatalf("%s: want RST|ACK seq=%d ack=%d, got %v", d.kind, c.rcv, c.snd, &r)
		}
		if after := d.counter(t, "TCPAbortOnClose"); after != before+1 {
			t.Errorf("%s: TCPAbortOnClose %d -> %d, want +1", d.kind, before, after)
		}
	})
}
