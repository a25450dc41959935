package stack

// Scripted tests of SYN cookies (RFC 4987 §3.6 in Linux's manner,
// stack/syncookie.go) and the tcp_syncookies knob (Config.SynCookies).

import (
	"testing"
	"time"
)

func withCookies(mode int) func(*Config) { return func(c *Config) { c.SynCookies = mode } }

// onlyListener asserts the stack keeps no state but the listener.
func (f *fixture) onlyListener() {
	f.t.Helper()
	cs := f.s.Connections()
	if len(cs) != 1 || cs[0].State != Listen || cs[0].SynQ != 0 {
		f.fail("connections %+v, want only the listener with an empty SYN queue", cs)
	}
}

// SynCookies 2 (always): a SYN is answered statelessly. The ACK that
// returns the cookie creates an ESTABLISHED connection whose MSS comes
// from the cookie's table (1400 offered: 1300, the largest entry not
// above it) and whose window scale and SACK permission come back in the
// echoed timestamp (Linux cookie_init_timestamp).
func TestScriptedCookieAlways(t *testing.T) {
	f := newFixture(t, withCookies(2))
	f.listen(16)
	f.inMod(SYN, sackPerm, seq(1000), mss(1400), wscale(3), ts(777, 0))
	sa := f.out(SYN|ACK, seq(0), ack(1001), mss(1460), wscale(7), ts(0, 777))
	if !sa.Opts.SACKPermitted {
		t.Fatalf("cookie SYN-ACK does not permit SACK: [%v]", sa.Opts)
	}
	f.counter("SyncookiesSent", 1)
	f.onlyListener()
	f.advance(10 * time.Millisecond)
	f.in(ACK, seq(1001), ack(1), ts(778, sa.Opts.TSVal), win(1000))
	f.noOutput()
	f.state(Established)
	f.counter("SyncookiesRecv", 1)
	f.counter("SyncookiesFailed", 0)
	f.counter("PassiveOpens", 1)
	c := f.accept()
	ci := c.Info()
	if ci.MSS != 1300-12 || ci.SndWScale != 3 || ci.RcvWScale != 7 || !ci.Timestamps || ci.SndWnd != 1000<<3 {
		t.Fatalf("MSS %d wscale %d/%d TS %v SndWnd %d; want 1288, 3/7, true, 8000", ci.MSS, ci.SndWScale, ci.RcvWScale, ci.Timestamps, ci.SndWnd)
	}
	f.s.mu.Lock()
	sack := c.t.sackOK
	f.s.mu.Unlock()
	if !sack {
		t.Fatal("SACK permission lost through the cookie")
	}
	// The connection works: data both ways.
	f.in(ACK|PSH, seq(1001), ack(1), data("ping"), ts(779, sa.Opts.TSVal))
	f.out(ACK, seq(1), ack(1005))
	if got := f.available(); got != "ping" {
		t.Fatalf("read %q", got)
	}
	f.write([]byte("pong"))
	f.out(ACK|PSH, seq(1), ack(1005), data("pong"))
}

// Without timestamps a cookie can carry only the MSS: no window scaling,
// no SACK (as Linux).
func TestScriptedCookieNoTimestamps(t *testing.T) {
	f := newFixture(t, withCookies(2))
	f.listen(16)
	f.inMod(SYN, sackPerm, seq(1000), mss(1460), wscale(3))
	sa := f.out(SYN|ACK, seq(0), ack(1001), noTS())
	if sa.Opts.HasWScale || sa.Opts.SACKPermitted {
		t.Fatalf("cookie SYN-ACK without timestamps offers [%v]", sa.Opts)
	}
	f.in(ACK, seq(1001), ack(1))
	f.state(Established)
	ci := f.accept().Info()
	if ci.MSS != 1460 || ci.SndWScale != 0 || ci.RcvWScale != 0 || ci.Timestamps {
		t.Fatalf("MSS %d wscale %d/%d TS %v; want 1460, 0/0, false", ci.MSS, ci.SndWScale, ci.RcvWScale, ci.Timestamps)
	}
}

// A wrong cookie is a bad ACK for a listener: RST <SEQ=SEG.ACK> (RFC 9293
// §3.10.7.2), SyncookiesFailed, and no connection.
func TestScriptedCookieWrongACK(t *testing.T) {
	f := newFixture(t, withCookies(2))
	f.listen(16)
	f.in(SYN, seq(1000), mss(1460))
	f.out(SYN|ACK, seq(0), ack(1001))
	f.in(ACK, seq(1001), ack(2))
	f.out(RST, seq(2))
	f.counter("SyncookiesFailed", 1)
	f.counter("SyncookiesRecv", 0)
	f.onlyListener()
	// A wrong sequence number fails too: the cookie covers the peer's ISN.
	f.in(ACK, seq(1001+1<<20), ack(1))
	f.out(RST, seq(1))
	f.counter("SyncookiesFailed", 2)
	f.onlyListener()
}

// RFC 4987 §3.6 / Linux: a cookie is good for about two minutes (its
// counter ticks each minute and two ticks are accepted); an older one
// fails.
func TestScriptedCookieAge(t *testing.T) {
	f := newFixture(t, withCookies(2))
	f.listen(16)
	f.in(SYN, seq(1000), mss(1460))
	f.out(SYN|ACK, seq(0), ack(1001))
	f.advance(59 * time.Second)
	f.in(ACK, seq(1001), ack(1))
	f.state(Established)

	f.port(40001)
	f.in(SYN, seq(5000), mss(1460))
	f.out(SYN|ACK, seq(0), ack(5001))
	f.advance(3 * time.Minute)
	f.in(ACK, seq(5001), ack(1))
	f.out(RST, seq(1))
	f.state(Closed)
	f.counter("SyncookiesFailed", 1)
	f.counter("SyncookiesRecv", 1)
}

// SynCookies 1 (the default): a listener keeps SYN_RECV state while its
// SYN queue has room, and answers with cookies only once it is full
// (TCPReqQFullDoCookies); the cookie's ACK still completes the handshake.
func TestScriptedCookieWhenQueueFull(t *testing.T) {
	f := newFixture(t)
	f.listen(2)
	for _, p := range []uint16{40001, 40002} {
		f.port(p)
		f.in(SYN, seq(1000), mss(1460))
		f.out(SYN|ACK, seq(0), ack(1001))
		f.state(SynReceived)
	}
	f.counter("SyncookiesSent", 0)
	f.port(40003)
	f.in(SYN, seq(1000), mss(1460))
	f.out(SYN|ACK, seq(0), ack(1001))
	f.state(Closed) // no state kept for it
	f.counter("TCPReqQFullDoCookies", 1)
	f.counter("SyncookiesSent", 1)
	f.in(ACK, seq(1001), ack(1))
	f.state(Established)
	f.counter("SyncookiesRecv", 1)
}

// SynCookies -1 (off): with the SYN queue full, a SYN is dropped without
// an answer and counted (TCPReqQFullDrop, ListenDrops).
func TestScriptedCookieOffDrops(t *testing.T) {
	f := newFixture(t, withCookies(-1))
	f.listen(2)
	for _, p := range []uint16{40001, 40002} {
		f.port(p)
		f.in(SYN, seq(1000), mss(1460))
		f.out(SYN|ACK, seq(0), ack(1001))
	}
	f.port(40003)
	f.in(SYN, seq(1000), mss(1460))
	f.noOutput()
	f.state(Closed)
	f.counter("TCPReqQFullDrop", 1)
	f.counter("ListenDrops", 1)
	f.counter("SyncookiesSent", 0)
	// An ACK that looks like a cookie's is just a bad ACK: RST.
	f.in(ACK, seq(1001), ack(1))
	f.out(RST, seq(1))
	f.counter("SyncookiesFailed", 0)
}
