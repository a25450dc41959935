package tun

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"utcp/tun/netns"
)

// readDatagramSentAfter has a host socket send want to 198.18.0.2:9999
// after delay, and reads d until that datagram arrives.
func readDatagramSentAfter(t *testing.T, d *Device, delay time.Duration, want string) {
	t.Helper()
	c := dialStack(t)
	go func() {
		time.Sleep(delay)
		c.Write([]byte(want))
	}()
	bufs, _ := newBufs(d.BatchSize(), d.MTU())
	readUntil(t, d, 5*time.Second, bufs, func(p []byte) bool {
		u, ok := parseUDP4(p)
		return !(ok && u.dst.Port() == 9999 && string(u.payload) == want)
	})
}

// A packet that arrives while a read is busy polling is taken by a poll,
// not by the poller after parking, and is counted as such.
func TestBusyPollTakesPacketWhilePolling(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	d := openTest(t, Config{HostAddr: hostPrefix, BusyPoll: MaxBusyPoll})
	// Well inside the 100 ms the first read polls for.
	readDatagramSentAfter(t, d, 10*time.Millisecond, "polled")
	if n := d.BusyPollRxPackets(); n == 0 {
		t.Fatalf("BusyPollRxPackets = 0 after a datagram arrived 10 ms into a 100 ms busy poll; want ≥ 1")
	}
}

// With BusyPoll off, reads park at once and count nothing.
func TestBusyPollOffCountsNothing(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	d := openTest(t, Config{HostAddr: hostPrefix})
	readDatagramSentAfter(t, d, 10*time.Millisecond, "parked")
	if n := d.BusyPollRxPackets(); n != 0 {
		t.Fatalf("BusyPollRxPackets = %d with BusyPoll off; want 0", n)
	}
}

// Polling stops BusyPoll after the read began: an idle device then costs
// no CPU, and the parked read still wakes for the next packet.
func TestBusyPollStopsWhenIdle(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	d := openTest(t, Config{HostAddr: hostPrefix, BusyPoll: time.Millisecond})
	const idle = 400 * time.Millisecond
	cpu0 := processCPU(t)
	readDatagramSentAfter(t, d, idle, "after idle")
	// A read that kept polling would burn the whole idle time on one core.
	if used := processCPU(t) - cpu0; used > idle/4 {
		t.Fatalf("the process used %v of CPU while the device sat idle for %v with a 1 ms busy poll; want far less", used, idle)
	}
}

func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestBusyPollOutOfRange(t *testing.T) {
	for _, bp := range []time.Duration{-time.Microsecond, MaxBusyPoll + 1} {
		_, err := Open(Config{BusyPoll: bp})
		if err == nil || !strings.Contains(err.Error(), "busy-poll") {
			t.Errorf("Open with BusyPoll %v: err = %v; want a busy-poll range error", bp, err)
		}
	}
}
