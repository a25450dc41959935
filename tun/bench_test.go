package tun

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"utcp/tun/netns"
)

// BenchmarkWritePackets measures raw TUN write throughput: 1400-byte IPv4/UDP
// packets written in batches of BatchSize to a kernel UDP socket on the host
// side. One op is one packet. packets/s is what the device accepted;
// delivered/op is the fraction the kernel socket actually received (the
// socket buffer overflows when the reader falls behind, which is the
// kernel's business, not the device's).
func BenchmarkWritePackets(b *testing.B) {
	if !netns.RunB(b) {
		return
	}
	d, err := Open(Config{HostAddr: hostPrefix})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	ln, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(hostAddr, 0)))
	if err != nil {
		b.Fatal(err)
	}
	ln.SetReadBuffer(4 << 20)
	var received atomic.Int64
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		buf := make([]byte, 2048)
		for {
			if _, _, err := ln.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			received.Add(1)
		}
	}()

	const size = 1400
	dst := netip.MustParseAddrPort(ln.LocalAddr().String())
	pkt := buildUDP4(netip.AddrPortFrom(stackAddr, 4242), dst, make([]byte, size-28))
	bufs := make([][]byte, d.BatchSize())
	for i := range bufs {
		bufs[i] = pkt // the device never retains or modifies a buffer
	}

	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		n, err := d.WritePackets(bufs[:min(len(bufs), b.N-sent)])
		if err != nil {
			b.Fatal(err)
		}
		sent += n
	}
	elapsed := b.Elapsed()
	b.StopTimer()

	// Give the reader a bounded moment to catch up before counting.
	for last, deadline := int64(-1), time.Now().Add(time.Second); time.Now().Before(deadline); {
		cur := received.Load()
		if cur == int64(b.N) || cur == last {
			break
		}
		last = cur
		time.Sleep(20 * time.Millisecond)
	}
	ln.Close()
	<-drained
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "packets/s")
	b.ReportMetric(float64(received.Load())/float64(b.N), "delivered/op")
}

// BenchmarkReadPackets measures the other direction: the kernel sends
// 1400-byte UDP datagrams to the stack's address and ReadPackets takes them
// in batches. One op is one packet read; sending runs in its own goroutine
// and the kernel drops what the device queue (txqueuelen) cannot hold, so
// the rate is what the reader sustains.
func BenchmarkReadPackets(b *testing.B) {
	if !netns.RunB(b) {
		return
	}
	benchRead(b, 0)
}

// BenchmarkReadPacketsBusyPoll is BenchmarkReadPackets with utcp serve's
// busy poll (netns.RunB takes no sub-benchmarks, hence a second one).
func BenchmarkReadPacketsBusyPoll(b *testing.B) {
	if !netns.RunB(b) {
		return
	}
	benchRead(b, DefaultBusyPoll)
}

// benchRead reads 1400-byte datagrams that a host socket sends as fast as
// it can, with Config.BusyPoll bp: the read path must allocate nothing
// either way.
func benchRead(b *testing.B, bp time.Duration) {
	d, err := Open(Config{HostAddr: hostPrefix, BusyPoll: bp})
	if err != nil {
		b.Fatal(err)
	}
	c := dialStack(b)

	var stop atomic.Bool
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		payload := make([]byte, 1400-28)
		for !stop.Load() {
			c.Write(payload) // ENOBUFS when the queue is full: keep going
		}
	}()

	bufs, sizes := newBufs(d.BatchSize(), d.MTU())
	b.SetBytes(1400)
	b.ReportAllocs()
	b.ResetTimer()
	calls := 0
	for got := 0; got < b.N; calls++ {
		n, err := d.ReadPackets(bufs, sizes)
		if err != nil {
			b.Fatal(err)
		}
		got += n
	}
	elapsed := b.Elapsed()
	b.StopTimer()
	stop.Store(true)
	d.Close()
	<-sent
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "packets/s")
	b.ReportMetric(float64(b.N)/float64(calls), "packets/call")
}
