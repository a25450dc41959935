package tuntest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// DefaultBatchSize is the BatchSize reported by a Pipe endpoint. It matches
// the batch sizes TUN drivers with offloads typically use, so code tuned on a
// Pipe behaves similarly on a real device.
const DefaultBatchSize = 64

// ErrTooBig is returned by WritePackets for a packet longer than the MTU.
// A real TUN device rejects such a write (EINVAL/EMSGSIZE); silently dropping
// it here would hide a stack bug that sends oversized segments.
var ErrTooBig = errors.New("tuntest: packet larger than MTU")

// PipeStats counts what one endpoint of a Pipe has done.
type PipeStats struct {
	Sent     uint64 // packets this endpoint wrote that were queued for the peer
	Received uint64 // packets this endpoint read
	Dropped  uint64 // packets this endpoint wrote that were discarded: peer's queue full, or peer closed
}

// queue is the bounded FIFO carrying one direction of a Pipe. It is a ring
// of slots; each slot keeps its byte buffer between uses, so a steady stream
// of packets stops allocating once every slot has grown to the packet size.
type queue struct {
	mu     sync.Mutex
	cond   sync.Cond // signalled when a packet arrives or the queue closes
	slots  [][]byte
	head   int // index of the oldest packet
	count  int // packets queued
	closed bool
}

func newQueue(n int) *queue {
	q := &queue{slots: make([][]byte, n)}
	q.cond.L = &q.mu
	return q
}

// Endpoint is one end of a Pipe. It implements Link.
type Endpoint struct {
	mtu  int
	in   *queue // packets the peer wrote, read here
	out  *queue // the peer's in: packets written here
	once sync.Once

	sent, received, dropped atomic.Uint64
}

// NewPipe returns two connected endpoints: a packet written on a is read on
// b and vice versa, in order and with boundaries preserved. Each direction
// holds at most queueLen packets; a write to a full queue drops the packet
// (drop-tail, as a router queue does) and counts it in the writer's Stats.
// mtu bounds the packet size.
func NewPipe(mtu, queueLen int) (a, b *Endpoint) {
	if mtu <= 0 {
		panic(fmt.Sprintf("tuntest: NewPipe mtu %d, must be > 0", mtu))
	}
	if queueLen <= 0 {
		panic(fmt.Sprintf("tuntest: NewPipe queueLen %d, must be > 0", queueLen))
	}
	ab, ba := newQueue(queueLen), newQueue(queueLen)
	a = &Endpoint{mtu: mtu, in: ba, out: ab}
	b = &Endpoint{mtu: mtu, in: ab, out: ba}
	return a, b
}

// ReadPackets blocks until at least one packet is queued, then copies up to
// min(len(bufs), len(sizes)) packets out. A packet that does not fit in its
// buffer stays queued: if it is the first, ReadPackets returns
// io.ErrShortBuffer; otherwise the batch ends before it. After Close it
// returns os.ErrClosed, discarding anything still queued.
func (e *Endpoint) ReadPackets(bufs [][]byte, sizes []int) (int, error) {
	limit := min(len(bufs), len(sizes))
	if limit == 0 {
		return 0, nil
	}
	q := e.in
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.count == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return 0, os.ErrClosed
	}
	n := 0
	for n < limit && q.count > 0 {
		pkt := q.slots[q.head]
		if len(pkt) > len(bufs[n]) {
			if n == 0 {
				return 0, io.ErrShortBuffer
			}
			break
		}
		sizes[n] = copy(bufs[n], pkt)
		q.head = (q.head + 1) % len(q.slots)
		q.count--
		n++
	}
	e.received.Add(uint64(n))
	return n, nil
}

// WritePackets copies each packet into the peer's queue. Packets that find
// the queue full, or the peer closed, are dropped and counted; they still
// count as written, as on a real wire. It fails with os.ErrClosed once this
// endpoint is closed and with ErrTooBig for a packet longer than the MTU
// (n then counts the packets before it).
func (e *Endpoint) WritePackets(bufs [][]byte) (int, error) {
	return e.writePackets(bufs, nil)
}

// WritePacketsSplit is WritePackets for packets in two parts, pays[i]
// following bufs[i] (stack.SplitLink): the parts are joined as they are
// copied into the queue, which is the moment a stack lending its send
// buffer must not yet have reused it.
func (e *Endpoint) WritePacketsSplit(bufs, pays [][]byte) (int, error) {
	if pays != nil && len(pays) != len(bufs) {
		return 0, fmt.Errorf("tuntest: %d payloads for %d packets", len(pays), len(bufs))
	}
	return e.writePackets(bufs, pays)
}

func (e *Endpoint) writePackets(bufs, pays [][]byte) (int, error) {
	if e.in.isClosed() {
		return 0, os.ErrClosed
	}
	q := e.out
	q.mu.Lock()
	var (
		n           int
		err         error
		sent, drops uint64
	)
	for i, pkt := range bufs {
		var pay []byte
		if pays != nil {
			pay = pays[i]
		}
		if len(pkt)+len(pay) > e.mtu {
			err = ErrTooBig
			break
		}
		n++
		if q.closed || q.count == len(q.slots) {
			drops++
			continue
		}
		tail := (q.head + q.count) % len(q.slots)
		q.slots[tail] = append(append(q.slots[tail][:0], pkt...), pay...)
		q.count++
		sent++
	}
	if sent > 0 {
		q.cond.Broadcast()
	}
	q.mu.Unlock()
	e.sent.Add(sent)
	e.dropped.Add(drops)
	return n, err
}

func (q *queue) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// MTU returns the mtu given to NewPipe.
func (e *Endpoint) MTU() int { return e.mtu }

// BatchSize returns DefaultBatchSize.
func (e *Endpoint) BatchSize() int { return DefaultBatchSize }

// Close closes this endpoint: blocked and later reads return os.ErrClosed,
// later writes from this endpoint fail with os.ErrClosed, and the peer's
// writes are dropped (counted in the peer's Stats). The peer can still read
// what was queued for it before. Close is idempotent and always returns nil.
func (e *Endpoint) Close() error {
	e.once.Do(func() {
		q := e.in
		q.mu.Lock()
		q.closed = true
		// Release the buffers; nothing will read them again.
		clear(q.slots)
		q.count = 0
		q.cond.Broadcast()
		q.mu.Unlock()
	})
	return nil
}

// Stats returns a snapshot of this endpoint's counters.
func (e *Endpoint) Stats() PipeStats {
	return PipeStats{
		Sent:     e.sent.Load(),
		Received: e.received.Load(),
		Dropped:  e.dropped.Load(),
	}
}
