package stack

import (
	"time"

	"utcp/seg"
	"utcp/timers"
)

// initialWindow is RFC 6928's ten segments.
const initialWindow = 10

// initCongestion starts a connection's congestion state: IW10, an
// unbounded ssthresh, and recover at the ISS (RFC 6582 §3.2 step 1).
func (t *tcb) initCongestion() {
	t.cwnd = uint32(initialWindow * t.mss)
	t.ssthresh = 1 << 30
	t.recover = t.iss
	t.cc = newCongestion(t.s.cfg.Congestion)
}

// ackCongestion reacts to an ACK that advanced SND.UNA by acked bytes.
func (t *tcb) ackCongestion(acked uint32, ack seg.Seq) {
	mss := uint32(t.mss)
	if t.rtoRecovery && ack.GreaterEq(t.recover) {
		t.rtoRecovery = false
	}
	if t.inRecovery {
		if ack.GreaterEq(t.recover) {
			// Full acknowledgment: leave recovery at ssthresh (RFC
			// 6582 §3.2 step 3; RFC 6675 §5).
			flight := uint32(t.sndMax.Sub(t.sndUna))
			t.cwnd = min(t.ssthresh, max(flight, mss)+mss)
			if t.sackOK {
				t.cwnd = max(t.ssthresh, 2*mss)
			}
			t.inRecovery = false
			t.dupAcks = 0
			return
		}
		if !t.sackOK {
			// NewReno partial acknowledgment (RFC 6582 §3.2 step 4):
			// resend the next hole, deflate by what was acked, add back
			// one segment.
			t.retransmitHead()
			if acked >= t.cwnd {
				t.cwnd = mss
			} else {
				t.cwnd -= acked
			}
			t.cwnd += mss
		}
		return
	}
	t.dupAcks = 0
	t.cc.onAck(t, acked, t.s.now())
	t.cwnd = min(t.cwnd, 1<<30)
}

// dupAck counts a duplicate ACK (RFC 5681 §2; with SACK, an ACK that SACKs
// new data, RFC 6675 §2) and enters loss recovery on the third, or as soon
// as the scoreboard says SND.UNA is lost (RFC 6675 §5 IsLost).
func (t *tcb) dupAck() {
	t.dupAcks++
	mss := uint32(t.mss)
	if t.inRecovery {
		if !t.sackOK {
			t.cwnd += mss // RFC 5681 §3.2 step 4: inflate
		}
		return
	}
	// Early retransmit (RFC 5827 §3.2): with fewer than four segments
	// outstanding and nothing new that may be sent, three duplicates can
	// never come, so fewer suffice. With SACK, count SACKed segments.
	dupThresh := 3
	flight := int(t.sndMax.Sub(t.sndUna))
	unsent := t.snd.Len() - int(t.sndMax.Sub(t.sndStart))
	if segs := (flight + t.mss - 1) / t.mss; segs < 4 &&
		(unsent <= 0 || int(min(t.sndWnd, t.cwnd))-flight < t.mss) {
		dupThresh = max(segs-1, 1)
	}
	sackedSegs := (int(t.sb.sacked) + t.mss - 1) / t.mss
	trigger := t.dupAcks >= dupThresh || (t.sackOK && (t.sb.isLost(t.sndUna, t.mss) || sackedSegs >= dupThresh))
	// RFC 6582 §3.2 step 1: not again for losses from before the last
	// recovery or timeout. With SACK the scoreboard removes NewReno's
	// ambiguity, so a loss among what a timeout is resending is repaired
	// by SACK recovery too (as Linux does in its Loss state) instead of
	// waiting for another, backed-off, timeout.
	// (recover is one past the highest byte sent then, so "covers more
	// than recover" of the RFC is SND.UNA >= recover here.)
	if !trigger || (t.sndUna.LessThan(t.recover) && !(t.sackOK && t.rtoRecovery)) {
		return
	}
	t.enterRecovery()
}

// enterRecovery starts fast recovery: SACK-based (RFC 6675 §5) or
// NewReno (RFC 6582 §3.2 step 2), retransmitting SND.UNA at once.
func (t *tcb) enterRecovery() {
	mss := uint32(t.mss)
	s := t.s
	if !t.rtoRecovery {
		t.ssthresh = t.cc.onLoss(t, s.now())
	}
	t.rtoRecovery = false
	t.recover = t.sndMax
	t.inRecovery = true
	s.ctr.TCPFastRetrans++
	if t.sackOK {
		s.ctr.TCPSackRecovery++
		t.cwnd = t.ssthresh
		t.sb.highRxt = t.sndUna
		t.retransmitHead()
	} else {
		s.ctr.TCPRenoRecovery++
		t.retransmitHead()
		t.cwnd = t.ssthresh + 3*mss
	}
	if t.tlpPending {
		// The timer was armed as a loss probe; in recovery it is the
		// RTO again (tlpEligible is false now).
		t.armRetransmit()
	}
}

// probeRevealsLoss applies RACK's time-order rule (RFC 8985 §6.2) to the
// ACK of a tail-loss probe. Everything still unacknowledged and unSACKed
// below the probe was sent at least a PTO (about two round trips) before
// it, so once the probe is SACKed that data has had its round trip and
// more than RACK's reordering window: it is lost. Without this, a probe
// after the loss of a flight's whole tail (common when the kernel's GRO
// merged a batch into one skb that was then dropped) SACKs one segment,
// which is below RFC 6675's DupThresh, and the connection waited for the
// RTO (in utcp lab with nftables dropping 3 % of the kernel's input skbs,
// 54 timeouts in one 20 MB download before this; docs/LABS.md, lab 7).
func (t *tcb) probeRevealsLoss(ack seg.Seq) bool {
	if !t.tlpOutstanding || t.inRecovery || t.rtoRecovery || !t.tlpStart.LessThan(t.tlpEnd) || !ack.LessThan(t.tlpStart) {
		return false
	}
	end, in := t.sb.sackedAt(t.tlpStart)
	if !in || end.LessThan(t.tlpEnd) {
		return false
	}
	t.sb.markLostBelow(t.tlpStart)
	t.tlpEnd = t.tlpStart // once per probe
	return true
}

// retransmitHead resends the first unacknowledged segment.
func (t *tcb) retransmitHead() {
	off := int(t.sndUna.Sub(t.sndStart))
	remain := t.snd.Len() - off
	if remain < 0 {
		return
	}
	n := min(remain, t.mss)
	if t.sackOK {
		if next, ok := t.sb.nextStart(t.sndUna); ok {
			n = min(n, int(next.Sub(t.sndUna)))
		}
	}
	fin := t.finQueued && n == remain && t.sndMax.GreaterThan(t.sndStart.Add(uint32(t.snd.Len())))
	if n == 0 && !fin {
		return
	}
	t.sendDataAt(t.sndUna, n, fin)
}

// armRetransmit arms the retransmission timer, as a tail-loss probe timer
// when RFC 8985 §7.2 allows: a loss at the tail of a flight draws no
// duplicate ACKs, so rather than wait a whole RTO, probe after about two
// round trips and let the probe's ACK (with SACK) start fast recovery.
func (t *tcb) armRetransmit() {
	rto := t.rto.Current()
	t.tlpPending = false
	if t.tlpEligible() {
		pto := 2 * t.rto.SRTT()
		if int(t.sndMax.Sub(t.sndUna)) <= t.mss {
			pto += 200 * time.Millisecond // the peer may delay its ACK of a lone segment
		}
		pto = max(pto, 2*time.Millisecond) // Linux: TCP_TIMEOUT_MIN, two jiffies
		if pto < rto {
			t.tlpPending = true
			t.arm(timers.Retransmit, pto)
			return
		}
	}
	t.arm(timers.Retransmit, rto)
}

// probeTimerRevealsLoss stands in for RACK's reordering timer (RFC 8985
// §6.3) when the probe timer fires. §7.2 schedules no probe while the
// scoreboard holds SACKed data, because RACK marks the holes below it lost
// a reordering window after the SACK arrived; utcp keeps no transmit time
// per segment for that timer, so the probe timer, which fires about two
// round trips after the last new data or cumulative ACK, takes its place.
// The holes were sent no later than the highest SACKed data, and the SACK
// came back more than a quarter of SRTT (RACK's reordering window) ago: by
// §6.2 they are lost. Probing instead would resend the last segment,
// already SACKed, which tells the sender nothing, and the RTO would follow
// (seen when the kernel's GRO merged a batch into one skb that was dropped
// and the flight's last segment, written alone, got through).
func (t *tcb) probeTimerRevealsLoss() bool {
	n := len(t.sb.r)
	if n == 0 || !t.sackOK || t.inRecovery || t.rtoRecovery {
		return false
	}
	if t.s.now().Sub(t.lastSackAt) < t.rto.SRTT()/4 {
		return false
	}
	t.sb.markLostBelow(t.sb.r[n-1].start)
	return true
}

// sendLossProbe sends the tail-loss probe (RFC 8985 §7.3): a new segment
// if the windows allow one, else the last segment again. Then the RTO
// takes over.
func (t *tcb) sendLossProbe() {
	s := t.s
	t.tlpPending = false
	t.tlpOutstanding = true
	s.ctr.TCPLossProbes++
	dataEnd := t.sndStart.Add(uint32(t.snd.Len()))
	finSent := t.finQueued && t.sndMax.GreaterThan(dataEnd)
	unsent := int(dataEnd.Sub(t.sndNxt))
	inflight := int(t.sndNxt.Sub(t.sndUna))
	switch {
	case unsent > 0 && int(t.sndWnd)-inflight > 0:
		n := min(unsent, t.mss, int(t.sndWnd)-inflight)
		n, fin := t.sendDataAt(t.sndNxt, n, t.finQueued && n == unsent)
		t.tlpStart, t.tlpEnd = t.sndNxt, t.sndNxt.Add(uint32(n))
		t.sndNxt = t.sndNxt.Add(uint32(n))
		if fin {
			t.sndNxt = t.sndNxt.Add(1)
		}
		if t.sndNxt.GreaterThan(t.sndMax) {
			t.sndMax = t.sndNxt
		}
	case finSent:
		t.sendDataAt(dataEnd, 0, true)
		t.tlpStart, t.tlpEnd = dataEnd, dataEnd // SACK cannot cover a FIN
	default:
		n := min(t.mss, int(t.sndMax.Sub(t.sndUna)))
		start := t.sndMax - seg.Seq(n)
		t.sendDataAt(start, n, false)
		t.tlpStart, t.tlpEnd = start, t.sndMax
		if _, in := t.sb.sackedAt(start); in {
			// Already SACKed: its SACK tells nothing about the probe.
			t.tlpEnd = start
		}
	}
	t.arm(timers.Retransmit, t.rto.Current())
}

// checkLostRetransmit detects that the retransmission of SND.UNA in
// recovery was itself lost: data sent after it has been SACKed while
// SND.UNA has not moved (the time-order rule of RACK, RFC 8985 §6.2, for
// the one segment that matters most). It is resent at once instead of
// waiting for the RTO; Linux counts TCPLostRetransmit.
func (t *tcb) checkLostRetransmit(ack seg.Seq) {
	if !t.rxtWatch || !t.inRecovery {
		return
	}
	if ack.GreaterThan(t.rxtUna) {
		t.rxtWatch = false
		return
	}
	if n := len(t.sb.r); n > 0 && t.sb.r[n-1].end.GreaterThan(t.rxtMark) {
		t.rxtWatch = false
		t.s.ctr.TCPLostRetransmit++
		t.retransmitHead()
	}
}

// tlpEligible reports whether a tail-loss probe may be armed: SACK on, an
// RTT measured, no recovery or timeout in progress and no probe
// outstanding, in any state with data or a FIN in flight (a bulk sender
// that has already closed its side, FIN_WAIT1 with data queued, needs it
// most).
func (t *tcb) tlpEligible() bool {
	return t.sackOK && t.rto.HasSample() && !t.inRecovery && !t.rtoRecovery && t.retries == 0 && !t.tlpOutstanding &&
		(t.state == Established || t.state == CloseWait || t.state == FinWait1 || t.state == Closing || t.state == LastAck)
}
