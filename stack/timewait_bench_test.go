package stack

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
	"utcp/timers"
)

// BenchmarkTimeWaitMemory measures the heap cost of one TIME_WAIT entry
// with 100,000 of them held (issue target: 100,000 entries in <= 32 MiB).
func BenchmarkTimeWaitMemory(b *testing.B) {
	const n = 100000
	for i := 0; i < b.N; i++ {
		s, _ := newManualStack()
		t := s.newTCB(0, addrPortA, 80, 0)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s.mu.Lock()
		for k := 0; k < n; k++ {
			t.key = uint64(k)<<16 | 80
			s.gauges[TimeWait]++
			s.addTimeWait(t)
		}
		s.mu.Unlock()
		runtime.GC()
		runtime.ReadMemStats(&after)
		if len(s.tw) != n {
			b.Fatalf("%d entries", len(s.tw))
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-bytes/entry")
		runtime.KeepAlive(s)
	}
}

// TIME_WAIT entries expire in FIFO order, a restarted entry (retransmitted
// FIN) outlives its stale FIFO slot, and the FIFO does not grow without
// bound when entries come and go.
func TestTimeWaitFIFO(t *testing.T) {
	s, clk := newManualStack()
	tc := s.newTCB(0, addrPortA, 80, 0)
	s.mu.Lock()
	for k := 0; k < 3; k++ {
		tc.key = uint64(k)<<16 | 80
		s.gauges[TimeWait]++
		s.addTimeWait(tc)
		clk.Advance(time.Second)
	}
	// Restart entry 0 as a retransmitted FIN would.
	e := s.tw[80]
	e.expires = clk.Now().Add(2 * s.cfg.MSL)
	s.tw[80] = e
	s.pushTWExpiry(80, e.expires)
	s.mu.Unlock()
	clk.Advance(2*s.cfg.MSL - 2*time.Second) // entry 1 (created at 1s) is now due
	s.Advance()
	s.mu.Lock()
	_, has0 := s.tw[80]
	_, has1 := s.tw[1<<16|80]
	_, has2 := s.tw[2<<16|80]
	s.mu.Unlock()
	if !has0 || has1 || !has2 {
		t.Fatalf("after 2MSL-2s: entry0 %v (restarted, want kept) entry1 %v (want gone) entry2 %v (want kept)", has0, has1, has2)
	}
	clk.Advance(1500 * time.Millisecond) // entry 2 (62s) is due, entry 0 (63s) is not
	s.Advance()
	s.mu.Lock()
	n := len(s.tw)
	s.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d entries left, want only the restarted one", n)
	}
	clk.Advance(2 * s.cfg.MSL)
	s.Advance()
	if c := s.Counters(); c.TW != 3 || len(s.Connections()) != 0 {
		t.Fatalf("TW counter %d, table %v", c.TW, s.Connections())
	}
}

var addrPortA = netip.AddrPortFrom(addrA, 40000)

func newManualStack() (*Stack, *timers.ManualClock) {
	clk := &timers.ManualClock{}
	s, err := New(Config{Manual: true, Clock: clk, Addr: addrB, Seed: 1})
	if err != nil {
		panic(err)
	}
	return s, clk
}
