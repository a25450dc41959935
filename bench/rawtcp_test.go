package main

import (
	"context"
	"testing"
	"time"

	"utcp/tun/netns"
)

// The TCP write ceiling completes a handshake with the kernel by hand and
// then writes segments the kernel accepts in order: the kernel client
// reads (nearly) everything written. A wrong checksum, sequence number or
// window would leave the client with nothing, or stall the writer.
func TestTCPWriteCeiling(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	r, err := rawTCPWrite(context.Background(), 500*time.Millisecond, 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
	if r.pps < 1000 {
		t.Errorf("%v: want at least 1000 segments a second", r)
	}
	// Unread at the end: at most the kernel's receive window, a few MB of
	// hundreds written.
	if r.delivered < 0.5 || r.delivered > 1 {
		t.Errorf("%v: the kernel client read %.2f of what was written; want most of it, and never more", r, r.delivered)
	}
}
