package stack

import (
	"bytes"
	"testing"
)

// TestRingLendKeepsArrayOutOfPool: while a queued packet points into the
// send ring (zero-copy send), neither growth nor release may hand the array
// to the pool, where another connection would overwrite the pending bytes;
// once the flusher has written that epoch, the array is recycled as usual.
func TestRingLendKeepsArrayOutOfPool(t *testing.T) {
	pool := &bufPool{maxBytes: 64 << 20}
	r := newRing(1<<20, pool)
	data := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
	r.Write(data)
	lent, _ := r.peek(0, len(data))
	pool.takenEpoch = 7
	r.lend(pool.takenEpoch + 1) // queued in the batch the flusher takes next

	// Growth moves the bytes to a bigger array; the old one stays out.
	r.Write(bytes.Repeat([]byte{'x'}, 8192))
	if pool.bytes != 0 {
		t.Fatalf("lent array went back to the pool on growth (%d pooled bytes)", pool.bytes)
	}
	// A new connection's buffer must not be the lent array.
	if b := pool.get(4096); &b[0] == &lent[0] {
		t.Fatalf("pool handed out the lent array")
	}
	if !bytes.Equal(lent, data) {
		t.Fatalf("lent bytes changed before the flush")
	}
	// Everything acknowledged and released while the flush is pending:
	// still kept out.
	r.Discard(r.Len())
	r.release()
	if pool.bytes != 0 {
		t.Fatalf("array released to the pool while lent")
	}
	// After the flush of that epoch the ring recycles normally.
	pool.doneEpoch = 8
	r.Write(data)
	r.Discard(r.Len())
	r.release()
	if pool.bytes == 0 {
		t.Fatalf("array not recycled once the lending flush was done")
	}
}
