package stack

import (
	"errors"
	"net"
	"slices"
	"testing"
	"time"
)

// RFC 9293 §3.3.2: CLOSE-WAIT ends only with the application's CLOSE — no
// timer ends it, however long it lasts. CLOSE then sends FIN and enters
// LAST-ACK (§3.10.4).
func TestScriptedCloseWaitThenLastAck(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	f.in(FIN|ACK, seq(1001), ack(1))
	f.out(ACK, seq(1), ack(1002))
	f.state(CloseWait)
	f.step(2*time.Hour, 10*time.Minute)
	f.noOutput()
	f.state(CloseWait)
	if err := f.conn.Close(); err != nil {
		t.Fatal(err)
	}
	f.out(FIN|ACK, seq(1), ack(1002))
	f.state(LastAck)
	f.in(ACK, seq(1002), ack(2))
	f.noOutput()
	f.state(Closed)
	want := []string{"CLOSED>SYN_RECV", "SYN_RECV>ESTABLISHED", "ESTABLISHED>CLOSE_WAIT", "CLOSE_WAIT>LAST_ACK", "LAST_ACK>CLOSED"}
	if got := f.transitions(); !slices.Equal(got, want) {
		t.Fatalf("transitions %v, want %v", got, want)
	}
}

// LAST-ACK: the FIN is retransmitted on the RTO with backoff (RFC 6298
// §5.4-5.5; the handshake's 10 ms sample gives the 200 ms floor), and the
// ACK of the FIN closes the connection (RFC 9293 §3.10.7.4, fifth step).
func TestScriptedLastAckRetransmit(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	f.in(FIN|ACK, seq(1001), ack(1))
	f.out(ACK, seq(1), ack(1002))
	f.conn.Close()
	f.out(FIN|ACK, seq(1), ack(1002))
	f.advance(199 * time.Millisecond)
	f.noOutput()
	f.advance(time.Millisecond)
	f.out(FIN|ACK, seq(1), ack(1002))
	f.advance(399 * time.Millisecond)
	f.noOutput()
	f.advance(time.Millisecond)
	f.out(FIN|ACK, seq(1), ack(1002))
	f.counter("RetransSegs", 2)
	f.counter("TCPTimeouts", 2)
	f.state(LastAck)
	f.in(ACK, seq(1002), ack(2))
	f.state(Closed)
	f.advance(10 * time.Second)
	f.noOutput()
}

// closeActive closes the application's side of an established connection
// and checks the FIN (RFC 9293 §3.10.4: ESTABLISHED -> FIN-WAIT-1).
func closeActive(f *fixture) {
	f.t.Helper()
	if err := f.conn.Close(); err != nil {
		f.t.Fatal(err)
	}
	f.out(FIN|ACK, seq(1), ack(1001))
	f.state(FinWait1)
}

// RFC 9293 §3.10.7.4, fifth step, FIN-WAIT-1: when our FIN is acknowledged
// the connection enters FIN-WAIT-2.
func TestScriptedFinWait1ACK(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	closeActive(f)
	f.in(ACK, seq(1001), ack(2))
	f.noOutput()
	f.state(FinWait2)
}

// Simultaneous close (RFC 9293 §3.6, Figure 13): a FIN that does not
// acknowledge ours moves FIN-WAIT-1 to CLOSING (eighth step); the ACK of
// our FIN then enters TIME-WAIT (fifth step, CLOSING).
func TestScriptedSimultaneousClose(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	closeActive(f)
	f.in(FIN|ACK, seq(1001), ack(1))
	f.out(ACK, seq(2), ack(1002))
	f.state(Closing)
	f.in(ACK, seq(1002), ack(2))
	f.noOutput()
	f.state(TimeWait)
	want := []string{"CLOSED>SYN_RECV", "SYN_RECV>ESTABLISHED", "ESTABLISHED>FIN_WAIT1", "FIN_WAIT1>CLOSING", "CLOSING>TIME_WAIT"}
	if got := f.transitions(); !slices.Equal(got, want) {
		t.Fatalf("transitions %v, want %v", got, want)
	}
}

// RFC 9293 §3.10.7.4: a FIN that also acknowledges our FIN takes
// FIN-WAIT-1 to TIME-WAIT (fifth step reaches FIN-WAIT-2, the eighth step
// then enters TIME-WAIT), and is acknowledged.
func TestScriptedFinWait1FINACK(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	closeActive(f)
	f.in(FIN|ACK, seq(1001), ack(2))
	f.out(ACK, seq(2), ack(1002))
	f.noOutput()
	f.state(TimeWait)
}

// RFC 9293 §3.10.7.4, eighth step, FIN-WAIT-2: the peer's FIN is
// acknowledged and the connection enters TIME-WAIT.
func TestScriptedFinWait2FIN(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	closeActive(f)
	f.in(ACK, seq(1001), ack(2))
	f.state(FinWait2)
	f.advance(30 * time.Second)
	f.in(FIN|ACK, seq(1001), ack(2))
	f.out(ACK, seq(2), ack(1002))
	f.state(TimeWait)
}

// Linux (tcp_fin_timeout): an orphaned FIN-WAIT-2 — the application
// called Close, so nobody can read — ends after FinTimeout (60 s by
// default) without a RST; RFC 9293 §3.3.2 has no such timer, but without
// it a vanished peer would hold the connection forever.
func TestScriptedFinWait2OrphanTimeout(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	closeActive(f)
	f.in(ACK, seq(1001), ack(2))
	f.state(FinWait2)
	f.advance(60*time.Second - time.Millisecond)
	f.state(FinWait2)
	f.advance(time.Millisecond)
	f.noOutput()
	f.state(Closed)
	f.counter("TCPFINWait2Timeout", 1)
}

// A half-closed connection (CloseWrite only) in FIN-WAIT-2 may still
// receive data for as long as the peer likes: no timer ends it.
func TestScriptedFinWait2HalfClosedStays(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	if err := f.conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	f.out(FIN|ACK, seq(1), ack(1001))
	f.in(ACK, seq(1001), ack(2))
	f.state(FinWait2)
	f.step(time.Hour, 10*time.Second)
	f.noOutput()
	f.state(FinWait2)
	f.in(ACK|PSH, seq(1001), ack(2), data("late"))
	f.advance(40 * time.Millisecond)
	f.out(ACK, seq(2), ack(1005))
	if got := f.available(); got != "late" {
		t.Fatalf("read %q", got)
	}
	f.in(FIN|ACK, seq(1005), ack(2))
	f.out(ACK, seq(2), ack(1006))
	f.state(TimeWait)
}

// Linux (tcp_rcv_state_process, RFC 9293 §3.10.4's "no further RECEIVEs"):
// data that arrives after the application closed cannot be delivered, so
// the connection is reset: <SEQ=SND.NXT><CTL=RST> and TCPAbortOnData.
func TestScriptedFinWait2DataAfterClose(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	closeActive(f)
	f.in(ACK, seq(1001), ack(2))
	f.state(FinWait2)
	f.in(ACK|PSH, seq(1001), ack(2), data("x"))
	f.out(RST|ACK, seq(2))
	f.noOutput()
	f.state(Closed)
	f.counter("TCPAbortOnData", 1)
	f.counter("OutRsts", 1)
}

// RFC 9293 §3.10.4 and RFC 2525 §2.17: closing with unread data aborts
// with a RST instead of a FIN (Linux: TCPAbortOnClose), so the peer learns
// its data was not consumed.
func TestScriptedCloseWithUnreadData(t *testing.T) {
	f := newFixture(t, noQuickAck)
	f.established(1000)
	f.in(ACK|PSH, seq(1001), ack(1), data("unread"))
	f.noOutput()
	if err := f.conn.Close(); err != nil {
		t.Fatal(err)
	}
	f.out(RST|ACK, seq(1), ack(1007))
	f.noOutput()
	f.state(Closed)
	f.counter("TCPAbortOnClose", 1)
	f.advance(time.Second) // the delayed ACK died with the connection
	f.noOutput()
}

// SO_LINGER with a zero timeout makes Close an ABORT (RFC 9293 §3.10.5):
// a RST, no FIN, no TIME-WAIT (Linux: TCPAbortOnLinger).
func TestScriptedCloseLingerZero(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	if err := f.conn.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	f.conn.Close()
	f.out(RST|ACK, seq(1), ack(1001))
	f.noOutput()
	f.state(Closed)
	f.counter("TCPAbortOnLinger", 1)
	f.counter("OutRsts", 1)
	if _, err := f.conn.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v, want net.ErrClosed", err)
	}
}
