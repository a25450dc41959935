package stack

// Scripted tests of keepalive (RFC 1122 §4.2.3.6 with Linux's
// tcp_keepalive_* semantics) and TCP_USER_TIMEOUT (RFC 5482).

import (
	"syscall"
	"testing"
	"time"
)

// RFC 1122 §4.2.3.6: keepalive is off unless the application asks for
// it; an idle connection sends nothing, for hours.
func TestScriptedKeepAliveOffByDefault(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	f.step(5*time.Hour, 10*time.Minute)
	f.noOutput()
	f.state(Established)
	f.counter("TCPKeepAlive", 0)
}

// RFC 1122 §4.2.3.6 / Linux: after Idle without a segment from the peer,
// a probe carrying SND.UNA-1 and no data (so the peer must ACK it), then
// one every Interval; when Count probes have gone unanswered the next
// interval ends the connection with ETIMEDOUT (TCPAbortOnTimeout). No RST
// is sent: the peer is presumed gone.
func TestScriptedKeepAliveProbesThenTimeout(t *testing.T) {
	f := newFixture(t)
	c := f.established(1000)
	if err := c.SetKeepAliveConfig(KeepAliveConfig{Enable: true, Idle: 10 * time.Second, Interval: 2 * time.Second, Count: 3}); err != nil {
		t.Fatal(err)
	}
	f.advance(10*time.Second - time.Millisecond)
	f.noOutput()
	f.advance(time.Millisecond)
	f.out(ACK, seq(0), ack(1001))
	for i := 2; i <= 3; i++ {
		f.advance(2*time.Second - time.Millisecond)
		f.noOutput()
		f.advance(time.Millisecond)
		f.out(ACK, seq(0), ack(1001))
		f.counter("TCPKeepAlive", uint64(i))
	}
	f.state(Established)
	f.advance(2 * time.Second)
	f.noOutput()
	f.state(Closed)
	f.wantErrno(syscall.ETIMEDOUT)
	f.counter("TCPAbortOnTimeout", 1)
	f.counter("TCPKeepAlive", 3)
}

// An answered probe proves the peer alive: the count starts over and the
// next probe comes a full Idle after the answer, not an Interval.
func TestScriptedKeepAliveAnswerResets(t *testing.T) {
	f := newFixture(t)
	c := f.established(1000)
	c.SetKeepAliveConfig(KeepAliveConfig{Enable: true, Idle: 10 * time.Second, Interval: 2 * time.Second, Count: 2})
	f.advance(10 * time.Second)
	f.out(ACK, seq(0), ack(1001))
	f.advance(2 * time.Second)
	f.out(ACK, seq(0), ack(1001))
	f.in(ACK, seq(1001), ack(1)) // the answer, just in time
	f.step(10*time.Second-time.Millisecond, time.Second)
	f.noOutput()
	f.advance(time.Millisecond)
	f.out(ACK, seq(0), ack(1001))
	f.state(Established)
	f.counter("TCPKeepAlive", 3)
	f.counter("TCPAbortOnTimeout", 0)
	// Data from the peer counts as an answer too.
	f.in(ACK|PSH, seq(1001), ack(1), data("hi"))
	f.step(10*time.Second-time.Millisecond, time.Second)
	for _, sg := range f.popAll() {
		if len(sg.Payload) == 0 && f.rel(sg.Seq) == 0 {
			t.Fatalf("keepalive probe %s sent less than Idle after data arrived", sg.String())
		}
	}
	f.state(Established)
}

// RFC 5482 (TCP_USER_TIMEOUT, Linux semantics): when sent data stays
// unacknowledged longer than the user timeout, the connection fails with
// ETIMEDOUT at the next retransmission timeout, long before Retries2
// (15) retransmissions.
func TestScriptedUserTimeout(t *testing.T) {
	f := newFixture(t)
	c := f.established(1000)
	if err := c.SetUserTimeout(time.Second); err != nil {
		t.Fatal(err)
	}
	f.write([]byte("data"))
	f.out(ACK|PSH, seq(1), data("data"))
	f.advance(200 * time.Millisecond)
	f.out(ACK|PSH, seq(1), data("data"))
	f.advance(400 * time.Millisecond)
	f.out(ACK|PSH, seq(1), data("data"))
	f.state(Established)
	f.advance(800*time.Millisecond - time.Millisecond)
	f.state(Established)
	f.advance(time.Millisecond) // 1.4 s unacknowledged: past the 1 s limit
	f.noOutput()
	f.state(Closed)
	f.wantErrno(syscall.ETIMEDOUT)
	f.counter("TCPAbortOnTimeout", 1)
	f.counter("RetransSegs", 2)
}

// The user timeout measures time without progress: ACKs that advance
// SND.UNA restart it, so a slow but live transfer is not cut off after
// 1.5 s, and fails only a second after progress stops.
func TestScriptedUserTimeoutProgress(t *testing.T) {
	f := newFixture(t)
	c := f.established(1000)
	c.SetUserTimeout(time.Second)
	f.write([]byte("abcdefgh"))
	f.out(ACK|PSH, seq(1), data("abcdefgh"))
	for i := 1; i <= 5; i++ {
		f.step(300*time.Millisecond, 10*time.Millisecond)
		f.in(ACK, seq(1001), ack(uint32(1+i))) // one more byte each time
		f.popAll()                             // retransmissions of the rest
		f.state(Established)
	}
	f.counter("TCPAbortOnTimeout", 0)
	f.step(3*time.Second, 10*time.Millisecond)
	f.state(Closed)
	f.wantErrno(syscall.ETIMEDOUT)
	f.counter("TCPAbortOnTimeout", 1)
}
