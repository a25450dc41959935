package stack

// ring is a byte FIFO used for the send and receive buffers. Its logical
// capacity (limit) is fixed by configuration, but the backing array is
// taken lazily from the stack's pool, grown on demand and given back when
// the ring empties, so an idle connection holds no buffer memory and a busy
// one does not allocate.
type ring struct {
	buf   []byte
	head  int // index of the first byte
	n     int // bytes held
	limit int // logical capacity
	pool  *bufPool
	// lentEpoch is the flush epoch of the last packet queued with a
	// payload that points into buf (zero-copy send, see lend). Until the
	// flusher has written it, buf must not go back to the pool, where
	// another connection could overwrite it under the pending write.
	lentEpoch uint64
	// last is the size of the array most recently given back. A busy
	// connection empties its ring after every read, and regrowing from 4 KiB
	// by doubling would copy the held bytes again at every step; starting
	// from the last size (a pool hit, no zeroing) makes the refill free.
	last int
}

func newRing(limit int, pool *bufPool) ring { return ring{limit: limit, pool: pool} }

// bufPool keeps freed ring arrays by power-of-two size, up to maxBytes in
// all. It is guarded by Stack.mu like the rings that use it.
type bufPool struct {
	free     [32][][]byte
	bytes    int
	maxBytes int

	// Flush epochs: the flusher numbers each batch it takes (takenEpoch)
	// and records when it has been written (doneEpoch). A ring that lent
	// bytes to a batch keeps its array out of the pool until then.
	takenEpoch, doneEpoch uint64
}

func sizeClass(n int) int {
	c := 12 // 4 KiB minimum
	for 1<<c < n {
		c++
	}
	return c
}

func (p *bufPool) get(n int) []byte {
	c := sizeClass(n)
	if p != nil {
		if k := len(p.free[c]); k > 0 {
			b := p.free[c][k-1]
			p.free[c][k-1] = nil
			p.free[c] = p.free[c][:k-1]
			p.bytes -= len(b)
			return b
		}
	}
	return make([]byte, 1<<c)
}

func (p *bufPool) put(b []byte) {
	if p == nil || len(b) == 0 || p.bytes+len(b) > p.maxBytes || 1<<sizeClass(len(b)) != len(b) {
		return
	}
	c := sizeClass(len(b))
	p.free[c] = append(p.free[c], b)
	p.bytes += len(b)
}

func (r *ring) Len() int  { return r.n }
func (r *ring) Cap() int  { return r.limit }
func (r *ring) Free() int { return r.limit - r.n }

// reserve makes room in the backing array for n more bytes (n <= Free()).
func (r *ring) reserve(n int) {
	need := r.n + n
	if need <= len(r.buf) {
		return
	}
	size := max(len(r.buf)*2, need, 4096)
	if r.n == 0 {
		size = max(size, r.last)
	}
	nb := r.pool.get(size)
	r.copyAt(nb[:r.n], 0)
	r.recycle()
	r.buf, r.head = nb, 0
}

// recycle gives the backing array to the pool unless a queued packet
// still points into it; then the garbage collector frees it after the
// write, and the pool makes a new one when asked.
func (r *ring) recycle() {
	if r.pool != nil && r.lentEpoch > r.pool.doneEpoch {
		return
	}
	r.pool.put(r.buf)
}

// lend notes that a packet of flush epoch e points into the ring's array.
func (r *ring) lend(e uint64) { r.lentEpoch = max(r.lentEpoch, e) }

// Write appends as much of p as fits and returns how much did.
func (r *ring) Write(p []byte) int {
	n := min(len(p), r.Free())
	if n <= 0 {
		return 0
	}
	r.reserve(n)
	tail := (r.head + r.n) % len(r.buf)
	c := copy(r.buf[tail:], p[:n])
	if c < n {
		copy(r.buf, p[c:n])
	}
	r.n += n
	return n
}

// copyAt copies bytes starting off bytes into the ring into p without
// consuming them, and returns how many it copied.
func (r *ring) copyAt(p []byte, off int) int {
	if off >= r.n || len(p) == 0 {
		return 0
	}
	n := min(len(p), r.n-off)
	start := (r.head + off) % len(r.buf)
	c := copy(p[:n], r.buf[start:])
	if c < n {
		copy(p[c:n], r.buf)
	}
	return n
}

// peek returns up to n bytes starting off bytes in as one slice aliasing
// the ring when they are contiguous; ok is false when they wrap.
func (r *ring) peek(off, n int) (b []byte, ok bool) {
	start := (r.head + off) % len(r.buf)
	if start+n <= len(r.buf) {
		return r.buf[start : start+n], true
	}
	return nil, false
}

// Discard drops the first n bytes and releases the backing array once the
// ring is empty, so idle connections give their memory back.
func (r *ring) Discard(n int) {
	n = min(n, r.n)
	r.n -= n
	if r.n == 0 {
		r.head = 0
		return
	}
	r.head = (r.head + n) % len(r.buf)
}

// release frees the backing array if the ring is empty.
func (r *ring) release() {
	if r.n == 0 && r.buf != nil {
		r.last = len(r.buf)
		r.recycle()
		r.buf, r.head = nil, 0
	}
}
