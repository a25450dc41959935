package timers

import "strconv"

// Kind names one of a connection's timers (RFC 9293 §3.8, plus the ones
// every real stack has: delayed ACK per RFC 9293 §3.8.6.3 / RFC 1122
// §4.2.3.2, keepalive per RFC 9293 §3.8.4, and Linux's FIN_WAIT_2 and
// SYN-ACK timers).
type Kind uint8

// The timer kinds. Their order is the tie-break order of Set.PopDue.
const (
	Retransmit Kind = iota // RFC 6298 retransmission timer
	DelayedACK             // RFC 9293 §3.8.6.3 delayed acknowledgment
	Persist                // RFC 9293 §3.8.6.1 zero-window probe
	Keepalive              // RFC 9293 §3.8.4 keep-alive
	FinWait2               // Linux: tcp_fin_timeout for orphaned FIN_WAIT_2
	TimeWait               // RFC 9293 §3.6: 2*MSL in TIME_WAIT
	SynAck                 // SYN-ACK retransmission for a passive open
	NumKinds               // number of kinds; not a timer
)

var kindNames = [NumKinds]string{
	Retransmit: "retransmit",
	DelayedACK: "delack",
	Persist:    "persist",
	Keepalive:  "keepalive",
	FinWait2:   "fin_wait2",
	TimeWait:   "time_wait",
	SynAck:     "synack",
}

// String returns the lower-case name used in traces and ConnInfo.
func (k Kind) String() string {
	if k < NumKinds {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Set holds one deadline per Kind for a single connection. It is a small
// value type (NumKinds instants and a bitmask) meant to live inside a TCB;
// the zero Set has nothing armed. Using a Kind >= NumKinds panics.
//
// Whether a kind is armed is tracked by its own bit, so Instant 0 is a valid
// deadline.
type Set struct {
	at    [NumKinds]Instant
	armed uint8 // bit k set iff kind k is armed
}

// The bitmask must have a bit for every kind.
var _ [8 - NumKinds]struct{}

func bit(k Kind) uint8 {
	if k >= NumKinds {
		panic("timers: invalid Kind " + k.String())
	}
	return 1 << k
}

// Arm sets k to fire at at, replacing any earlier deadline for k.
func (s *Set) Arm(k Kind, at Instant) {
	s.armed |= bit(k)
	s.at[k] = at
}

// Stop disarms k; stopping an unarmed kind is a no-op.
func (s *Set) Stop(k Kind) { s.armed &^= bit(k) }

// Armed reports whether k is armed.
func (s *Set) Armed(k Kind) bool { return s.armed&bit(k) != 0 }

// At returns k's deadline and whether k is armed.
func (s *Set) At(k Kind) (Instant, bool) {
	if !s.Armed(k) {
		return 0, false
	}
	return s.at[k], true
}

// Any reports whether any kind is armed.
func (s *Set) Any() bool { return s.armed != 0 }

// Earliest returns the earliest deadline over the armed kinds, or false if
// none is armed. This is what the driver puts in its Queue for the
// connection.
func (s *Set) Earliest() (Instant, bool) {
	_, at, ok := s.earliest()
	return at, ok
}

// earliest returns the armed kind with the smallest deadline, the lowest Kind
// winning ties.
func (s *Set) earliest() (Kind, Instant, bool) {
	if s.armed == 0 {
		return 0, 0, false
	}
	best, found := Kind(0), false
	for k := Kind(0); k < NumKinds; k++ {
		if s.armed&(1<<k) != 0 && (!found || s.at[k] < s.at[best]) {
			best, found = k, true
		}
	}
	return best, s.at[best], true
}

// PopDue disarms and returns the armed kind with the earliest deadline if
// that deadline is at or before now. Kinds with equal deadlines come out in
// Kind order. Call it in a loop to handle every expired timer:
//
//	for k, ok := s.PopDue(now); ok; k, ok = s.PopDue(now) { ... }
//
// Handlers may re-arm kinds while looping; a kind re-armed at or before now
// is returned again, so handlers must arm in the future to avoid a loop.
func (s *Set) PopDue(now Instant) (Kind, bool) {
	k, at, ok := s.earliest()
	if !ok || at > now {
		return 0, false
	}
	s.armed &^= 1 << k
	return k, true
}

// Clear disarms every kind.
func (s *Set) Clear() { *s = Set{} }
