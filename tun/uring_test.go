package tun

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"utcp/tun/netns"
)

// bothPaths runs f once on a device that batches through io_uring and once
// on one that makes a system call per packet (Config.NoIOURing), so each
// behaviour is checked on both. The first must really use io_uring: a
// kernel that refuses it fails here rather than testing the other path
// twice.
func bothPaths(t *testing.T, f func(t *testing.T, d *Device)) {
	for _, noRing := range []bool{false, true} {
		name := "io_uring"
		if noRing {
			name = "syscalls"
		}
		t.Run(name, func(t *testing.T) {
			d := openTest(t, Config{HostAddr: hostPrefix, NoIOURing: noRing})
			if d.IOURing() == noRing {
				t.Fatalf("IOURing() = %v with NoIOURing %v (does this kernel allow io_uring? sysctl kernel.io_uring_disabled)", d.IOURing(), noRing)
			}
			f(t, d)
		})
	}
}

// TestReadsKeepOrder sends numbered datagrams faster than one read takes
// them and checks that every one arrives once, in order, on both paths: a
// batch of io_uring reads must hand packets back as the queue held them.
func TestReadsKeepOrder(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	bothPaths(t, func(t *testing.T, d *Device) {
		c := dialStack(t)
		const count = 2000
		go func() {
			for i := range count {
				fmt.Fprintf(c, "%06d", i)
				if i%64 == 63 {
					time.Sleep(100 * time.Microsecond) // stay within the device queue
				}
			}
		}()
		next := 0
		bufs, _ := newBufs(d.BatchSize(), d.MTU())
		batches := readUntil(t, d, 10*time.Second, bufs, func(p []byte) bool {
			u, ok := parseUDP4(p)
			if !ok || u.dst.Port() != 9999 {
				return true
			}
			if want := fmt.Sprintf("%06d", next); string(u.payload) != want {
				t.Fatalf("datagram %q read where %q was due", u.payload, want)
			}
			next++
			return next < count
		})
		most := 0
		for _, b := range batches {
			most = max(most, b)
		}
		t.Logf("%d datagrams in %d reads, at most %d in one", count, len(batches), most)
	})
}

// TestWriteStopsAtBadPacketNothingAfter checks the rest of WritePackets'
// error contract on both paths: bufs[n] failed and nothing after it was
// written, so a caller that skips it and goes on sends no packet twice.
// With io_uring the bad packet is caught before the batch is submitted;
// submitted with the others, the third packet would reach the socket.
func TestWriteStopsAtBadPacketNothingAfter(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	bothPaths(t, func(t *testing.T, d *Device) {
		ln, dst := hostUDP(t)
		src := netip.AddrPortFrom(stackAddr, 4242)
		bad := []byte{0x00, 0x01, 0x02, 0x03} // version 0: neither IPv4 nor IPv6
		bufs := [][]byte{buildUDP4(src, dst, []byte("first")), bad, buildUDP4(src, dst, []byte("after"))}
		n, err := d.WritePackets(bufs)
		if n != 1 || !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "packet 1 of 3") {
			t.Fatalf("WritePackets = %d, %v; want 1 and EINVAL naming packet 1 of 3", n, err)
		}
		if n, err := d.WritePackets([][]byte{buildUDP4(src, dst, []byte("next call"))}); n != 1 || err != nil {
			t.Fatalf("device unusable after a bad packet: %d, %v", n, err)
		}
		var got []string
		buf := make([]byte, 100)
		for {
			ln.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			k, _, err := ln.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			got = append(got, string(buf[:k]))
		}
		if strings.Join(got, ",") != "first,next call" {
			t.Fatalf("host socket got %q; want [first next call]", got)
		}
	})
}

// TestWriteSplitOnBothPaths writes packets in two parts (headers, then the
// payload where it lies), as the stack does, and checks the host gets them
// whole and in order.
func TestWriteSplitOnBothPaths(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	bothPaths(t, func(t *testing.T, d *Device) {
		ln, dst := hostUDP(t)
		src := netip.AddrPortFrom(stackAddr, 4242)
		const count = 100
		var heads, pays [][]byte
		for i := range count {
			p := buildUDP4(src, dst, fmt.Appendf(nil, "packet %03d of the batch", i))
			heads, pays = append(heads, p[:28]), append(pays, p[28:])
		}
		for off := 0; off < count; {
			n, err := d.WritePacketsSplit(heads[off:min(off+d.BatchSize(), count)], pays[off:min(off+d.BatchSize(), count)])
			if err != nil {
				t.Fatal(err)
			}
			off += n
		}
		buf := make([]byte, 100)
		for i := range count {
			ln.SetReadDeadline(time.Now().Add(2 * time.Second))
			k, _, err := ln.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("packet %d: %v", i, err)
			}
			if want := fmt.Sprintf("packet %03d of the batch", i); string(buf[:k]) != want {
				t.Fatalf("got %q, want %q", buf[:k], want)
			}
		}
		// The write path allocates nothing per batch, ring or not.
		if allocs := testing.AllocsPerRun(20, func() {
			d.WritePacketsSplit(heads[:d.BatchSize()], pays[:d.BatchSize()])
		}); allocs != 0 {
			t.Fatalf("WritePacketsSplit: %v allocations per batch", allocs)
		}
	})
}

// TestReadRingNoAllocs reads plain packets through a ring, over a
// socketpair, and checks the batch path allocates nothing.
func TestReadRingNoAllocs(t *testing.T) {
	a, b := seqpacket(t)
	u, err := newURing(batchSize)
	if err != nil {
		t.Fatalf("io_uring: %v", err)
	}
	defer u.close()
	var r reader
	r.ring = u
	bufs, sizes := newBufs(8, 1500)
	pkt := buildUDP4(netip.AddrPortFrom(stackAddr, 1), netip.AddrPortFrom(hostAddr, 2), []byte("ring"))
	allocs := testing.AllocsPerRun(50, func() {
		for range 4 {
			unix.Write(a, pkt)
		}
		r.bufs, r.sizes, r.n, r.ringWant = bufs, sizes, 0, 4
		r.readRing(uintptr(b))
	})
	if allocs != 0 || r.n != 4 || !bytes.Equal(bufs[3][:sizes[3]], pkt) {
		t.Fatalf("readRing: %v allocations per batch, %d packets (want 0 and 4)", allocs, r.n)
	}
}

// TestTakeReadsClosesGaps feeds takeReads the results a batch of reads can
// have when packets arrive while it runs: a read that found the queue
// empty, then one that got a newcomer. Packets must come out packed, in
// order, and a truncated one counted and dropped.
func TestTakeReadsClosesGaps(t *testing.T) {
	var r reader
	r.bufs, r.sizes = newBufs(6, 8)
	for i, p := range []string{"", "one", "", "two", "toolongxx", "three"} {
		copy(r.bufs[i], p)
	}
	eagain, trunc := -int32(unix.EAGAIN), int32(9) // 9 > len(buf): spilled into the spare byte
	copy(r.ringRes[:], []int32{eagain, 3, eagain, 3, trunc, 5})
	empty := r.takeReads(0, 6)
	if !empty || r.err != nil {
		t.Fatalf("takeReads = %v, err %v; want empty and no error", empty, r.err)
	}
	var got []string
	for i := range r.n {
		got = append(got, string(r.bufs[i][:r.sizes[i]]))
	}
	if strings.Join(got, ",") != "one,two,three" {
		t.Fatalf("packets %q; want [one two three]", got)
	}
	if r.truncated.Load() != 1 {
		t.Fatalf("truncated = %d, want 1", r.truncated.Load())
	}

	// An error is kept, and what was read after it is still taken.
	var e reader
	e.bufs, e.sizes = newBufs(2, 8)
	copy(e.bufs[1], "late")
	copy(e.ringRes[:], []int32{-int32(unix.EBADFD), 4})
	if e.takeReads(0, 2); !errors.Is(e.err, unix.EBADFD) || e.n != 1 || string(e.bufs[0][:4]) != "late" {
		t.Fatalf("after an error: err %v, n %d, first %q; want EBADFD, 1, late", e.err, e.n, e.bufs[0][:4])
	}
}

// The same on an offload device: each read's virtio header is its own
// (ringVhdr[i]), and a packet moved down over a gap is still finished
// from its header. Slot 1 asks for a checksum the move must not lose.
func TestTakeReadsClosesGapsVnet(t *testing.T) {
	var r reader
	r.vnet = true
	r.bufs, r.sizes = newBufs(3, 200)
	udp := buildUDP4(netip.AddrPortFrom(stackAddr, 1), netip.AddrPortFrom(hostAddr, 2), []byte("moved down"))
	copy(r.bufs[1], partial(append([]byte(nil), udp...), 6))
	(&vnetHdr{flags: unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 20, csumOffset: 6}).encode(r.ringVhdr[1][:])
	copy(r.ringRes[:], []int32{-int32(unix.EAGAIN), int32(vnetHdrLen + len(udp)), -int32(unix.EAGAIN)})
	if empty := r.takeReads(0, 3); !empty || r.err != nil || r.n != 1 {
		t.Fatalf("takeReads: empty %v, err %v, n %d; want true, nil, 1", empty, r.err, r.n)
	}
	if got := r.bufs[0][:r.sizes[0]]; !bytes.Equal(got, udp) || r.csums.Load() != 1 {
		t.Fatalf("packet moved down: equal %v, checksums completed %d; want the datagram with its checksum, 1", bytes.Equal(got, udp), r.csums.Load())
	}
}

// A packet that would move down into a shorter buffer is dropped and
// counted, not cut: bufs may differ in length.
func TestTakeReadsShorterBufferBelow(t *testing.T) {
	var r reader
	r.bufs = [][]byte{make([]byte, 4), make([]byte, 16)}
	r.sizes = make([]int, 2)
	copy(r.bufs[1], "too long for 4")
	copy(r.ringRes[:], []int32{-int32(unix.EAGAIN), 14})
	r.takeReads(0, 2)
	if r.n != 0 || r.truncated.Load() != 1 {
		t.Fatalf("n %d, truncated %d; want 0 and 1", r.n, r.truncated.Load())
	}
}

// TestProbeLeavesQueuedPacket: the open-time probe must tell a TUN that
// reads through io_uring from a file that cannot, without taking a packet
// already queued (a later queue of a multi-queue device may hold one when
// its rings are opened).
func TestProbeLeavesQueuedPacket(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	d := openTest(t, Config{HostAddr: hostPrefix, NoIOURing: true})
	rc, err := d.file.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	// Empty the queue of what the kernel sent by itself (IPv6 chatter),
	// so that our datagram is the packet at its head.
	rc.Control(func(fd uintptr) {
		buf := make([]byte, 64<<10)
		for {
			if _, err := unix.Read(int(fd), buf); err != nil {
				return
			}
		}
	})
	c := dialStack(t)
	if _, err := c.Write([]byte("queued")); err != nil {
		t.Fatal(err)
	}
	// Wait until the datagram is in the device's queue.
	rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 5000); n != 1 || err != nil {
			t.Fatalf("poll: %d, %v: the datagram never reached the TUN", n, err)
		}
	})
	u, err := newURing(4)
	if err != nil {
		t.Fatal(err)
	}
	defer u.close()
	if !probeNoWaitRead(u, d.file) {
		t.Fatal("probe refused a TUN")
	}
	bufs, _ := newBufs(d.BatchSize(), d.MTU())
	found := false
	readUntil(t, d, 5*time.Second, bufs, func(p []byte) bool {
		u, ok := parseUDP4(p)
		found = ok && string(u.payload) == "queued"
		return !found
	})
	if !found {
		t.Fatal("the queued datagram was not read after the probe")
	}

	// A file without non-blocking reads for io_uring: procfs sets no
	// FMODE_NOWAIT.
	f, err := os.Open("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if probeNoWaitRead(u, f) {
		t.Error("probe accepted /proc/self/stat, whose reads cannot be non-blocking")
	}
}
