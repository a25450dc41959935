package stack

import (
	"slices"
	"syscall"
	"testing"
	"time"
)

// RFC 9293 §3.10.7.4, fifth step, SYN-RECEIVED: an ACK with
// SND.UNA < SEG.ACK =< SND.NXT enters ESTABLISHED; the connection then
// waits in the accept queue (PassiveOpens counts it, as Linux does).
func TestScriptedSynRecvACK(t *testing.T) {
	f := newFixture(t)
	f.listen(16)
	f.in(SYN, seq(100), mss(1460))
	f.out(SYN|ACK, seq(0), ack(101))
	f.in(ACK, seq(101), ack(1))
	f.noOutput()
	f.state(Established)
	f.counter("PassiveOpens", 1)
	if n := f.acceptQueueLen(); n != 1 {
		t.Fatalf("accept queue %d, want 1", n)
	}
	f.accept()
	// No SYN-ACK timer survives the handshake.
	f.advance(10 * time.Second)
	f.noOutput()
}

// A retransmitted SYN in SYN-RECEIVED means our SYN-ACK was lost: it lies
// left of the window, and the answer to an unacceptable segment (RFC 9293
// §3.10.7.4, first step) is the SYN-ACK again (Linux tcp_check_req).
func TestScriptedSynRecvRetransmittedSYN(t *testing.T) {
	f := newFixture(t)
	f.listen(16)
	f.in(SYN, seq(100), mss(1460))
	f.out(SYN|ACK, seq(0), ack(101))
	f.in(SYN, seq(100), mss(1460))
	f.out(SYN|ACK, seq(0), ack(101))
	f.noOutput()
	f.state(SynReceived)
	f.in(ACK, seq(101), ack(1))
	f.state(Established)
}

// The SYN-ACK is retransmitted with exponential backoff (RFC 6298 §5.5)
// from the 1 s initial RTO (RFC 6298 §2.1): after 1, 2, 4, 8 and 16 s.
// After tcp_synack_retries (5) the request is dropped silently, 32 s after
// the last retransmission (63 s in all), as Linux does.
func TestScriptedSynRecvSynAckBackoff(t *testing.T) {
	f := newFixture(t)
	f.listen(16)
	f.in(SYN, seq(100), mss(1460))
	f.out(SYN|ACK, seq(0), ack(101))
	for i, gap := range []time.Duration{1, 2, 4, 8, 16} {
		f.advance(gap*time.Second - time.Millisecond)
		f.noOutput()
		f.advance(time.Millisecond)
		f.out(SYN|ACK, seq(0), ack(101))
		f.noOutput()
		f.counter("TCPSynRetrans", uint64(i+1))
	}
	f.counter("RetransSegs", 5)
	f.advance(32*time.Second - time.Millisecond)
	f.state(SynReceived)
	f.advance(time.Millisecond)
	f.noOutput()
	f.state(Closed)
	// The request is gone: its final ACK now reaches the listener, which
	// answers <SEQ=SEG.ACK><CTL=RST> (RFC 9293 §3.10.7.2).
	f.in(ACK, seq(101), ack(1))
	f.out(RST, seq(1))
	f.state(Closed)
}

// RFC 9293 §3.10.7.4, second step, SYN-RECEIVED of a passive open: a RST
// with exactly RCV.NXT (RFC 5961 §3.2) returns the request to LISTEN;
// Linux counts AttemptFails. A later SYN starts afresh.
func TestScriptedSynRecvRST(t *testing.T) {
	f := newFixture(t)
	f.listen(16)
	f.in(SYN, seq(100), mss(1460))
	f.out(SYN|ACK, seq(0), ack(101))
	f.in(RST, seq(101))
	f.noOutput()
	f.state(Closed)
	f.counter("AttemptFails", 1)
	f.counter("PassiveOpens", 0)
	f.advance(5 * time.Second) // no SYN-ACK timer is left behind
	f.noOutput()
	f.in(SYN, seq(500), mss(1460))
	f.out(SYN|ACK, ack(501))
	f.state(SynReceived)
}

// RFC 9293 §3.10.7.4, fifth step, SYN-RECEIVED: an ACK outside
// SND.UNA < SEG.ACK =< SND.NXT draws <SEQ=SEG.ACK><CTL=RST>, and the
// connection stays in SYN-RECEIVED.
func TestScriptedSynRecvBadACK(t *testing.T) {
	f := newFixture(t)
	f.listen(16)
	f.in(SYN, seq(100), mss(1460))
	f.out(SYN|ACK, seq(0), ack(101))
	f.in(ACK, seq(101), ack(0)) // acknowledges nothing
	f.out(RST, seq(0))
	f.in(ACK, seq(101), ack(1000)) // beyond SND.NXT
	f.out(RST, seq(1000))
	f.noOutput()
	f.state(SynReceived)
	f.in(ACK, seq(101), ack(1))
	f.state(Established)
}

// RFC 9293 §3.10.7.3 (SYN-SENT), fourth step: a SYN-ACK acknowledging our
// SYN enters ESTABLISHED and is answered <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>.
// Our SYN offers MSS, window scale and timestamps (RFC 7323).
func TestScriptedSynSentSynAck(t *testing.T) {
	f := newFixture(t)
	f.connect()
	syn := f.out(SYN, seq(0), mss(1460), win(65535))
	if !syn.Opts.HasWScale || !syn.Opts.HasTS {
		t.Fatalf("SYN lacks window scale or timestamps: %v", syn.String())
	}
	f.state(SynSent)
	f.counter("ActiveOpens", 1)
	f.in(SYN|ACK, seq(3000), ack(1), mss(1460))
	f.out(ACK, seq(1), ack(3001))
	f.noOutput()
	f.state(Established)
	f.counter("CurrEstab", 1)
	f.advance(10 * time.Second) // no SYN retransmission afterwards
	f.noOutput()
}

// RFC 9293 §3.10.7.3, first and second steps: a RST whose ACK acknowledges
// our SYN refuses the connection (ECONNREFUSED, AttemptFails); a RST
// without ACK is ignored (RFC 5961 §3.2 keeps that rule).
func TestScriptedSynSentRST(t *testing.T) {
	f := newFixture(t)
	f.connect()
	f.out(SYN, seq(0))
	f.in(RST, seq(0))
	f.noOutput()
	f.state(SynSent)
	f.in(RST|ACK, seq(0), ack(5)) // unacceptable ACK: ignored, no RST for a RST
	f.noOutput()
	f.state(SynSent)
	f.in(RST|ACK, seq(0), ack(1))
	f.noOutput()
	f.state(Closed)
	f.wantErrno(syscall.ECONNREFUSED)
	f.counter("AttemptFails", 1)
	f.counter("EstabResets", 0)
}

// RFC 9293 §3.10.7.3, first step: an ACK that does not acknowledge our
// SYN (SEG.ACK =< ISS or > SND.NXT) draws <SEQ=SEG.ACK><CTL=RST> and the
// segment is dropped; the connection stays in SYN-SENT.
func TestScriptedSynSentBadACK(t *testing.T) {
	f := newFixture(t)
	f.connect()
	f.out(SYN, seq(0))
	f.in(SYN|ACK, seq(3000), ack(1000))
	f.out(RST, seq(1000))
	f.in(ACK, seq(3000), ack(0))
	f.out(RST, seq(0))
	f.noOutput()
	f.state(SynSent)
	f.in(SYN|ACK, seq(3000), ack(1))
	f.out(ACK, seq(1), ack(3001))
	f.state(Established)
}

// The SYN is retransmitted with backoff from the 1 s initial RTO (RFC 6298
// §2.1, §5.5): after 1, 2, 4, 8, 16 and 32 s (tcp_syn_retries = 6), and the
// open fails with ETIMEDOUT 64 s after the last, 127 s in all, as on Linux.
func TestScriptedSynSentRetransmit(t *testing.T) {
	f := newFixture(t)
	f.connect()
	f.out(SYN, seq(0))
	for _, gap := range []time.Duration{1, 2, 4, 8, 16, 32} {
		f.advance(gap*time.Second - time.Millisecond)
		f.noOutput()
		f.advance(time.Millisecond)
		f.out(SYN, seq(0), mss(1460))
	}
	f.counter("TCPSynRetrans", 6)
	f.advance(64*time.Second - time.Millisecond)
	f.state(SynSent)
	f.advance(time.Millisecond)
	f.noOutput() // no RST: nobody answered
	f.state(Closed)
	f.wantErrno(syscall.ETIMEDOUT)
	f.counter("AttemptFails", 1)
}

// Simultaneous open (RFC 9293 §3.5, Figure 8): in SYN-SENT a SYN without
// ACK moves to SYN-RECEIVED and is answered with SYN,ACK carrying our
// original ISS (§3.10.7.3, fourth step). The peer's SYN,ACK then completes
// the open (Figure 8, line 6) without a further segment from us.
func TestScriptedSimultaneousOpen(t *testing.T) {
	f := newFixture(t)
	f.connect()
	f.out(SYN, seq(0))
	f.in(SYN, seq(3000), mss(1460))
	f.out(SYN|ACK, seq(0), ack(3001))
	f.noOutput()
	f.state(SynReceived)
	f.in(SYN|ACK, seq(3000), ack(1), mss(1460), win(4000))
	f.noOutput()
	f.state(Established)
	want := []string{"CLOSED>SYN_SENT", "SYN_SENT>SYN_RECV", "SYN_RECV>ESTABLISHED"}
	if got := f.transitions(); !slices.Equal(got, want) {
		t.Fatalf("transitions %v, want %v", got, want)
	}
	if w := f.conn.Info().SndWnd; w != 4000 {
		t.Fatalf("SND.WND %d, want 4000 (a SYN's window is not scaled)", w)
	}
	f.counter("AttemptFails", 0)
	f.advance(10 * time.Second) // neither SYN nor SYN-ACK timers remain
	f.noOutput()
	// A duplicate of the peer's SYN,ACK is now an old segment: ACK it.
	f.in(SYN|ACK, seq(3000), ack(1), mss(1460))
	f.out(ACK, seq(1), ack(3001))
	f.state(Established)
}

// If the peer's SYN,ACK is lost, its ACK of our SYN,ACK completes the
// simultaneous open just as well (RFC 9293 §3.10.7.4, fifth step).
func TestScriptedSimultaneousOpenByACK(t *testing.T) {
	f := newFixture(t)
	f.connect()
	f.out(SYN, seq(0))
	f.in(SYN, seq(3000), mss(1460))
	f.out(SYN|ACK, seq(0), ack(3001))
	f.in(ACK, seq(3001), ack(1))
	f.noOutput()
	f.state(Established)
}
