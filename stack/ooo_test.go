package stack

import (
	"testing"
	"testing/synctest"
	"time"

	"utcp/tun/tuntest"
)

// TestRareLossLargeWindow: 100 MB/s, 10 ms RTT, 0.05 % loss, both ways at
// once. A loss leaves most of a window of several hundred segments to
// arrive behind the hole; the receiver must keep it (the out-of-order
// queue merges contiguous segments) rather than drop past MaxOOOSegs and
// make the sender retransmit what already arrived. Before merging, seeds
// 1–3 dropped 700–3700 out-of-order segments and retransmitted up to 1155
// segments for about 15 lost ones.
func TestRareLossLargeWindow(t *testing.T) {
	for _, seed := range []int64{1, 2, 3} {
		synctest.Test(t, func(t *testing.T) {
			p := newTransferPair(t, tuntest.Faults{Drop: 0.0005, Delay: 5 * time.Millisecond, RateBps: 100e6}, seed)
			ln, err := p.b.Listen(5001, 4)
			if err != nil {
				t.Fatal(err)
			}
			client, server := dialAccept(t, &p.pair, ln)
			d := bidiTransfer(t, client, server, 32<<20, seed)
			for _, x := range []struct {
				name  string
				s     *Stack
				drops uint64 // packets the link toward the other side lost
			}{{"a", p.a, p.la.Stats().Dropped}, {"b", p.b, p.lb.Stats().Dropped}} {
				c := x.s.Counters()
				t.Logf("seed %d %s: %.2f MB/s virtual; link dropped %d, RetransSegs %d, Timeouts %d, OFODrop %d", seed, x.name, float64(32<<20)/d.Seconds()/1e6, x.drops, c.RetransSegs, c.TCPTimeouts, c.TCPOFODrop)
				if c.TCPOFODrop != 0 {
					t.Errorf("seed %d %s: %d out-of-order segments dropped", seed, x.name, c.TCPOFODrop)
				}
				if c.RetransSegs > 3*x.drops+20 {
					t.Errorf("seed %d %s: %d retransmissions for %d lost packets", seed, x.name, c.RetransSegs, x.drops)
				}
			}
			client.Close()
			server.Close()
		})
	}
}
