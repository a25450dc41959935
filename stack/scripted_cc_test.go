package stack

// Scripted tests of congestion control (RFC 5681, RFC 6928, RFC 3465,
// RFC 9438), retransmission timing (RFC 6298) and zero-window probing
// (RFC 9293 §3.8.6.1). The fixture's connections do not negotiate SACK,
// so no tail-loss probe runs ahead of the RTO. Helpers are in
// scripted_options_test.go.

import (
	"syscall"
	"testing"
	"time"
)

// sendSegs writes n full segments' worth and asserts how many go out at
// once, starting at relative sequence from.
func (f *fixture) sendSegs(n, want int, from uint32) {
	f.t.Helper()
	f.write(payload(n*1460, 'c'))
	for i := 0; i < want; i++ {
		f.outData(from+uint32(i*1460), 1460)
	}
	f.noOutput()
}

// RFC 6928: the initial window is ten segments; the eleventh waits for an
// ACK.
func TestScriptedCCInitialWindow(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	if got := f.info().Cwnd; got != 10*1460 {
		t.Fatalf("initial cwnd %d, want %d", got, 10*1460)
	}
	f.sendSegs(20, 10, 1)
	f.in(ACK, seq(1001), ack(segEdge(1)))
	// One segment acknowledged: one to replace it, one for cwnd growth.
	f.outData(segEdge(10), 1460)
	f.outData(segEdge(11), 1460)
	f.noOutput()
}

// RFC 5681 §3.1 slow start with byte counting (RFC 3465) and no per-ACK
// limit, as in Linux: each ACK grows cwnd by the bytes it acknowledges, a
// stretch ACK of four segments by four, so that slow start doubles cwnd
// each round trip whatever the receiver's ACK pattern.
func TestScriptedCCSlowStartABC(t *testing.T) {
	for _, cc := range []string{"cubic", "reno"} {
		t.Run(cc, func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.Congestion = cc })
			f.established(1000)
			f.sendSegs(40, 10, 1)
			f.in(ACK, seq(1001), ack(segEdge(1)))
			if got := f.info().Cwnd; got != 11*1460 {
				t.Fatalf("cwnd %d after one segment ACKed, want %d", got, 11*1460)
			}
			f.in(ACK, seq(1001), ack(segEdge(5)))
			if got := f.info().Cwnd; got != 15*1460 {
				t.Fatalf("cwnd %d after an ACK of four segments, want %d (four more)", got, 15*1460)
			}
			if ci := f.info(); ci.InFlight != ci.Cwnd {
				t.Fatalf("in flight %d, want the whole cwnd %d", ci.InFlight, ci.Cwnd)
			}
		})
	}
}

// RFC 5681 §3.1 (eq. 4) and RFC 6298 §5.4-5.6: on a retransmission
// timeout cwnd collapses to one segment (only the first segment is
// resent) and ssthresh falls: to half the flight for Reno, to 0.7 of it
// for CUBIC (RFC 9438 §4.6). TCPTimeouts counts it.
func TestScriptedCCTimeoutCollapse(t *testing.T) {
	for _, tc := range []struct {
		cc       string
		ssthresh uint32
	}{{"cubic", 7 * 1460}, {"reno", 5 * 1460}} {
		t.Run(tc.cc, func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.Congestion = tc.cc })
			f.established(1000)
			f.sendSegs(10, 10, 1)
			f.advance(199 * time.Millisecond)
			f.noOutput()
			f.advance(time.Millisecond)
			f.outData(1, 1460)
			f.noOutput()
			f.counter("TCPTimeouts", 1)
			ci := f.info()
			if ci.Cwnd != 1460 || ci.Ssthresh != tc.ssthresh {
				t.Fatalf("cwnd %d ssthresh %d, want 1460 and %d", ci.Cwnd, ci.Ssthresh, tc.ssthresh)
			}
			// Its ACK: slow start again from one segment, resending.
			f.in(ACK, seq(1001), ack(segEdge(1)))
			f.outData(segEdge(1), 1460)
			f.outData(segEdge(2), 1460)
			f.noOutput()
		})
	}
}

// RFC 9438 §4.6 against RFC 5681 §3.2: at a fast retransmit CUBIC sets
// ssthresh to 0.7 of the window, Reno to half the flight.
func TestScriptedCCLossReduction(t *testing.T) {
	for _, tc := range []struct {
		cc       string
		ssthresh uint32
	}{{"", 7 * 1460}, {"reno", 5 * 1460}} { // "" is the default, CUBIC
		t.Run("cc="+tc.cc, func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.Congestion = tc.cc })
			f.established(1000)
			f.sendSegs(10, 10, 1)
			for i := 0; i < 3; i++ {
				f.in(ACK, seq(1001), ack(1))
			}
			f.outData(1, 1460)
			if got := f.info().Ssthresh; got != tc.ssthresh {
				t.Fatalf("ssthresh %d, want %d", got, tc.ssthresh)
			}
		})
	}
}

// RFC 5681 §4.1 (Linux tcp_slow_start_after_idle): after an idle period
// longer than the RTO, cwnd restarts from the initial window; after a
// shorter pause it is kept.
func TestScriptedCCRestartAfterIdle(t *testing.T) {
	for _, tc := range []struct {
		idle time.Duration
		want int
	}{{100 * time.Millisecond, 20}, {time.Second, 10}} {
		t.Run(tc.idle.String(), func(t *testing.T) {
			f := newFixture(t)
			f.established(1000)
			f.sendSegs(10, 10, 1)
			for i := 1; i <= 10; i++ {
				f.in(ACK, seq(1001), ack(segEdge(i)))
			}
			f.noOutput()
			if got := f.info().Cwnd; got != 20*1460 {
				t.Fatalf("cwnd %d, want %d after ten ACKs in slow start", got, 20*1460)
			}
			f.advance(tc.idle)
			f.sendSegs(30, tc.want, segEdge(10))
		})
	}
}

// RFC 6298 §3 (Karn's rule): a retransmitted segment's ACK is ambiguous
// and gives no RTT sample (without timestamps); the backed-off RTO stays
// until an unambiguous sample (§5.7) and SRTT is unchanged.
func TestScriptedCCKarn(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	f.write([]byte("a"))
	f.out(ACK|PSH, seq(1), data("a"))
	f.advance(200 * time.Millisecond)
	f.out(ACK|PSH, seq(1), data("a"))
	f.advance(150 * time.Millisecond)
	f.in(ACK, seq(1001), ack(2))
	if got := f.info().SRTT; got != 10*time.Millisecond {
		t.Fatalf("SRTT %v after an ACK of a retransmission, want the handshake's 10ms", got)
	}
	// A clean exchange does give a sample.
	f.write([]byte("b"))
	f.out(ACK|PSH, seq(2), data("b"))
	f.advance(90 * time.Millisecond)
	f.in(ACK, seq(1001), ack(3))
	if got, want := f.info().SRTT, 10*time.Millisecond*7/8+90*time.Millisecond/8; got != want {
		t.Fatalf("SRTT %v, want %v", got, want)
	}
}

// RFC 6298 §5.5 and Linux tcp_syn_retries: a SYN is retransmitted with
// the RTO doubling from the initial 1 s (§2.1); after SynRetries
// retransmissions the next timeout fails the connect with ETIMEDOUT.
func TestScriptedCCSynRetries(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.SynRetries = 2 })
	f.connect()
	f.out(SYN, seq(0))
	for _, d := range []time.Duration{time.Second, 2 * time.Second} {
		f.advance(d - time.Millisecond)
		f.noOutput()
		f.advance(time.Millisecond)
		f.out(SYN, seq(0))
	}
	f.counter("TCPSynRetrans", 2)
	f.advance(4*time.Second - time.Millisecond)
	f.state(SynSent)
	f.advance(time.Millisecond)
	f.noOutput()
	f.state(Closed)
	f.wantErrno(syscall.ETIMEDOUT)
	f.counter("AttemptFails", 1)
}

// RFC 9293 §3.8.6.1: a zero window is probed with exponential backoff
// (TCPWinProbe) for as long as the peer answers: unlike retransmissions,
// probes are not bounded by Retries2 (Linux counts only unanswered
// probes). When the window opens the data flows.
func TestScriptedCCZeroWindowNeverGivesUp(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Retries2 = 3 })
	f.established(1000)
	f.in(ACK, seq(1001), ack(1), win(0))
	f.write([]byte("waiting"))
	f.noOutput()
	d := 200 * time.Millisecond
	for i := 0; i < 8; i++ {
		f.advance(d - time.Millisecond)
		f.noOutput()
		f.advance(time.Millisecond)
		f.out(ACK, seq(0), ack(1001))
		f.in(ACK, seq(1001), ack(1), win(0))
		f.noOutput()
		d *= 2
	}
	f.counter("TCPWinProbe", 8)
	f.counter("TCPAbortOnTimeout", 0)
	f.state(Established)
	f.in(ACK, seq(1001), ack(1), win(1000))
	f.out(ACK|PSH, seq(1), data("waiting"))
}
