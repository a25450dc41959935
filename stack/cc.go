package stack

import (
	"math"
	"time"

	"utcp/timers"
)

// congestionControl is the part of congestion control that differs
// between algorithms: how the window grows outside recovery and how far it
// falls at a loss. Slow start, recovery and the RTO response are shared
// (RFC 5681, RFC 6582, RFC 6675).
type congestionControl interface {
	name() string
	// onAck grows cwnd for acked bytes outside recovery.
	onAck(t *tcb, acked uint32, now timers.Instant)
	// onLoss returns the new ssthresh at a congestion event.
	onLoss(t *tcb, now timers.Instant) uint32
}

func newCongestion(name string) congestionControl {
	if name == "reno" {
		return &reno{}
	}
	return &cubic{}
}

// slowStart grows cwnd by every byte an ACK newly acknowledges (RFC 3465
// byte counting with no per-ACK limit, as Linux's tcp_slow_start counts
// every packet acked), up to ssthresh, and returns the bytes left over
// once ssthresh is reached. RFC 3465 §2.2 caps the growth at L = 2 SMSS
// per ACK, which assumes an ACK every second segment. Receivers that
// acknowledge a batch at a time (utcp's own, one ACK per read batch;
// Linux behind GRO; gVisor) send stretch ACKs covering many segments, and
// with L = 2 slow start grew by two segments per batch instead of
// doubling each round trip: in the transfer matrix at 10 ms delay utcp
// reached 18 MB/s where it now reaches 32, and in the gVisor matrix utcp
// sent at half gVisor's rate in every row without loss.
func slowStart(t *tcb, acked uint32) uint32 {
	inc := acked
	if t.cwnd+inc > t.ssthresh {
		inc = max(t.ssthresh, t.cwnd) - t.cwnd
	}
	t.cwnd += inc
	if acked > inc {
		return acked - inc
	}
	return 0
}

// reno is RFC 5681: one segment per round trip in congestion avoidance,
// half the flight at a loss.
type reno struct {
	acc uint32 // bytes acked toward the next increase
}

func (r *reno) name() string { return "reno" }

func (r *reno) onAck(t *tcb, acked uint32, now timers.Instant) {
	if t.cwnd < t.ssthresh {
		acked = slowStart(t, acked)
		if acked == 0 {
			return
		}
	}
	// RFC 5681 §3.1 with byte counting: add one SMSS per cwnd acked.
	r.acc += acked
	if r.acc >= t.cwnd {
		r.acc -= t.cwnd
		t.cwnd += uint32(t.mss)
	}
}

func (r *reno) onLoss(t *tcb, now timers.Instant) uint32 {
	r.acc = 0
	flight := uint32(t.sndMax.Sub(t.sndUna))
	return max(flight/2, uint32(2*t.mss))
}

// cubic is RFC 9438, Linux's default: the window follows a cubic curve of
// the time since the last loss, centred on the window where that loss
// happened, and never grows slower than Reno would.
type cubic struct {
	wMax       float64 // segments, window before the last reduction
	k          float64 // seconds to climb back to wMax
	epochStart timers.Instant
	hasEpoch   bool
	wEst       float64 // Reno-friendly estimate, segments
	cwndAcc    float64 // fractional segments acked
}

const (
	cubicC    = 0.4 // RFC 9438 §4.1
	cubicBeta = 0.7 // RFC 9438 §4.6
)

func (c *cubic) name() string { return "cubic" }

func (c *cubic) onAck(t *tcb, acked uint32, now timers.Instant) {
	if t.cwnd < t.ssthresh {
		acked = slowStart(t, acked)
		if acked == 0 {
			return
		}
	}
	mss := float64(t.mss)
	cwnd := float64(t.cwnd) / mss
	if !c.hasEpoch {
		// RFC 9438 §4.2: a new congestion-avoidance epoch.
		c.hasEpoch = true
		c.epochStart = now
		if cwnd < c.wMax {
			c.k = math.Cbrt((c.wMax - cwnd) / cubicC)
		} else {
			c.k = 0
			c.wMax = cwnd
		}
		c.wEst = cwnd
	}
	rtt := t.rto.SRTT()
	if rtt <= 0 {
		rtt = 100 * time.Millisecond
	}
	el := now.Sub(c.epochStart) + rtt
	tt := el.Seconds() - c.k
	target := cubicC*tt*tt*tt + c.wMax
	// §4.3: the Reno-friendly region.
	alpha := 3 * (1 - cubicBeta) / (1 + cubicBeta)
	segs := float64(acked) / mss
	c.wEst += alpha * segs / cwnd
	if target < c.wEst {
		target = c.wEst
	}
	// §4.4/4.5: move toward the target, at most 50% per round trip.
	target = math.Min(target, 1.5*cwnd)
	if target > cwnd {
		c.cwndAcc += (target - cwnd) / cwnd * segs
	} else {
		c.cwndAcc += segs / (100 * cwnd) // very slow probe at the plateau
	}
	if c.cwndAcc >= 1 {
		inc := math.Floor(c.cwndAcc)
		c.cwndAcc -= inc
		t.cwnd += uint32(inc) * uint32(t.mss)
	}
}

func (c *cubic) onLoss(t *tcb, now timers.Instant) uint32 {
	mss := float64(t.mss)
	cwnd := float64(t.cwnd) / mss
	// §4.7 fast convergence: release bandwidth to newer flows.
	if cwnd < c.wMax {
		c.wMax = cwnd * (1 + cubicBeta) / 2
	} else {
		c.wMax = cwnd
	}
	c.hasEpoch = false
	c.cwndAcc = 0
	flight := float64(t.sndMax.Sub(t.sndUna)) / mss
	ss := math.Max(math.Min(cwnd, math.Max(flight, 1))*cubicBeta, 2)
	return uint32(ss * mss)
}
