package stack

import (
	"io"
	"syscall"
	"testing"
	"time"
)

// RFC 9293 §3.8.6.3 and RFC 1122 §4.2.3.2 (as Linux applies them): a single
// in-order segment is acknowledged after the delayed-ACK timeout (40 ms, Linux's
// minimum); a second full segment before then is acknowledged at once.
func TestScriptedEstabDelayedACK(t *testing.T) {
	f := newFixture(t, noQuickAck)
	f.established(1000)
	f.in(ACK|PSH, seq(1001), ack(1), data("hello"))
	f.noOutput()
	f.advance(39 * time.Millisecond)
	f.noOutput()
	f.advance(time.Millisecond)
	f.out(ACK, seq(1), ack(1006))
	f.counter("DelayedACKs", 1)
	if got := f.available(); got != "hello" {
		t.Fatalf("read %q", got)
	}

	f.in(ACK|PSH, seq(1006), ack(1), data("abc"))
	f.noOutput()
	f.in(ACK|PSH, seq(1009), ack(1), data("def"))
	f.out(ACK, seq(1), ack(1012)) // the second segment is ACKed at once
	f.advance(time.Second)
	f.noOutput() // and the delayed ACK is cancelled by it
	f.counter("DelayedACKs", 1)
	if got := f.available(); got != "abcdef" {
		t.Fatalf("read %q", got)
	}
}

// A super-segment from a TSO/GRO link (here ten full segments in one
// packet) counts as the full-sized segments it holds, so it is ACKed at
// once as two separate segments would be (RFC 9293 §3.8.6.3); counted as
// one packet it waited 40 ms for the delayed-ACK timer. A short segment
// after it still waits.
func TestScriptedEstabSuperSegmentACKedAtOnce(t *testing.T) {
	f := newFixture(t, noQuickAck)
	f.established(1000)
	f.in(ACK, seq(1001), ack(1), data(string(payload(10*1460, 'x'))))
	f.out(ACK, seq(1), ack(1001+14600))
	f.in(ACK|PSH, seq(1001+14600), ack(1), data("y"))
	f.noOutput()
	f.advance(40 * time.Millisecond)
	f.out(ACK, seq(1), ack(1001+14601))
	f.counter("DelayedACKs", 1)
}

// RFC 5681 §4.2 / RFC 9293 §3.10.7.4 seventh step: out-of-order data is
// queued and draws an immediate duplicate ACK; when the hole fills, both
// are delivered and acknowledged at once.
func TestScriptedEstabOutOfOrder(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	f.in(ACK|PSH, seq(1006), ack(1), data("world"))
	f.out(ACK, seq(1), ack(1001))
	f.in(ACK|PSH, seq(1011), ack(1), data("!"))
	f.out(ACK, seq(1), ack(1001))
	f.counter("TCPOFOQueue", 2)
	if got := f.available(); got != "" {
		t.Fatalf("out-of-order data delivered early: %q", got)
	}
	f.in(ACK, seq(1001), ack(1), data("hello"))
	f.out(ACK, seq(1), ack(1012))
	f.noOutput()
	if got := f.available(); got != "helloworld!" {
		t.Fatalf("read %q, want helloworld!", got)
	}
}

// RFC 9293 §3.10.7.4, first step: an unacceptable segment (outside the
// receive window, or old data already acknowledged) is answered with
// <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and otherwise dropped.
func TestScriptedEstabUnacceptable(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	f.in(ACK|PSH, seq(1001+200000), ack(1), data("far"))
	f.out(ACK, seq(1), ack(1001))
	f.in(ACK, seq(1001+(1<<31)), ack(1)) // half the sequence space away
	f.out(ACK, seq(1), ack(1001))
	f.noOutput()
	if got := f.available(); got != "" {
		t.Fatalf("read %q from unacceptable segments", got)
	}
	// Old data that we had already acknowledged: our ACK was lost.
	f.in(ACK|PSH, seq(1001), ack(1), data("hello"))
	f.advance(40 * time.Millisecond)
	f.out(ACK, seq(1), ack(1006))
	f.in(ACK|PSH, seq(1001), ack(1), data("hello"))
	f.out(ACK, seq(1), ack(1006))
	f.counter("DelayedACKLost", 1)
	f.state(Established)
}

// RFC 9293 §3.10.7.4, second step with RFC 5961 §3.2: a RST whose sequence
// number is exactly RCV.NXT resets the connection (ECONNRESET; Linux counts
// EstabResets). Nothing is sent in reply.
func TestScriptedEstabRSTExact(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	f.in(RST, seq(1001))
	f.noOutput()
	f.state(Closed)
	f.wantErrno(syscall.ECONNRESET)
	f.counter("EstabResets", 1)
	f.counter("CurrEstab", 0)
}

// RFC 5961 §3.2: a RST in the window but not exactly at RCV.NXT draws a
// challenge ACK and is otherwise ignored; a RST outside the window is
// dropped silently. Challenge ACKs are rate-limited (Linux: one per 500 ms
// per connection, tcp_invalid_ratelimit).
func TestScriptedEstabRSTChallenge(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	f.in(RST, seq(1002))
	f.out(ACK, seq(1), ack(1001))
	f.counter("TCPChallengeACK", 1)
	f.state(Established)
	f.in(RST, seq(1001+100000)) // outside the window
	f.noOutput()
	f.advance(100 * time.Millisecond)
	f.in(RST|ACK, seq(1500), ack(1)) // within 500 ms: rate-limited
	f.noOutput()
	f.advance(500 * time.Millisecond)
	f.in(RST|ACK, seq(1500), ack(1))
	f.out(ACK, seq(1), ack(1001))
	f.counter("TCPChallengeACK", 2)
	f.counter("EstabResets", 0)
	f.state(Established)
}

// RFC 5961 §4.2 (RFC 9293 §3.10.7.4, fourth step): a SYN in a synchronized
// state, in window or not, never resets; an in-window SYN draws a challenge
// ACK (Linux: TCPSYNChallenge and TCPChallengeACK).
func TestScriptedEstabSYNChallenge(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	f.in(SYN, seq(1010), mss(1460))
	f.out(ACK, seq(1), ack(1001))
	f.noOutput()
	f.state(Established)
	f.counter("TCPSYNChallenge", 1)
	f.counter("TCPChallengeACK", 1)
	f.counter("EstabResets", 0)
}

// RFC 9293 §3.10.7.4, fifth step, ESTABLISHED: "If the ACK acks something
// not yet sent (SEG.ACK > SND.NXT), then send an ACK, drop the segment".
// Its data is not delivered.
func TestScriptedEstabACKBeyondSndNxt(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	f.in(ACK|PSH, seq(1001), ack(100), data("x"))
	f.out(ACK, seq(1), ack(1001))
	f.noOutput()
	if got := f.available(); got != "" {
		t.Fatalf("data of a dropped segment delivered: %q", got)
	}
	f.state(Established)
	f.in(ACK|PSH, seq(1001), ack(1), data("x"))
	f.advance(40 * time.Millisecond)
	f.out(ACK, seq(1), ack(1002))
}

// RFC 9293 §3.10.7.4, eighth step: a FIN in ESTABLISHED is acknowledged
// (RCV.NXT advances over it) and the connection enters CLOSE-WAIT; the
// application reads the data, then EOF.
func TestScriptedEstabFIN(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	f.in(FIN|ACK|PSH, seq(1001), ack(1), data("bye"))
	f.out(ACK, seq(1), ack(1005))
	f.noOutput()
	f.state(CloseWait)
	if got := f.available(); got != "bye" {
		t.Fatalf("read %q", got)
	}
	if _, err := f.conn.Read(make([]byte, 8)); err != io.EOF {
		t.Fatalf("read after FIN: %v, want EOF", err)
	}
}

// noQuickAck turns Linux's quickack start-up mode off so a test can watch
// delayed ACKs from the first segment.
func noQuickAck(c *Config) { c.QuickAcks = -1 }

// Linux's quickack mode: right after the handshake every data segment is
// ACKed at once (up to QuickAcks of them), so the sender's slow start is
// not held back by delayed ACKs; after that, single segments wait.
func TestScriptedEstabQuickAck(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.QuickAcks = 2 })
	f.established(1000)
	f.in(ACK, seq(1001), ack(1), data("a"))
	f.out(ACK, ack(1002))
	f.in(ACK, seq(1002), ack(1), data("b"))
	f.out(ACK, ack(1003))
	f.in(ACK, seq(1003), ack(1), data("c"))
	f.noOutput()
	f.advance(40 * time.Millisecond)
	f.out(ACK, ack(1004))
}
