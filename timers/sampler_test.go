package timers

import (
	"testing"
	"time"
)

func TestRTTSampler(t *testing.T) {
	type op struct {
		kind    string // "start", "rexmit", "ack"
		seq     uint32
		at      time.Duration
		wantRTT time.Duration
		wantOK  bool
	}
	tests := []struct {
		name string
		ops  []op
	}{
		{"ack covering seq gives a sample", []op{
			{kind: "start", seq: 1000, at: 0},
			{kind: "ack", seq: 1001, at: 80 * ms, wantRTT: 80 * ms, wantOK: true},
		}},
		{"ack equal to seq does not cover it; later ack does", []op{
			{kind: "start", seq: 1000, at: 0},
			{kind: "ack", seq: 1000, at: 50 * ms},
			{kind: "ack", seq: 999, at: 60 * ms},
			{kind: "ack", seq: 1500, at: 90 * ms, wantRTT: 90 * ms, wantOK: true},
		}},
		{"one sample per measurement", []op{
			{kind: "start", seq: 1000, at: 0},
			{kind: "ack", seq: 2000, at: 10 * ms, wantRTT: 10 * ms, wantOK: true},
			{kind: "ack", seq: 3000, at: 20 * ms},
		}},
		// RFC 6298 §3 (Karn): an ACK for a retransmitted segment is ambiguous.
		{"Karn: retransmitted segment gives no sample", []op{
			{kind: "start", seq: 1000, at: 0},
			{kind: "rexmit"},
			{kind: "ack", seq: 2000, at: 1200 * ms},
		}},
		{"Karn: new segment after retransmission is timed afresh", []op{
			{kind: "start", seq: 1000, at: 0},
			{kind: "rexmit"},
			{kind: "start", seq: 2000, at: 1000 * ms},
			{kind: "ack", seq: 2000, at: 1100 * ms},
			{kind: "ack", seq: 3000, at: 1150 * ms, wantRTT: 150 * ms, wantOK: true},
		}},
		{"start while pending keeps the oldest measurement", []op{
			{kind: "start", seq: 1000, at: 0},
			{kind: "start", seq: 2000, at: 30 * ms},
			{kind: "ack", seq: 1001, at: 100 * ms, wantRTT: 100 * ms, wantOK: true},
		}},
		{"sequence wrap: ack past 2^32 covers seq", []op{
			{kind: "start", seq: 0xFFFFFFF0, at: 0},
			{kind: "ack", seq: 0xFFFFFFF0, at: 5 * ms},
			{kind: "ack", seq: 0x10, at: 30 * ms, wantRTT: 30 * ms, wantOK: true},
		}},
		{"sequence wrap: ack just before seq across zero does not cover", []op{
			{kind: "start", seq: 0x10, at: 0},
			{kind: "ack", seq: 0xFFFFFFF0, at: 5 * ms},
			// More than 2^31 ahead counts as behind (RFC 9293 §3.4 comparisons).
			{kind: "ack", seq: 0x10 + 0x80000000, at: 6 * ms},
			{kind: "ack", seq: 0x11, at: 7 * ms, wantRTT: 7 * ms, wantOK: true},
		}},
		{"ack without start", []op{
			{kind: "ack", seq: 5, at: 5 * ms},
		}},
		{"clock handed in backwards gives no sample", []op{
			{kind: "start", seq: 1, at: 100 * ms},
			{kind: "ack", seq: 2, at: 50 * ms},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s RTTSampler
			for i, o := range tc.ops {
				switch o.kind {
				case "start":
					s.Start(o.seq, Instant(o.at))
					if !s.Pending() {
						t.Fatalf("op %d: not pending after Start", i)
					}
				case "rexmit":
					s.Retransmitted()
					if s.Pending() {
						t.Fatalf("op %d: pending after Retransmitted", i)
					}
				case "ack":
					rtt, ok := s.Ack(o.seq, Instant(o.at))
					if rtt != o.wantRTT || ok != o.wantOK {
						t.Fatalf("op %d: Ack(%#x, %v) = %v, %v; want %v, %v", i, o.seq, o.at, rtt, ok, o.wantRTT, o.wantOK)
					}
				}
			}
		})
	}
}

func TestRTTSamplerSeq(t *testing.T) {
	var s RTTSampler
	s.Start(77, 0)
	s.Start(99, 1)
	if s.Seq() != 77 {
		t.Fatalf("Seq() = %d, want 77", s.Seq())
	}
}

// TestKarnWithRTO wires the sampler to the estimator the way a TCB would:
// the timeout backs off, the ACK of the retransmitted segment yields no
// sample, so the backed-off RTO stands until an unambiguous sample arrives.
func TestKarnWithRTO(t *testing.T) {
	r := NewRTO(DefaultRTOConfig())
	var s RTTSampler

	s.Start(1000, 0)
	if rtt, ok := s.Ack(1100, Instant(100*ms)); ok {
		r.Sample(rtt)
	}
	if r.Current() != 300*ms {
		t.Fatalf("after first sample: %v", r.Current())
	}

	s.Start(1100, Instant(200*ms))
	// Timer expires: retransmit, back off, and invalidate the sample.
	r.Backoff()
	s.Retransmitted()
	if rtt, ok := s.Ack(1200, Instant(900*ms)); ok {
		t.Fatalf("Karn violated: sample %v from retransmitted segment", rtt)
	}
	if r.Current() != 600*ms {
		t.Fatalf("backed-off RTO must stand without a sample: %v", r.Current())
	}

	s.Start(1200, Instant(1000*ms))
	if rtt, ok := s.Ack(1300, Instant(1100*ms)); ok {
		r.Sample(rtt)
	} else {
		t.Fatal("fresh segment gave no sample")
	}
	if r.Backoffs() != 0 {
		t.Fatalf("backoff not cleared by a valid sample")
	}
}
