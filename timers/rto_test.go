package timers

import (
	"math"
	"testing"
	"time"
)

const ms = time.Millisecond

// TestRTOSamples checks the estimator against hand-computed RFC 6298 values.
// Each step feeds one sample and states the expected SRTT, RTTVAR and RTO.
func TestRTOSamples(t *testing.T) {
	type step struct {
		rtt               time.Duration
		srtt, rttvar, rto time.Duration
	}
	tests := []struct {
		name  string
		cfg   RTOConfig
		steps []step
	}{
		{
			// §2.2: SRTT = R, RTTVAR = R/2, RTO = SRTT + max(G, K*RTTVAR).
			name:  "§2.2 first sample",
			cfg:   DefaultRTOConfig(),
			steps: []step{{100 * ms, 100 * ms, 50 * ms, 300 * ms}},
		},
		{
			// §2.3: RTTVAR = 3/4*50 + 1/4*|100-200| = 62.5;
			// SRTT = 7/8*100 + 1/8*200 = 112.5; RTO = 112.5 + 4*62.5.
			// Updating SRTT first would give RTTVAR 59.375 instead.
			name: "§2.3 subsequent samples, RTTVAR uses the old SRTT",
			cfg:  DefaultRTOConfig(),
			steps: []step{
				{100 * ms, 100 * ms, 50 * ms, 300 * ms},
				{200 * ms, 112500 * time.Microsecond, 62500 * time.Microsecond, 362500 * time.Microsecond},
				// |112.5-50| = 62.5 so RTTVAR stays 62.5; SRTT = 98.4375 + 6.25.
				{50 * ms, 104687500, 62500 * time.Microsecond, 354687500},
			},
		},
		{
			// §2.2 with the max(G, ...) term winning: RTTVAR = 0 so RTO = SRTT + G.
			// A 1 ns floor lets G show through.
			name:  "§2.2 clock granularity G = 1ms",
			cfg:   RTOConfig{Min: time.Nanosecond},
			steps: []step{{0, 0, 0, 1 * ms}, {0, 0, 0, 1 * ms}},
		},
		{
			// 40 + 4*20 = 120 ms, raised to Linux's 200 ms floor
			// (RFC 6298 §2.4 would say 1 s).
			name:  "§2.4 floor (Linux 200ms)",
			cfg:   DefaultRTOConfig(),
			steps: []step{{40 * ms, 40 * ms, 20 * ms, 200 * ms}},
		},
		{
			name:  "§2.4 floor, strict RFC 1s",
			cfg:   RTOConfig{Min: time.Second},
			steps: []step{{100 * ms, 100 * ms, 50 * ms, time.Second}},
		},
		{
			// 100 + 4*50 = 300 s, capped at 120 s (§2.5, Linux TCP_RTO_MAX).
			name:  "§2.5 ceiling 120s",
			cfg:   DefaultRTOConfig(),
			steps: []step{{100 * time.Second, 100 * time.Second, 50 * time.Second, 120 * time.Second}},
		},
		{
			name: "negative sample ignored",
			cfg:  DefaultRTOConfig(),
			steps: []step{
				{100 * ms, 100 * ms, 50 * ms, 300 * ms},
				{-5 * ms, 100 * ms, 50 * ms, 300 * ms},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRTO(tc.cfg)
			for i, s := range tc.steps {
				r.Sample(s.rtt)
				if !r.HasSample() || r.SRTT() != s.srtt || r.RTTVar() != s.rttvar || r.Current() != s.rto {
					t.Fatalf("step %d: Sample(%v): srtt %v rttvar %v rto %v sampled %v; want %v %v %v",
						i, s.rtt, r.SRTT(), r.RTTVar(), r.Current(), r.HasSample(), s.srtt, s.rttvar, s.rto)
				}
			}
		})
	}
}

// TestRTOInitial: §2.1, before any sample the RTO is 1 s.
func TestRTOInitial(t *testing.T) {
	tests := []struct {
		name string
		r    RTO
		want time.Duration
	}{
		{"default config", NewRTO(DefaultRTOConfig()), time.Second},
		{"zero RTO uses defaults", RTO{}, time.Second},
		{"zero config uses defaults", NewRTO(RTOConfig{}), time.Second},
		{"initial below floor is clamped", NewRTO(RTOConfig{Initial: 50 * ms}), 200 * ms},
		{"initial above ceiling is clamped", NewRTO(RTOConfig{Initial: time.Hour}), 120 * time.Second},
		{"custom initial", NewRTO(RTOConfig{Initial: 3 * time.Second}), 3 * time.Second},
	}
	for _, tc := range tests {
		if tc.r.HasSample() || tc.r.SRTT() != 0 || tc.r.RTTVar() != 0 {
			t.Errorf("%s: fresh estimator reports a sample", tc.name)
		}
		if got := tc.r.Current(); got != tc.want {
			t.Errorf("%s: Current() = %v, want %v", tc.name, got, tc.want)
		}
	}
	if got, want := (&RTO{}).Config(), DefaultRTOConfig(); got != want {
		t.Errorf("zero RTO Config() = %+v, want %+v", got, want)
	}
}

// TestRTOBackoff: §5.5, each expiry doubles the RTO, bounded by the maximum
// (§2.5); the clamp to [Min, Max] applies before doubling.
func TestRTOBackoff(t *testing.T) {
	tests := []struct {
		name     string
		sample   time.Duration // 0: no sample
		backoffs int
		want     time.Duration
	}{
		{"initial x1", 0, 0, time.Second},
		{"initial x2", 0, 1, 2 * time.Second},
		{"initial x4", 0, 2, 4 * time.Second},
		{"initial x64", 0, 6, 64 * time.Second},
		{"initial x128 capped", 0, 7, 120 * time.Second},
		{"many backoffs capped", 0, 1000, 120 * time.Second},
		{"sampled 300ms x2", 100 * ms, 1, 600 * ms},
		// 40ms sample: base 120 ms -> floor 200 ms -> doubled 400 ms, not 240.
		{"floor before doubling", 40 * ms, 1, 400 * ms},
		{"sampled x2^9 capped", 100 * ms, 9, 120 * time.Second},
	}
	for _, tc := range tests {
		r := NewRTO(DefaultRTOConfig())
		if tc.sample != 0 {
			r.Sample(tc.sample)
		}
		for range tc.backoffs {
			r.Backoff()
		}
		if got := r.Current(); got != tc.want {
			t.Errorf("%s: Current() = %v, want %v", tc.name, got, tc.want)
		}
		if got := r.Backoffs(); got != tc.backoffs {
			t.Errorf("%s: Backoffs() = %d, want %d", tc.name, got, tc.backoffs)
		}
	}
}

func TestRTOBackoffSaturates(t *testing.T) {
	r := NewRTO(DefaultRTOConfig())
	r.backoffs = maxBackoffs - 1
	r.Backoff()
	r.Backoff()
	if r.Backoffs() != maxBackoffs {
		t.Fatalf("Backoffs() = %d, want saturation at %d", r.Backoffs(), maxBackoffs)
	}
	if r.Current() != DefaultMaxRTO {
		t.Fatalf("Current() = %v at saturation", r.Current())
	}
}

// TestRTOSampleResetsBackoff: a fresh sample recomputes the RTO from SRTT and
// RTTVAR and drops the backed-off value (RFC 6298 §5.7; Linux resets
// icsk_backoff only on a valid RTT measurement).
func TestRTOSampleResetsBackoff(t *testing.T) {
	r := NewRTO(DefaultRTOConfig())
	r.Sample(100 * ms)
	r.Backoff()
	r.Backoff()
	r.Backoff()
	if r.Current() != 2400*ms {
		t.Fatalf("after 3 backoffs: %v", r.Current())
	}
	r.Sample(100 * ms)
	// RTTVAR = 3/4*50 + 0 = 37.5ms, SRTT = 100ms, RTO = 250ms.
	if r.Backoffs() != 0 || r.Current() != 250*ms {
		t.Fatalf("after new sample: backoffs %d rto %v, want 0 250ms", r.Backoffs(), r.Current())
	}

	r.Backoff()
	r.ResetBackoff()
	if r.Backoffs() != 0 || r.Current() != 250*ms || r.SRTT() != 100*ms {
		t.Fatalf("ResetBackoff: backoffs %d rto %v srtt %v", r.Backoffs(), r.Current(), r.SRTT())
	}
}

// TestRTOSYNTimedOut: RFC 6298 §5.7, after a SYN timeout with no sample the
// RTO for data is re-initialized to 3 s.
func TestRTOSYNTimedOut(t *testing.T) {
	r := NewRTO(DefaultRTOConfig())
	r.Backoff() // SYN timed out once
	r.SYNTimedOut()
	if r.Backoffs() != 0 || r.Current() != 3*time.Second {
		t.Fatalf("after SYN timeout: backoffs %d rto %v, want 0 3s", r.Backoffs(), r.Current())
	}
	r.Backoff()
	if r.Current() != 6*time.Second {
		t.Fatalf("fallback backoff: %v, want 6s", r.Current())
	}
	r.Sample(100 * ms)
	if r.Current() != 300*ms {
		t.Fatalf("a sample must override the fallback: %v", r.Current())
	}

	s := NewRTO(DefaultRTOConfig())
	s.Sample(100 * ms) // e.g. from a timestamp echo
	s.SYNTimedOut()
	if s.Current() != 300*ms {
		t.Fatalf("with a sample the fallback must not apply: %v", s.Current())
	}
}

func TestRTOHugeSampleNoOverflow(t *testing.T) {
	r := NewRTO(DefaultRTOConfig())
	r.Sample(math.MaxInt64)
	r.Sample(math.MaxInt64)
	r.Sample(0)
	if r.SRTT() <= 0 || r.RTTVar() < 0 || r.Current() != DefaultMaxRTO {
		t.Fatalf("srtt %v rttvar %v rto %v", r.SRTT(), r.RTTVar(), r.Current())
	}
}

func TestNewRTOInvalid(t *testing.T) {
	for _, cfg := range []RTOConfig{
		{Min: 2 * time.Second, Max: time.Second},
		{Initial: -1},
		{Min: -1},
		{Max: -1},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewRTO(%+v) did not panic", cfg)
				}
			}()
			NewRTO(cfg)
		}()
	}
}

// TestRTOBounds: whatever the samples and backoffs, Current stays in [Min, Max].
func TestRTOBounds(t *testing.T) {
	r := NewRTO(DefaultRTOConfig())
	rtts := []time.Duration{0, 1, ms, 150 * ms, time.Second, time.Hour, 0, 3 * ms}
	for i := range 200 {
		if i%3 == 0 {
			r.Backoff()
		} else {
			r.Sample(rtts[i%len(rtts)])
		}
		if c := r.Current(); c < DefaultMinRTO || c > DefaultMaxRTO {
			t.Fatalf("step %d: Current() = %v out of bounds", i, c)
		}
	}
}
