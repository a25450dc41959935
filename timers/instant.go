package timers

import (
	"math"
	"sync/atomic"
	"time"
)

// Instant is a point in time, in nanoseconds since the stack's epoch.
//
// Zero is a valid instant (the epoch itself). Arithmetic saturates at
// MinInstant/MaxInstant rather than wrapping, so a deadline computed as
// now.Add(d) for a very large d stays in the far future.
type Instant int64

const (
	// MinInstant and MaxInstant are the extreme representable instants.
	// MaxInstant is a convenient "never" deadline.
	MinInstant Instant = math.MinInt64
	MaxInstant Instant = math.MaxInt64
)

// Add returns i+d, saturating at MinInstant/MaxInstant.
func (i Instant) Add(d time.Duration) Instant {
	s := i + Instant(d)
	// Signed overflow happened iff both operands have the same sign and the
	// result's sign differs from it.
	if d > 0 && s < i {
		return MaxInstant
	}
	if d < 0 && s > i {
		return MinInstant
	}
	return s
}

// Sub returns the duration i-j, saturating at the extreme durations.
func (i Instant) Sub(j Instant) time.Duration {
	d := time.Duration(i - j)
	if j < 0 && d < time.Duration(i) { // i - (negative) overflowed upwards
		return time.Duration(math.MaxInt64)
	}
	if j > 0 && d > time.Duration(i) { // i - (positive) overflowed downwards
		return time.Duration(math.MinInt64)
	}
	return d
}

// Before reports whether i is strictly earlier than j.
func (i Instant) Before(j Instant) bool { return i < j }

// After reports whether i is strictly later than j.
func (i Instant) After(j Instant) bool { return i > j }

// String formats i as the duration since the epoch, e.g. "1.5s", so traces
// read as offsets from the start of a test.
func (i Instant) String() string { return time.Duration(i).String() }

// Clock tells the current Instant. Only the driver reads a Clock; the TCB is
// handed "now" as a parameter.
type Clock interface {
	Now() Instant
}

// RealClock measures Instants as time.Since(epoch), which uses Go's monotonic
// clock, so wall-clock steps do not move it. Inside a testing/synctest bubble
// time.Now is virtual, so a RealClock created in the bubble runs on virtual time.
//
// Create it with NewRealClock; the zero RealClock has the zero time.Time as its
// epoch and its Instants would saturate.
type RealClock struct {
	epoch time.Time
}

var (
	_ Clock = (*RealClock)(nil)
	_ Clock = (*ManualClock)(nil)
	_ Clock = ClockFunc(nil)
)

// NewRealClock returns a RealClock whose epoch is the present moment.
func NewRealClock() *RealClock { return &RealClock{epoch: time.Now()} }

// Now returns the time elapsed since the epoch.
func (c *RealClock) Now() Instant { return Instant(time.Since(c.epoch)) }

// Epoch returns the time.Time that corresponds to Instant 0.
func (c *RealClock) Epoch() time.Time { return c.epoch }

// Instant converts a time.Time (for example a net.Conn deadline) to an Instant
// on this clock. Times carrying a monotonic reading convert exactly.
func (c *RealClock) Instant(t time.Time) Instant { return Instant(t.Sub(c.epoch)) }

// Time converts an Instant on this clock back to a time.Time.
func (c *RealClock) Time(i Instant) time.Time { return c.epoch.Add(time.Duration(i)) }

// ManualClock is a Clock for tests that moves only when told to. The zero
// value reads Instant 0. It is safe for concurrent use, so a test goroutine may
// advance it while a driver goroutine reads it.
type ManualClock struct {
	now atomic.Int64
}

// Now returns the instant last set.
func (c *ManualClock) Now() Instant { return Instant(c.now.Load()) }

// Advance moves the clock forward by d (saturating). It panics if d is
// negative: a monotonic clock never goes back, and a test that tries to is
// wrong.
func (c *ManualClock) Advance(d time.Duration) {
	if d < 0 {
		panic("timers: ManualClock.Advance with negative duration " + d.String())
	}
	for {
		old := c.now.Load()
		if c.now.CompareAndSwap(old, int64(Instant(old).Add(d))) {
			return
		}
	}
}

// Set moves the clock to i. Unlike Advance it may move backwards, so a test
// can rewind between independent cases.
func (c *ManualClock) Set(i Instant) { c.now.Store(int64(i)) }

// ClockFunc adapts a function to the Clock interface.
type ClockFunc func() Instant

// Now calls f.
func (f ClockFunc) Now() Instant { return f() }
