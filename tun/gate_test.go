package tun

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestGateQuietWhileReaderBusy drives a gate over a pipe: it must signal
// readiness while the reader is parked, and stay quiet while the reader is
// busy, however much arrives then (without the one-shot registration the
// runtime's thread would be woken for each arrival).
func TestGateQuietWhileReaderBusy(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	var got []byte
	inner := func(fd uintptr) bool {
		var b [1]byte
		n, err := unix.Read(int(fd), b[:])
		if err == unix.EAGAIN {
			return false
		}
		got = append(got, b[:n]...)
		return true
	}
	g, err := newGate(uintptr(p[0]), inner)
	if err != nil {
		t.Fatal(err)
	}
	defer g.ep.Close()
	var epfd int
	g.rc.Control(func(fd uintptr) { epfd = int(fd) })
	// ready polls the gate's descriptor as the runtime's epoll sees it,
	// without taking its event.
	ready := func() bool {
		fds := []unix.PollFd{{Fd: int32(epfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	send := func(s string) {
		if _, err := unix.Write(p[1], []byte(s)); err != nil {
			t.Fatal(err)
		}
	}

	if g.read(uintptr(epfd)) {
		t.Fatal("read on an empty pipe did not ask to park")
	}
	if ready() {
		t.Fatal("gate ready with nothing queued")
	}
	send("a")
	if !ready() {
		t.Fatal("gate not ready after a byte arrived for a parked reader")
	}
	if !g.read(uintptr(epfd)) {
		t.Fatal("read did not take the queued byte")
	}
	send("bc") // arrives while the reader is busy
	if ready() {
		t.Fatal("gate ready while the reader is busy: a parked thread would be woken for nothing")
	}
	for g.read(uintptr(epfd)) {
	}
	if string(got) != "abc" {
		t.Fatalf("read %q, want %q", got, "abc")
	}
	if ready() {
		t.Fatal("gate ready after the reader drained the pipe")
	}
	send("d") // the reader re-armed when it found the pipe empty
	if !ready() {
		t.Fatal("gate not ready after a byte arrived once the reader re-armed")
	}
}
