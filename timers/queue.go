package timers

// Item is an entry that a Queue can hold. The caller owns it (typically
// embedded in, or pointed to by, a connection) and passes its address to the
// Queue, which records the Item's heap slot in it so cancel and reschedule
// are O(log n) without a search. An Item may be in at most one Queue at a
// time; the zero Item is not scheduled.
type Item[T any] struct {
	Value T

	at  Instant
	pos int // heap index + 1; 0 means not queued
}

// Scheduled reports whether the item is in a queue.
func (it *Item[T]) Scheduled() bool { return it.pos != 0 }

// At returns the deadline of the item's latest Schedule (meaningful while
// Scheduled; afterwards it still reports the last deadline).
func (it *Item[T]) At() Instant { return it.at }

// entry is one heap slot. The ordering key is copied inline so sifting
// compares contiguous memory instead of chasing an Item pointer per step.
type entry[T any] struct {
	at   Instant
	seq  uint64 // Schedule call number; breaks ties FIFO
	item *Item[T]
}

func (e *entry[T]) less(f *entry[T]) bool {
	return e.at < f.at || (e.at == f.at && e.seq < f.seq)
}

// Queue is a stack-wide deadline queue: an indexed binary min-heap ordered by
// (deadline, schedule sequence). Schedule, Cancel and PopDue are O(log n),
// Peek and Next O(1). Once the backing array has grown to the largest size
// used, no operation allocates.
//
// Items with equal deadlines pop in the order of their most recent Schedule
// call (rescheduling an item, even to the same deadline, moves it behind its
// peers), so a simulation that issues the same calls replays exactly.
//
// The zero Queue is empty and ready to use. A Queue must not be copied after
// first use, and it is not safe for concurrent use: the driver that owns it
// serializes access.
type Queue[T any] struct {
	heap []entry[T]
	seq  uint64
}

// Len returns the number of queued items.
func (q *Queue[T]) Len() int { return len(q.heap) }

// Grow makes room for n more items without further allocation.
func (q *Queue[T]) Grow(n int) {
	if n > cap(q.heap)-len(q.heap) {
		h := make([]entry[T], len(q.heap), len(q.heap)+n)
		copy(h, q.heap)
		q.heap = h
	}
}

// Schedule queues it to fire at at, or moves it there if it is already
// queued. It panics if it is queued in a different Queue.
func (q *Queue[T]) Schedule(it *Item[T], at Instant) {
	it.at = at
	q.seq++
	if it.pos == 0 {
		q.heap = append(q.heap, entry[T]{at: at, seq: q.seq, item: it})
		i := len(q.heap) - 1
		it.pos = i + 1
		q.up(i)
		return
	}
	i := q.index(it)
	e := &q.heap[i]
	// The new seq is the largest in the queue, so an unchanged deadline
	// also sorts later than before: it moves behind its equals.
	later := at >= e.at
	e.at, e.seq = at, q.seq
	if later {
		q.down(i)
	} else {
		q.up(i)
	}
}

// Cancel removes it from the queue; it is a no-op if it is not queued. It
// panics if it is queued in a different Queue.
func (q *Queue[T]) Cancel(it *Item[T]) {
	if it.pos == 0 {
		return
	}
	q.remove(q.index(it))
}

// Peek returns the earliest item without removing it.
func (q *Queue[T]) Peek() (*Item[T], bool) {
	if len(q.heap) == 0 {
		return nil, false
	}
	return q.heap[0].item, true
}

// Next returns the earliest deadline, which is when the driver's timer should
// fire next.
func (q *Queue[T]) Next() (Instant, bool) {
	if len(q.heap) == 0 {
		return 0, false
	}
	return q.heap[0].at, true
}

// PopDue removes and returns the earliest item if its deadline is at or
// before now. Call it in a loop to drain everything that has expired.
func (q *Queue[T]) PopDue(now Instant) (*Item[T], bool) {
	if len(q.heap) == 0 || q.heap[0].at > now {
		return nil, false
	}
	it := q.heap[0].item
	q.remove(0)
	return it, true
}

// Clear removes every item (each becomes unscheduled) and keeps the backing
// array for reuse.
func (q *Queue[T]) Clear() {
	for i := range q.heap {
		q.heap[i].item.pos = 0
		q.heap[i] = entry[T]{}
	}
	q.heap = q.heap[:0]
}

// index returns it's heap index after checking that it really occupies that
// slot of this queue; anything else means it belongs to another Queue, and
// carrying on would corrupt both.
func (q *Queue[T]) index(it *Item[T]) int {
	i := it.pos - 1
	if i >= len(q.heap) || q.heap[i].item != it {
		panic("timers: Item is queued in a different Queue")
	}
	return i
}

// remove deletes the entry at index i: the last entry fills the hole and is
// sifted whichever way restores the heap order.
func (q *Queue[T]) remove(i int) {
	h := q.heap
	last := len(h) - 1
	h[i].item.pos = 0
	if i != last {
		h[i] = h[last]
		h[i].item.pos = i + 1
	}
	h[last] = entry[T]{} // drop the pointer so the GC can free the Item
	q.heap = h[:last]
	if i != last {
		if !q.up(i) {
			q.down(i)
		}
	}
}

// up sifts the entry at i towards the root; it reports whether it moved.
// The moving entry is held aside and written once at its final slot.
func (q *Queue[T]) up(i int) bool {
	h := q.heap
	e := h[i]
	start := i
	for i > 0 {
		p := (i - 1) / 2
		if !e.less(&h[p]) {
			break
		}
		h[i] = h[p]
		h[i].item.pos = i + 1
		i = p
	}
	if i == start {
		return false
	}
	h[i] = e
	e.item.pos = i + 1
	return true
}

// down sifts the entry at i towards the leaves.
func (q *Queue[T]) down(i int) {
	h := q.heap
	n := len(h)
	e := h[i]
	start := i
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && h[r].less(&h[c]) {
			c = r
		}
		if !h[c].less(&e) {
			break
		}
		h[i] = h[c]
		h[i].item.pos = i + 1
		i = c
	}
	if i != start {
		h[i] = e
		e.item.pos = i + 1
	}
}
