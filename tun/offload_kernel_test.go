package tun

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"utcp/seg"
	"utcp/stack"
	"utcp/tun/netns"
)

// Offload against the kernel, each test in its own network namespace.

func openOffload(t testing.TB) *Device {
	t.Helper()
	d, err := Open(Config{HostAddr: hostPrefix, Offload: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	if !d.Offload() {
		t.Fatalf("Offload() = false: the kernel refused IFF_VNET_HDR/TUNSETOFFLOAD")
	}
	return d
}

// The kernel leaves transport checksums to a device with TUN_F_CSUM
// (CHECKSUM_PARTIAL → VIRTIO_NET_HDR_F_NEEDS_CSUM); ReadPackets must
// deliver them complete.
func TestOffloadKernelChecksums(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	d := openOffload(t)
	bufs, _ := newBufs(d.BatchSize(), 65536)

	c := dialStack(t)
	payload := make([]byte, 1000)
	for i := range payload {
		payload[i] = byte(i * 13)
	}
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	readUntil(t, d, 5*time.Second, bufs, func(p []byte) bool {
		u, ok := parseUDP4(p)
		if !ok || u.dst.Port() != 9999 {
			return true
		}
		if !l4ChecksumOK(p) || string(u.payload) != string(payload) {
			t.Fatalf("UDP datagram: checksum ok %v, payload equal %v", l4ChecksumOK(p), string(u.payload) == string(payload))
		}
		return false
	})
	if d.ChecksumsCompleted() == 0 {
		t.Fatalf("ChecksumsCompleted = 0: the kernel sent the datagram with a full checksum, so this test proves nothing")
	}
	udpCsums := d.ChecksumsCompleted()

	// A kernel TCP SYN, checked by seg (which verifies the checksum).
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	go func() {
		var dl net.Dialer
		if c, err := dl.DialContext(ctx, "tcp4", "198.18.0.2:80"); err == nil {
			c.Close()
		}
	}()
	readUntil(t, d, 5*time.Second, bufs, func(p []byte) bool {
		var s seg.Segment
		if p[0]>>4 != 4 || p[9] != 6 {
			return true
		}
		if err := s.Parse(p); err != nil {
			t.Fatalf("kernel SYN: %v", err)
		}
		if s.Flags&seg.SYN == 0 || s.DstPort != 80 {
			t.Fatalf("unexpected segment %v", &s)
		}
		return false
	})
	if d.ChecksumsCompleted() == udpCsums {
		t.Fatalf("the SYN came without NEEDS_CSUM")
	}
}

// When the kernel refuses TUNSETOFFLOAD the device opens without offloads:
// Offload() is false and packets carry no virtio header either way.
func TestOffloadFallback(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	saved := setOffload
	setOffload = func(int, int) error { return unix.EINVAL }
	defer func() { setOffload = saved }()

	d, err := Open(Config{HostAddr: hostPrefix, Offload: true})
	if err != nil {
		t.Fatalf("Open with a refusing kernel: %v", err)
	}
	defer d.Close()
	if d.Offload() || d.Name() != DefaultName {
		t.Fatalf("Offload() = %v, Name %q; want false, %q", d.Offload(), d.Name(), DefaultName)
	}

	c := dialStack(t)
	c.Write([]byte("plain"))
	bufs, _ := newBufs(d.BatchSize(), 2048)
	readUntil(t, d, 5*time.Second, bufs, func(p []byte) bool {
		if p[0]>>4 != 4 {
			return true // IPv6 noise; a virtio header would start with 0x00 or 0x01
		}
		u, ok := parseUDP4(p)
		if !ok || string(u.payload) != "plain" || !l4ChecksumOK(p) {
			t.Fatalf("first IPv4 packet is not the datagram with a full checksum: % x", p[:min(len(p), 32)])
		}
		return false
	})

	ln, dst := hostUDP(t)
	if _, err := d.WritePackets([][]byte{buildUDP4(netip.AddrPortFrom(stackAddr, 4242), dst, []byte("back"))}); err != nil {
		t.Fatal(err)
	}
	ln.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	n, err := ln.Read(buf)
	if err != nil || string(buf[:n]) != "back" {
		t.Fatalf("kernel socket read %q, %v", buf[:n], err)
	}
}

// sizeLink wraps a Device to record the largest packet read.
type sizeLink struct {
	*Device
	maxRead atomic.Int64
}

func (l *sizeLink) ReadPackets(bufs [][]byte, sizes []int) (int, error) {
	n, err := l.Device.ReadPackets(bufs, sizes)
	for _, s := range sizes[:n] {
		if int64(s) > l.maxRead.Load() {
			l.maxRead.Store(int64(s))
		}
	}
	return n, err
}

// ReadPacketsTrusted records sizes too; the stack prefers it (see
// stack.TrustedLink), so the kernel's partial checksums are not redone.
func (l *sizeLink) ReadPacketsTrusted(bufs [][]byte, sizes []int, trusted []bool) (int, error) {
	n, err := l.Device.Trusted().ReadPacketsTrusted(bufs, sizes, trusted)
	for _, s := range sizes[:n] {
		if int64(s) > l.maxRead.Load() {
			l.maxRead.Store(int64(s))
		}
	}
	return n, err
}

// transfer moves size bytes of seeded random data from a writer to a reader
// and returns both SHA-256 sums.
func transfer(t testing.TB, w io.Writer, r io.Reader, size int, seed uint64) (sent, got [32]byte) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		h := sha256.New()
		rng := rand.New(rand.NewPCG(seed, seed))
		buf := make([]byte, 64<<10)
		for left := size; left > 0; {
			chunk := buf[:min(len(buf), left)]
			for i := 0; i+8 <= len(chunk); i += 8 {
				v := rng.Uint64()
				for j := range 8 {
					chunk[i+j] = byte(v >> (8 * j))
				}
			}
			h.Write(chunk)
			if _, err := w.Write(chunk); err != nil {
				errc <- err
				return
			}
			left -= len(chunk)
		}
		copy(sent[:], h.Sum(nil))
		errc <- nil
	}()
	h := sha256.New()
	n, err := io.CopyN(h, r, int64(size))
	if werr := <-errc; werr != nil {
		t.Fatalf("writer: %v", werr)
	}
	if err != nil {
		t.Fatalf("reader: %d of %d bytes: %v", n, size, err)
	}
	copy(got[:], h.Sum(nil))
	return sent, got
}

// pair sets up a utcp stack on d and returns a kernel TCP connection and
// the utcp end of it.
func pair(t testing.TB, link stack.Link) (kernel net.Conn, utcp *stack.Conn, s *stack.Stack) {
	t.Helper()
	s, err := stack.New(stack.Config{Link: link, Addr: stackAddr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ln, err := s.Listen(5001, 8)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan *stack.Conn, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			t.Errorf("AcceptTCP: %v", err)
		}
		accepted <- c
	}()
	dl := net.Dialer{Timeout: 5 * time.Second}
	kernel, err = dl.Dial("tcp4", "198.18.0.2:5001")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kernel.Close() })
	utcp = <-accepted
	if utcp == nil {
		t.FailNow()
	}
	t.Cleanup(func() { utcp.Close() })
	return kernel, utcp, s
}

// A real utcp stack over the offload device against a kernel socket:
// 16 MiB each way, byte-exact, with super-packets read and GSO writes made.
func TestOffloadStackTransfer(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	d := openOffload(t)
	link := &sizeLink{Device: d}
	kernel, utcp, _ := pair(t, link)
	deadline := time.Now().Add(60 * time.Second)
	kernel.SetDeadline(deadline)
	utcp.SetDeadline(deadline)
	const size = 16 << 20

	start := time.Now()
	sent, got := transfer(t, kernel, utcp, size, 1)
	if sent != got {
		t.Fatalf("kernel → utcp: SHA-256 differs")
	}
	t.Logf("kernel → utcp: %d MiB in %v; GSOReads %d, ChecksumsCompleted %d, TrustedReads %d, largest packet %d",
		size>>20, time.Since(start).Round(time.Millisecond), d.GSOReads(), d.ChecksumsCompleted(), d.TrustedReads(), link.maxRead.Load())
	if d.GSOReads() == 0 || link.maxRead.Load() <= int64(d.MTU()) {
		t.Fatalf("no super-packets read (GSOReads %d, largest %d bytes)", d.GSOReads(), link.maxRead.Load())
	}
	// The kernel's segments carry partial checksums: the stack must have
	// been told to trust them rather than the tun completing them.
	if d.TrustedReads() < d.GSOReads() {
		t.Fatalf("TrustedReads %d below GSOReads %d", d.TrustedReads(), d.GSOReads())
	}

	start = time.Now()
	sent, got = transfer(t, utcp, kernel, size, 2)
	if sent != got {
		t.Fatalf("utcp → kernel: SHA-256 differs")
	}
	t.Logf("utcp → kernel: %d MiB in %v; GSOWrites %d, CoalescedSegments %d (%.1f segments per GSO write)",
		size>>20, time.Since(start).Round(time.Millisecond), d.GSOWrites(), d.CoalescedSegments(),
		float64(d.CoalescedSegments())/float64(max(d.GSOWrites(), 1)))
	if d.GSOWrites() == 0 || d.CoalescedSegments() < 2*d.GSOWrites() {
		t.Fatalf("no GSO writes (GSOWrites %d, CoalescedSegments %d)", d.GSOWrites(), d.CoalescedSegments())
	}
	if n := d.w.gsoRefused.Load(); n != 0 {
		t.Fatalf("the kernel refused %d GSO writes", n)
	}
	if err := utcp.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := kernel.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("kernel read after utcp CloseWrite: %v, want EOF", err)
	}
}
