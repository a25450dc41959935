package timers

import (
	"math"
	"time"
)

// RFC 6298 §2 constants.
const (
	// Granularity is G, the clock granularity the RTO formula adds at least
	// (RFC 6298 §2.2/§2.3: RTO = SRTT + max(G, K*RTTVAR)). Our Instants count
	// nanoseconds, but the timers that enforce the RTO do not fire that
	// precisely; a 1 ms G keeps RTO strictly above SRTT on a jitter-free path
	// where RTTVAR decays towards zero.
	Granularity = time.Millisecond

	// K is the RTTVAR multiplier of RFC 6298 §2.2.
	K = 4

	// alphaShift and betaShift encode alpha = 1/8 and beta = 1/4
	// (RFC 6298 §2.3) as right shifts.
	alphaShift = 3
	betaShift  = 2

	// maxSample bounds an RTT sample so that 8*SRTT and SRTT+4*RTTVAR can
	// never overflow int64 nanoseconds. It is about 36 years.
	maxSample = time.Duration(math.MaxInt64 >> alphaShift)

	// maxBackoffs is where the backoff counter saturates. It is far beyond any
	// retry limit a TCP would use, and far beyond 63 (after which the shift
	// in Current is already pinned at Max).
	maxBackoffs = math.MaxInt32
)

// RTOConfig bounds the retransmission timeout.
//
// A zero field means "use the default" (see DefaultRTOConfig), so
// RTOConfig{Min: time.Second} asks for RFC 6298's strict 1 s floor with the
// other defaults.
type RTOConfig struct {
	// Initial is the RTO before the first RTT sample (RFC 6298 §2.1: 1 s).
	Initial time.Duration
	// Min is the floor. RFC 6298 §2.4 says 1 s; Linux uses 200 ms
	// (TCP_RTO_MIN), which we follow so our retransmissions pace like the
	// kernel's.
	Min time.Duration
	// Max is the ceiling. RFC 6298 §2.5 allows a maximum of at least 60 s;
	// Linux uses 120 s (TCP_RTO_MAX).
	Max time.Duration
}

// Defaults returned by DefaultRTOConfig.
const (
	DefaultInitialRTO = time.Second            // RFC 6298 §2.1
	DefaultMinRTO     = 200 * time.Millisecond // Linux: TCP_RTO_MIN
	DefaultMaxRTO     = 120 * time.Second      // Linux: TCP_RTO_MAX
)

// FallbackRTO is the RTO used for data after a handshake whose SYN (or
// SYN-ACK) had to be retransmitted and which yielded no RTT sample
// (RFC 6298 §5.7: "re-initialized to 3 seconds"; Linux: TCP_TIMEOUT_FALLBACK).
const FallbackRTO = 3 * time.Second

// DefaultRTOConfig returns {Initial: 1s, Min: 200ms, Max: 120s}.
func DefaultRTOConfig() RTOConfig {
	return RTOConfig{Initial: DefaultInitialRTO, Min: DefaultMinRTO, Max: DefaultMaxRTO}
}

// withDefaults fills zero fields from DefaultRTOConfig.
func (c RTOConfig) withDefaults() RTOConfig {
	if c.Initial == 0 {
		c.Initial = DefaultInitialRTO
	}
	if c.Min == 0 {
		c.Min = DefaultMinRTO
	}
	if c.Max == 0 {
		c.Max = DefaultMaxRTO
	}
	return c
}

// RTO is the retransmission-timeout estimator of RFC 6298, with Linux's
// 200 ms floor and 120 s ceiling by default.
//
// It is a small value type meant to be embedded in a TCB. The zero RTO
// behaves like NewRTO(DefaultRTOConfig()).
//
// Karn's rule (RFC 6298 §3: no sample from a retransmitted segment) is the
// caller's job; RTTSampler helps with it.
type RTO struct {
	cfg      RTOConfig // as given to NewRTO; zero fields mean defaults
	srtt     time.Duration
	rttvar   time.Duration
	base     time.Duration // SRTT + max(G, K*RTTVAR), before clamping
	backoffs int
	sampled  bool
	fallback bool // SYNTimedOut was called before any sample
}

// NewRTO returns an estimator with no samples, whose Current is cfg.Initial
// (clamped to [Min, Max]). Zero fields of cfg take their defaults. It panics
// if a field is negative or Min > Max, which are programming errors.
func NewRTO(cfg RTOConfig) RTO {
	c := cfg.withDefaults()
	if c.Initial < 0 || c.Min < 0 || c.Max < 0 || c.Min > c.Max {
		panic("timers: invalid RTOConfig")
	}
	return RTO{cfg: c}
}

// Config returns the effective configuration (defaults filled in).
func (r *RTO) Config() RTOConfig { return r.cfg.withDefaults() }

// Sample feeds one round-trip-time measurement R into the estimator.
//
// The first sample sets SRTT = R and RTTVAR = R/2 (RFC 6298 §2.2). Later
// samples update RTTVAR = 3/4*RTTVAR + 1/4*|SRTT - R| and then
// SRTT = 7/8*SRTT + 1/8*R, in that order, since RTTVAR uses the old SRTT
// (§2.3). Either way RTO = SRTT + max(G, K*RTTVAR).
//
// A fresh sample also clears the backoff: RFC 6298 §5.7 notes that after
// backing off, the RTO is recomputed from new measurements, and Linux
// likewise resets icsk_backoff when an ACK brings a valid RTT.
//
// A negative R is meaningless (a caller or clock bug) and is ignored. A
// sample beyond ~36 years is clamped so the arithmetic cannot overflow.
func (r *RTO) Sample(rtt time.Duration) {
	if rtt < 0 {
		return
	}
	rtt = min(rtt, maxSample)
	if !r.sampled {
		// §2.2: first measurement.
		r.srtt = rtt
		r.rttvar = rtt / 2
		r.sampled = true
	} else {
		// §2.3: subsequent measurements; RTTVAR first, using the old SRTT.
		delta := r.srtt - rtt
		if delta < 0 {
			delta = -delta
		}
		r.rttvar = r.rttvar - r.rttvar>>betaShift + delta>>betaShift
		r.srtt = r.srtt - r.srtt>>alphaShift + rtt>>alphaShift
	}
	r.base = r.srtt + max(Granularity, K*r.rttvar)
	r.backoffs = 0
}

// Current returns the timeout to arm now: the base RTO (Initial before any
// sample, else SRTT + max(G, K*RTTVAR)) clamped to [Min, Max] (§2.4, §2.5),
// then multiplied by 2^Backoffs (§5.5) and clamped to Max again.
func (r *RTO) Current() time.Duration {
	c := r.cfg.withDefaults()
	base := c.Initial
	switch {
	case r.sampled:
		base = r.base
	case r.fallback:
		base = max(base, FallbackRTO)
	}
	base = min(max(base, c.Min), c.Max)
	n := r.backoffs
	// base<<n would exceed Max (or overflow): pin at Max. base > 0 here
	// unless Min is 0 and Initial is 0, in which case doubling stays 0.
	if n >= 63 || base > c.Max>>n {
		return c.Max
	}
	return base << n
}

// Backoff doubles the timeout after a retransmission timer expiry
// (RFC 6298 §5.5). The effective value is capped at Max; the counter keeps
// counting (so the caller can compare it with a retry limit) and saturates
// instead of overflowing.
func (r *RTO) Backoff() {
	if r.backoffs < maxBackoffs {
		r.backoffs++
	}
}

// SYNTimedOut applies RFC 6298 §5.7: call it when data transmission begins
// on a connection whose SYN or SYN-ACK timed out at least once. If no RTT
// sample has been taken (Karn's rule forbids one from the retransmitted SYN),
// the base RTO becomes max(Initial, FallbackRTO) until the first sample. The
// handshake's backoff is cleared either way, since the connection is now
// established and the next timeout is the first for its data.
func (r *RTO) SYNTimedOut() {
	if !r.sampled {
		r.fallback = true
	}
	r.backoffs = 0
}

// ResetBackoff forgets the backoff without touching SRTT/RTTVAR, e.g. when an
// ACK for new data arrives but Karn's rule forbids taking a sample from it.
func (r *RTO) ResetBackoff() { r.backoffs = 0 }

// Backoffs returns how many times Backoff was called since the last sample
// or reset.
func (r *RTO) Backoffs() int { return r.backoffs }

// SRTT returns the smoothed round-trip time, or 0 before the first sample.
func (r *RTO) SRTT() time.Duration { return r.srtt }

// RTTVar returns the round-trip-time variation, or 0 before the first sample.
func (r *RTO) RTTVar() time.Duration { return r.rttvar }

// HasSample reports whether at least one RTT sample has been taken.
func (r *RTO) HasSample() bool { return r.sampled }
