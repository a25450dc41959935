package integration

// Listen-queue scenarios: Linux's two queues (SYN queue, accept queue)
// with tcp_syncookies=0, which is what utcp implements. Linux counts the
// accept queue as full when it holds more than backlog connections
// (sk_acceptq_is_full), so backlog+1 fit; utcp does the same.

import (
	"net"
	"testing"
	"time"

	"utcp/seg"
)

// With the accept queue full, a new SYN is dropped without reply and
// counted in ListenOverflows; once the application accepts, a retransmitted
// SYN is answered.
func TestWireBacklogOverflowSyn(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		l := d.listen(t, 80, 1)
		d.connect(t, 80, defaultSyn())
		d.connect(t, 80, defaultSyn())
		before := d.counter(t, "ListenOverflows")
		o := defaultSyn()
		c := d.newConn(80, o)
		syn := c.sendSYN(t, o)
		c.expectNone(t, 300*time.Millisecond, "SYN-ACK with the accept queue full")
		if after := d.counter(t, "ListenOverflows"); after != before+1 {
			t.Errorf("%s: ListenOverflows %d -> %d, want +1", d.kind, before, after)
		}
		d.accept(t, l)
		d.inject(t, syn) // the peer's SYN retransmission
		sa := c.next(t, time.Second, "SYN-ACK after accept")
		wantSeg(t, d.kind, sa, seg.SYN|seg.ACK, sa.Seq, syn.Seq.Add(1))
	})
}

// A final ACK that finds the accept queue full is dropped (Linux with
// tcp_abort_on_overflow=0: no RST), counted in ListenOverflows, and the
// connection stays in SYN-RECEIVED: its SYN-ACK is retransmitted, and the
// peer's next ACK, once there is room, completes it.
func TestWireBacklogOverflowFinalAck(t *testing.T) {
	wireScenario(t, func(t *testing.T, d *wireDUT) {
		l := d.listen(t, 80, 2)
		d.connect(t, 80, defaultSyn())
		d.connect(t, 80, defaultSyn())
		// Two half-open connections, C and D, both answered: the accept
		// queue holds 2 (not more than the backlog) and the SYN queue has
		// room for 2.
		o := defaultSyn()
		cc, dd := d.newConn(80, o), d.newConn(80, o)
		cc.sendSYN(t, o)
		cc.takeSynAck(cc.next(t, time.Second, "SYN-ACK C"), o)
		dd.sendSYN(t, o)
		sa := dd.next(t, time.Second, "SYN-ACK D")
		dd.takeSynAck(sa, o)
		sent := time.Now()
		cc.send(t, seg.ACK, nil) // accept queue: 3, now full
		time.Sleep(50 * time.Millisecond)
		before := d.counter(t, "ListenOverflows")
		ack := dd.send(t, seg.ACK, nil)
		dd.d.expectNone(t, 200*time.Millisecond, "reply to the final ACK", func(s *seg.Segment) bool {
			return dd.mine(s) && !s.Flags.Has(seg.SYN)
		})
		if after := d.counter(t, "ListenOverflows"); after != before+1 {
			t.Errorf("%s: ListenOverflows %d -> %d, want +1", d.kind, before, after)
		}
		again := dd.next(t, 2*time.Second, "retransmitted SYN-ACK")
		wantSeg(t, d.kind, again, seg.SYN|seg.ACK, sa.Seq, sa.Ack)
		if gap := time.Since(sent); gap < 800*time.Millisecond {
			t.Errorf("%s: SYN-ACK retransmitted after %v", d.kind, gap)
		}
		var got []net.Conn
		got = append(got, d.accept(t, l))
		d.inject(t, ack)
		for range 3 {
			got = append(got, d.accept(t, l))
		}
		if p := got[3].RemoteAddr().(*net.TCPAddr).Port; p != int(dd.tport) {
			t.Fatalf("%s: fourth accepted connection is from port %d, want %d", d.kind, p, dd.tport)
		}
	})
}
