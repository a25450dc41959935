package timers

import (
	"flag"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var queueSeed = flag.Uint64("timers.seed", 0, "seed for TestQueueModel (0: derive from the time)")

// checkHeap verifies the heap order and that every entry's Item knows its
// slot; it also checks that vacated slots hold no pointer.
func checkHeap[T any](t *testing.T, q *Queue[T]) {
	t.Helper()
	for i := range q.heap {
		e := &q.heap[i]
		if e.item.pos != i+1 || e.item.at != e.at {
			t.Fatalf("slot %d: item pos %d at %v, entry at %v", i, e.item.pos, e.item.at, e.at)
		}
		if i > 0 && e.less(&q.heap[(i-1)/2]) {
			t.Fatalf("slot %d orders before its parent", i)
		}
	}
	for _, e := range q.heap[len(q.heap):cap(q.heap)] {
		if e.item != nil {
			t.Fatal("vacated slot still references an Item")
		}
	}
}

// modelEntry is the reference model: a plain list of queued ids with their
// deadline and schedule sequence, whose minimum is found by sorting.
type modelEntry struct {
	id  int
	at  Instant
	seq uint64
}

func modelMin(m []modelEntry) (modelEntry, bool) {
	if len(m) == 0 {
		return modelEntry{}, false
	}
	s := slices.Clone(m)
	slices.SortFunc(s, func(a, b modelEntry) int {
		if a.at != b.at {
			if a.at < b.at {
				return -1
			}
			return 1
		}
		if a.seq < b.seq {
			return -1
		}
		return 1
	})
	return s[0], true
}

// TestQueueModel runs random schedule/reschedule/cancel/pop sequences against
// the sorted-slice model. Deadlines come from a small range so ties are
// common and the FIFO tie rule is exercised. The seed is logged; rerun with
// -timers.seed=N to replay a failure.
func TestQueueModel(t *testing.T) {
	seed := *queueSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -timers.seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	for round := range 50 {
		const nItems = 48
		items := make([]Item[int], nItems)
		for i := range items {
			items[i].Value = i
		}
		var q Queue[int]
		var model []modelEntry
		var seq uint64
		now := Instant(0)
		find := func(id int) int {
			return slices.IndexFunc(model, func(e modelEntry) bool { return e.id == id })
		}
		span := Instant(1 + rng.IntN(40)) // small spans force ties

		for step := range 2000 {
			id := rng.IntN(nItems)
			it := &items[id]
			switch op := rng.IntN(10); {
			case op < 4: // schedule or reschedule
				at := now + Instant(rng.Int64N(int64(span)))
				seq++
				if j := find(id); j >= 0 {
					model[j].at, model[j].seq = at, seq
				} else {
					model = append(model, modelEntry{id, at, seq})
				}
				q.Schedule(it, at)
			case op < 6: // cancel (possibly of an unqueued item)
				if j := find(id); j >= 0 {
					model = slices.Delete(model, j, j+1)
				}
				q.Cancel(it)
			case op < 9: // advance time and drain what is due
				now += Instant(rng.Int64N(int64(span)/2 + 1))
				for {
					got, ok := q.PopDue(now)
					want, wok := modelMin(model)
					wok = wok && want.at <= now
					if ok != wok || (ok && got.Value != want.id) {
						t.Fatalf("round %d step %d: PopDue(%v) = %v,%v; model %+v,%v", round, step, now, got, ok, want, wok)
					}
					if !ok {
						break
					}
					model = slices.Delete(model, find(want.id), find(want.id)+1)
					if got.Scheduled() {
						t.Fatalf("popped item still Scheduled")
					}
				}
			default: // peek
				got, ok := q.Peek()
				want, wok := modelMin(model)
				if ok != wok || (ok && got.Value != want.id) {
					t.Fatalf("round %d step %d: Peek = %v,%v; model %+v,%v", round, step, got, ok, want, wok)
				}
				if at, ok := q.Next(); ok != wok || (ok && at != want.at) {
					t.Fatalf("round %d step %d: Next = %v,%v; model %v", round, step, at, ok, want.at)
				}
			}
			if q.Len() != len(model) {
				t.Fatalf("round %d step %d: Len %d, model %d", round, step, q.Len(), len(model))
			}
			for i := range items {
				if items[i].Scheduled() != (find(i) >= 0) {
					t.Fatalf("round %d step %d: item %d Scheduled() = %v", round, step, i, items[i].Scheduled())
				}
			}
			checkHeap(t, &q)
		}
	}
}

// TestQueueTieOrder: equal deadlines pop in order of the latest Schedule
// call; rescheduling, even to the same instant, moves an item behind its
// peers. Two queues fed the same calls pop identically.
func TestQueueTieOrder(t *testing.T) {
	run := func() []int {
		var q Queue[int]
		items := make([]Item[int], 6)
		for i := range items {
			items[i].Value = i
			q.Schedule(&items[i], 100)
		}
		q.Schedule(&items[1], 100) // same deadline: to the back
		q.Schedule(&items[4], 50)  // earlier: to the front
		q.Schedule(&items[4], 100) // back to 100: behind 1
		q.Cancel(&items[3])
		var got []int
		for it, ok := q.PopDue(100); ok; it, ok = q.PopDue(100) {
			got = append(got, it.Value)
		}
		return got
	}
	want := []int{0, 2, 5, 1, 4}
	for range 3 {
		if got := run(); !slices.Equal(got, want) {
			t.Fatalf("pop order %v, want %v", got, want)
		}
	}
}

func TestQueueBasics(t *testing.T) {
	var q Queue[string]
	if _, ok := q.Peek(); ok {
		t.Fatal("Peek on empty queue")
	}
	if _, ok := q.Next(); ok {
		t.Fatal("Next on empty queue")
	}
	var a, b, c Item[string]
	a.Value, b.Value, c.Value = "a", "b", "c"
	if a.Scheduled() {
		t.Fatal("zero Item is Scheduled")
	}
	q.Cancel(&a) // no-op
	q.Schedule(&a, 30)
	q.Schedule(&b, 10)
	q.Schedule(&c, 20)
	if !a.Scheduled() || a.At() != 30 {
		t.Fatalf("a: scheduled %v at %v", a.Scheduled(), a.At())
	}
	if it, _ := q.Peek(); it != &b {
		t.Fatal("Peek is not the earliest")
	}
	if _, ok := q.PopDue(9); ok {
		t.Fatal("popped before its deadline")
	}
	q.Schedule(&b, 40) // move the head later
	if at, _ := q.Next(); at != 20 {
		t.Fatalf("Next = %v, want 20", at)
	}
	q.Cancel(&c)
	if it, ok := q.PopDue(30); !ok || it != &a {
		t.Fatal("PopDue(30) did not return a")
	}
	q.Clear()
	if q.Len() != 0 || b.Scheduled() {
		t.Fatal("Clear left items queued")
	}
	checkHeap(t, &q)
	q.Schedule(&b, 1) // reusable after Clear
	if q.Len() != 1 {
		t.Fatal("queue unusable after Clear")
	}
}

func TestQueueForeignItemPanics(t *testing.T) {
	var q1, q2 Queue[int]
	var a, b Item[int]
	q1.Schedule(&a, 1)
	q2.Schedule(&b, 1)
	for name, f := range map[string]func(){
		"Cancel":   func() { q2.Cancel(&a) },
		"Schedule": func() { q1.Schedule(&b, 5) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s with an item of another queue did not panic", name)
				}
			}()
			f()
		}()
	}
}

// TestQueueNoAllocs: once grown, no operation allocates.
func TestQueueNoAllocs(t *testing.T) {
	const n = 1024
	var q Queue[int]
	q.Grow(n)
	items := make([]Item[int], n)
	for i := range items {
		q.Schedule(&items[i], Instant(i*7919%n))
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		it := &items[i%n]
		q.Schedule(it, Instant((i*31)%n))
		q.Cancel(it)
		q.Schedule(it, Instant((i*17)%n))
		if p, ok := q.PopDue(MaxInstant); ok {
			q.Schedule(p, Instant(n+i))
		}
		_, _ = q.Peek()
		i++
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per run, want 0", allocs)
	}
	checkHeap(t, &q)
}
