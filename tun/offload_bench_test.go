package tun

import (
	"io"
	"net"
	"testing"
	"time"

	"utcp/tun/netns"
)

// BenchmarkOffloadTransfer measures bulk TCP throughput between a kernel
// socket and a utcp stack over a real TUN, in both directions, with and
// without offloads. One op is 1 MiB delivered over an established
// connection; MB/s is the goodput. Extra metrics say what the offloads did:
// super-packets read and segments per GSO write.
func BenchmarkOffloadTransfer(b *testing.B) {
	for _, dir := range []string{"kernel-to-utcp", "utcp-to-kernel"} {
		for _, off := range []bool{false, true} {
			name := dir + "/offload=off"
			if off {
				name = dir + "/offload=on"
			}
			b.Run(name, func(b *testing.B) {
				if !netns.RunB(b) {
					return
				}
				benchTransfer(b, dir == "kernel-to-utcp", off)
			})
		}
	}
}

func benchTransfer(b *testing.B, toUTCP, offload bool) {
	d, err := Open(Config{HostAddr: hostPrefix, Offload: offload})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	if d.Offload() != offload {
		b.Fatalf("Offload() = %v", d.Offload())
	}
	kernel, utcp, _ := pair(b, d)
	var w io.Writer = utcp
	var r io.Reader = kernel
	if toUTCP {
		w, r = kernel, utcp
	}
	deadline := time.Now().Add(5 * time.Minute)
	kernel.SetDeadline(deadline)
	utcp.SetDeadline(deadline)
	if tc, ok := kernel.(*net.TCPConn); ok {
		tc.SetReadBuffer(4 << 20)
		tc.SetWriteBuffer(4 << 20)
	}

	const chunk = 1 << 20
	buf := make([]byte, chunk)
	for i := range buf {
		buf[i] = byte(i)
	}
	b.SetBytes(chunk)
	b.ResetTimer()
	done := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.Discard, r, int64(b.N)*chunk)
		done <- err
	}()
	for range b.N {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	switch {
	case offload && toUTCP:
		b.ReportMetric(float64(d.GSOReads())/float64(b.N), "gsoreads/op")
	case offload && d.GSOWrites() > 0:
		b.ReportMetric(float64(d.CoalescedSegments())/float64(d.GSOWrites()), "segs/gsowrite")
	}
}
