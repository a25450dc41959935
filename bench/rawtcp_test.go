package main

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"utcp/tun/netns"
)

// kernelTCPInSegs reads Tcp InSegs of this network namespace.
func kernelTCPInSegs(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = fields
			continue
		}
		for i, n := range names {
			if n == "InSegs" && i < len(fields) {
				v, err := strconv.ParseInt(fields[i], 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
	}
	t.Fatal("no Tcp InSegs in /proc/self/net/snmp")
	return 0
}

// The TCP write ceiling completes a handshake with the kernel by hand and
// then writes segments the kernel accepts in order: the kernel client
// reads (nearly) everything written. A wrong checksum, sequence number or
// window would leave the client with nothing, or stall the writer. With
// GRO (the default, as in utcp serve) the kernel's TCP receives merged
// segments, far fewer than were written; without, one per segment.
func TestTCPWriteCeiling(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	for _, noGRO := range []bool{false, true} {
		before := kernelTCPInSegs(t)
		r, err := rawTCPWrite(context.Background(), 500*time.Millisecond, ceilOpts{txqlen: 1000, noGRO: noGRO})
		if err != nil {
			t.Fatal(err)
		}
		in := kernelTCPInSegs(t) - before
		t.Logf("noGRO %v: %v; the kernel's TCP received %d segments for %d written", noGRO, r, in, r.segs)
		if r.pps < 1000 {
			t.Errorf("%v: want at least 1000 segments a second", r)
		}
		// Unread at the end: at most the kernel's receive window, a few
		// MB of hundreds written.
		if r.delivered < 0.5 || r.delivered > 1 {
			t.Errorf("%v: the kernel client read %.2f of what was written; want most of it, and never more", r, r.delivered)
		}
		switch {
		case !noGRO && in > r.segs/4:
			t.Errorf("with GRO the kernel received %d segments for %d written: GRO merged (almost) nothing", in, r.segs)
		case noGRO && in < r.segs*9/10:
			t.Errorf("without GRO the kernel received only %d segments for %d written", in, r.segs)
		}
	}
}
