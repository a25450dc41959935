package stack

import "unsafe"

// rcvQueue is a connection's receive buffer: in-order bytes waiting for the
// application, as a FIFO of chunks. Small segments are copied into arrays
// from the stack's bufPool, packed one after another like a ring. A large
// in-order segment read from the link is adopted instead: the link's read
// buffer itself becomes the chunk and the read loop takes a fresh buffer
// from rxPool, so bulk data (64 KiB TSO super-segments) reaches the
// application with no copy inside the stack. Its logical capacity (limit) is
// the receive buffer size the window is computed from; only payload bytes
// count against it, and adoption is limited to segments of at least
// adoptMin bytes so a buffer never holds more than a few times its payload.
//
// Like the rings it is guarded by Stack.mu.
type rcvQueue struct {
	chunks []rchunk // live chunks are chunks[head:]
	head   int
	n      int // bytes held
	limit  int // logical capacity
	slack  int // bytes of adopted buffers beyond their payload (see canAdopt)
	pool   *bufPool
	rx     *rxPool
}

// rchunk is one array of a rcvQueue; its unread bytes are buf[r:w].
type rchunk struct {
	buf   []byte
	r, w  int32
	slack int32 // adopted: buffer bytes beyond the payload, charged to rcvQueue.slack
	owned bool  // an adopted link read buffer (goes back to rxPool)
}

// adoptMin is the smallest payload adopted rather than copied: a link read
// buffer is 64 KiB, so at worst four buffer bytes are held per payload byte.
const adoptMin = 16 << 10

// rcvChunk sizes: the first array of a burst is small (an echo request
// needs no more), later ones are 64 KiB.
const (
	rcvChunkSmall = 16 << 10
	rcvChunkLarge = 64 << 10
)

func newRcvQueue(limit int, pool *bufPool, rx *rxPool) rcvQueue {
	return rcvQueue{limit: limit, pool: pool, rx: rx}
}

func (q *rcvQueue) Len() int  { return q.n }
func (q *rcvQueue) Cap() int  { return q.limit }
func (q *rcvQueue) Free() int { return q.limit - q.n }

// Write copies as much of p as fits and returns how much did.
func (q *rcvQueue) Write(p []byte) int {
	n := min(len(p), q.Free())
	if n <= 0 {
		return 0
	}
	p = p[:n]
	for len(p) > 0 {
		if k := len(q.chunks); k > q.head {
			c := &q.chunks[k-1]
			if !c.owned && int(c.w) < len(c.buf) {
				m := copy(c.buf[c.w:], p)
				c.w += int32(m)
				p = p[m:]
				continue
			}
		}
		size := rcvChunkSmall
		if q.n > 0 || len(p) > rcvChunkSmall {
			size = rcvChunkLarge
		}
		q.push(rchunk{buf: q.pool.get(size)})
	}
	q.n += n
	return n
}

// canAdopt reports whether a segment of n bytes read into a link buffer of
// size bufSize may be adopted: it must be large (adoptMin), fit, and keep
// the unused parts of adopted buffers within half the limit, so a queue
// holds at most 1.5 times its limit whatever segment sizes a peer picks
// (Linux bounds the same thing by charging skb truesize to rcvbuf).
func (q *rcvQueue) canAdopt(n, bufSize int) bool {
	return n >= adoptMin && n <= q.Free() && q.slack+bufSize-n <= q.limit/2
}

// adopt queues data, which lies inside buf, without copying it; buf then
// belongs to the queue. The caller checked canAdopt.
func (q *rcvQueue) adopt(buf, data []byte) {
	off := int(uintptr(unsafe.Pointer(unsafe.SliceData(data))) - uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
	slack := len(buf) - len(data)
	q.push(rchunk{buf: buf, r: int32(off), w: int32(off + len(data)), slack: int32(slack), owned: true})
	q.n += len(data)
	q.slack += slack
}

// within reports whether data lies inside buf's array (so buf could be
// adopted for it).
func within(buf, data []byte) bool {
	if cap(buf) == 0 || len(data) == 0 {
		return false
	}
	b := uintptr(unsafe.Pointer(unsafe.SliceData(buf[:cap(buf)])))
	d := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
	return d >= b && d+uintptr(len(data)) <= b+uintptr(cap(buf))
}

func (q *rcvQueue) push(c rchunk) {
	if q.head > 0 && q.head == len(q.chunks) {
		q.chunks, q.head = q.chunks[:0], 0
	} else if q.head > 0 && len(q.chunks) == cap(q.chunks) {
		// Full with dead slots in front: slide the live ones down
		// instead of growing.
		k := copy(q.chunks, q.chunks[q.head:])
		clear(q.chunks[k:])
		q.chunks, q.head = q.chunks[:k], 0
	}
	q.chunks = append(q.chunks, c)
}

// Read moves up to len(p) bytes out of the queue.
func (q *rcvQueue) Read(p []byte) int {
	n := 0
	for n < len(p) && q.head < len(q.chunks) {
		c := &q.chunks[q.head]
		m := copy(p[n:], c.buf[c.r:c.w])
		c.r += int32(m)
		n += m
		if c.r == c.w {
			q.popHead()
		}
	}
	q.n -= n
	return n
}

// Discard drops the first n bytes.
func (q *rcvQueue) Discard(n int) {
	n = min(n, q.n)
	q.n -= n
	for n > 0 {
		c := &q.chunks[q.head]
		m := min(n, int(c.w-c.r))
		c.r += int32(m)
		n -= m
		if c.r == c.w {
			q.popHead()
		}
	}
}

// takeHead removes the first chunk whole and returns its unread bytes and
// array, for a reader that hands them on without copying (Conn.WriteTo);
// it gives the array back with giveBack once done with the bytes.
func (q *rcvQueue) takeHead() (data []byte, c rchunk) {
	c = q.chunks[q.head]
	q.chunks[q.head] = rchunk{}
	q.head++
	q.n -= int(c.w - c.r)
	return c.buf[c.r:c.w], c
}

func (q *rcvQueue) giveBack(c rchunk) {
	if c.owned {
		q.slack -= int(c.slack)
		q.rx.put(c.buf)
	} else {
		q.pool.put(c.buf)
	}
}

// popHead frees the first chunk, which has been read to its end.
func (q *rcvQueue) popHead() {
	_, c := q.takeHead()
	q.giveBack(c)
}

// release gives every array back once the queue is empty, so an idle
// connection holds no buffer memory.
func (q *rcvQueue) release() {
	if q.n != 0 {
		return
	}
	for i := q.head; i < len(q.chunks); i++ {
		q.giveBack(q.chunks[i])
		q.chunks[i] = rchunk{}
	}
	q.chunks, q.head = q.chunks[:0], 0
	// Keep the slice of chunk headers if the limit could fill it with
	// 64 KiB arrays again: a bulk receiver that keeps up empties its queue
	// often, and dropping the slice each time regrew it by doubling, eight
	// allocations per cycle (1 % of a plain upload's CPU with a 6 MiB
	// buffer). Past that, adopted arrays made it long, and it goes.
	if cap(q.chunks) > max(64, 2*q.limit/rcvChunkLarge) {
		q.chunks = nil
	}
}

// rxPool recycles the link read buffers that receive queues adopted. It is
// guarded by Stack.mu; it keeps at most maxFree buffers.
type rxPool struct {
	free    [][]byte
	size    int
	maxFree int
}

func (p *rxPool) get() []byte {
	if k := len(p.free); k > 0 {
		b := p.free[k-1]
		p.free[k-1] = nil
		p.free = p.free[:k-1]
		return b
	}
	return make([]byte, p.size)
}

func (p *rxPool) put(b []byte) {
	if p == nil || cap(b) != p.size || len(p.free) >= p.maxFree {
		return
	}
	p.free = append(p.free, b[:p.size])
}
