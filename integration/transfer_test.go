package integration

// Transfers between utcp and gVisor's netstack over bad networks (issue
// 4), in memory and on real time, and bulk benchmarks of utcp<->gVisor
// against gVisor<->gVisor on the same in-memory link.
//
// Faults apply to both directions: tuntest.NewLossy around the peer's
// Link() for what utcp sends, GVisorConfig.ToUTCP for what gVisor sends
// (each with its own seed, seed and seed+1). The default run is a
// representative subset with a few MiB each way; UTCP_FULL_MATRIX=1 runs
// every case with 64 MiB each way (integration/README-faults.md).

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"utcp/stack"
	"utcp/tun/tuntest"
)

func fullMatrix() bool { return os.Getenv("UTCP_FULL_MATRIX") == "1" }

// gvFaultCase is one row of the utcp<->gVisor fault matrix.
type gvFaultCase struct {
	name string
	f    tuntest.Faults
	// size each way in the default run; 0 means the case runs only in the
	// full matrix (real time makes heavy loss slow).
	size    int
	lossy   bool          // utcp must have retransmitted
	timeout time.Duration // for the default size; scaled up for 64 MiB
}

func gvFaultMatrix() []gvFaultCase {
	ms := time.Millisecond
	return []gvFaultCase{
		{name: "loss1", f: tuntest.Faults{Drop: 0.01, Delay: 1 * ms}, size: 4 << 20, lossy: true, timeout: 60 * time.Second},
		{name: "loss5", f: tuntest.Faults{Drop: 0.05, Delay: 1 * ms}, size: 1 << 20, lossy: true, timeout: 120 * time.Second},
		{name: "loss10", f: tuntest.Faults{Drop: 0.10, Delay: 1 * ms}, lossy: true, timeout: 300 * time.Second},
		{name: "reorder10", f: tuntest.Faults{Reorder: 0.10, Delay: 1 * ms}, size: 4 << 20, timeout: 60 * time.Second},
		{name: "dup5", f: tuntest.Faults{Duplicate: 0.05, Delay: 1 * ms}, size: 4 << 20, timeout: 60 * time.Second},
		{name: "corrupt0.1", f: tuntest.Faults{Corrupt: 0.001, Delay: 1 * ms}, size: 8 << 20, timeout: 60 * time.Second},
		{name: "delay1ms", f: tuntest.Faults{Delay: 1 * ms, Jitter: 500 * time.Microsecond}, timeout: 60 * time.Second},
		{name: "delay10ms", f: tuntest.Faults{Delay: 10 * ms, Jitter: 5 * ms}, size: 4 << 20, timeout: 60 * time.Second},
		{name: "delay50ms", f: tuntest.Faults{Delay: 50 * ms, Jitter: 10 * ms}, timeout: 120 * time.Second},
		{name: "rate10MBps-20ms", f: tuntest.Faults{RateBps: 10e6, Delay: 20 * ms}, size: 4 << 20, timeout: 60 * time.Second},
		{name: "rate10MBps-20ms-q256", f: tuntest.Faults{RateBps: 10e6, Delay: 20 * ms, Limit: 256}, lossy: true, timeout: 120 * time.Second},
	}
}

// TestGVisorTransferMatrix: for each fault case, utcp dials gVisor and
// both send at once; each direction must arrive byte-exact (SHA-256), the
// connection must close by FINs (no reset, no abort) and, where packets
// are lost, utcp must have retransmitted.
func TestGVisorTransferMatrix(t *testing.T) {
	for _, fc := range gvFaultMatrix() {
		if fc.size == 0 && !fullMatrix() {
			t.Logf("%s: full matrix only (UTCP_FULL_MATRIX=1)", fc.name)
			continue
		}
		t.Run(fc.name, func(t *testing.T) {
			size, timeout := fc.size, fc.timeout
			if fullMatrix() {
				size, timeout = 64<<20, timeout*16
			}
			seed := testSeed(t)
			t.Logf("seed %d (UTCP_SEED=%d go test ./integration -run 'TestGVisorTransferMatrix/%s$' replays it)", seed, seed, fc.name)
			f := fc.f
			f.Seed = seed
			p := newGVPair(t, gvOpts{faults: &f, cfg: func(c *stack.Config) {
				c.MSL = 250 * time.Millisecond // TIME_WAIT of 0.5 s, so the test sees it end
			}})
			uc, gc := p.connected(t, true, 5101)
			local := addrPort(uc.LocalAddr())
			exchange(t, uc, gc.(halfCloser), size, timeout)
			ctr := p.u.Counters()
			gs := p.gv.Stack.Stats()
			t.Logf("utcp: OutSegs %d RetransSegs %d FastRetrans %d Timeouts %d SackRecovery %d OFOQueue %d DSACKRecv %d InCsumErrors %d InHdrErrors %d",
				ctr.OutSegs, ctr.RetransSegs, ctr.TCPFastRetrans, ctr.TCPTimeouts, ctr.TCPSackRecovery, ctr.TCPOFOQueue, ctr.TCPDSACKRecv, ctr.InCsumErrors, ctr.InHdrErrors)
			t.Logf("gVisor: Retransmits %d FastRetransmit %d Timeouts %d ChecksumErrors %d IP malformed %d",
				gs.TCP.Retransmits.Value(), gs.TCP.FastRetransmit.Value(), gs.TCP.Timeouts.Value(), gs.TCP.ChecksumErrors.Value(), gs.IP.MalformedPacketsReceived.Value())
			if t.Failed() {
				return
			}
			if fc.lossy && ctr.RetransSegs == 0 {
				t.Errorf("utcp RetransSegs 0 although its packets were lost")
			}
			if fc.f.Corrupt > 0 {
				// A flipped bit fails the IPv4 header checksum or the TCP
				// checksum (RFC 791, RFC 9293 §3.1) at whichever end.
				ur := ctr.InCsumErrors + ctr.InHdrErrors
				gr := gs.TCP.ChecksumErrors.Value() + gs.IP.MalformedPacketsReceived.Value()
				if ur+gr == 0 {
					t.Errorf("no checksum rejections at either end under 0.1%% corruption")
				}
			}
			uc.Close()
			gc.Close()
			waitFor(t, 30*time.Second, "utcp's connection to end", func() bool { return len(p.u.Connections()) == 0 })
			tr := p.tr.transitions(local)
			if last := tr[len(tr)-1]; last != "TIME_WAIT>CLOSED" && last != "LAST_ACK>CLOSED" {
				t.Errorf("utcp transitions %v: want a FIN close ending TIME_WAIT>CLOSED or LAST_ACK>CLOSED", tr)
			}
			ctr = p.u.Counters()
			if ctr.EstabResets != 0 || ctr.TCPAbortOnData != 0 || ctr.TCPAbortOnClose != 0 || ctr.TCPAbortOnTimeout != 0 {
				t.Errorf("unclean close: EstabResets %d AbortOnData %d AbortOnClose %d AbortOnTimeout %d",
					ctr.EstabResets, ctr.TCPAbortOnData, ctr.TCPAbortOnClose, ctr.TCPAbortOnTimeout)
			}
		})
	}
}

// --- benchmarks ---------------------------------------------------------

// bulk moves b.N MiB from w to r and reports MB/s.
func bulk(b *testing.B, w, r net.Conn) {
	const chunk = 1 << 20
	buf := randomBytes(chunk, 7)
	done := make(chan error, 1)
	total := int64(b.N) * chunk
	go func() {
		n, err := io.CopyN(io.Discard, r, total)
		if err == nil && n != total {
			err = io.ErrUnexpectedEOF
		}
		done <- err
	}()
	b.SetBytes(chunk)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
}

// benchFaults is nil for a clean link, else 1 % loss each way.
func benchFaults(loss float64, seed int64) *tuntest.Faults {
	if loss == 0 {
		return nil
	}
	return &tuntest.Faults{Seed: seed, Drop: loss}
}

// benchUTCPGVisor joins a utcp stack to a gVisor peer (SACK on, as utcp)
// and returns a connected pair, utcp having dialed.
func benchUTCPGVisor(b *testing.B, loss float64) (*stack.Conn, net.Conn) {
	gcfg := GVisorConfig{SACK: true}
	if f := benchFaults(loss, 2); f != nil {
		gcfg.ToUTCP = f
	}
	gv, err := NewGVisorPeer(gcfg)
	if err != nil {
		b.Fatal(err)
	}
	var link stack.Link = gv.Link()
	if f := benchFaults(loss, 1); f != nil {
		link = tuntest.NewLossy(link, *f)
	}
	u, err := stack.New(stack.Config{Link: link, Addr: utcpAddr})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { u.Close(); gv.Close() })
	ln, err := gv.Listen(5201)
	if err != nil {
		b.Fatal(err)
	}
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	uc, err := u.Dial(ctx, netip.AddrPortFrom(gv.Addr, 5201))
	if err != nil {
		b.Fatal(err)
	}
	gc := <-acc
	ln.Close()
	if gc == nil {
		b.Fatal("gVisor accept failed")
	}
	b.Cleanup(func() { uc.Close(); gc.Close() })
	return uc, gc
}

// bridge copies packets read from one gVisor peer's link into another's
// (through lossy when set) until the source closes.
func bridge(wg *sync.WaitGroup, from stack.Link, to stack.Link) {
	defer wg.Done()
	n := from.BatchSize()
	bufs, sizes := make([][]byte, n), make([]int, n)
	for i := range bufs {
		bufs[i] = make([]byte, 65536)
	}
	out := make([][]byte, 0, n)
	for {
		k, err := from.ReadPackets(bufs, sizes)
		if err != nil {
			return
		}
		out = out[:0]
		for i := 0; i < k; i++ {
			out = append(out, bufs[i][:sizes[i]])
		}
		to.WritePackets(out)
	}
}

// benchGVisorGVisor joins two gVisor stacks by their channel endpoints
// (the same GVisorLink bridge utcp uses, one pump per direction) and
// returns a connected pair.
func benchGVisorGVisor(b *testing.B, loss float64) (net.Conn, net.Conn) {
	a, err := NewGVisorPeer(GVisorConfig{Addr: GVisorAddr, SACK: true})
	if err != nil {
		b.Fatal(err)
	}
	c, err := NewGVisorPeer(GVisorConfig{Addr: utcpAddr, SACK: true})
	if err != nil {
		b.Fatal(err)
	}
	var toC, toA stack.Link = c.Link(), a.Link()
	if f := benchFaults(loss, 1); f != nil {
		toC = tuntest.NewLossy(toC, *f)
	}
	if f := benchFaults(loss, 2); f != nil {
		toA = tuntest.NewLossy(toA, *f)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go bridge(&wg, a.Link(), toC)
	go bridge(&wg, c.Link(), toA)
	b.Cleanup(func() {
		a.Close()
		c.Close()
		wg.Wait()
		toC.Close()
		toA.Close()
	})
	ln, err := c.Listen(5202)
	if err != nil {
		b.Fatal(err)
	}
	acc := make(chan net.Conn, 1)
	go func() {
		x, _ := ln.Accept()
		acc <- x
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ac, err := a.Dial(ctx, netip.AddrPortFrom(c.Addr, 5202))
	if err != nil {
		b.Fatal(err)
	}
	cc := <-acc
	ln.Close()
	if cc == nil {
		b.Fatal("gVisor accept failed")
	}
	b.Cleanup(func() { ac.Close(); cc.Close() })
	return ac, cc
}

// BenchmarkInMemoryBulk: MB/s of one bulk stream on the in-memory
// gVisor bridge, with no loss and with 1 % loss each way: utcp sending to
// gVisor, gVisor sending to utcp, and gVisor to gVisor for reference.
func BenchmarkInMemoryBulk(b *testing.B) {
	for _, loss := range []float64{0, 0.01} {
		name := "loss0"
		if loss > 0 {
			name = "loss1"
		}
		b.Run("utcp-to-gvisor/"+name, func(b *testing.B) {
			uc, gc := benchUTCPGVisor(b, loss)
			bulk(b, uc, gc)
		})
		b.Run("gvisor-to-utcp/"+name, func(b *testing.B) {
			uc, gc := benchUTCPGVisor(b, loss)
			bulk(b, gc, uc)
		})
		b.Run("gvisor-to-gvisor/"+name, func(b *testing.B) {
			a, c := benchGVisorGVisor(b, loss)
			bulk(b, a, c)
		})
	}
}
