package stack

import (
	"net/netip"
	"testing"
)

// TestDeferredWakes: wakes queued during a read batch reach every
// connection, the ones beyond the on-stack batch too, each kind once, and
// only after unlockAndFlush; outside a batch wakeSoon wakes at once.
func TestDeferredWakes(t *testing.T) {
	s, err := New(Config{Manual: true, Addr: netip.MustParseAddr("198.18.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conns := make([]*Conn, maxDeferredWakes+5)
	for i := range conns {
		conns[i] = &Conn{rdCh: make(chan struct{}, 1), wrCh: make(chan struct{}, 1)}
	}
	pending := func(ch chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	s.mu.Lock()
	s.deferWakes = true
	for i, c := range conns {
		s.wakeSoon(c, wakeR)
		s.wakeSoon(c, wakeR)
		if i%2 == 0 {
			s.wakeSoon(c, wakeW)
		}
	}
	if len(s.wakeQ) != len(conns) {
		t.Fatalf("wake queue holds %d entries for %d connections", len(s.wakeQ), len(conns))
	}
	if pending(conns[0].rdCh) {
		t.Fatalf("reader woken while the batch still holds the lock")
	}
	s.unlockAndFlush()
	for i, c := range conns {
		if !pending(c.rdCh) {
			t.Fatalf("connection %d: reader never woken", i)
		}
		if got := pending(c.wrCh); got != (i%2 == 0) {
			t.Fatalf("connection %d: writer woken = %v", i, got)
		}
	}
	s.mu.Lock()
	if s.deferWakes || len(s.wakeQ) != 0 {
		s.mu.Unlock()
		t.Fatalf("deferral not ended: deferWakes %v, %d queued", s.deferWakes, len(s.wakeQ))
	}
	s.wakeSoon(conns[0], wakeW) // no batch: at once
	s.mu.Unlock()
	if !pending(conns[0].wrCh) {
		t.Fatalf("wake outside a batch was not sent at once")
	}
}
