package timers

import "time"

// RTTSampler times one segment at a time and applies Karn's rule
// (RFC 6298 §3): a round trip is measured only from a segment that was sent
// exactly once, because an ACK for a retransmitted segment cannot say which
// transmission it answers.
//
// Usage, BSD style: when sending a segment whose first sequence number is seq
// and no measurement is pending, call Start(seq, now). While one is pending,
// further Start calls are ignored, so it is fine to call Start for every
// segment sent. When any retransmission happens (timeout or fast retransmit),
// call Retransmitted: the pending measurement may then be answered by the
// retransmission and must be discarded. On every ACK call Ack; it returns a
// sample only when the ACK covers seq, that is ack is after seq in sequence
// space (int32(ack-seq) > 0, wrap-safe per RFC 9293 §3.4), meaning at least
// the first byte of the timed segment arrived.
//
// The zero value is idle (nothing pending).
type RTTSampler struct {
	seq     uint32
	start   Instant
	pending bool
}

// Start begins timing the segment whose first sequence number is seq, sent
// at now, unless a measurement is already pending (then it is a no-op, so the
// sample keeps measuring the oldest untimed segment, as BSD's t_rtseq does).
func (s *RTTSampler) Start(seq uint32, now Instant) {
	if s.pending {
		return
	}
	s.seq, s.start, s.pending = seq, now, true
}

// Retransmitted invalidates the pending measurement (Karn's rule, RFC 6298
// §3). The next Start begins a fresh one.
func (s *RTTSampler) Retransmitted() { s.pending = false }

// Ack reports the round-trip time if ack covers the timed sequence number
// and the measurement is still valid; the measurement then ends. An ACK that
// does not yet cover seq leaves it pending. A negative elapsed time (a clock
// handed in out of order) yields no sample.
func (s *RTTSampler) Ack(ack uint32, now Instant) (rtt time.Duration, ok bool) {
	if !s.pending || int32(ack-s.seq) <= 0 {
		return 0, false
	}
	s.pending = false
	rtt = now.Sub(s.start)
	if rtt < 0 {
		return 0, false
	}
	return rtt, true
}

// Pending reports whether a measurement is in progress.
func (s *RTTSampler) Pending() bool { return s.pending }

// Seq returns the sequence number being timed; meaningful only when Pending.
func (s *RTTSampler) Seq() uint32 { return s.seq }
