package tun

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"utcp/tun/netns"
)

var (
	hostAddr   = netip.MustParseAddr("198.18.0.1")
	stackAddr  = netip.MustParseAddr("198.18.0.2")
	hostPrefix = netip.PrefixFrom(hostAddr, 24)
)

// openTest opens a device with the host address and registers its Close.
func openTest(t *testing.T, cfg Config) *Device {
	t.Helper()
	d, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// dialStack returns a UDP socket on the host aimed at 198.18.0.2:9999, so
// each datagram it sends is routed into the test's TUN; it is closed when
// the test ends.
func dialStack(tb testing.TB) net.Conn {
	tb.Helper()
	c, err := net.Dial("udp4", "198.18.0.2:9999")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func newBufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n)
}

// readUntil calls ReadPackets until keep has returned false for a packet or
// the timeout passes (then it closes the device to unblock the reader and
// fails). It returns the sizes of every ReadPackets batch.
func readUntil(t *testing.T, d *Device, timeout time.Duration, bufs [][]byte, keep func(pkt []byte) bool) []int {
	t.Helper()
	type result struct {
		batches []int
		err     error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		sizes := make([]int, len(bufs))
		for {
			n, err := d.ReadPackets(bufs, sizes)
			if err != nil {
				r.err = err
				done <- r
				return
			}
			r.batches = append(r.batches, n)
			for i := range n {
				if !keep(bufs[i][:sizes[i]]) {
					done <- r
					return
				}
			}
		}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("ReadPackets: %v", r.err)
		}
		return r.batches
	case <-time.After(timeout):
		d.Close()
		<-done
		t.Fatalf("no expected packet within %v", timeout)
		return nil
	}
}

func TestOpenConfiguresInterface(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	for _, tc := range []struct {
		name string
		mtu  int
		addr netip.Prefix
		txq  int // Config.TxQueueLen
	}{
		{"utcp0", 1500, hostPrefix, 0},
		// 1500 is also the kernel's default TUN MTU; 1280 proves the
		// MTU request is applied.
		{"utcp1", 1280, hostPrefix, 4096},
		{"utcp2", 9000, netip.Prefix{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := openTest(t, Config{Name: tc.name, HostAddr: tc.addr, MTU: tc.mtu, TxQueueLen: tc.txq})
			if d.Name() != tc.name || d.MTU() != tc.mtu || d.BatchSize() < 1 {
				t.Fatalf("Name, MTU, BatchSize = %q, %d, %d", d.Name(), d.MTU(), d.BatchSize())
			}
			ifc, err := net.InterfaceByName(tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if ifc.MTU != tc.mtu {
				t.Errorf("kernel MTU = %d, want %d", ifc.MTU, tc.mtu)
			}
			if ifc.Flags&net.FlagUp == 0 {
				t.Errorf("interface is not up: %v", ifc.Flags)
			}
			wantTxq := tc.txq
			if wantTxq == 0 {
				wantTxq = 500 // the kernel's default for a TUN
			}
			if got := txQueueLen(t, tc.name); got != wantTxq {
				t.Errorf("kernel txqueuelen = %d, want %d", got, wantTxq)
			}
			addrs, err := ifc.Addrs()
			if err != nil {
				t.Fatal(err)
			}
			var v4 []string
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
					v4 = append(v4, ipn.String())
				}
			}
			want := []string(nil)
			if tc.addr.IsValid() {
				want = []string{tc.addr.String()}
			}
			if fmt.Sprint(v4) != fmt.Sprint(want) {
				t.Errorf("IPv4 addresses = %v, want %v", v4, want)
			}
		})
	}
}

// hostUDP opens a UDP socket on the host side of the TUN, closed when the
// test ends, and returns it with its address: the destination of the
// packets a test writes into the TUN.
func hostUDP(t *testing.T) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	ln, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(hostAddr, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, netip.MustParseAddrPort(ln.LocalAddr().String())
}

// txQueueLen asks the kernel (SIOCGIFTXQLEN, in this network namespace)
// for the interface's transmit queue length.
func txQueueLen(t *testing.T, name string) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFTXQLEN, ifr); err != nil {
		t.Fatalf("SIOCGIFTXQLEN %s: %v", name, err)
	}
	return int(ifr.Uint32())
}

func TestDefaults(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	d := openTest(t, Config{})
	if d.Name() != DefaultName || d.MTU() != DefaultMTU {
		t.Fatalf("Name, MTU = %q, %d; want %q, %d", d.Name(), d.MTU(), DefaultName, DefaultMTU)
	}
	if _, err := net.InterfaceByName(DefaultName); err != nil {
		t.Fatal(err)
	}
}

// TestKernelDatagramReachesDevice reads a datagram the host sends, with
// MTU-sized buffers (read with a guard byte against truncation) and with
// 64 KiB ones, the stack's, longer than any packet (a plain read).
func TestKernelDatagramReachesDevice(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	for _, size := range []int{0, 64 << 10} {
		t.Run(fmt.Sprintf("buf%d", size), func(t *testing.T) {
			d := openTest(t, Config{HostAddr: hostPrefix})
			if size == 0 {
				size = d.MTU()
			}
			c := dialStack(t)
			if _, err := c.Write([]byte("to the stack")); err != nil {
				t.Fatal(err)
			}
			local := netip.MustParseAddrPort(c.LocalAddr().String())

			bufs, _ := newBufs(d.BatchSize(), size)
			var got udp4
			readUntil(t, d, 5*time.Second, bufs, func(p []byte) bool {
				u, ok := parseUDP4(p)
				if ok && u.dst.Port() == 9999 {
					got = u
					return false
				}
				t.Logf("ignoring a %d-byte packet (version %d)", len(p), p[0]>>4)
				return true
			})
			if got.src != local || got.dst != netip.MustParseAddrPort("198.18.0.2:9999") || string(got.payload) != "to the stack" {
				t.Fatalf("got %v → %v %q; want %v → 198.18.0.2:9999 %q", got.src, got.dst, got.payload, local, "to the stack")
			}
		})
	}
}

func TestWrittenPacketReachesKernelSocket(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	d := openTest(t, Config{HostAddr: hostPrefix})
	ln, dst := hostUDP(t)
	src := netip.AddrPortFrom(stackAddr, 4242)

	pkt := buildUDP4(src, dst, []byte("from the stack"))
	if n, err := d.WritePackets([][]byte{pkt}); n != 1 || err != nil {
		t.Fatalf("WritePackets = %d, %v", n, err)
	}
	ln.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	n, from, err := ln.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("kernel socket got nothing: %v", err)
	}
	if from != src || string(buf[:n]) != "from the stack" {
		t.Fatalf("kernel socket got %q from %v; want %q from %v", buf[:n], from, "from the stack", src)
	}
}

func TestWriteStopsAtBadPacket(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	d := openTest(t, Config{HostAddr: hostPrefix})
	good := buildUDP4(netip.AddrPortFrom(stackAddr, 1), netip.AddrPortFrom(hostAddr, 9), []byte("x"))
	bad := []byte{0x00, 0x01, 0x02, 0x03} // version 0: neither IPv4 nor IPv6
	n, err := d.WritePackets([][]byte{good, bad, good})
	if n != 1 || !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "packet 1 of 3") {
		t.Fatalf("WritePackets = %d, %v; want 1 and EINVAL naming packet 1 of 3", n, err)
	}
	if n, err := d.WritePackets([][]byte{good}); n != 1 || err != nil {
		t.Fatalf("device unusable after a bad packet: %d, %v", n, err)
	}
}

func TestBatchRead(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	d := openTest(t, Config{HostAddr: hostPrefix})
	c := dialStack(t)
	// The kernel queues each datagram on the device before sendto returns,
	// so all of them wait for the first ReadPackets.
	const count = 40
	for i := range count {
		if _, err := fmt.Fprintf(c, "datagram %d", i); err != nil {
			t.Fatal(err)
		}
	}
	seen := make(map[string]bool)
	bufs, _ := newBufs(d.BatchSize(), d.MTU())
	batches := readUntil(t, d, 5*time.Second, bufs, func(p []byte) bool {
		if u, ok := parseUDP4(p); ok && u.dst.Port() == 9999 {
			if seen[string(u.payload)] {
				t.Errorf("duplicate %q", u.payload)
			}
			seen[string(u.payload)] = true
		}
		return len(seen) < count
	})
	for i := range count {
		if !seen[fmt.Sprintf("datagram %d", i)] {
			t.Errorf("datagram %d missing", i)
		}
	}
	t.Logf("%d datagrams in batches %v", count, batches)
	if maxBatch := max(batches[0], batches[len(batches)-1]); len(batches) == count && maxBatch == 1 {
		t.Fatalf("every ReadPackets returned one packet although %d were queued", count)
	}
}

func TestOversizedPacketDropped(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	d := openTest(t, Config{HostAddr: hostPrefix})
	c := dialStack(t)
	if _, err := c.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("small")); err != nil {
		t.Fatal(err)
	}
	bufs, _ := newBufs(4, 200)
	var got []byte
	readUntil(t, d, 5*time.Second, bufs, func(p []byte) bool {
		if u, ok := parseUDP4(p); ok && u.dst.Port() == 9999 {
			got = u.payload
			return false
		}
		return true
	})
	if string(got) != "small" {
		t.Fatalf("first whole datagram = %q, want %q (the 1028-byte one cannot fit 200 bytes)", got, "small")
	}
	if n := d.TruncatedPackets(); n != 1 {
		t.Fatalf("TruncatedPackets = %d, want 1", n)
	}
}

func TestCloseUnblocksReadAndRemovesDevice(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	d, err := Open(Config{HostAddr: hostPrefix})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		bufs, sizes := newBufs(d.BatchSize(), d.MTU())
		// Packets the kernel sends on its own (IPv6 router solicitations)
		// may arrive first; read until the error.
		for range 1000 {
			if _, err := d.ReadPackets(bufs, sizes); err != nil {
				errc <- err
				return
			}
		}
		errc <- errors.New("1000 reads and no error")
	}()
	time.Sleep(100 * time.Millisecond) // let the reader park in the poller
	start := time.Now()
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("blocked ReadPackets returned %v, want os.ErrClosed", err)
		}
		t.Logf("reader woke %v after Close with: %v", time.Since(start), err)
	case <-time.After(5 * time.Second):
		t.Fatal("ReadPackets still blocked 5 s after Close")
	}
	if ifc, err := net.InterfaceByName(DefaultName); err == nil {
		t.Fatalf("interface %s (index %d) still exists after Close", DefaultName, ifc.Index)
	}
	if err := d.Close(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("second Close = %v, want os.ErrClosed", err)
	}
	if _, err := d.WritePackets([][]byte{{0x45}}); !errors.Is(err, os.ErrClosed) {
		t.Errorf("WritePackets after Close = %v, want os.ErrClosed", err)
	}
	bufs, sizes := newBufs(1, 10)
	if _, err := d.ReadPackets(bufs, sizes); !errors.Is(err, os.ErrClosed) {
		t.Errorf("ReadPackets after Close = %v, want os.ErrClosed", err)
	}
}

func TestOpenNameTooLong(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	name := "utcp-name-too-long" // 18 bytes
	_, err := Open(Config{Name: name, HostAddr: hostPrefix})
	if err == nil || !strings.Contains(err.Error(), "at most 15") || !strings.Contains(err.Error(), name) {
		t.Fatalf("Open(%q) = %v; want an error naming it and the 15-byte limit", name, err)
	}
	if _, err := net.InterfaceByName(name[:15]); err == nil {
		t.Fatalf("a truncated interface %s was created", name[:15])
	}
}

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want string // substring of the error; "" for valid
	}{
		{"utcp0", ""},
		{"utcp%d", ""},
		{"abcdefghijklmno", ""}, // 15 bytes
		{"abcdefghijklmnop", "at most 15"},
		{".", "reserved"},
		{"..", "reserved"},
		{"a/b", "forbids"},
		{"a b", "forbids"},
		{"a:1", "forbids"},
		{"a%s", "single %d"},
		{"a%d%d", "single %d"},
	} {
		err := validateName(tc.name)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("validateName(%q) = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestOpenWithoutTunDevice(t *testing.T) {
	// Inside a namespace although Open should fail before touching the
	// kernel: if it ever did not, the device must not appear on the host.
	if !netns.Run(t) {
		return
	}
	defer func(p string) { tunPath = p }(tunPath)
	tunPath = "/nonexistent/net/tun"
	_, err := Open(Config{})
	if !errors.Is(err, errNoTunDevice) || !strings.Contains(err.Error(), "modprobe tun") {
		t.Fatalf("Open without the control device = %v, want %v", err, errNoTunDevice)
	}
}

func TestOpenNameBusy(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	openTest(t, Config{Name: "utcp0"})
	_, err := Open(Config{Name: "utcp0"})
	if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open of utcp0 = %v, want EBUSY saying the name is in use", err)
	}
}

func TestOpenNameOfOtherInterface(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	// With offloads or GRO asked for, the kernel's EINVAL first reads as
	// a refusal of the extra flag (openQueues); the attempt without it
	// must still end in the same clear error, for one queue and for many.
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	before := fds()
	defer func() {
		// Every failed attachment closes its descriptors (water, used
		// before, leaked one per failed TUNSETIFF).
		if after := fds(); after != before {
			t.Errorf("%d descriptors open before the failed Opens, %d after", before, after)
		}
	}()
	for _, cfg := range []Config{
		{Name: "lo"},
		{Name: "lo", Offload: true},
		{Name: "lo", GROFlushTimeout: DefaultGROFlushTimeout},
	} {
		_, err := Open(cfg)
		if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "not a TUN device") {
			t.Errorf("Open(%+v) = %v, want EINVAL saying lo is not a TUN device", cfg, err)
		}
		_, err = OpenMultiQueue(cfg, 2)
		if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "not a TUN device") {
			t.Errorf("OpenMultiQueue(%+v, 2) = %v, want EINVAL saying lo is not a TUN device", cfg, err)
		}
	}
}

// TestOpenWithoutCapability drops CAP_NET_ADMIN from one thread's effective
// set (capabilities are per thread on Linux) and opens from that thread.
func TestOpenWithoutCapability(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread with reduced capabilities exits with
		// this goroutine instead of returning to the scheduler's pool.
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			errc <- fmt.Errorf("capget: %w", err)
			return
		}
		data[unix.CAP_NET_ADMIN/32].Effective &^= 1 << (unix.CAP_NET_ADMIN % 32)
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			errc <- fmt.Errorf("capset: %w", err)
			return
		}
		d, err := Open(Config{Name: "utcp0", HostAddr: hostPrefix})
		if err == nil {
			d.Close()
			err = errors.New("Open succeeded without CAP_NET_ADMIN")
		}
		errc <- err
	}()
	err := <-errc
	if !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "needs CAP_NET_ADMIN") {
		t.Fatalf("Open without CAP_NET_ADMIN = %v, want EPERM naming the capability", err)
	}
	t.Logf("error: %v", err)
}

func TestOpenBadConfig(t *testing.T) {
	// Inside a namespace although Open should fail before touching the
	// kernel: if it ever did not, the device must not appear on the host.
	if !netns.Run(t) {
		return
	}
	for _, cfg := range []Config{
		{MTU: 67},
		{MTU: 70000},
	} {
		if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "MTU") {
			t.Errorf("Open(%+v) = %v, want an MTU error", cfg, err)
		}
	}
	for _, p := range []string{"fd00::1/64", "::ffff:198.18.0.1/120"} {
		cfg := Config{HostAddr: netip.MustParsePrefix(p)}
		if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "only an IPv4 address") {
			t.Errorf("Open(HostAddr %s) = %v, want an IPv4-only error", p, err)
		}
	}
	for _, q := range []int{-1, MaxTxQueueLen + 1} {
		if _, err := Open(Config{TxQueueLen: q}); err == nil || !strings.Contains(err.Error(), "transmit queue length") {
			t.Errorf("Open(TxQueueLen %d) = %v, want a queue length error", q, err)
		}
	}
}

func TestConcurrentWriters(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	d := openTest(t, Config{HostAddr: hostPrefix})
	ln, dst := hostUDP(t)
	const writers, each, batch = 4, 60, 6
	errc := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := 0; i < each; i += batch {
				bufs := make([][]byte, batch)
				for j := range bufs {
					msg := fmt.Sprintf("w%d-%d", w, i+j)
					bufs[j] = buildUDP4(netip.AddrPortFrom(stackAddr, uint16(1000+w)), dst, []byte(msg))
				}
				if n, err := d.WritePackets(bufs); n != batch || err != nil {
					errc <- fmt.Errorf("writer %d: WritePackets = %d, %v", w, n, err)
					return
				}
			}
			errc <- nil
		}()
	}
	for range writers {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	seen := make(map[string]bool)
	buf := make([]byte, 100)
	ln.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(seen) < writers*each {
		n, from, err := ln.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(seen), writers*each, err)
		}
		msg := string(buf[:n])
		var w, i int
		if _, err := fmt.Sscanf(msg, "w%d-%d", &w, &i); err != nil || from.Port() != uint16(1000+w) || seen[msg] {
			t.Fatalf("bad or duplicate datagram %q from %v", msg, from)
		}
		seen[msg] = true
	}
}
