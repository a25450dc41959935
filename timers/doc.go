// Package timers holds everything utcp needs to know about time: a
// monotonic Instant and the Clock that produces it, the RFC 6298
// retransmission-timeout estimator with Karn's rule helper, the per-connection
// deadline Set and the stack-wide deadline Queue.
//
// The package is sans-I/O: it imports only the standard library, starts no
// goroutines, takes no locks and never sleeps. Callers pass "now" in, which is
// what makes the TCP state machine testable with explicit times and replayable
// inside testing/synctest.
//
// Invariants:
//
//   - Instant is nanoseconds since the stack's epoch. RealClock is monotonic (it
//     reads Go's monotonic clock); ManualClock.Advance refuses to go backwards,
//     and only ManualClock.Set may rewind, for tests that reuse a clock.
//     Instant arithmetic saturates instead of wrapping, so now.Add(huge) is a
//     deadline in the far future, never one in the past.
//   - RTO.Current is always within [Min, Max] of its RTOConfig, whatever the
//     samples and however many backoffs; the backoff counter never overflows.
//   - RTTSampler yields at most one sample per Start, and never one for a
//     measurement that Retransmitted invalidated (Karn's rule, RFC 6298 §3).
//   - The zero Set has nothing armed; a Kind is armed exactly between Arm and
//     Stop/PopDue/Clear. PopDue returns kinds in deadline order, ties by Kind.
//   - Queue is an indexed binary min-heap keyed by (deadline, schedule sequence):
//     every parent orders before its children, every queued Item knows its own
//     heap slot, and items with equal deadlines pop in the order of their most
//     recent Schedule call, so simulations replay exactly. Once its backing array
//     has grown, no Queue operation allocates.
package timers
