package main

// In-memory bulk-transfer benchmarks, no TUN and no kernel: utcp↔utcp over
// a tuntest pipe, utcp↔gVisor over integration's GVisorLink, and
// gVisor↔gVisor over two GVisorLinks bridged by copy loops. Loss is
// tuntest.Lossy dropping 1% of the sender's packets (seeded, so a run
// replays). MB/s comes from b.SetBytes; allocs are process-wide (both
// stacks, the bridge and the test's reader).

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"utcp/integration"
	"utcp/stack"
	"utcp/tun/tuntest"
)

const (
	chunk    = 64 << 10
	bulkPort = 5001
	lossSeed = 20240901
)

var (
	addrA = netip.MustParseAddr("198.18.0.1") // the sender
	addrB = netip.MustParseAddr("198.18.0.2") // the receiver
)

// endpoint is one side of a pair, whatever its stack.
type endpoint struct {
	listen func(port uint16) (net.Listener, error)
	dial   func(ctx context.Context, to netip.AddrPort) (net.Conn, error)
}

func utcpEndpoint(b testing.TB, link stack.Link, addr netip.Addr) endpoint {
	s, err := stack.New(stack.Config{Link: link, Addr: addr, Logf: b.Logf})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return endpoint{
		listen: func(p uint16) (net.Listener, error) { return s.Listen(p, 16) },
		dial: func(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
			return s.Dial(ctx, to)
		},
	}
}

func gvisorPeer(b testing.TB, addr netip.Addr) *integration.GVisorPeer {
	p, err := integration.NewGVisorPeer(integration.GVisorConfig{Addr: addr, SACK: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	return p
}

func gvisorEndpoint(p *integration.GVisorPeer) endpoint {
	return endpoint{
		listen: func(port uint16) (net.Listener, error) { return p.Listen(port) },
		dial: func(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
			return p.Dial(ctx, to)
		},
	}
}

// faults drops loss of the packets written through the wrapped link.
func lossy(b testing.TB, l tuntest.Link, loss float64) tuntest.Link {
	if loss == 0 {
		return l
	}
	b.Logf("loss %.1f%%, seed %d", 100*loss, lossSeed)
	return tuntest.NewLossy(l, tuntest.Faults{Seed: lossSeed, Drop: loss})
}

// pairs builds sender and receiver endpoints; loss applies to the
// sender's packets (data), not to the receiver's ACKs.
var pairs = []struct {
	name string
	make func(b testing.TB, loss float64) (send, recv endpoint)
}{
	{"utcp-utcp", func(b testing.TB, loss float64) (endpoint, endpoint) {
		a, c := tuntest.NewPipe(1500, 4096)
		return utcpEndpoint(b, lossy(b, a, loss), addrA), utcpEndpoint(b, c, addrB)
	}},
	{"utcp-gvisor", func(b testing.TB, loss float64) (endpoint, endpoint) {
		g := gvisorPeer(b, addrB)
		return utcpEndpoint(b, lossy(b, g.Link(), loss), addrA), gvisorEndpoint(g)
	}},
	{"gvisor-gvisor", func(b testing.TB, loss float64) (endpoint, endpoint) {
		ga, gb := gvisorPeer(b, addrA), gvisorPeer(b, addrB)
		// What gA transmits is written into gB (through the fault
		// model), and the reverse; each copy loop ends when its read
		// side closes.
		bridge(b, ga.Link(), lossy(b, gb.Link(), loss))
		bridge(b, gb.Link(), ga.Link())
		return gvisorEndpoint(ga), gvisorEndpoint(gb)
	}},
}

// bridge copies packets read from src into dst until src closes.
func bridge(b testing.TB, src, dst tuntest.Link) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		bufs := make([][]byte, 64)
		sizes := make([]int, 64)
		out := make([][]byte, 0, 64)
		for i := range bufs {
			bufs[i] = make([]byte, 65536)
		}
		for {
			n, err := src.ReadPackets(bufs, sizes)
			if err != nil {
				return
			}
			out = out[:0]
			for i := 0; i < n; i++ {
				out = append(out, bufs[i][:sizes[i]])
			}
			dst.WritePackets(out)
		}
	}()
	// Cleanups run last-first, so this runs before the peers' Close:
	// closing src ends the loop, and we wait for it.
	b.Cleanup(func() {
		src.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			b.Error("bridge did not stop")
		}
	})
}

// connect returns an established (sender, receiver) connection pair.
func connect(b testing.TB, send, recv endpoint) (net.Conn, net.Conn) {
	ln, err := recv.listen(bulkPort)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			b.Error(err)
		}
		acc <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc, err := send.dial(ctx, netip.AddrPortFrom(addrB, bulkPort))
	if err != nil {
		b.Fatal(err)
	}
	rc := <-acc
	if rc == nil {
		b.FailNow()
	}
	b.Cleanup(func() { sc.Close(); rc.Close() })
	return sc, rc
}

// transfer sends n chunks from sc and checks that rc received exactly
// that many bytes, all within a bounded time. start runs just before the
// first write (the benchmark resets its timer there).
func transfer(tb testing.TB, sc, rc net.Conn, n int, start func()) {
	total := int64(n) * chunk
	deadline := time.Now().Add(3 * time.Minute)
	sc.SetDeadline(deadline)
	rc.SetDeadline(deadline)
	got := make(chan error, 1)
	go func() {
		k, err := io.CopyN(io.Discard, rc, total)
		if err == nil && k != total {
			err = fmt.Errorf("received %d of %d bytes", k, total)
		}
		got <- err
	}()
	buf := make([]byte, chunk)
	start()
	for i := 0; i < n; i++ {
		if _, err := sc.Write(buf); err != nil {
			tb.Fatalf("write %d: %v", i, err)
		}
	}
	if err := <-got; err != nil {
		tb.Fatalf("receiver: %v", err)
	}
}

func BenchmarkInmemBulk(b *testing.B) {
	for _, p := range pairs {
		for _, loss := range []float64{0, 0.01} {
			b.Run(fmt.Sprintf("%s/loss=%g%%", p.name, 100*loss), func(b *testing.B) {
				send, recv := p.make(b, loss)
				sc, rc := connect(b, send, recv)
				b.SetBytes(chunk)
				b.ReportAllocs()
				transfer(b, sc, rc, b.N, b.ResetTimer)
				b.StopTimer()
			})
		}
	}
}

// TestInmemPairsMove checks that every pair actually moves data, under
// loss too, so the benchmarks measure transfers and not failures: 1 MiB
// each way must arrive whole.
func TestInmemPairsMove(t *testing.T) {
	for _, p := range pairs {
		for _, loss := range []float64{0, 0.01} {
			t.Run(fmt.Sprintf("%s/loss=%g%%", p.name, 100*loss), func(t *testing.T) {
				send, recv := p.make(t, loss)
				sc, rc := connect(t, send, recv)
				transfer(t, sc, rc, 16, func() {}) // 1 MiB
			})
		}
	}
}
