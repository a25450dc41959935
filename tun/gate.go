package tun

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A gate stands between a TUN descriptor and Go's runtime poller: the
// descriptor is registered, EPOLLIN|EPOLLONESHOT, in an epoll instance of
// its own, and only that instance's descriptor is in the runtime poller.
//
// Why: the runtime registers descriptors edge-triggered, and the TUN wakes
// its waiters for every packet the host queues. While the read loop is busy
// draining the queue, the thread parked in the runtime's epoll_wait (an idle
// P's) was woken for each of those packets, found no goroutine waiting on
// the descriptor, and went back to sleep: a context switch pair on the other
// core per wake-up, for nothing. With the gate, a packet can wake a thread
// only after the read loop found the queue empty and re-armed the one-shot
// registration. Offload upload, 3 interleaved pairs: 6078-6413 -> 6874-7309
// MB/s and 0.137-0.141 -> 0.128-0.129 CPU s/GB, voluntary context switches
// 9.4-10.1k -> 5.4-6.8k per second.
//
// The price is system calls when the read loop parks: one epoll_ctl to
// re-arm, and one epoll_wait to take the event after the wake-up (the
// one-shot registration disarms itself only once the event is reported).
type gate struct {
	ep    *os.File // the gate's epoll instance, in the runtime poller
	rc    syscall.RawConn
	tunFd uintptr
	inner func(fd uintptr) bool // the reader's callback, on the TUN descriptor
	fn    func(epfd uintptr) bool
	armed bool  // re-armed since the last event was taken
	err   error // re-arming failed: reads must stop, not park for ever
}

// unpolled returns a descriptor for the TUN file f that the runtime poller
// does not know, and closes f. The file description, and with it the
// interface, lives on in the new descriptor.
func unpolled(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, os.NewSyscallError("dup", derr)
	}
	f.Close() // the runtime deregisters and closes the old descriptor
	// os.NewFile registers a descriptor with the poller when it is
	// non-blocking; O_NONBLOCK belongs to the file description, so clear it
	// around NewFile and set it again: every read and write stays
	// non-blocking.
	if err := unix.SetNonblock(nfd, false); err != nil {
		unix.Close(nfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	nf := os.NewFile(uintptr(nfd), tunPath)
	if err := unix.SetNonblock(nfd, true); err != nil {
		nf.Close()
		return nil, os.NewSyscallError("fcntl", err)
	}
	return nf, nil
}

// newGate builds the gate for the (unpolled, non-blocking) TUN descriptor
// tunFd; inner is the read callback to run on it.
func newGate(tunFd uintptr, inner func(fd uintptr) bool) (*gate, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(tunFd)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, int(tunFd), &ev); err != nil {
		unix.Close(ep)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	if err := unix.SetNonblock(ep, true); err != nil {
		unix.Close(ep)
		return nil, os.NewSyscallError("fcntl", err)
	}
	g := &gate{ep: os.NewFile(uintptr(ep), "tun-gate"), tunFd: tunFd, inner: inner, armed: true}
	if g.rc, err = g.ep.SyscallConn(); err != nil {
		g.ep.Close()
		return nil, fmt.Errorf("gate: %w", err)
	}
	g.fn = g.read
	return g, nil
}

// read is the poller callback on the gate's descriptor; the caller
// serialises readers (reader.mu), which also guards armed.
func (g *gate) read(epfd uintptr) bool {
	if g.armed {
		// Take the pending event, if any, so that the one-shot
		// registration is disarmed while the reader drains the queue.
		var ev [1]unix.EpollEvent
		unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, epfd, uintptr(unsafe.Pointer(&ev[0])), 1, 0, 0, 0)
		g.armed = false
	}
	if g.inner(g.tunFd) {
		return true
	}
	// Queue empty: re-arm before parking. EPOLL_CTL_MOD checks the
	// descriptor at once, so a packet that arrived after the empty read
	// makes the gate ready now and the park returns at once.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(g.tunFd)}
	if _, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_CTL, epfd, unix.EPOLL_CTL_MOD, g.tunFd, uintptr(unsafe.Pointer(&ev)), 0, 0); errno != 0 {
		// Cannot happen with a live descriptor; report it rather than
		// park for ever.
		g.err = os.NewSyscallError("epoll_ctl", errno)
		return true
	}
	g.armed = true
	return false
}
