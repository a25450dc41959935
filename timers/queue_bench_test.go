package timers

import (
	"math/rand/v2"
	"testing"
)

// The benchmarks run against a queue that already holds 10^6 items with
// deadlines spread uniformly over benchSpan, which is roughly what a driver
// serving a million connections sees. Random inputs are precomputed so the
// RNG stays out of the timed loop.
const (
	benchQueued = 1_000_000
	benchSpan   = int64(1 << 40) // ~18 minutes in ns
	benchTable  = 1 << 16
)

type benchFixture struct {
	q     Queue[int]
	items []Item[int]
	times []Instant // benchTable random deadlines
	picks []int32   // benchTable random indexes into items
}

func newBenchFixture(b *testing.B, extra int) *benchFixture {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	f := &benchFixture{
		items: make([]Item[int], benchQueued+extra),
		times: make([]Instant, benchTable),
		picks: make([]int32, benchTable),
	}
	f.q.Grow(benchQueued + extra)
	for i := range f.items {
		f.items[i].Value = i
	}
	for i := range benchQueued {
		f.q.Schedule(&f.items[i], Instant(rng.Int64N(benchSpan)))
	}
	for i := range f.times {
		f.times[i] = Instant(rng.Int64N(benchSpan))
		f.picks[i] = int32(rng.IntN(benchQueued))
	}
	return f
}

// BenchmarkQueueSchedule measures inserting an item that is not queued. To
// hold the size near 10^6, the inserted batch is cancelled (untimed) every
// benchTable operations.
func BenchmarkQueueSchedule(b *testing.B) {
	f := newBenchFixture(b, benchTable)
	spare := f.items[benchQueued:]
	b.ReportAllocs()
	j := 0
	for b.Loop() {
		if j == len(spare) {
			b.StopTimer()
			for k := range spare {
				f.q.Cancel(&spare[k])
			}
			j = 0
			b.StartTimer()
		}
		f.q.Schedule(&spare[j], f.times[j])
		j++
	}
}

// BenchmarkQueueReschedule measures moving a queued item to a new random
// deadline, the common case of re-arming a connection's timer.
func BenchmarkQueueReschedule(b *testing.B) {
	f := newBenchFixture(b, 0)
	b.ReportAllocs()
	j := 0
	for b.Loop() {
		k := j & (benchTable - 1)
		f.q.Schedule(&f.items[f.picks[k]], f.times[(k+1)&(benchTable-1)])
		j++
	}
}

// BenchmarkQueuePopDue measures removing the earliest item. Every benchTable
// pops, the popped items are re-queued (untimed) at random deadlines.
func BenchmarkQueuePopDue(b *testing.B) {
	f := newBenchFixture(b, 0)
	popped := make([]*Item[int], 0, benchTable)
	b.ReportAllocs()
	for b.Loop() {
		if len(popped) == benchTable {
			b.StopTimer()
			for k, it := range popped {
				f.q.Schedule(it, f.times[k])
			}
			popped = popped[:0]
			b.StartTimer()
		}
		it, ok := f.q.PopDue(MaxInstant)
		if !ok {
			b.Fatal("queue ran dry")
		}
		popped = append(popped, it)
	}
}

// BenchmarkSetPopDue measures draining a connection's seven timers.
func BenchmarkSetPopDue(b *testing.B) {
	b.ReportAllocs()
	var s Set
	for b.Loop() {
		for k := Kind(0); k < NumKinds; k++ {
			s.Arm(k, Instant(NumKinds-k))
		}
		for _, ok := s.PopDue(MaxInstant); ok; _, ok = s.PopDue(MaxInstant) {
		}
	}
}
