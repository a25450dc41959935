package stack

import (
	"errors"
	"syscall"
	"testing"
	"time"
)

// handshake plays SYN, SYN-ACK, ACK from peer port p with IRS 1000.
func handshake(f *fixture, p uint16) {
	f.t.Helper()
	f.port(p)
	f.in(SYN, seq(1000), mss(1460))
	f.out(SYN|ACK, seq(0), ack(1001))
	f.in(ACK, seq(1001), ack(1))
}

// fillAcceptQueue makes backlog+1 connections wait in the accept queue of
// a backlog-2 listener (Linux's sk_acceptq_is_full counts it full only
// above the backlog), then starts two more handshakes whose SYNs are
// still admitted, and returns their ports.
func fillAcceptQueue(f *fixture) (p4, p5 uint16) {
	f.t.Helper()
	f.listen(2)
	handshake(f, 40001)
	handshake(f, 40002)
	f.port(40003)
	f.in(SYN, seq(1000), mss(1460))
	f.out(SYN|ACK, seq(0), ack(1001))
	f.port(40004)
	f.in(SYN, seq(1000), mss(1460))
	f.out(SYN|ACK, seq(0), ack(1001))
	f.port(40003)
	f.in(ACK, seq(1001), ack(1))
	f.state(Established)
	if n := f.acceptQueueLen(); n != 3 {
		f.t.Fatalf("accept queue %d, want 3", n)
	}
	return 40004, 40005
}

// Linux's accept-queue overflow (tcp_check_req with tcp_abort_on_overflow
// = 0): with backlog N, the (N+2)th completed handshake's final ACK is
// dropped and counted (ListenOverflows, ListenDrops); the request stays in
// SYN_RECV. While the queue is full new SYNs are dropped too. Once Accept
// makes room, the peer's retransmitted ACK completes the handshake.
func TestScriptedAcceptQueueOverflowACK(t *testing.T) {
	f := newFixture(t)
	p4, p5 := fillAcceptQueue(f)
	f.port(p4)
	f.in(ACK, seq(1001), ack(1))
	f.noOutput()
	f.state(SynReceived)
	f.counter("ListenOverflows", 1)
	f.counter("ListenDrops", 1)
	f.counter("PassiveOpens", 3)

	f.port(p5)
	f.in(SYN, seq(1000), mss(1460))
	f.noOutput()
	f.state(Closed)
	f.counter("ListenOverflows", 2)
	f.counter("ListenDrops", 2)

	f.accept()
	f.port(p4)
	f.in(ACK, seq(1001), ack(1)) // the peer's retransmitted ACK (or data)
	f.noOutput()
	f.state(Established)
	f.counter("PassiveOpens", 4)
	if n := f.acceptQueueLen(); n != 3 {
		t.Fatalf("accept queue %d, want 3", n)
	}
}

// As above, but the peer sends nothing more: the SYN-ACK timer keeps
// running for the request whose ACK was dropped, its retransmission at
// the initial RTO prompts the peer's ACK, and that completes it.
func TestScriptedAcceptQueueOverflowSynAckRetransmit(t *testing.T) {
	f := newFixture(t)
	p4, _ := fillAcceptQueue(f)
	f.port(p4)
	f.in(ACK, seq(1001), ack(1))
	f.state(SynReceived)
	f.accept()
	f.noOutput()
	f.advance(time.Second) // the SYN-ACKs of the 1 s initial RTO fall due
	f.out(SYN|ACK, seq(0), ack(1001))
	f.noOutput()
	f.in(ACK, seq(1001), ack(1))
	f.state(Established)
	f.counter("PassiveOpens", 4)
}

// RFC 6298 §5: data is retransmitted when the RTO expires, the RTO doubles
// each time (§5.5; here from the 200 ms floor), and Linux counts
// RetransSegs and TCPTimeouts. After Retries2 expirations without progress
// the connection fails with ETIMEDOUT (RFC 9293 §3.8.3's R2; Linux
// tcp_retries2, TCPAbortOnTimeout), without a RST.
func TestScriptedRTORetransmitAndTimeout(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Retries2 = 4 })
	f.established(1000)
	if _, err := f.conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	f.out(ACK|PSH, seq(1), ack(1001), data("hello"))
	for i, rto := range []time.Duration{200, 400, 800, 1600} {
		f.advance(rto*time.Millisecond - time.Millisecond)
		f.noOutput()
		f.advance(time.Millisecond)
		f.out(ACK|PSH, seq(1), ack(1001), data("hello"))
		f.counter("RetransSegs", uint64(i+1))
		f.counter("TCPTimeouts", uint64(i+1))
	}
	f.state(Established)
	f.advance(3200*time.Millisecond - time.Millisecond)
	f.state(Established)
	f.advance(time.Millisecond)
	f.noOutput()
	f.state(Closed)
	f.counter("TCPAbortOnTimeout", 1)
	if _, err := f.conn.Write([]byte("x")); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("write after timeout: %v, want ETIMEDOUT", err)
	}
	f.wantErrno(syscall.ETIMEDOUT)
}

// An ACK of new data ends the backoff: the next RTO is the plain one
// again (RFC 6298 §5.7 via a fresh sample; Linux clears icsk_backoff).
func TestScriptedRTOBackoffResetByACK(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	f.conn.Write([]byte("a"))
	f.out(ACK|PSH, seq(1), data("a"))
	f.advance(200 * time.Millisecond)
	f.out(ACK|PSH, seq(1), data("a"))
	f.advance(400 * time.Millisecond)
	f.out(ACK|PSH, seq(1), data("a"))
	f.in(ACK, seq(1001), ack(2))
	f.conn.Write([]byte("b"))
	f.out(ACK|PSH, seq(2), data("b"))
	f.advance(199 * time.Millisecond)
	f.noOutput()
	f.advance(time.Millisecond)
	f.out(ACK|PSH, seq(2), data("b"))
}

// RFC 9293 §3.8.6.1: when the peer advertises a zero window, data waits
// and the sender probes the window on the persist timer with backoff
// (Linux sends SND.UNA-1 with no data and counts TCPWinProbe). When the
// window opens, the data flows.
func TestScriptedZeroWindowProbe(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	f.in(ACK, seq(1001), ack(1), win(0))
	f.noOutput()
	if _, err := f.conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	f.noOutput()
	for i, d := range []time.Duration{200, 400, 800} {
		f.advance(d*time.Millisecond - time.Millisecond)
		f.noOutput()
		f.advance(time.Millisecond)
		f.out(ACK, seq(0), ack(1001))
		f.counter("TCPWinProbe", uint64(i+1))
		f.in(ACK, seq(1001), ack(1), win(0)) // the probe's answer: still closed
		f.noOutput()
	}
	f.state(Established)
	f.in(ACK, seq(1001), ack(1), win(65535))
	f.out(ACK|PSH, seq(1), ack(1001), data("hello"))
	f.noOutput()
	f.in(ACK, seq(1001), ack(6))
	f.advance(10 * time.Second)
	f.noOutput()
	f.counter("TCPWinProbe", 3)
	f.counter("RetransSegs", 0)
}
