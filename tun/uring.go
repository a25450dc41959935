package tun

import (
	"errors"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// uring is a minimal io_uring (io_uring_setup(2), io_uring_enter(2)) used
// as a batched system call, nothing more: a TUN read or write is one
// packet per call, and on a virtual machine whose system calls are dear
// (1.3 µs for getppid on the paravirtualised guest the bench last ran on)
// the entry and exit cost as much as the packet. One io_uring_enter carries
// a whole batch of reads or writes.
//
// The descriptor stays non-blocking and stays in Go's poller, which is
// still how a reader waits for the queue to fill. Every request therefore
// completes inline, inside io_uring_enter, in submission order: a read of
// an empty queue ends at once with EAGAIN because it carries RWF_NOWAIT
// (noWait; O_NONBLOCK alone is not enough, io_uring would arm a poll for
// it), and a TUN write never waits. No kernel thread or poll is involved and no request
// outlives the call that submitted it, so the buffers it names need to
// stay put only for the duration of that call, as with read(2).
//
// Because every request completes inline and none can block, submit
// enters the kernel as a raw system call, without telling Go's scheduler
// (see rawIO in tun.go for why that matters).
//
// A ring is used by one goroutine at a time (the reader's or writer's
// mutex), but not always from the same thread, so no SINGLE_ISSUER.
type uring struct {
	fd int

	sqTail         *uint32 // the kernel's head is not needed: submit consumes every slot it fills
	sqMask         uint32
	sqes           []uringSQE
	cqHead, cqTail *uint32
	cqMask         uint32
	cqes           []uringCQE

	ringMem, sqeMem []byte
}

// uringSQE is struct io_uring_sqe (64 bytes), the fields we use.
type uringSQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	rwFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	pad         uint64
}

// uringCQE is struct io_uring_cqe (16 bytes).
type uringCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

// uringParams is struct io_uring_params (120 bytes).
type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  struct {
		head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
		userAddr                                                        uint64
	}
	cqOff struct {
		head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
		userAddr                                                        uint64
	}
}

const (
	uringOpReadv  = 1
	uringOpWritev = 2
	uringOpRead   = 22
	uringOpWrite  = 23

	uringOffSQRing = 0
	uringOffSQEs   = 0x10000000

	uringFeatSingleMmap = 1 << 0
	uringSetupSubmitAll = 1 << 7
)

// newURing sets up a ring of entries submission slots, or fails when the
// kernel has no io_uring or forbids it (ENOSYS, EPERM under seccomp or
// kernel.io_uring_disabled): callers then use plain system calls.
func newURing(entries uint32) (*uring, error) {
	var p uringParams
	p.flags = uringSetupSubmitAll
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, errno
	}
	u := &uring{fd: int(fd)}
	if p.features&uringFeatSingleMmap == 0 {
		// Kernels before 5.4; not worth a second mapping.
		unix.Close(u.fd)
		return nil, errors.New("io_uring without single mmap")
	}
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(uringCQE{})))
	mem, err := unix.Mmap(u.fd, uringOffSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		unix.Close(u.fd)
		return nil, err
	}
	sqeMem, err := unix.Mmap(u.fd, uringOffSQEs, int(p.sqEntries)*int(unsafe.Sizeof(uringSQE{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		unix.Munmap(mem)
		unix.Close(u.fd)
		return nil, err
	}
	u.ringMem, u.sqeMem = mem, sqeMem
	base := unsafe.Pointer(&mem[0])
	u.sqTail = (*uint32)(unsafe.Add(base, p.sqOff.tail))
	u.sqMask = *(*uint32)(unsafe.Add(base, p.sqOff.ringMask))
	u.cqHead = (*uint32)(unsafe.Add(base, p.cqOff.head))
	u.cqTail = (*uint32)(unsafe.Add(base, p.cqOff.tail))
	u.cqMask = *(*uint32)(unsafe.Add(base, p.cqOff.ringMask))
	u.sqes = unsafe.Slice((*uringSQE)(unsafe.Pointer(&sqeMem[0])), p.sqEntries)
	u.cqes = unsafe.Slice((*uringCQE)(unsafe.Add(base, p.cqOff.cqes)), p.cqEntries)
	// Slot i of the submission array always names SQE i: we fill SQEs in
	// ring order, so the indirection is the identity.
	array := unsafe.Slice((*uint32)(unsafe.Add(base, p.sqOff.array)), p.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	return u, nil
}

// sqe returns the i-th submission slot after the current tail, cleared.
// The caller fills at most the entries newURing was asked for (batchSize),
// then calls submit.
func (u *uring) sqe(i int) *uringSQE {
	s := &u.sqes[(*u.sqTail+uint32(i))&u.sqMask]
	*s = uringSQE{}
	return s
}

// prep fills slot i for a read or write of fd at the address and length
// given (a buffer, or an iovec array and its count for READV/WRITEV).
func (u *uring) prep(i int, op uint8, fd uintptr, addr unsafe.Pointer, n int) {
	s := u.sqe(i)
	s.opcode = op
	s.fd = int32(fd)
	s.addr = uint64(uintptr(addr))
	s.len = uint32(n)
	s.userData = uint64(i)
}

// noWait makes slot i end with EAGAIN when it would have to wait
// (RWF_NOWAIT). Without it a TUN read of an empty queue does not fail: the
// TUN supports non-blocking I/O, so io_uring arms a poll and completes the
// read whenever a packet comes, which is not a batched read(2) any more.
func (u *uring) noWait(i int) {
	u.sqes[(*u.sqTail+uint32(i))&u.sqMask].rwFlags |= unix.RWF_NOWAIT
}

// submit hands the first n prepared slots to the kernel in one
// io_uring_enter and stores each one's result in res[i]: the byte count,
// or the negated errno. All n have completed when it returns (see the type
// comment); it fails only when the call itself does.
func (u *uring) submit(n int, res []int32) error {
	for i := range res[:n] {
		res[i] = -int32(unix.ECANCELED) // until its completion says otherwise
	}
	atomic.StoreUint32(u.sqTail, *u.sqTail+uint32(n))
	for left, retries := n, 0; left > 0; {
		k, _, errno := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(u.fd), uintptr(left), 0, 0, 0, 0)
		if (errno == unix.EINTR || errno == unix.EAGAIN || errno == unix.EBUSY) && retries < 100 {
			retries++
			continue // interrupted, or short of memory for a moment
		}
		if errno != 0 {
			// What is still in the ring was not consumed: take it back,
			// and wait for what was.
			atomic.StoreUint32(u.sqTail, *u.sqTail-uint32(left))
			n -= left
			if n == 0 {
				return errno
			}
			break
		}
		left -= int(k)
	}
	got := 0
	for got < n {
		head := *u.cqHead
		tail := atomic.LoadUint32(u.cqTail)
		if head == tail {
			// Not all completed inline: would be a kernel that punted a
			// request to a worker. Wait for the rest.
			_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(u.fd), 0, uintptr(n-got), 1 /* IORING_ENTER_GETEVENTS */, 0, 0)
			if errno != 0 && errno != unix.EINTR {
				return errno
			}
			continue
		}
		for ; head != tail; head++ {
			c := &u.cqes[head&u.cqMask]
			if int(c.userData) < len(res) {
				res[c.userData] = c.res
			}
			got++
		}
		atomic.StoreUint32(u.cqHead, head)
	}
	return nil
}

// openRings sets up a ring for a device's reads and one for its writes,
// or neither (nil, nil) when the kernel refuses either or fails the probe.
func openRings(file *os.File) (rd, wr *uring) {
	rd, err := newURing(batchSize)
	if err != nil {
		return nil, nil
	}
	if wr, err = newURing(batchSize); err != nil || !probeNoWaitRead(rd, file) {
		rd.close()
		if wr != nil {
			wr.close()
		}
		return nil, nil
	}
	return rd, wr
}

// probeNoWaitRead asks for a read of zero bytes from the new device
// through u with RWF_NOWAIT and reports whether the kernel took it. A
// kernel whose TUN lacks non-blocking reads for io_uring answers
// EOPNOTSUPP, which io_uring checks before the read itself, and every
// batch would fail; the device then reads with plain system calls. Zero
// bytes, because a TUN read of zero bytes returns 0 and leaves the queue
// alone: a later queue of a multi-queue device may already hold a packet
// (an IPv6 router solicitation, say), and a probe of any real length
// would take it.
func probeNoWaitRead(u *uring, file *os.File) bool {
	rc, err := file.SyscallConn()
	if err != nil {
		return false
	}
	var scratch [1]byte
	var res [1]int32
	ok := false
	rc.Control(func(fd uintptr) {
		u.prep(0, uringOpRead, fd, unsafe.Pointer(&scratch[0]), 0)
		u.noWait(0)
		ok = u.submit(1, res[:]) == nil && (res[0] >= 0 || res[0] == -int32(unix.EAGAIN))
	})
	return ok
}

func (u *uring) close() {
	unix.Munmap(u.sqeMem)
	unix.Munmap(u.ringMem)
	unix.Close(u.fd)
}
