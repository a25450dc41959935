package stack

import (
	"testing"
	"time"
)

// toTimeWait takes an established connection through an active close
// (FIN-WAIT-1, FIN-WAIT-2) into TIME-WAIT. The peer's FIN is seq 1001.
func toTimeWait(f *fixture) {
	f.t.Helper()
	closeActive(f)
	f.in(ACK, seq(1001), ack(2))
	f.in(FIN|ACK, seq(1001), ack(2))
	f.out(ACK, seq(2), ack(1002))
	f.state(TimeWait)
}

// RFC 9293 §3.10.7.4 eighth step and §3.10.8: TIME-WAIT lasts 2*MSL
// (MSL 30 s by default, so 60 s as on Linux), then the entry is deleted
// (Linux counts TW). No segment is sent when it ends.
func TestScriptedTimeWaitLasts2MSL(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	toTimeWait(f)
	f.counter("TW", 0)
	f.advance(60*time.Second - time.Millisecond)
	f.state(TimeWait)
	f.advance(time.Millisecond)
	f.noOutput()
	f.state(Closed)
	f.counter("TW", 1)
}

// Config.MSL sets the TIME-WAIT length (2*MSL).
func TestScriptedTimeWaitConfigurableMSL(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MSL = 5 * time.Second })
	f.established(1000)
	toTimeWait(f)
	f.advance(10*time.Second - time.Millisecond)
	f.state(TimeWait)
	f.advance(time.Millisecond)
	f.state(Closed)
	f.counter("TW", 1)
}

// RFC 9293 §3.10.7.4 eighth step, TIME-WAIT: "The only thing that can
// arrive in this state is a retransmission of the remote FIN. Acknowledge
// it, and restart the 2 MSL timeout."
func TestScriptedTimeWaitRetransmittedFIN(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	toTimeWait(f)
	f.advance(30 * time.Second)
	f.in(FIN|ACK, seq(1001), ack(2))
	f.out(ACK, seq(2), ack(1002))
	f.noOutput()
	f.advance(60*time.Second - time.Millisecond) // 90 s after entering
	f.state(TimeWait)
	f.advance(time.Millisecond)
	f.state(Closed)
}

// RFC 6191 §2 (and RFC 9293 §3.10.7.4 for the old SYN): without
// timestamps, a SYN for a TIME-WAIT 4-tuple whose sequence number is
// beyond RCV.NXT may reopen it through the listener, and our new ISN lies
// beyond the old incarnation's sequence space so old duplicates cannot be
// mistaken for new data. An old SYN (not beyond RCV.NXT) is answered with
// the TIME-WAIT ACK and changes nothing.
func TestScriptedTimeWaitReopenBySeq(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	toTimeWait(f)
	oldISS := f.iss[f.pport]
	f.in(SYN, seq(900), mss(1460))
	f.out(ACK, seq(2), ack(1002))
	f.state(TimeWait)
	f.in(SYN, seq(1002), mss(1460)) // equal to RCV.NXT: not beyond it
	f.out(ACK, seq(2), ack(1002))
	f.state(TimeWait)

	f.in(SYN, seq(50000), mss(1460))
	sa := f.out(SYN|ACK, ack(50001))
	if d := sa.Seq.Sub(oldISS); d <= 2 {
		t.Fatalf("new ISN %d is not beyond the old SND.NXT %d", sa.Seq, oldISS.Add(2))
	}
	f.state(SynReceived)
	f.in(ACK, seq(50001), ack(1))
	f.state(Established)
	f.counter("PassiveOpens", 2)
}

// RFC 6191 §2 with timestamps: a SYN whose TSval is newer than the last
// one seen reopens the 4-tuple even with a lower sequence number; one
// with an older TSval is a duplicate and gets the TIME-WAIT ACK.
func TestScriptedTimeWaitReopenByTimestamp(t *testing.T) {
	f := newFixture(t)
	f.listen(16)
	f.peerTS = 500
	f.in(SYN, seq(1000), mss(1460))
	sa := f.out(SYN|ACK, seq(0), ack(1001), ts(0, 500))
	f.in(ACK, seq(1001), ack(1), ts(501, sa.Opts.TSVal))
	f.accept()
	f.peerTS = 600
	closeActive(f)
	f.in(ACK, seq(1001), ack(2))
	f.in(FIN|ACK, seq(1001), ack(2))
	f.out(ACK, seq(2), ack(1002), ts(0, 600))
	f.state(TimeWait)
	oldISS := f.iss[f.pport]

	f.in(SYN, seq(7000), mss(1460), ts(599, 0)) // older timestamp, higher seq
	f.out(ACK, seq(2), ack(1002))
	f.state(TimeWait)
	f.in(SYN, seq(10), mss(1460), ts(700, 0)) // newer timestamp, lower seq
	sa = f.out(SYN|ACK, ack(11), ts(0, 700))
	if d := sa.Seq.Sub(oldISS); d <= 2 {
		t.Fatalf("new ISN %d is not beyond the old SND.NXT %d", sa.Seq, oldISS.Add(2))
	}
	f.state(SynReceived)
}

// Linux's tcp_max_tw_buckets: beyond MaxTimeWait entries a connection
// that would enter TIME-WAIT is simply closed (TCPTimeWaitOverflow), and
// no entry answers for it.
func TestScriptedTimeWaitOverflow(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxTimeWait = 1 })
	f.established(1000)
	toTimeWait(f)
	f.port(fxPeerPort + 1)
	f.established(1000)
	closeActive(f)
	f.in(ACK, seq(1001), ack(2))
	f.in(FIN|ACK, seq(1001), ack(2))
	f.out(ACK, seq(2), ack(1002))
	f.state(Closed)
	f.counter("TCPTimeWaitOverflow", 1)
	if n := f.s.StateCounts()[TimeWait]; n != 1 {
		t.Fatalf("%d TIME_WAIT entries, want 1", n)
	}
	// No entry: a retransmitted FIN now reaches the listener, which
	// resets (RFC 9293 §3.10.7.2), instead of the TIME-WAIT ACK.
	f.in(FIN|ACK, seq(1001), ack(2))
	f.out(RST, seq(2))
}
