package stack

// Bulk-transfer benchmarks, utcp <-> utcp over an in-memory pipe, on real
// time (not synctest: the numbers are CPU-bound throughput).
//
//	go test ./stack -run '^$' -bench 'Bulk|SegmentPath' -benchmem
//	go test ./stack -run '^$' -bench SegmentPath -memprofile mem.out && go tool pprof -sample_index=alloc_objects -top stack.test mem.out

import (
	"context"
	"io"
	"net/netip"
	"testing"

	"utcp/tun/tuntest"
)

// benchConn connects two stacks over a pipe (wrapped in Lossy when drop >
// 0) and returns the client and server ends.
func benchConn(b *testing.B, drop float64) (client, server *Conn, sa, sb *Stack) {
	b.Helper()
	pa, pb := tuntest.NewPipe(1500, 4096)
	var la, lb Link = pa, pb
	if drop > 0 {
		la = tuntest.NewLossy(pa, tuntest.Faults{Seed: 1, Drop: drop})
		lb = tuntest.NewLossy(pb, tuntest.Faults{Seed: 2, Drop: drop})
	}
	var err error
	if sa, err = New(Config{Link: la, Addr: addrA, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	if sb, err = New(Config{Link: lb, Addr: addrB, Seed: 2}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sa.Close(); sb.Close() })
	ln, err := sb.Listen(5001, 1)
	if err != nil {
		b.Fatal(err)
	}
	acc := make(chan *Conn, 1)
	go func() {
		c, _ := ln.AcceptTCP()
		acc <- c
	}()
	if client, err = sa.Dial(context.Background(), netip.AddrPortFrom(addrB, 5001)); err != nil {
		b.Fatal(err)
	}
	if server = <-acc; server == nil {
		b.Fatal("accept failed")
	}
	return client, server, sa, sb
}

// drain reads exactly n bytes from c into a fixed buffer (no allocation)
// and reports the outcome on done.
func drain(c *Conn, n int64, done chan<- error) {
	buf := make([]byte, 256<<10)
	for n > 0 {
		k, err := c.Read(buf[:min(int64(len(buf)), n)])
		n -= int64(k)
		if err != nil {
			if err == io.EOF && n == 0 {
				break
			}
			done <- err
			return
		}
	}
	done <- nil
}

// send writes n bytes from a reused buffer.
func send(c *Conn, buf []byte, n int64) error {
	for n > 0 {
		k, err := c.Write(buf[:min(int64(len(buf)), n)])
		n -= int64(k)
		if err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkBulk: one stream, utcp to utcp, 1 MiB per op; MB/s.
func BenchmarkBulk(b *testing.B) {
	for _, bc := range []struct {
		name string
		drop float64
	}{{"loss0", 0}, {"loss1", 0.01}} {
		b.Run(bc.name, func(b *testing.B) {
			client, server, sa, _ := benchConn(b, bc.drop)
			const chunk = 1 << 20
			buf := make([]byte, 256<<10)
			fillRandom(buf, 3)
			total := int64(b.N) * chunk
			done := make(chan error, 1)
			b.SetBytes(chunk)
			b.ReportAllocs()
			b.ResetTimer()
			go drain(server, total, done)
			if err := send(client, buf, total); err != nil {
				b.Fatal(err)
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			c := sa.Counters()
			b.ReportMetric(float64(c.RetransSegs)/float64(b.N), "retrans/op")
		})
	}
}

// BenchmarkSegmentPath measures the steady-state data path per segment:
// one op is one full-sized segment (the MSS less the 12-byte timestamp
// option) carried from the sender's Write to the receiver's Read,
// including both stacks' input and output, the ACKs and the pipe. The
// target is 0 allocs/op.
func BenchmarkSegmentPath(b *testing.B) {
	client, server, sa, _ := benchConn(b, 0)
	seg := int64(client.Info().MSS)
	buf := make([]byte, 256<<10)
	fillRandom(buf, 4)
	// Warm up until buffers, rings and autotuned windows reach steady
	// state, so the measurement sees no one-time growth.
	done := make(chan error, 1)
	const warm = 64 << 20
	go drain(server, warm, done)
	if err := send(client, buf, warm); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	before := sa.Counters().OutSegs
	total := int64(b.N) * seg
	b.SetBytes(seg)
	b.ReportAllocs()
	b.ResetTimer()
	go drain(server, total, done)
	if err := send(client, buf, total); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(sa.Counters().OutSegs-before)/float64(b.N), "segs/op")
}
