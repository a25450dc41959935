package stack

import (
	"syscall"
	"time"

	"utcp/seg"
	"utcp/timers"
)

// segmentArrives demultiplexes one validated segment: a connection by its
// 4-tuple, then a TIME_WAIT record, then a listener by port, else the
// CLOSED rules (RFC 9293 §3.10.7).
func (s *Stack) segmentArrives(sg *seg.Segment) {
	if sg.SrcPort == 0 || sg.DstPort == 0 {
		s.ctr.InErrs++
		return
	}
	key := connKey(sg.Src.As4(), sg.SrcPort, sg.DstPort)
	if t := s.conns[key]; t != nil {
		if t.state == SynSent {
			t.synSentArrives(sg)
		} else {
			t.arrives(sg)
		}
		return
	}
	var isnOverride seg.Seq
	var reopen bool
	if e, ok := s.tw[key]; ok {
		isnOverride, reopen = s.timeWaitArrives(key, e, sg)
		if !reopen {
			return
		}
	}
	if l := s.listeners[sg.DstPort]; l != nil {
		l.arrives(sg, key, isnOverride, reopen)
		return
	}
	s.closedArrives(sg)
}

// closedArrives answers a segment for which no connection exists (RFC 9293
// §3.10.7.1): an incoming RST is dropped; otherwise a RST is sent whose
// sequence makes it acceptable to the sender.
func (s *Stack) closedArrives(sg *seg.Segment) {
	if sg.Flags.Has(seg.RST) {
		return
	}
	s.replyRST(sg)
}

// replyRST sends the RST of RFC 9293 §3.10.7.1: <SEQ=SEG.ACK><CTL=RST> if
// the segment had an ACK, else <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
func (s *Stack) replyRST(sg *seg.Segment) {
	r := seg.Segment{Dst: sg.Src, SrcPort: sg.DstPort, DstPort: sg.SrcPort}
	if sg.Flags.Has(seg.ACK) {
		r.Seq = sg.Ack
		r.Flags = seg.RST
	} else {
		r.Ack = sg.Seq.Add(sg.Len())
		r.Flags = seg.RST | seg.ACK
	}
	s.emit(&r)
	s.ctr.OutRsts++
}

// takeSynOptions records what the peer's SYN offers (RFC 9293 §3.7.1 MSS,
// RFC 7323 window scale and timestamps). weOffered tells whether our own
// SYN offered window scaling and timestamps (always true for active opens).
func (t *tcb) takeSynOptions(sg *seg.Segment) {
	o := &sg.Opts
	if o.HasMSS {
		t.peerMSS = int(o.MSS)
	}
	t.wsOK = o.HasWScale
	if o.HasWScale {
		// RFC 7323 §2.3: a shift above 14 is treated as 14.
		t.sndShift = min(o.WScale, 14)
	} else {
		// Scaling is used only if both sides offered it (RFC 7323 §1.3).
		t.sndShift, t.rcvShift = 0, 0
	}
	t.sackOK = o.SACKPermitted && !t.s.cfg.NoSACK
	if o.HasTS {
		t.tsOK = true
		t.tsRecent = o.TSVal
	} else {
		t.tsOK = false
	}
	t.setMSS()
}

// setMSS derives the payload per segment: the peer's MSS, no larger than
// our MTU allows, never below 48 bytes (a floor against a peer that
// announces a tiny MSS to make us send one byte per segment), less the
// bytes our timestamp option takes.
func (t *tcb) setMSS() {
	m := min(t.peerMSS, t.s.mtu-40)
	m = max(m, 48)
	if t.tsOK {
		m -= 12
	}
	t.mss = m
}

// synSentArrives is RFC 9293 §3.10.7.3.
func (t *tcb) synSentArrives(sg *seg.Segment) {
	s := t.s
	f := sg.Flags
	// First: the ACK must acknowledge our SYN and nothing beyond.
	if f.Has(seg.ACK) && (sg.Ack.LessEq(t.iss) || sg.Ack.GreaterThan(t.sndMax)) {
		if !f.Has(seg.RST) {
			s.replyRST(sg)
		}
		return
	}
	// Second: a RST is acceptable only with an acceptable ACK (RFC 5961
	// §3.2 keeps this rule for SYN-SENT).
	if f.Has(seg.RST) {
		if f.Has(seg.ACK) {
			t.fail(syscall.ECONNREFUSED, "rcv RST", sg)
		}
		return
	}
	if !f.Has(seg.SYN) {
		return
	}
	// Fourth: the SYN.
	t.irs = sg.Seq
	t.rcvNxt = sg.Seq.Add(1)
	t.rcvAdv = t.rcvNxt
	t.takeSynOptions(sg)
	if f.Has(seg.ACK) {
		t.sndUna = sg.Ack
		// RFC 7323 §2.2: the window in a SYN is never scaled.
		t.sndWnd = uint32(sg.Window)
		t.maxSndWnd = t.sndWnd
		t.sndWl1, t.sndWl2 = sg.Seq, sg.Ack
		if t.retries == 0 {
			if rtt, ok := t.rtt.Ack(uint32(sg.Ack), s.now()); ok {
				t.rto.Sample(rtt)
			}
		} else {
			t.rto.ResetBackoff()
		}
		t.retries = 0
		t.stop(timers.Retransmit)
		t.initCongestion()
		t.established()
		t.setState(Established, "rcv SYN-ACK", sg)
		if len(sg.Payload) > 0 || f.Has(seg.FIN) {
			t.processText(sg)
		}
		t.sendAck()
		t.output()
		return
	}
	// Simultaneous open (RFC 9293 §3.5, Figure 8): both SYNs crossed.
	t.setState(SynReceived, "rcv SYN (simultaneous open)", sg)
	t.stop(timers.Retransmit)
	t.retries = 0
	t.sendSynAck()
	t.arm(timers.SynAck, t.rto.Current())
}

// acceptable is the segment acceptability test of RFC 9293 §3.10.7.4,
// first step, against the window we advertised.
func (t *tcb) acceptable(sg *seg.Segment) bool {
	wnd := t.rcvWndNow()
	n := sg.Len()
	switch {
	case n == 0 && wnd == 0:
		return sg.Seq == t.rcvNxt
	case n == 0:
		return sg.Seq.InWindow(t.rcvNxt, wnd)
	case wnd == 0:
		// "special allowance should be made to accept valid ACKs, URGs,
		// and RSTs": the text is trimmed away later.
		return sg.Seq == t.rcvNxt
	default:
		return sg.Seq.InWindow(t.rcvNxt, wnd) || sg.Seq.Add(n-1).InWindow(t.rcvNxt, wnd)
	}
}

// rcvWndNow is RCV.WND as the peer sees it: the advertised right edge less
// RCV.NXT.
func (t *tcb) rcvWndNow() uint32 {
	d := t.rcvAdv.Sub(t.rcvNxt)
	if d < 0 {
		return 0
	}
	return uint32(d)
}

// arrives processes a segment for a connection in SYN_RECV or a
// synchronized state, following RFC 9293 §3.10.7.4 step by step.
func (t *tcb) arrives(sg *seg.Segment) {
	s := t.s
	f := sg.Flags

	// Simultaneous open (RFC 9293 §3.5, Figure 8, line 6): the peer's
	// SYN,ACK, repeating its SYN and acknowledging ours, establishes the
	// connection. Taken literally, the first step would find it left of the
	// window and only ACK it, costing a round trip; Linux
	// (tcp_validate_incoming) lets exactly this segment through, and so do we.
	if t.state == SynReceived && !t.passive && f == seg.SYN|seg.ACK && len(sg.Payload) == 0 &&
		sg.Seq == t.irs && sg.Ack == t.sndMax {
		if t.complete(sg) {
			t.sndUna = sg.Ack // our SYN is acknowledged
			// RFC 7323 §2.2: the window in a SYN is never scaled.
			t.sndWnd = uint32(sg.Window)
			t.output()
		}
		return
	}

	// First: sequence number.
	if !t.acceptable(sg) {
		if f.Has(seg.RST) {
			return
		}
		if t.state == SynReceived && f.Has(seg.SYN) && !f.Has(seg.ACK) && sg.Seq == t.irs {
			// A retransmitted SYN: our SYN-ACK was lost (Linux
			// tcp_check_req resends it).
			t.sendSynAck()
			return
		}
		if f.Has(seg.SYN) && t.state != SynReceived {
			// RFC 5961 §4.2: a SYN on a synchronized connection draws a
			// (rate-limited) challenge ACK "irrespective of the sequence
			// number", so an off-window SYN flood cannot make us send an
			// ACK per SYN.
			s.ctr.TCPSYNChallenge++
			t.challengeAck()
			return
		}
		if end := sg.Seq.Add(uint32(len(sg.Payload))); len(sg.Payload) > 0 && end.LessEq(t.rcvNxt) {
			// Data we had already acknowledged came again: our ACK was
			// lost or late (Linux's TCPDelayAckLost shows this). Tell
			// the sender with a D-SACK (RFC 2883 §4.1.1).
			s.ctr.DelayedACKLost++
			t.noteDuplicate(sg.Seq, end)
		}
		t.sendAck()
		return
	}
	// RFC 7323 §5.3 PAWS: a segment whose timestamp is older than
	// TS.Recent is a duplicate from an earlier incarnation.
	if t.tsOK && sg.Opts.HasTS && !f.Has(seg.RST) && int32(sg.Opts.TSVal-t.tsRecent) < 0 && t.state != SynReceived {
		s.ctr.PAWSEstab++
		t.sendAck()
		return
	}

	now := s.now()
	t.heard(now)
	t.sampleRcvRTT(sg, now)

	// Second: RST (RFC 5961 §3.2: only an exact match resets; any other
	// in-window RST draws a challenge ACK).
	if f.Has(seg.RST) {
		if sg.Seq != t.rcvNxt {
			t.challengeAck()
			return
		}
		switch t.state {
		case SynReceived:
			if t.passive {
				// Back to LISTEN: the request is forgotten (Linux counts
				// AttemptFails and EmbryonicRsts).
				s.ctr.AttemptFails++
				s.ctr.EmbryonicRsts++
				t.remove("rcv RST")
				return
			}
			t.fail(syscall.ECONNREFUSED, "rcv RST", sg)
		case Established, FinWait1, FinWait2, CloseWait:
			t.fail(syscall.ECONNRESET, "rcv RST", sg)
		default: // CLOSING, LAST_ACK
			t.remove("rcv RST")
		}
		return
	}

	// Fourth: SYN. In a synchronized state any SYN draws a challenge ACK
	// (RFC 5961 §4.2); in SYN_RECV of a passive open the request goes
	// back to LISTEN (RFC 9293 §3.10.7.4).
	if f.Has(seg.SYN) {
		if t.state == SynReceived && t.passive {
			s.ctr.AttemptFails++
			t.remove("rcv SYN in window")
			return
		}
		s.ctr.TCPSYNChallenge++
		t.challengeAck()
		return
	}

	// Fifth: ACK.
	if !f.Has(seg.ACK) {
		return
	}
	if t.state == SynReceived {
		if !sg.Ack.GreaterThan(t.sndUna) || sg.Ack.GreaterThan(t.sndMax) {
			s.replyRST(sg)
			return
		}
		if !t.complete(sg) {
			return // accept queue full: dropped as Linux does
		}
	}
	if t.tsOK && sg.Opts.HasTS && sg.Seq.LessEq(t.rcvNxt) {
		// RFC 7323 §4.3: remember the newest timestamp of a segment
		// that reaches the left window edge.
		if int32(sg.Opts.TSVal-t.tsRecent) >= 0 {
			t.tsRecent = sg.Opts.TSVal
		}
	}
	if !t.processAck(sg) {
		return
	}
	switch t.state {
	case FinWait1:
		if t.finAcked() {
			t.setState(FinWait2, "rcv ACK of FIN", sg)
			if t.orphan {
				t.arm(timers.FinWait2, s.cfg.FinTimeout)
			}
		}
	case Closing:
		if t.finAcked() {
			t.enterTimeWait("rcv ACK of FIN", sg)
			return
		}
	case LastAck:
		if t.finAcked() {
			t.remove("rcv ACK of FIN")
			return
		}
	}

	// Sixth: URG is not supported; urgent data is delivered inline (RFC
	// 6093 §4 advises new applications not to use it).
	// Seventh and eighth: text and FIN.
	if len(sg.Payload) > 0 || f.Has(seg.FIN) {
		t.processText(sg)
	}
	if t.state != Closed && t.state != TimeWait {
		t.output()
	}
}

// complete finishes a handshake in SYN_RECV on an acceptable ACK (RFC 9293
// §3.10.7.4 fifth step, SYN-RECEIVED).
func (t *tcb) complete(sg *seg.Segment) bool {
	s := t.s
	if l := t.listener; l != nil && t.passive {
		if l.acceptQueueFull() {
			// Linux: the ACK is dropped, the request stays in the SYN queue
			// and the SYN-ACK timer keeps running, so the peer's next ACK
			// (or data) completes the handshake once accept() makes room.
			s.ctr.ListenOverflows++
			s.ctr.ListenDrops++
			t.ackedOverflow = true
			return false
		}
		l.promote(t)
		s.ctr.PassiveOpens++
	}
	t.stop(timers.SynAck)
	if t.retries == 0 {
		if rtt, ok := t.rtt.Ack(uint32(sg.Ack), s.now()); ok {
			t.rto.Sample(rtt)
		}
	} else {
		t.rto.ResetBackoff()
	}
	t.retries = 0
	t.sndWnd = uint32(sg.Window) << t.sndShift
	t.maxSndWnd = max(t.maxSndWnd, t.sndWnd)
	t.sndWl1, t.sndWl2 = sg.Seq, sg.Ack
	t.initCongestion()
	t.established()
	t.setState(Established, "rcv ACK", sg)
	if t.listener != nil {
		t.listener.wake()
	}
	return true
}

// finAcked reports whether our FIN has been acknowledged.
func (t *tcb) finAcked() bool {
	return t.finQueued && t.snd.Len() == 0 && t.sndUna == t.sndStart.Add(1)
}

// processAck is the ACK handling of RFC 9293 §3.10.7.4 fifth step for the
// synchronized states. It returns false when the segment must be dropped.
func (t *tcb) processAck(sg *seg.Segment) bool {
	ack := sg.Ack
	if ack.GreaterThan(t.sndMax) {
		// It acknowledges something not yet sent: ACK and drop.
		t.sendAck()
		return false
	}
	// RFC 5961 §5.2: an ACK older than SND.UNA - MAX.SND.WND is not
	// acceptable either (blind data injection defence).
	if ack.LessThan(t.sndUna - seg.Seq(max(t.maxSndWnd, 65535))) {
		t.challengeAck()
		return false
	}
	oldWnd := t.sndWnd
	var fresh uint32
	probeLoss := false
	if t.sackOK && sg.Opts.NumSACK > 0 {
		fresh = t.takeSACK(sg)
		t.checkLostRetransmit(ack)
		probeLoss = fresh > 0 && t.probeRevealsLoss(ack)
		if fresh > 0 {
			t.lastSackAt = t.s.now()
		}
	}
	if ack.GreaterThan(t.sndUna) {
		t.newAck(sg)
	} else if ack == t.sndUna && t.sndMax != t.sndUna && (fresh > 0 ||
		(len(sg.Payload) == 0 && !sg.Flags.Has(seg.FIN) && uint32(sg.Window)<<t.sndShift == oldWnd)) {
		// A duplicate ACK in the sense of RFC 5681 §2, or one that
		// SACKs new data (RFC 6675 §2).
		t.dupAck()
	}
	// A duplicate ACK that SACKed the probe has started recovery in
	// dupAck already (IsLost now holds for SND.UNA); one that also moved
	// SND.UNA went to newAck, which does not, so it starts here.
	if probeLoss && !t.inRecovery {
		t.enterRecovery()
	}
	// Window update (RFC 9293 §3.10.7.4: only from a segment newer than
	// the one that last set it).
	if t.sndWl1.LessThan(sg.Seq) || (t.sndWl1 == sg.Seq && t.sndWl2.LessEq(ack)) {
		t.sndWnd = uint32(sg.Window) << t.sndShift
		t.sndWl1, t.sndWl2 = sg.Seq, ack
		t.maxSndWnd = max(t.maxSndWnd, t.sndWnd)
		if t.sndWnd > 0 && t.timers.Armed(timers.Persist) {
			t.stop(timers.Persist)
			t.probes = 0
		}
	}
	return true
}

// newAck handles an ACK that advances SND.UNA.
func (t *tcb) newAck(sg *seg.Segment) {
	s := t.s
	ack := sg.Ack
	acked := uint32(ack.Sub(t.sndUna))
	if t.sndUna == t.iss && acked > 0 {
		// The ACK of a passive open's handshake also covers our SYN's
		// sequence number, which is not data (RFC 9293 §3.4): counting it
		// would make the initial window IW + 1 byte (RFC 6928).
		acked--
	}
	if d := ack.Sub(t.sndStart); d > 0 {
		n := min(int(d), t.snd.Len())
		t.snd.Discard(n)
		t.sndStart = t.sndStart.Add(uint32(n))
		t.bytesAcked += uint64(n)
		t.ackedAt = s.now() // data acknowledged: the ACK clock runs (outputCorked)
		if t.conn != nil {
			s.wakeSoon(t.conn, wakeW)
		}
	}
	t.sndUna = ack
	t.sb.ackedTo(ack)
	if t.sndNxt.LessThan(ack) {
		t.sndNxt = ack
	}
	now := s.now()
	if t.undoValid && t.rtoRecovery {
		t.undoValid = false
		if sg.Opts.HasTS && int32(sg.Opts.TSEcr-t.rtoTSval) < 0 {
			// Eifel detection (RFC 3522 §3.2): the first ACK after the
			// timeout echoes a timestamp older than the retransmission,
			// so the original arrived: the timeout was spurious. Undo
			// the window reduction and stop resending what is in flight
			// (Linux counts TCPSpuriousRTOs).
			s.ctr.TCPSpuriousRTOs++
			t.cwnd = max(t.cwnd, t.undoCwnd)
			t.ssthresh = max(t.ssthresh, t.undoSsthresh)
			t.rtoRecovery = false
			t.sndNxt = t.sndMax
		}
	}
	if t.tsOK && sg.Opts.HasTS && sg.Opts.TSEcr != 0 {
		// RFC 7323 §4.1: the echoed timestamp times the round trip, even
		// for retransmitted data.
		if d := int32(t.tsNow(now) - sg.Opts.TSEcr); d >= 0 {
			t.rto.Sample(time.Duration(d) * time.Millisecond)
		}
	} else if rtt, ok := t.rtt.Ack(uint32(ack), now); ok {
		t.rto.Sample(rtt)
	}
	t.lastProgress = now
	// Linux clears the backoff on any forward progress.
	t.rto.ResetBackoff()
	t.retries = 0
	t.ackCongestion(acked, ack)
	// RFC 6298 §5.2/§5.3: stop the timer when all is acknowledged, else
	// restart it.
	t.tlpOutstanding = false
	if t.sndUna == t.sndMax {
		t.stop(timers.Retransmit)
	} else {
		t.armRetransmit()
	}
}

// processText is the seventh (text) and eighth (FIN) step of RFC 9293
// §3.10.7.4.
func (t *tcb) processText(sg *seg.Segment) {
	s := t.s
	switch t.state {
	case Established, FinWait1, FinWait2, SynReceived:
	default:
		// CLOSE_WAIT, CLOSING, LAST_ACK: the peer already sent its FIN;
		// anything more is a retransmission.
		return
	}
	payload := sg.Payload
	seq := sg.Seq
	if sg.Flags.Has(seg.SYN) {
		seq = seq.Add(1)
	}
	fin := sg.Flags.Has(seg.FIN)
	// Trim what we already have.
	if d := t.rcvNxt.Sub(seq); d > 0 {
		if int(d) > len(payload) {
			return // only an old FIN
		}
		t.noteDuplicate(seq, t.rcvNxt)
		payload = payload[d:]
		seq = t.rcvNxt
	}
	// Trim to the window we advertised.
	wnd := t.rcvWndNow()
	if uint32(len(payload)) > wnd-uint32(seq.Sub(t.rcvNxt)) {
		payload = payload[:wnd-uint32(seq.Sub(t.rcvNxt))]
		fin = false
		// Text beyond the window is not acceptable and is answered with
		// an ACK at once (RFC 9293 §3.10.7.4, first step): this is how a
		// sender probing our zero window learns it is still closed
		// (§3.8.6.1), as Linux's tcp_data_queue "out_of_window" does.
		t.queueAck(true)
	}
	if len(payload) > 0 && t.orphan {
		// Linux: data for a socket the application has closed cannot be
		// delivered; the connection is reset (TCPAbortOnData).
		s.ctr.TCPAbortOnData++
		t.sendRST(t.sndMax)
		t.err = syscall.ECONNRESET
		t.remove("rcv data after close()")
		return
	}
	if seq != t.rcvNxt {
		t.queueOOO(seq, payload, fin)
		// RFC 5681 §4.2: an immediate duplicate ACK for every
		// out-of-order segment, not one per input batch: the sender
		// counts them for fast retransmit (§3.2), and a batch of them
		// coalesced into one ACK leaves it waiting for its RTO.
		t.sendAck()
		return
	}
	if len(payload) > 0 {
		var n int
		if t.rdShut {
			n = len(payload) // shut for reading: accept and discard
		} else {
			n = t.deliver(payload)
		}
		t.rcvNxt = t.rcvNxt.Add(uint32(n))
		t.bytesReceived += uint64(n)
		if n < len(payload) {
			fin = false
		}
		if t.conn != nil && n > 0 {
			s.wakeSoon(t.conn, wakeR)
		}
		// Count full-sized segments, not packets: a super-segment from a
		// TSO/GRO link (64 KB) is some 45 segments of the sender's, and
		// RFC 9293 §3.8.6.3 asks for an ACK at least every second one.
		// Counted as one, a lone super-segment in a read batch waited for
		// the delayed-ACK timer, and a kernel sender's window stalled
		// (Linux's receiver compares bytes with its rcv_mss, which has the
		// same effect).
		t.unackedSegs += max(1, n/max(t.mss, 1))
		// Quick ACKs at the start (Linux's quickack mode) let the
		// sender's window open without waiting for delayed ACKs.
		now := len(t.ooo) > 0 || t.unackedSegs >= 2 || s.cfg.DelayedACK < 0 || t.quickAcks > 0
		if t.quickAcks > 0 {
			t.quickAcks--
		}
		if len(t.ooo) > 0 {
			fin = t.drainOOO(fin)
		}
		t.queueAck(now)
	} else if len(t.ooo) > 0 {
		fin = t.drainOOO(fin)
	}
	if fin {
		t.finArrives(sg)
	}
}

// deliver queues in-order payload for the application and returns how much
// fit. A large segment still lying in the link's read buffer is adopted
// whole instead of copied (rcvq.go).
func (t *tcb) deliver(payload []byte) int {
	s := t.s
	if !s.rxTaken && t.rcv.canAdopt(len(payload), len(s.rxCur)) && within(s.rxCur, payload) {
		t.rcv.adopt(s.rxCur, payload)
		s.rxTaken = true
		s.adopted++
		return len(payload)
	}
	return t.rcv.Write(payload)
}

// finArrives is the eighth step of RFC 9293 §3.10.7.4: the peer's FIN is
// next in sequence.
func (t *tcb) finArrives(sg *seg.Segment) {
	t.rcvNxt = t.rcvNxt.Add(1)
	t.finRcvd = true
	t.ooo, t.oooBytes = nil, 0
	t.sendAck()
	if t.conn != nil {
		t.conn.wakeRead()
	}
	switch t.state {
	case SynReceived, Established:
		t.setState(CloseWait, "rcv FIN", sg)
	case FinWait1:
		if t.finAcked() {
			t.enterTimeWait("rcv FIN", sg)
		} else {
			t.setState(Closing, "rcv FIN (simultaneous close)", sg)
		}
	case FinWait2:
		t.stop(timers.FinWait2)
		t.enterTimeWait("rcv FIN", sg)
	}
}

// oooMergeMax bounds one merged out-of-order entry; a longer run goes on
// in a new entry.
const oooMergeMax = 256 << 10

// queueOOO keeps an out-of-order segment, bounded in count; the window
// bounds its bytes.
func (t *tcb) queueOOO(seq seg.Seq, data []byte, fin bool) {
	s := t.s
	if len(data) == 0 && !fin {
		return
	}
	end := seq.Add(uint32(len(data)))
	i := 0
	for i < len(t.ooo) && t.ooo[i].seq.LessThan(seq) {
		i++
	}
	// Drop what an existing segment already covers (exact or contained
	// duplicates); partial overlaps are kept and trimmed on delivery.
	t.noteOOO(seq)
	for j := max(i-1, 0); j < len(t.ooo) && t.ooo[j].seq.LessEq(seq); j++ {
		o := t.ooo[j]
		if o.seq.Add(uint32(len(o.data))).GreaterEq(end) && (!fin || o.fin) {
			t.noteDuplicate(seq, end)
			return
		}
	}
	// A segment that continues the entry before it is appended to it (as
	// Linux coalesces into the tail of its out-of-order queue): after a
	// loss the rest of a large window arrives in order behind the hole,
	// and as one entry per hole (up to oooMergeMax bytes each) rather than
	// one per segment it neither hits MaxOOOSegs, which then bounds the
	// holes a peer can make, nor costs an insertion each. The bytes stay
	// bounded by the window (data beyond it was trimmed).
	if i > 0 && len(data) > 0 {
		if prev := &t.ooo[i-1]; !prev.fin && prev.seq.Add(uint32(len(prev.data))) == seq &&
			len(prev.data)+len(data) <= oooMergeMax && (i == len(t.ooo) || end.LessEq(t.ooo[i].seq)) {
			s.ctr.TCPOFOQueue++
			if len(prev.data)+len(data) > cap(prev.data) {
				// Double up to oooMergeMax (append grows large slices
				// by a quarter): fewer copies of the run.
				nd := make([]byte, len(prev.data), min(max(2*cap(prev.data), len(prev.data)+len(data)), oooMergeMax))
				copy(nd, prev.data)
				prev.data = nd
			}
			prev.data = append(prev.data, data...)
			prev.fin = fin
			t.oooBytes += len(data)
			return
		}
	}
	if len(t.ooo) >= s.cfg.MaxOOOSegs {
		s.ctr.TCPOFODrop++
		return
	}
	s.ctr.TCPOFOQueue++
	cp := make([]byte, len(data))
	copy(cp, data)
	t.ooo = append(t.ooo, oooSeg{})
	copy(t.ooo[i+1:], t.ooo[i:])
	t.ooo[i] = oooSeg{seq: seq, data: cp, fin: fin}
	t.oooBytes += len(cp)
}

// drainOOO moves queued segments that are now in order into the receive
// buffer and reports whether a FIN became in order.
func (t *tcb) drainOOO(fin bool) bool {
	n := 0
	for n < len(t.ooo) {
		o := t.ooo[n]
		if o.seq.GreaterThan(t.rcvNxt) {
			break
		}
		n++
		t.oooBytes -= len(o.data)
		d := int(t.rcvNxt.Sub(o.seq))
		if d > len(o.data) {
			continue
		}
		data := o.data[d:]
		w := len(data)
		if !t.rdShut {
			w = t.rcv.Write(data)
		}
		t.rcvNxt = t.rcvNxt.Add(uint32(w))
		t.bytesReceived += uint64(w)
		if w < len(data) {
			break
		}
		if o.fin {
			fin = true
		}
	}
	copy(t.ooo, t.ooo[n:])
	for i := len(t.ooo) - n; i < len(t.ooo); i++ {
		t.ooo[i] = oooSeg{}
	}
	t.ooo = t.ooo[:len(t.ooo)-n]
	if len(t.ooo) == 0 {
		t.ooo = nil
	}
	if t.conn != nil {
		t.s.wakeSoon(t.conn, wakeR)
	}
	return fin
}

// challengeAck sends the RFC 5961 §3.2/§4.2 challenge ACK, at most one
// per connection every 500 ms (Linux's tcp_invalid_ratelimit), so it cannot
// be used to make us flood.
func (t *tcb) challengeAck() {
	now := t.s.now()
	if now.Sub(t.lastChallenge) < 500*time.Millisecond {
		return
	}
	t.lastChallenge = now
	t.s.ctr.TCPChallengeACK++
	t.sendAck()
}

// queueAck notes that this connection owes an ACK; endBatch sends it (now)
// or arms the delayed-ACK timer, so a batch of segments draws one ACK.
func (t *tcb) queueAck(now bool) {
	if now {
		t.ackNow = true
	}
	if !t.ackQueued {
		t.ackQueued = true
		t.s.ackList = append(t.s.ackList, t)
	}
}

// endBatch sends the ACKs owed after a batch of input (RFC 9293 §3.8.6.3:
// ACK at least every second full segment, delay no more than 500 ms; we
// delay 40 ms as Linux's minimum).
func (s *Stack) endBatch() {
	for i, t := range s.ackList {
		s.ackList[i] = nil
		t.ackQueued = false
		if t.state == Closed || t.state == TimeWait {
			continue
		}
		if t.ackNow {
			t.sendAck()
		} else if t.unackedSegs > 0 && !t.timers.Armed(timers.DelayedACK) {
			t.arm(timers.DelayedACK, s.cfg.DelayedACK)
		}
	}
	s.ackList = s.ackList[:0]
}
