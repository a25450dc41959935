package tuntest

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"time"
)

// DefaultReorderTimeout is how long a packet held back by Faults.Reorder
// waits for a later packet to overtake it before it is sent anyway, when
// Faults.ReorderTimeout is zero. Without such a bound the last packet of a
// burst would be held forever, turning reordering into loss.
const DefaultReorderTimeout = 10 * time.Millisecond

// Faults configures the fault model of a Lossy link. The zero value injects
// nothing. Probabilities are per packet, in [0, 1].
type Faults struct {
	// Seed drives every random decision. Zero means "pick one": a random
	// seed is chosen and logged through Logf so the run can be replayed.
	Seed int64

	Drop float64 // probability a packet is discarded
	// DropBatch is the probability that all the packets of one
	// WritePackets call that the fault model applies to are discarded
	// together: a burst loss, as when the kernel's GRO merged a batch
	// written to a TUN into one skb that was then dropped. It is drawn
	// once per call, and only when non-zero, so other seeds' decisions
	// are unchanged.
	DropBatch float64
	Duplicate float64 // probability a packet is sent twice, back to back
	Reorder   float64 // probability a packet is held back and sent after the next one(s)
	Corrupt   float64 // probability one random bit of the packet is flipped

	Delay  time.Duration // fixed one-way delay
	Jitter time.Duration // extra delay drawn uniformly from [0, Jitter)

	// RateBps limits serialization to this many bytes per second; packets
	// queue behind each other. Zero means unlimited.
	RateBps int64

	// Filter, if non-nil, selects the packets the fault model applies to.
	// Packets for which it returns false bypass every fault, delay and rate
	// limit and are written to the inner link at once (releasing any packet
	// held by Reorder behind them, since they overtook it). It is called with
	// the Lossy's lock held and must not call back into the Lossy.
	Filter func(pkt []byte) bool

	// Logf, if non-nil, receives the seed and configuration on creation
	// (typically t.Logf) so a failing test can be replayed.
	Logf func(format string, args ...any)

	// ReorderTimeout bounds how long a held-back packet waits for a later
	// one; zero means DefaultReorderTimeout.
	ReorderTimeout time.Duration

	// Limit caps the packets waiting in the delay/rate stage, like netem's
	// limit; beyond it packets are dropped and counted as Overflow. Zero
	// means unlimited.
	Limit int
}

// FaultStats counts what a Lossy link did to the packets written through it.
type FaultStats struct {
	Passed      uint64 // packets handed to the inner link (duplicates count twice)
	Dropped     uint64 // packets discarded by Faults.Drop or Faults.DropBatch
	Duplicated  uint64 // packets sent twice (counts the packet, not the copies)
	Reordered   uint64 // packets held back by Faults.Reorder
	Corrupted   uint64 // packets with one bit flipped
	Delayed     uint64 // packet copies that waited in the delay/rate stage
	Overflow    uint64 // packet copies dropped because the stage held Faults.Limit
	WriteErrors uint64 // packets the inner link refused
}

// stageItem is a packet copy in the delay/rate stage, due at at.
type stageItem struct {
	at       time.Time
	pkt      []byte
	borrowed bool // pkt is the caller's buffer; copy before WritePackets returns
}

// heldPkt is a packet held back by Reorder. Its jitter was drawn when it was
// written, so the random sequence does not depend on when it is released.
type heldPkt struct {
	pkt       []byte
	copies    int
	jitter    time.Duration
	releaseAt time.Time
	borrowed  bool // as in stageItem
}

// Lossy wraps a Link and injects faults into the packets written through it.
// Reads pass through from the inner link unchanged. It implements Link.
//
// The model, applied to each packet in write order:
//  1. Filter: non-matching packets go straight to the inner link.
//  2. Drop, then Corrupt (one bit), then Duplicate (an identical copy right
//     behind), then Reorder (hold back until the next packet that is not
//     held, filtered or not, has gone out, or ReorderTimeout passes).
//  3. The stage: the rate limiter serializes packets one after another at
//     RateBps, then each arrives Delay plus its jitter later. Arrival times
//     never decrease, so packets leave the stage in the order they entered
//     it: only Reorder reorders, and FaultStats.Reordered counts every
//     reordering. A packet written less than Jitter after the previous one
//     may therefore wait longer than Delay+Jitter.
//
// Each packet consumes the same number of random draws whatever happens to
// it, so the same Seed and the same written sequence give the same delivered
// sequence, and changing one probability does not reshuffle the others'
// decisions. Delivery uses time.AfterFunc, so inside a testing/synctest
// bubble delays take no real time and are exact; a Lossy must live entirely
// inside or entirely outside one bubble. Close stops the timer, so no
// goroutine outlives it.
type Lossy struct {
	inner Link
	f     Faults
	seed  int64

	mu       sync.Mutex
	closed   bool
	rng      *rand.Rand
	held     []heldPkt   // oldest first
	stage    []stageItem // stage[head:] pending, arrival times nondecreasing
	head     int
	lastAt   time.Time // arrival time of the newest stage entry
	linkFree time.Time // when the rate limiter finishes its last packet
	timer    *time.Timer
	timerAt  time.Time // when timer will fire; zero if stopped
	out      [][]byte  // scratch batch for the inner write
	// Entries added during the current WritePackets call, which may borrow
	// the caller's buffers; they are the newest, so a suffix of stage/held.
	freshStage, freshHeld int
	stats                 FaultStats

	joinMu sync.Mutex
	joined [][]byte // WritePacketsSplit's joined packets, reused
}

// NewLossy wraps inner with the fault model f. It panics on an invalid
// configuration (a probability outside [0, 1], a negative duration, rate or
// limit), which is a bug in the calling test.
func NewLossy(inner Link, f Faults) *Lossy {
	for name, p := range map[string]float64{"Drop": f.Drop, "DropBatch": f.DropBatch, "Duplicate": f.Duplicate, "Reorder": f.Reorder, "Corrupt": f.Corrupt} {
		if !(p >= 0 && p <= 1) {
			panic(fmt.Sprintf("tuntest: Faults.%s = %v, want a probability in [0, 1]", name, p))
		}
	}
	if f.Delay < 0 || f.Jitter < 0 || f.RateBps < 0 || f.ReorderTimeout < 0 || f.Limit < 0 {
		panic(fmt.Sprintf("tuntest: Faults has a negative Delay, Jitter, RateBps, ReorderTimeout or Limit: %+v", f))
	}
	if f.ReorderTimeout == 0 {
		f.ReorderTimeout = DefaultReorderTimeout
	}
	seed := f.Seed
	for seed == 0 {
		seed = rand.Int64()
	}
	if f.Logf != nil {
		f.Logf("tuntest: Lossy seed=%d drop=%v dup=%v reorder=%v corrupt=%v delay=%v jitter=%v rate=%dB/s limit=%d filter=%t",
			seed, f.Drop, f.Duplicate, f.Reorder, f.Corrupt, f.Delay, f.Jitter, f.RateBps, f.Limit, f.Filter != nil)
	}
	return &Lossy{
		inner: inner,
		f:     f,
		seed:  seed,
		// The second PCG word is a fixed odd constant so that every int64
		// seed selects its own stream.
		rng: rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15)),
	}
}

// Seed returns the seed in use (the chosen one when Faults.Seed was zero).
func (l *Lossy) Seed() int64 { return l.seed }

// ReadPackets reads from the inner link; faults apply only to writes.
func (l *Lossy) ReadPackets(bufs [][]byte, sizes []int) (int, error) {
	return l.inner.ReadPackets(bufs, sizes)
}

// BusyPollRxPackets is the inner link's busy-poll count, 0 if it does
// not poll, so that a fault model leaves the stack's
// TcpExtBusyPollRxPackets as it was (as Tap does).
func (l *Lossy) BusyPollRxPackets() uint64 {
	if bp, ok := l.inner.(interface{ BusyPollRxPackets() uint64 }); ok {
		return bp.BusyPollRxPackets()
	}
	return 0
}

// MTU returns the inner link's MTU.
func (l *Lossy) MTU() int { return l.inner.MTU() }

// BatchSize returns the inner link's batch size.
func (l *Lossy) BatchSize() int { return l.inner.BatchSize() }

// Stats returns a snapshot of the fault counters.
func (l *Lossy) Stats() FaultStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// Close discards packets still held or in flight, stops the timer and closes
// the inner link. Later writes fail with os.ErrClosed.
func (l *Lossy) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	if l.timer != nil {
		l.timer.Stop()
	}
	l.held, l.stage, l.head = nil, nil, 0
	l.mu.Unlock()
	return l.inner.Close()
}

// WritePackets runs every packet through the fault model. Like a wire, it
// accepts every packet, including the ones it drops, so n is len(bufs)
// unless the Lossy is closed. Packets due at once are written to the inner
// link before it returns; an error from that write is returned (and
// counted), while errors of delayed writes are only counted.
func (l *Lossy) WritePackets(bufs [][]byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, os.ErrClosed
	}
	// Read the clock under the lock so concurrent writers see times in the
	// order they enter the model.
	now := time.Now()
	out := l.out[:0]
	l.freshStage, l.freshHeld = 0, 0
	dropAll := l.f.DropBatch > 0 && l.rng.Float64() < l.f.DropBatch
	for _, p := range bufs {
		if l.f.Filter != nil && !l.f.Filter(p) {
			// Earlier packets that are due go first, then the bypass.
			out = l.dueLocked(now, out)
			out = append(out, p)
			// It has overtaken any held packet; release those behind it.
			l.releaseHeldLocked(now)
			out = l.dueLocked(now, out)
			continue
		}
		out = l.faultLocked(now, p, out, dropAll)
	}
	err := l.flushLocked(out)
	l.ownLocked()
	l.armLocked()
	return len(bufs), err
}

// WritePacketsSplit is WritePackets for packets in two parts, pays[i]
// following bufs[i] (stack.SplitLink). The parts are joined into buffers of
// the Lossy's own before the fault model sees them, so a stack lending its
// send buffer is exercised (nothing is kept once this returns).
func (l *Lossy) WritePacketsSplit(bufs, pays [][]byte) (int, error) {
	if pays != nil && len(pays) != len(bufs) {
		return 0, fmt.Errorf("tuntest: %d payloads for %d packets", len(pays), len(bufs))
	}
	l.joinMu.Lock()
	defer l.joinMu.Unlock()
	for len(l.joined) < len(bufs) {
		l.joined = append(l.joined, nil)
	}
	out := l.joined[:len(bufs)]
	for i, b := range bufs {
		out[i] = append(out[i][:0], b...)
		if pays != nil {
			out[i] = append(out[i], pays[i]...)
		}
	}
	return l.WritePackets(out)
}

// ownLocked copies the caller's buffers still referenced by packets that
// were held or delayed during this WritePackets call. Packets delivered at
// once were never copied: the inner link copies them itself.
func (l *Lossy) ownLocked() {
	for i := max(l.head, len(l.stage)-l.freshStage); i < len(l.stage); i++ {
		if it := &l.stage[i]; it.borrowed {
			it.pkt, it.borrowed = bytes.Clone(it.pkt), false
		}
	}
	for i := max(0, len(l.held)-l.freshHeld); i < len(l.held); i++ {
		if h := &l.held[i]; h.borrowed {
			h.pkt, h.borrowed = bytes.Clone(h.pkt), false
		}
	}
}

// faultLocked applies the per-packet faults to p and moves what is due to
// out. Exactly six random draws per packet keep the streams aligned.
func (l *Lossy) faultLocked(now time.Time, p []byte, out [][]byte, drop bool) [][]byte {
	uDrop := l.rng.Float64()
	uCorrupt := l.rng.Float64()
	bit := l.rng.Uint64()
	uDup := l.rng.Float64()
	uReorder := l.rng.Float64()
	jit := l.rng.Uint64()

	if drop || uDrop < l.f.Drop {
		l.stats.Dropped++
		return out
	}
	pkt, borrowed := p, true
	if uCorrupt < l.f.Corrupt && len(pkt) > 0 {
		pkt, borrowed = bytes.Clone(p), false
		i := bit % uint64(len(pkt)*8)
		pkt[i/8] ^= 1 << (i % 8)
		l.stats.Corrupted++
	}
	copies := 1
	if uDup < l.f.Duplicate {
		copies = 2
		l.stats.Duplicated++
	}
	var jitter time.Duration
	if l.f.Jitter > 0 {
		jitter = time.Duration(jit % uint64(l.f.Jitter))
	}
	if uReorder < l.f.Reorder {
		l.held = append(l.held, heldPkt{pkt: pkt, copies: copies, jitter: jitter, releaseAt: now.Add(l.f.ReorderTimeout), borrowed: borrowed})
		l.freshHeld++
		l.stats.Reordered++
		return out
	}
	l.enterLocked(now, pkt, copies, jitter, borrowed)
	l.releaseHeldLocked(now)
	return l.dueLocked(now, out)
}

// releaseHeldLocked moves every held packet into the stage, in the order
// they were held. It is called right after a later packet went out, which has
// thereby overtaken them.
func (l *Lossy) releaseHeldLocked(now time.Time) {
	for _, h := range l.held {
		l.enterLocked(now, h.pkt, h.copies, h.jitter, h.borrowed)
	}
	clear(l.held)
	l.held = l.held[:0]
}

// enterLocked puts copies of pkt into the delay/rate stage at time now.
// borrowed marks pkt as the caller's buffer.
func (l *Lossy) enterLocked(now time.Time, pkt []byte, copies int, jitter time.Duration, borrowed bool) {
	for range copies {
		if l.f.Limit > 0 && len(l.stage)-l.head >= l.f.Limit {
			l.stats.Overflow++
			continue
		}
		at := now
		if l.f.RateBps > 0 {
			// Serialization: the packet starts when the link is free and
			// occupies it for len/rate.
			start := now
			if l.linkFree.After(start) {
				start = l.linkFree
			}
			l.linkFree = start.Add(txTime(len(pkt), l.f.RateBps))
			at = l.linkFree
		}
		at = at.Add(l.f.Delay + jitter)
		if at.Before(l.lastAt) {
			at = l.lastAt // never overtake an earlier packet
		}
		l.lastAt = at
		if at.After(now) {
			l.stats.Delayed++
		}
		l.stage = append(l.stage, stageItem{at: at, pkt: pkt, borrowed: borrowed})
		l.freshStage++
	}
}

// txTime is the time to serialize n bytes at rate bytes per second.
func txTime(n int, rate int64) time.Duration {
	if int64(n) > math.MaxInt64/int64(time.Second) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(int64(n) * int64(time.Second) / rate)
}

// dueLocked moves the stage entries due by now to out, in order.
func (l *Lossy) dueLocked(now time.Time, out [][]byte) [][]byte {
	for l.head < len(l.stage) && !l.stage[l.head].at.After(now) {
		out = append(out, l.stage[l.head].pkt)
		l.stage[l.head] = stageItem{}
		l.head++
	}
	switch {
	case l.head == len(l.stage):
		l.stage, l.head = l.stage[:0], 0
	case l.head > 64 && l.head > len(l.stage)/2:
		// A stage that never drains (a steady stream under delay) would
		// otherwise grow without bound; slide the pending part down.
		n := copy(l.stage, l.stage[l.head:])
		clear(l.stage[n:])
		l.stage, l.head = l.stage[:n], 0
	}
	return out
}

// flushLocked writes out to the inner link and counts the result. The lock
// is held across the write so that concurrent writers and the timer deliver
// in stage order.
func (l *Lossy) flushLocked(out [][]byte) error {
	var err error
	if len(out) > 0 {
		var n int
		n, err = l.inner.WritePackets(out)
		n = max(0, min(n, len(out)))
		l.stats.Passed += uint64(n)
		l.stats.WriteErrors += uint64(len(out) - n)
	}
	clear(out)
	l.out = out[:0]
	return err
}

// armLocked sets the timer for the earliest pending event: a held packet's
// timeout or the head of the stage.
func (l *Lossy) armLocked() {
	var next time.Time
	if len(l.held) > 0 {
		next = l.held[0].releaseAt
	}
	if l.head < len(l.stage) {
		if at := l.stage[l.head].at; next.IsZero() || at.Before(next) {
			next = at
		}
	}
	if next.Equal(l.timerAt) {
		return
	}
	l.timerAt = next
	if next.IsZero() {
		if l.timer != nil {
			l.timer.Stop()
		}
		return
	}
	d := time.Until(next)
	if l.timer == nil {
		l.timer = time.AfterFunc(d, l.fire)
	} else {
		l.timer.Reset(d)
	}
}

// fire runs on the timer: it releases held packets whose timeout passed and
// delivers what is due.
func (l *Lossy) fire() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.timerAt = time.Time{}
	now := time.Now()
	out := l.out[:0]
	n := 0
	for n < len(l.held) && !l.held[n].releaseAt.After(now) {
		h := l.held[n]
		// Enter at the moment the timeout expired, not when the timer
		// happened to run, so real-time scheduling latency does not leak
		// into the modelled arrival times.
		l.enterLocked(h.releaseAt, h.pkt, h.copies, h.jitter, false)
		n++
	}
	if n > 0 {
		m := copy(l.held, l.held[n:])
		clear(l.held[m:])
		l.held = l.held[:m]
	}
	out = l.dueLocked(now, out)
	l.flushLocked(out) // counted in WriteErrors; nobody to return it to
	l.armLocked()
}
