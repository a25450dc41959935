package stack

import (
	"strings"
	"testing"
	"time"
)

// Linux's tcp_cleanup_rbuf rule for window updates after a read: ACK only
// if the window we could now advertise is at least twice the one the peer
// holds. The largest window without scaling is 65535 (RFC 7323 §2.3), so a
// read from a 1 MiB buffer that the peer already sees as 65535 must not
// send a pointless update.
func TestScriptedReadNoSpuriousWindowUpdate(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	f.in(ACK|PSH, seq(1001), ack(1), data("hello"))
	f.advance(40 * time.Millisecond)
	f.out(ACK, seq(1), ack(1006), win(65535))
	if got := f.available(); got != "hello" {
		t.Fatalf("read %q", got)
	}
	f.noOutput()
}

// A window that was closed by a full receive buffer reopens when the
// application reads: the read sends a window update at once (RFC 9293
// §3.8.6.2.2 receiver side, Linux tcp_cleanup_rbuf), without waiting for
// the peer's zero-window probe.
func TestScriptedWindowUpdateAfterRead(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RecvBuf = 4096 }, noQuickAck)
	f.established(1000)
	a, b, c := strings.Repeat("a", 1460), strings.Repeat("b", 1460), strings.Repeat("c", 1176)
	f.in(ACK, seq(1001), ack(1), data(a))
	f.in(ACK, seq(1001+1460), ack(1), data(b))
	f.out(ACK, seq(1), ack(1001+2920), win(4096-2920))
	f.in(ACK|PSH, seq(1001+2920), ack(1), data(c))
	f.advance(40 * time.Millisecond)
	f.out(ACK, seq(1), ack(1001+4096), win(0))
	f.in(ACK, seq(1001+4096), ack(1), data("x")) // no room: dropped, ACKed
	f.out(ACK, seq(1), ack(1001+4096), win(0))
	if got := f.available(); got != a+b+c {
		t.Fatalf("read %d bytes, want 4096", len(got))
	}
	f.out(ACK, seq(1), ack(1001+4096), win(4096))
	f.noOutput()
}
