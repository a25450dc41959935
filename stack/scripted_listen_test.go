package stack

import (
	"testing"
	"time"
)

// RFC 9293 §3.10.7.2 (LISTEN), third check: a SYN creates a connection in
// SYN-RECEIVED and is answered <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>. Our MSS
// is offered; window scaling and timestamps only if the peer offered them
// (RFC 7323 §1.3), which this peer did not.
func TestScriptedListenSYN(t *testing.T) {
	f := newFixture(t)
	f.listen(16)
	f.in(SYN, seq(100), win(65535), mss(1460))
	sa := f.out(SYN|ACK, seq(0), ack(101), mss(1460), win(65535))
	if sa.Opts.HasWScale || sa.Opts.HasTS {
		t.Fatalf("SYN-ACK offers options the peer did not: %v", sa.String())
	}
	f.noOutput()
	f.state(SynReceived)
	if got := f.transitions(); len(got) != 1 || got[0] != "CLOSED>SYN_RECV" {
		t.Fatalf("transitions %v", got)
	}
}

// RFC 9293 §3.10.7.2, first check: an incoming RST in LISTEN is ignored.
func TestScriptedListenRSTIgnored(t *testing.T) {
	f := newFixture(t)
	f.listen(16)
	f.in(RST, seq(100))
	f.in(RST|ACK, seq(100), ack(7))
	f.noOutput()
	f.state(Closed)
	f.counter("OutRsts", 0)
}

// RFC 9293 §3.10.7.2, second check: any ACK reaching a listener is bad and
// draws <SEQ=SEG.ACK><CTL=RST>.
func TestScriptedListenACKDrawsRST(t *testing.T) {
	f := newFixture(t)
	f.listen(16)
	f.in(ACK, seq(100), ack(5000))
	f.out(RST, seq(5000))
	f.in(ACK|PSH, seq(100), ack(9), data("data"))
	f.out(RST, seq(9))
	f.noOutput()
	f.state(Closed)
	f.counter("OutRsts", 2)
}

// RFC 9293 §3.10.7.2 leaves other segments to be dropped; Linux drops a
// SYN|FIN in LISTEN (tcp_rcv_state_process), and so do we: no SYN-ACK, no
// connection.
func TestScriptedListenSYNFINDropped(t *testing.T) {
	f := newFixture(t)
	f.listen(16)
	f.in(SYN|FIN, seq(100))
	f.in(FIN, seq(100))
	f.in(PSH, seq(100), data("x"))
	f.noOutput()
	f.state(Closed)
	f.advance(5 * time.Second)
	f.noOutput()
}

// RFC 9293 §3.10.7.1 (CLOSED): a segment without ACK draws
// <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>; one with ACK draws
// <SEQ=SEG.ACK><CTL=RST>; a RST draws nothing.
func TestScriptedClosedPortRST(t *testing.T) {
	f := newFixture(t) // no listener on port 80
	f.in(SYN, seq(100))
	f.out(RST|ACK, seq(0), ack(101)) // SYN counts one
	f.in(PSH, seq(200), data("hello"))
	f.out(RST|ACK, seq(0), ack(205))
	f.in(FIN|PSH, seq(300), data("ab"))
	f.out(RST|ACK, seq(0), ack(303))
	f.in(ACK, seq(100), ack(777))
	f.out(RST, seq(777))
	f.in(SYN|ACK, seq(100), ack(4242))
	f.out(RST, seq(4242))
	f.in(RST, seq(100))
	f.in(RST|ACK, seq(100), ack(5))
	f.noOutput()
	f.counter("OutRsts", 5)
	f.state(Closed)
}
