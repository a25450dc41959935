package tun

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Defaults used when Config leaves a field zero.
const (
	DefaultName = "utcp0"
	DefaultMTU  = 1500

	// batchSize is how many packets one ReadPackets call will take at most
	// when the caller offers that many buffers. 64 amortises the poller
	// round trip well past the point where it matters (wireguard-go uses
	// a similar figure) while keeping a batch's buffers under 100 KiB.
	batchSize = 64

	// minMTU is the IPv4 minimum every link must carry (RFC 791: 68 octets).
	minMTU = 68
	// maxMTU is the largest MTU a TUN device accepts (MAX_MTU in
	// drivers/net/tun.c is 65535).
	maxMTU = 65535
)

// Config says how to create and configure the device.
type Config struct {
	Name     string       // interface name; default "utcp0"; may hold one "%d" for the kernel to number
	HostAddr netip.Prefix // host side address, e.g. 198.18.0.1/24; the zero Prefix sets no address
	MTU      int          // default 1500

	// Offload opens the device with IFF_VNET_HDR and asks for checksum and
	// TCP segmentation offloads (TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6): reads
	// may then return TCP/IPv4 segments of up to 64 KiB, and WritePackets
	// coalesces runs of segments into GSO writes (see offload_write.go).
	// If the kernel refuses, the device opens without offloads and
	// Device.Offload reports false.
	Offload bool

	// TxQueueLen is the length of the device's transmit queue (ip link
	// ... txqueuelen): how many packets the kernel may hold for this
	// process to read, after which it drops them. 0 keeps the kernel's
	// default for a TUN, 500. TCP small queues do not hold a kernel
	// sender back here, because the TUN takes each packet off its
	// socket's account as it queues it (skb_orphan in tun_net_xmit), so
	// only the sender's window bounds what it queues: 1600-1900 segments
	// for BBR in ss -ti on our test machine. It overflows the default
	// whenever the reader falls briefly behind.
	TxQueueLen int

	// BusyPoll is how long a read that finds the device empty keeps
	// trying before it parks in Go's poller, as Linux's busy_read
	// (SO_BUSY_POLL) does for a socket. Between tries the goroutine
	// yields, so goroutines the last batch made runnable run first. It
	// trades CPU for latency: a packet that arrives while the reader
	// polls is taken at once, without waking a parked thread, which on a
	// virtual machine also means without waking a halted vCPU. An idle
	// device costs nothing: polling stops BusyPoll after the last packet.
	// 0 turns it off; at most MaxBusyPoll.
	BusyPoll time.Duration

	// NoIOURing makes the device read and write with one system call per
	// packet. By default it submits a batch's reads, or a batch's writes,
	// in one io_uring_enter (uring.go), which is what makes a plain TUN
	// fast where system calls are dear (an offload device keeps a call
	// per GSO write); a kernel without io_uring, or one that forbids it,
	// gets the per-packet calls anyway. Device.IOURing tells which.
	NoIOURing bool

	// GROFlushTimeout, when not 0, opens a plain device with IFF_NAPI and
	// sets its gro_flush_timeout, so that the kernel merges consecutive
	// TCP segments written to it before its TCP receives them (gro.go).
	// The writer should set PSH on the last segment of each flow in each
	// batch it writes: GRO holds a full-sized segment without PSH until
	// more of its flow comes, a jiffy passes or this timeout expires.
	// Offload devices ignore it (their writes are large already). If the
	// kernel refuses either step the device still opens, and Device.GRO
	// says what happened.
	GROFlushTimeout time.Duration
}

// MaxBusyPoll bounds Config.BusyPoll.
const MaxBusyPoll = 100 * time.Millisecond

// DefaultBusyPoll is utcp serve's --busy-poll default and the bench's raw
// ceiling's: long enough to span a request/response turn through the
// host (about 10-30 µs on our test machine), short enough that an idle
// server stops spinning at once.
const DefaultBusyPoll = 50 * time.Microsecond

// Device is an open TUN device. Its methods are safe for concurrent use.
type Device struct {
	name string
	mtu  int
	file *os.File
	rc   syscall.RawConn

	closed   atomic.Bool
	offload  bool          // IFF_VNET_HDR with TUNSETOFFLOAD accepted
	busyPoll time.Duration // Config.BusyPoll
	groFlush time.Duration // gro_flush_timeout set on the interface (gro.go)
	groErr   error         // why it is not, when the kernel refused

	r reader
	w writer
}

// Open creates the TUN interface cfg.Name, sets its MTU and host address and
// brings it up. The interface exists until Close (or until the process exits).
//
// If a persistent TUN named cfg.Name already exists with no process attached,
// Open attaches to it and clears its persist flag, so Close removes it too.
// The descriptor is opened non-blocking, so os.NewFile registers it with the
// runtime poller, which is what lets Close wake a blocked read.
func Open(cfg Config) (*Device, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	// Check for the control device first: open(2) would report a bare
	// ENOENT, which says nothing useful.
	if _, err := os.Stat(tunPath); errors.Is(err, os.ErrNotExist) {
		return nil, errNoTunDevice
	}

	files, name, offload, napi, napiErr, err := openQueues(cfg, 1, false)
	if err != nil {
		return nil, openError(cfg.Name, err)
	}
	d, err := openFile(cfg, files[0], name, offload)
	if err != nil {
		return nil, err
	}
	d.groFlush, d.groErr = setupGRO(name, napi, napiErr, cfg.GROFlushTimeout)
	return d, nil
}

// openFile finishes Open on an attached TUN descriptor.
func openFile(cfg Config, file *os.File, name string, offload bool) (*Device, error) {
	d := newDevice(cfg, file, name, offload)
	if err := d.init(cfg); err != nil {
		d.closeRings()
		file.Close()
		return nil, err
	}
	return d, nil
}

// newDevice wraps an attached descriptor: it picks the read and write
// paths (offload or plain, io_uring or one call per packet) and the busy
// poll. Open and every queue of OpenMultiQueue share it.
func newDevice(cfg Config, file *os.File, name string, offload bool) *Device {
	d := &Device{name: name, mtu: cfg.MTU, file: file, offload: offload, busyPoll: cfg.BusyPoll}
	d.r.fn = d.r.read
	d.r.tryFn = func(fd uintptr) bool {
		d.r.fn(fd)
		return true // never park: busyRead decides whether to try again
	}
	d.w.fn = d.w.write
	if offload {
		d.r.vnet = true
		d.w.fn = d.w.writeVnet
		d.w.iov = make([]unix.Iovec, 0, batchSize+2)
	}
	if !cfg.NoIOURing {
		// Both rings or neither: where the kernel has no io_uring, forbids
		// it, or fails the probe, each packet keeps its own system call.
		// write and writeVnet queue in w.ring when there is one (an offload
		// device only the packets it writes alone).
		d.r.ring, d.w.ring = openRings(file)
		if d.r.ring != nil {
			d.r.fn = d.r.readRing
		}
	}
	return d
}

// IOURing reports whether the device reads and writes its packets in
// batches through io_uring (Config.NoIOURing, and kernel support).
func (d *Device) IOURing() bool { return d.r.ring != nil }

func (d *Device) init(cfg Config) error {
	rc, err := d.file.SyscallConn()
	if err != nil {
		return fmt.Errorf("tun: %s: raw descriptor: %w", d.name, err)
	}
	d.rc = rc
	// Make sure the descriptor really is non-blocking; if it were not, a
	// read would hold a thread in the kernel and Close could not wake it.
	var nbErr error
	if err := rc.Control(func(fd uintptr) {
		fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		if err == nil && fl&unix.O_NONBLOCK == 0 {
			err = errors.New("descriptor is blocking")
		}
		nbErr = err
	}); err != nil {
		return fmt.Errorf("tun: %s: %w", d.name, err)
	}
	if nbErr != nil {
		return fmt.Errorf("tun: %s: %v: the device must be pollable so Close can unblock reads", d.name, nbErr)
	}
	return configure(d.name, cfg.HostAddr, cfg.MTU, cfg.TxQueueLen)
}

// Name returns the interface name the kernel gave the device.
func (d *Device) Name() string { return d.name }

// MTU returns the MTU the device was configured with.
func (d *Device) MTU() int { return d.mtu }

// BatchSize returns how many packets one ReadPackets call may return.
func (d *Device) BatchSize() int { return batchSize }

// TruncatedPackets counts packets dropped by ReadPackets because they were
// longer than the buffer offered for them.
func (d *Device) TruncatedPackets() uint64 { return d.r.truncated.Load() }

// ReadPackets blocks until at least one whole packet is read into bufs[0],
// then takes more packets the kernel has already queued (without blocking)
// into bufs[1:], up to len(bufs). sizes[i] is set to the length of packet i;
// sizes must be at least as long as bufs. A packet longer than its buffer is
// dropped and counted (TruncatedPackets) rather than returned cut short.
// After Close it returns an error that errors.Is(err, os.ErrClosed).
func (d *Device) ReadPackets(bufs [][]byte, sizes []int) (n int, err error) {
	return d.readPackets(bufs, sizes, nil)
}

// readPackets is ReadPackets; a non-nil trusted (offload_read.go) also
// receives which packets' checksums the kernel vouched for.
func (d *Device) readPackets(bufs [][]byte, sizes []int, trusted []bool) (n int, err error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	if len(sizes) < len(bufs) {
		return 0, fmt.Errorf("tun: ReadPackets: %d sizes for %d buffers", len(sizes), len(bufs))
	}
	if d.closed.Load() {
		return 0, d.closedError("read")
	}
	// Readers are serialised by the poller's read lock anyway; the mutex
	// lets the callback state live in the Device, so a call allocates
	// nothing.
	r := &d.r
	r.mu.Lock()
	r.bufs, r.sizes, r.trusted, r.n, r.err = bufs, sizes, trusted, 0, nil
	var rerr error
	if d.busyPoll > 0 {
		rerr = d.busyRead(r)
	}
	if r.n == 0 && r.err == nil && rerr == nil {
		rerr = d.rc.Read(r.fn) // parks until the descriptor is readable
	}
	n, readErr := r.n, r.err
	r.bufs, r.sizes, r.trusted, r.err = nil, nil, nil, nil // keep no caller memory reachable
	r.mu.Unlock()

	if d.closed.Load() {
		// Packets read before Close raced in are still whole and ours to
		// return; the next call reports the close.
		if n > 0 {
			return n, nil
		}
		return 0, d.closedError("read")
	}
	if rerr != nil {
		return n, fmt.Errorf("tun: read %s: %w", d.name, rerr)
	}
	if readErr != nil {
		if n > 0 {
			return n, nil // the error will recur on the next call if it persists
		}
		return 0, fmt.Errorf("tun: read %s: %w", d.name, readErr)
	}
	return n, nil
}

// rawIO: every TUN read and write here (readv, readv3, write, writev, and
// io_uring_enter submitting a batch of them) is a raw system call, without
// Go's entersyscall and exitsyscall. None can block: the descriptor is
// non-blocking, ring reads carry RWF_NOWAIT, and a TUN write never waits.
// Each returns after at most a batch of copies, so there is nothing for the
// scheduler to hand the P over for, and the ordinary call costs twice:
//
//   - its own bookkeeping, a fifth of the plain read loop's cost at a
//     million packets a second when reads were one per call (upload from
//     1252-1364 to 1509-1639 MB/s, 3 interleaved pairs);
//   - sysmon. With GOMAXPROCS=1, any call that lasts past sysmon's 20 µs
//     tick (a batch of 64 KiB reads, a write that runs the host's TCP
//     inline) has its P taken and handed to another thread, and while it
//     keeps finding such calls sysmon stays at that tick. On an offload
//     upload that was 8-12 % of utcp's CPU in sysmon's own thread, plus the
//     work hopping among three threads; with every call raw, one thread
//     does all of it (0.135-0.150 against 0.101-0.112 CPU s/GB, and
//     5.7-6.6 against 7.3 GB/s, in alternating harness runs).
//
// The one call that may wait, io_uring_enter with GETEVENTS for a request
// a kernel punted to a worker, stays an ordinary call.

// reader is the state of one ReadPackets call, kept in the Device so the
// callback handed to the poller is built once.
type reader struct {
	mu     sync.Mutex
	fn     func(fd uintptr) bool // r.read, bound once
	tryFn  func(fd uintptr) bool // fn, but never asks the poller to park
	busyRx atomic.Uint64         // BusyPollRxPackets
	bufs   [][]byte
	sizes  []int
	n      int
	err    error

	truncated atomic.Uint64
	iov       [2]unix.Iovec
	spare     [1]byte

	// With io_uring (uring.go): a batch of reads per call.
	ring     *uring
	ringRes  [batchSize]int32
	ringIovs [batchSize][3]unix.Iovec
	ringVhdr [batchSize][vnetHdrLen]byte // offload: each read's virtio header
	ringWant int                         // reads the next batch asks for (readRing)
	vnet     bool                        // offload device: reads carry a virtio header

	// Offload only (offload_read.go).
	trusted  []bool
	vhdr     [vnetHdrLen]byte
	iov3     [3]unix.Iovec
	gsoReads atomic.Uint64
	csums    atomic.Uint64
	dropped  atomic.Uint64
	trustedN atomic.Uint64
}

// busyRead tries the read without parking until it returns packets or
// d.busyPoll has passed since the first try (Config.BusyPoll). Between
// tries it yields the processor: with GOMAXPROCS=1 the goroutines the
// previous batch woke (the application, the flusher) run there, and they
// are usually what produces the next packet, through the host.
func (d *Device) busyRead(r *reader) error {
	var deadline time.Time
	for try := 0; ; try++ {
		if err := d.rc.Read(r.tryFn); err != nil {
			return err
		}
		if r.n > 0 || r.err != nil {
			if try > 0 {
				r.busyRx.Add(uint64(r.n))
			}
			return nil
		}
		now := time.Now()
		if try == 0 {
			deadline = now.Add(d.busyPoll)
		} else if now.After(deadline) {
			return nil
		}
		runtime.Gosched()
	}
}

// BusyPollRxPackets counts packets that a busy-polling read found after
// its first try, packets for which a read would otherwise have parked
// (Linux's TcpExtBusyPollRxPackets).
func (d *Device) BusyPollRxPackets() uint64 { return d.r.busyRx.Load() }

// read is the poller callback: it runs with the descriptor held and
// returning false asks the poller to park the goroutine until the
// descriptor is readable (or closed).
func (r *reader) read(fd uintptr) bool {
	for r.n < len(r.bufs) {
		if !r.readOne(fd) {
			// Nothing queued: wait only if we have nothing yet. Or an
			// error, which ends the call.
			return r.n > 0 || r.err != nil
		}
	}
	return true
}

// readRing is read with a batch of reads in one io_uring_enter. How many
// it asks for follows what the last batch found: twice the packets it got
// (at least ringMinReads), so a busy queue is drained in a call or two and
// an idle one costs one empty read rather than a whole batch's.
//
// The reads run in order, but a packet may arrive between them: read i
// finds the queue empty and read i+1 gets the newcomer. Packets are
// therefore taken in result order and moved down over such a gap (a copy,
// and a rare one), so bufs[0:n] holds them in arrival order as with read.
func (r *reader) readRing(fd uintptr) bool {
	for r.n < len(r.bufs) {
		start := r.n
		k := min(len(r.bufs)-start, max(r.ringWant, ringMinReads))
		if k == 1 {
			// One read (the busy poll's tries, or a lone request): one
			// readv costs less than io_uring_enter for one request.
			if !r.readOne(fd) {
				return r.n > 0 || r.err != nil
			}
			r.ringWant = 2
			continue
		}
		for i := range k {
			r.prepRead(fd, i, r.bufs[start+i])
		}
		err := r.ring.submit(k, r.ringRes[:k])
		for i := range k {
			r.ringIovs[i] = [3]unix.Iovec{}
		}
		if err != nil {
			r.err = err
			return true
		}
		empty := r.takeReads(start, k)
		r.ringWant = 2 * (r.n - start)
		switch {
		case r.err != nil:
			return true
		case empty:
			return r.n > 0
		}
	}
	return true
}

// readOne reads one packet into bufs[r.n] with one system call (readv,
// or readv3 behind a virtio header on an offload device). It reports false
// when the queue was empty, or the read failed (r.err); a packet that
// cannot be kept (too long for its buffer, a bad virtio header) is counted
// and reported as true, so the caller goes on.
func (r *reader) readOne(fd uintptr) bool {
	for {
		buf := r.bufs[r.n]
		var m int
		var err error
		if r.vnet {
			m, err = r.readv3(fd, buf)
		} else {
			m, err = r.readv(fd, buf)
		}
		switch err {
		case nil:
			r.take(r.vhdr[:], buf, m, false)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			r.err = err
			return false
		}
	}
}

// take keeps what a read of m bytes put in buf (behind the virtio header
// vhdr on an offload device) as packet r.n. With moveDown, buf is a later
// buffer than bufs[r.n] (an io_uring batch with a gap, see readRing) and
// the packet is moved down. A packet longer than its buffer spilled into the spare byte: the
// kernel copied what fitted and dropped the rest (tun_put_user), so it is
// cut, and would fail its checksums anyway; it is dropped and counted so
// the loss is visible, as is one that would not fit the buffer it moves
// to (bufs may differ in length). On an offload device a super-packet
// needs a buffer of 65535 bytes or more.
func (r *reader) take(vhdr, buf []byte, m int, moveDown bool) {
	if r.vnet {
		if m < vnetHdrLen {
			r.dropped.Add(1)
			return
		}
		m -= vnetHdrLen
	}
	dst := r.bufs[r.n]
	if m > len(buf) || m > len(dst) {
		r.truncated.Add(1)
		return
	}
	p := buf[:m]
	if moveDown {
		p = dst[:copy(dst, p)]
	}
	if r.vnet {
		r.acceptVnet(vhdr, p)
		return
	}
	r.sizes[r.n] = m
	r.n++
}

// prepRead fills ring slot i with a non-blocking read into buf: on an
// offload device the virtio header goes to the slot's own ringVhdr, and
// buf is followed by the spare byte (as readv and readv3 do) unless no
// packet can be longer than it.
func (r *reader) prepRead(fd uintptr, i int, buf []byte) {
	if !r.vnet && len(buf) > maxMTU {
		r.ring.prep(i, uringOpRead, fd, unsafe.Pointer(&buf[0]), len(buf))
	} else {
		var vhdr []byte
		if r.vnet {
			vhdr = r.ringVhdr[i][:]
		}
		iov := &r.ringIovs[i]
		nv := setIovecs(iov[:], vhdr, buf, r.spare[:])
		r.ring.prep(i, uringOpReadv, fd, unsafe.Pointer(&iov[0]), nv)
	}
	r.ring.noWait(i)
}

// takeReads takes the results of reads into bufs[start:start+k] in order,
// moving each packet down to bufs[r.n] over any gap left by a read that
// found nothing. It reports whether some read found the queue empty; the
// first error other than EAGAIN is kept in r.err.
func (r *reader) takeReads(start, k int) (empty bool) {
	for i := range k {
		res := r.ringRes[i]
		if res >= 0 {
			r.take(r.ringVhdr[i][:], r.bufs[start+i], int(res), start+i != r.n)
			continue
		}
		switch errno := unix.Errno(-res); errno {
		case unix.EAGAIN, unix.EINTR, unix.ECANCELED:
			empty = empty || errno == unix.EAGAIN
		default:
			if r.err == nil {
				r.err = errno // packets read after it are still taken
			}
		}
	}
	return empty
}

// ringMinReads is the fewest reads readRing asks for. After a batch that
// found nothing (the busy poll's tries) one read is enough; after one
// packet, the doubling asks for two.
const ringMinReads = 1

// readv reads one packet into buf plus one spare byte, so that a packet
// longer than buf shows as a count larger than len(buf): with IFF_NO_PI the
// kernel silently truncates to the space offered and returns only what it
// copied. A buffer longer than any packet can be needs no spare byte.
//
// The read is a raw system call (rawIO).
func (r *reader) readv(fd uintptr, buf []byte) (int, error) {
	if len(buf) > maxMTU {
		// No packet can be longer than buf: the device's MTU is at most
		// 65535, and so is an IP packet's 16-bit length. A plain read
		// then does, without the two-element iovec the kernel must copy
		// in and check for every packet (about 3 % more plain upload in
		// A/B runs; the stack's buffers are 64 KiB).
		n, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
	r.iov[0] = unix.Iovec{}
	if len(buf) > 0 {
		r.iov[0].Base = &buf[0]
		r.iov[0].SetLen(len(buf))
	}
	r.iov[1].Base = &r.spare[0]
	r.iov[1].SetLen(len(r.spare))
	n, _, errno := unix.RawSyscall(unix.SYS_READV, fd, uintptr(unsafe.Pointer(&r.iov[0])), uintptr(len(r.iov)))
	r.iov[0].Base = nil // do not keep the caller's buffer reachable
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// WritePackets writes each buffer as one IP packet (IPv4 or IPv6, told apart
// by the version nibble). It returns how many packets were written; on error
// that count says which buffer failed (bufs[count]), so a caller may skip it
// and continue. It is safe for concurrent use and does not retain bufs.
// After Close it returns an error that errors.Is(err, os.ErrClosed).
func (d *Device) WritePackets(bufs [][]byte) (int, error) {
	return d.writePackets(bufs, nil)
}

// WritePacketsSplit is WritePackets for packets given in two parts: bufs[i]
// and, when pays is not nil and pays[i] is, pays[i] right after it. A stack
// passes its headers in one buffer and the payload where it lies in its send
// buffer; the parts are gathered by writev, never joined by a copy. On an
// offload device a two-part packet longer than the MTU is a TCP/IPv4
// super-packet, cut at the MTU like one WritePackets is given; two-part
// packets are not coalesced with their neighbours. Neither slice is
// retained.
func (d *Device) WritePacketsSplit(bufs, pays [][]byte) (int, error) {
	if pays != nil && len(pays) != len(bufs) {
		return 0, fmt.Errorf("tun: write %s: %d payloads for %d packets", d.name, len(pays), len(bufs))
	}
	return d.writePackets(bufs, pays)
}

func (d *Device) writePackets(bufs, pays [][]byte) (int, error) {
	if d.closed.Load() {
		return 0, d.closedError("write")
	}
	// Writers are serialised by the poller's write lock anyway; see
	// ReadPackets for why the state lives in the Device.
	w := &d.w
	w.mu.Lock()
	w.bufs, w.pays, w.n, w.err, w.splitUntil, w.mtu, w.queued = bufs, pays, 0, nil, 0, d.mtu, 0
	werr := d.rc.Write(w.fn)
	n, writeErr := w.n, w.err
	w.bufs, w.pays, w.err = nil, nil, nil
	w.mu.Unlock()

	if d.closed.Load() && n < len(bufs) {
		return n, d.closedError("write")
	}
	if werr != nil {
		return n, fmt.Errorf("tun: write %s: %w", d.name, werr)
	}
	if writeErr != nil {
		hint := ""
		if writeErr == unix.EINVAL {
			hint = " (the kernel accepts only IPv4 or IPv6 packets)"
		}
		size := len(bufs[n])
		if pays != nil {
			size += len(pays[n])
		}
		return n, fmt.Errorf("tun: write packet %d of %d (%d bytes) to %s: %w%s",
			n, len(bufs), size, d.name, writeErr, hint)
	}
	return n, nil
}

// writer is the state of one WritePackets call.
type writer struct {
	mu   sync.Mutex
	fn   func(fd uintptr) bool // w.write, bound once
	bufs [][]byte
	pays [][]byte // second parts (WritePacketsSplit); nil for none
	n    int
	err  error

	// With io_uring (uring.go): one io_uring_enter per batch.
	ring     *uring
	ringRes  [batchSize]int32
	ringIovs [batchSize][3]unix.Iovec
	queued   int // offload: writes queued in the ring, after bufs[n] (writeVnet)

	// Offload only (offload_write.go).
	mtu        int
	iov        []unix.Iovec
	splitUntil int
	hdrNone    [vnetHdrLen]byte
	hdrGSO     [vnetHdrLen]byte
	head       [maxHeaders]byte
	gsoWrites  atomic.Uint64
	coalesced  atomic.Uint64
	gsoRefused atomic.Uint64
}

// write is the poller callback for WritePackets. A TUN write is one whole
// packet or an error, never a partial write. With io_uring (w.ring) the
// batch's packets are queued in the ring and submitted in one
// io_uring_enter (queueWrite, flushWrites); without, each is one call.
//
// The writes are not linked: a linked write is issued from task work
// after the one before it completes, and that cost 15 % of plain download
// (437/422/409 against 566/451/486 MB/s, interleaved). WritePackets'
// contract (bufs[n] failed, nothing after it was written) then rests on
// two facts. The one error a TUN gives a single packet and not its
// neighbours is EINVAL for a version nibble that is neither 4 nor 6, or
// an empty packet (tun_get_user); those are never queued (ringWritable)
// but written alone, the plain way, after what is queued before them, so
// the caller still gets the kernel's own error. The others (EIO for a
// device that is down, EBADFD, EFAULT) fail every packet after the first
// too. A lone packet is also written the plain way: write(2) costs less
// than io_uring_enter for one request, and a lone packet is usually a
// reply someone is waiting for.
func (w *writer) write(fd uintptr) bool {
	for {
		i := w.n + w.queued
		if i < len(w.bufs) && w.queueable(i) && ringWritable(w.bufs[i], w.pay(i)) {
			w.queueWrite(fd, nil, w.bufs[i], w.pay(i))
			continue
		}
		if w.queued > 0 {
			if stop, ret := w.flushWrites(); stop {
				return ret
			}
			continue // w.n has moved; look again
		}
		if i == len(w.bufs) {
			return true
		}
		switch err := w.writeCur(fd); err {
		case nil:
			w.n++
		case unix.EINTR:
		case unix.EAGAIN:
			return false // wait until writable
		default:
			w.err = err
			return true
		}
	}
}

// queueable reports whether packet i (the next after those queued) may
// join the ring's queue: there is a ring with room, and it is not a lone
// packet (the last, with nothing queued before it), which one plain call
// writes for less.
func (w *writer) queueable(i int) bool {
	return w.ring != nil && w.queued < len(w.ringRes) && !(w.queued == 0 && i == len(w.bufs)-1)
}

// queueWrite queues packet w.n+w.queued, its non-empty parts gathered in
// order (a virtio header on an offload device, the packet, its payload),
// in the next ring slot.
func (w *writer) queueWrite(fd uintptr, parts ...[]byte) {
	iov := &w.ringIovs[w.queued]
	if nv := setIovecs(iov[:], parts...); nv == 1 {
		w.ring.prep(w.queued, uringOpWrite, fd, unsafe.Pointer(iov[0].Base), int(iov[0].Len))
	} else {
		w.ring.prep(w.queued, uringOpWritev, fd, unsafe.Pointer(&iov[0]), nv)
	}
	w.queued++
}

// flushWrites submits the queued writes in one io_uring_enter and counts
// them from bufs[w.n] on. stop says the poller callback must return ret
// now: false to wait until writable (EAGAIN), true with w.err set on an
// error. A write that was never issued (ECANCELED) ends the count without
// stopping: the next round starts with it.
func (w *writer) flushWrites() (stop, ret bool) {
	k := w.queued
	w.queued = 0
	err := w.ring.submit(k, w.ringRes[:k])
	for i := range k {
		w.ringIovs[i] = [3]unix.Iovec{} // do not keep the caller's buffers reachable
	}
	if err != nil {
		w.err = err
		return true, true
	}
	for i := range k {
		res := w.ringRes[i]
		if res >= 0 {
			w.n++
			continue
		}
		switch errno := unix.Errno(-res); errno {
		case unix.EINTR, unix.ECANCELED:
			return false, false
		case unix.EAGAIN:
			return true, false
		default:
			w.err = errno
			return true, true
		}
	}
	return false, false
}

// ringWritable reports whether a packet (b, then pay) may go in a ring
// batch: not empty, and IP version 4 or 6, the checks in which the kernel
// fails one packet and not the next (see write).
func ringWritable(b, pay []byte) bool {
	first := b
	if len(first) == 0 {
		first = pay
	}
	return len(first) > 0 && (first[0]>>4 == 4 || first[0]>>4 == 6)
}

// setIovecs points iov at the non-empty parts, in order, and returns how
// many entries it used.
func setIovecs(iov []unix.Iovec, parts ...[]byte) int {
	n := 0
	for _, p := range parts {
		if len(p) > 0 {
			iov[n] = unix.Iovec{Base: &p[0]}
			iov[n].SetLen(len(p))
			n++
		}
	}
	return n
}

// writeCur writes bufs[w.n], and its payload if it has one, with one
// system call.
func (w *writer) writeCur(fd uintptr) error {
	if pay := w.pay(w.n); pay != nil {
		return w.writeParts(fd, w.bufs[w.n], pay)
	}
	buf := w.bufs[w.n]
	if len(buf) == 0 {
		return nil
	}
	// Raw, as every TUN read and write here (rawIO).
	_, _, errno := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
	if errno != 0 {
		return errno
	}
	return nil
}

// writeParts writes parts gathered as one packet (writev).
func (w *writer) writeParts(fd uintptr, parts ...[]byte) error {
	w.iov = w.iov[:0]
	for _, p := range parts {
		if len(p) > 0 {
			w.iov = appendIovec(w.iov, p)
		}
	}
	return w.writev(fd)
}

// pay returns the second part of packet i (WritePacketsSplit), nil if none.
func (w *writer) pay(i int) []byte {
	if w.pays == nil || len(w.pays[i]) == 0 {
		return nil
	}
	return w.pays[i]
}

// Close closes the descriptor, which removes the (non-persistent) interface,
// and wakes any ReadPackets blocked on it. A second Close returns an error
// that errors.Is(err, os.ErrClosed).
func (d *Device) Close() error {
	if !d.closed.CompareAndSwap(false, true) {
		return d.closedError("close")
	}
	// os.File.Close evicts the descriptor from the poller (waking parked
	// readers and writers) and waits until the last of them lets go before
	// close(2), so the interface is gone when this returns.
	err := d.file.Close()
	d.closeRings()
	if err != nil {
		return fmt.Errorf("tun: close %s: %w", d.name, err)
	}
	return nil
}

// closeRings releases the io_uring instances. No read or write reaches
// them once the descriptor is closed (the poller refuses it before calling
// back); the locks wait out one that was finishing.
func (d *Device) closeRings() {
	d.r.mu.Lock()
	if d.r.ring != nil {
		d.r.ring.close()
		d.r.ring = nil
	}
	d.r.mu.Unlock()
	d.w.mu.Lock()
	if d.w.ring != nil {
		d.w.ring.close()
		d.w.ring = nil
	}
	d.w.mu.Unlock()
}

func (d *Device) closedError(op string) error {
	return fmt.Errorf("tun: %s %s: %w", op, d.name, os.ErrClosed)
}

// normalize fills defaults and validates the configuration before anything
// is created, so a bad value costs no device. Open and OpenMultiQueue share
// it.
// MaxTxQueueLen bounds Config.TxQueueLen: the kernel sizes a TUN queue's
// pointer ring to it, and a million slots is far past any use.
const MaxTxQueueLen = 1 << 20

func (cfg *Config) normalize() error {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if err := validateName(cfg.Name); err != nil {
		return err
	}
	if cfg.MTU < minMTU || cfg.MTU > maxMTU {
		return fmt.Errorf("tun: MTU %d out of range: a TUN device accepts %d to %d", cfg.MTU, minMTU, maxMTU)
	}
	if cfg.TxQueueLen < 0 || cfg.TxQueueLen > MaxTxQueueLen {
		return fmt.Errorf("tun: transmit queue length %d out of range: 0 (kernel default) to %d", cfg.TxQueueLen, MaxTxQueueLen)
	}
	if cfg.GROFlushTimeout < 0 || cfg.GROFlushTimeout > MaxGROFlushTimeout {
		return fmt.Errorf("tun: GRO flush timeout %v out of range: 0 (off) to %v", cfg.GROFlushTimeout, MaxGROFlushTimeout)
	}
	if cfg.BusyPoll < 0 || cfg.BusyPoll > MaxBusyPoll {
		return fmt.Errorf("tun: busy-poll time %v out of range: 0 (off) to %v", cfg.BusyPoll, MaxBusyPoll)
	}
	if cfg.HostAddr.IsValid() {
		// IPv4 only, like the rest of utcp for now (DESIGN.md: IPv6 later).
		a := cfg.HostAddr.Addr().Unmap()
		if !a.Is4() || cfg.HostAddr.Bits() > 32 {
			return fmt.Errorf("tun: host address %v: only an IPv4 address with a prefix length of 0 to 32 is supported", cfg.HostAddr)
		}
		cfg.HostAddr = netip.PrefixFrom(a, cfg.HostAddr.Bits())
	}
	return nil
}
