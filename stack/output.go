package stack

import (
	"syscall"
	"time"

	"utcp/seg"
	"utcp/timers"
)

// tsNow is our timestamp clock (RFC 7323 §5.4): milliseconds, as Linux,
// plus a random per-connection offset so it reveals nothing about uptime.
func (t *tcb) tsNow(now timers.Instant) uint32 {
	return uint32(int64(now)/int64(time.Millisecond)) + t.tsOffset
}

// advertise picks the window for an outgoing segment and returns the
// 16-bit field value. The right edge never moves left (RFC 9293
// §3.8.6.2.2, RFC 7323 §2.4), and it moves right only by at least
// min(buffer/2, MSS) at a time: receiver silly-window avoidance.
func (t *tcb) advertise() uint16 {
	free := uint32(max(t.rcv.Free(), 0))
	if t.rdShut {
		free = uint32(t.rcv.Cap())
	}
	cur := t.rcvWndNow()
	wnd := free
	if wnd > cur && wnd-cur < uint32(min(t.rcv.Cap()/2, t.mssOrDefault())) {
		wnd = cur
	}
	if wnd < cur {
		wnd = cur
	}
	field := wnd >> t.rcvShift
	if field > 0xffff {
		field = 0xffff
	}
	if field<<t.rcvShift < cur {
		// Rounding down would shrink the window: round up instead, but
		// only into buffer space we have. Past it, in-window data would
		// be dropped for want of room, and each rounded-up edge would let
		// the next one move further: the window would never reach zero
		// and the sender would retransmit into a full buffer until it
		// timed out. RFC 7323 §2.4 allows either choice and requires
		// senders to cope with the shrink (RFC 1122 §4.2.2.16).
		if up := min((cur+(1<<t.rcvShift)-1)>>t.rcvShift, 0xffff); up<<t.rcvShift <= free {
			field = up
		}
	}
	if field == 0 && !t.advZero {
		t.advZero = true
		t.s.ctr.TCPToZeroWindowAdv++
	} else if field != 0 && t.advZero {
		t.advZero = false
		t.s.ctr.TCPFromZeroWindowAdv++
	}
	if edge := t.rcvNxt.Add(field << t.rcvShift); edge.GreaterThan(t.rcvAdv) {
		t.rcvAdv = edge
	}
	return uint16(field)
}

func (t *tcb) mssOrDefault() int {
	if t.mss > 0 {
		return t.mss
	}
	return 536
}

// header fills the fields every segment of this connection carries.
func (t *tcb) header(flags seg.Flags, seq seg.Seq) seg.Segment {
	sg := seg.Segment{
		Dst:     t.remote.Addr(),
		SrcPort: t.local.Port(),
		DstPort: t.remote.Port(),
		Seq:     seq,
		Flags:   flags,
	}
	if flags.Has(seg.ACK) {
		sg.Ack = t.rcvNxt
	}
	if flags.Has(seg.SYN) {
		// RFC 7323 §2.2: the window in a SYN or SYN-ACK is not scaled.
		sg.Window = uint16(min(t.rcv.Free(), 0xffff))
		if edge := t.rcvNxt.Add(uint32(sg.Window)); flags.Has(seg.ACK) && edge.GreaterThan(t.rcvAdv) {
			t.rcvAdv = edge
		}
	} else if !flags.Has(seg.RST) {
		sg.Window = t.advertise()
	}
	if t.tsOK && !flags.Has(seg.RST) {
		sg.Opts.HasTS = true
		sg.Opts.TSVal = t.tsNow(t.s.now())
		sg.Opts.TSEcr = t.tsRecent
	}
	if t.sackOK && flags&(seg.ACK|seg.SYN|seg.RST) == seg.ACK && (t.dsackPending || len(t.ooo) > 0) {
		t.appendSACK(&sg.Opts)
	}
	return sg
}

// ackSent clears what an outgoing segment carrying our ACK satisfies.
func (t *tcb) ackSent() {
	t.ackNow = false
	t.unackedSegs = 0
	t.dsackPending = false
	if t.timers.Armed(timers.DelayedACK) {
		t.stop(timers.DelayedACK)
	}
}

// sendAck sends a pure ACK. Its sequence number is SND.MAX, not SND.NXT:
// after a timeout SND.NXT rolls back to SND.UNA, and a pure ACK carrying
// that old number would fail the peer's acceptability test (RFC 9293
// §3.10.7.4) and its acknowledgment would be lost (BSD does the same).
func (t *tcb) sendAck() {
	sg := t.header(seg.ACK, t.sndMax)
	t.s.emit(&sg)
	t.ackSent()
}

func (t *tcb) sendRST(seq seg.Seq) {
	sg := t.header(seg.RST|seg.ACK, seq)
	t.s.emit(&sg)
	t.s.ctr.OutRsts++
}

// synOptions adds what our SYN or SYN-ACK offers: MSS always; window
// scaling and timestamps on an active open, or when the peer offered them.
func (t *tcb) synOptions(sg *seg.Segment, offerWS, offerTS, offerSACK bool) {
	sg.Opts.HasMSS = true
	sg.Opts.MSS = uint16(min(t.s.mtu-40, 0xffff))
	if offerWS {
		sg.Opts.HasWScale = true
		sg.Opts.WScale = t.rcvShift
	}
	sg.Opts.SACKPermitted = offerSACK
	if offerTS {
		sg.Opts.HasTS = true
		sg.Opts.TSVal = t.tsNow(t.s.now())
		sg.Opts.TSEcr = t.tsRecent
	} else {
		sg.Opts.HasTS = false
	}
}

func (t *tcb) sendSYN() {
	tsOK := t.tsOK
	t.tsOK = false
	sg := t.header(seg.SYN, t.iss)
	t.tsOK = tsOK
	t.synOptions(&sg, true, true, !t.s.cfg.NoSACK)
	t.s.emit(&sg)
	if t.retries == 0 {
		t.rtt.Start(uint32(t.iss), t.s.now())
	}
}

func (t *tcb) sendSynAck() {
	sg := t.header(seg.SYN|seg.ACK, t.iss)
	t.synOptions(&sg, t.wsOK, t.tsOK, t.sackOK)
	t.s.emit(&sg)
	t.ackSent()
	if t.retries == 0 {
		t.rtt.Start(uint32(t.iss), t.s.now())
	}
}

// splitMin is the smallest payload sent from the send ring in place
// (zero-copy) on a SplitLink; below it copying is cheaper than gathering.
const splitMin = 1024

// sendDataAt sends up to n bytes of the send buffer starting at seq, with
// FIN when fin is set and all n bytes fit. SACK blocks make the header
// longer, so the payload shrinks to keep the packet within the MTU (as
// Linux's tcp_current_mss does). It returns the bytes sent and whether
// the FIN went with them.
func (t *tcb) sendDataAt(seq seg.Seq, n int, fin bool) (int, bool) {
	s := t.s
	off := int(seq.Sub(t.sndStart))
	flags := seg.ACK
	sg := t.header(flags, seq)
	hl := sg.HeaderLen()
	room, cut := t.gsoRoom(hl)
	if n > cut {
		// More than one segment's worth: a super-segment of whole
		// segments when the link cuts them (gso.go), else one segment.
		// The FIN waits for the remainder, which output sends next.
		n = min(n, room)
		n -= n % cut
		fin = false
	}
	var payload []byte
	inPlace := false // payload aliases the send ring
	if n > 0 {
		if b, ok := t.snd.peek(off, n); ok {
			payload, inPlace = b, true
		} else {
			payload = s.scratch[:n]
			t.snd.copyAt(payload, off)
		}
	}
	if n > 0 && off+n == t.snd.Len() {
		sg.Flags |= seg.PSH
	}
	if n > 0 && n < t.mss {
		t.sndSmall = seq.Add(uint32(n))
	}
	if fin {
		sg.Flags |= seg.FIN
	}
	sg.Payload = payload
	now := s.now()
	pieces := 1
	if n > cut {
		pieces = (n + cut - 1) / cut // what the peer receives
	}
	if seq.LessThan(t.sndMax) {
		s.ctr.RetransSegs += uint64(pieces)
		if t.rtoRecovery {
			s.ctr.TCPSlowStartRetrans++
		}
		t.totalRetx++
		t.rtt.Retransmitted()
		if end := seq.Add(uint32(n)); end.GreaterThan(t.sb.highRxt) {
			t.sb.highRxt = end
		}
		if seq == t.sndUna && t.inRecovery && t.sackOK {
			t.rxtWatch, t.rxtUna, t.rxtMark = true, seq, t.sndMax
		}
	} else {
		t.rtt.Start(uint32(seq), now)
	}
	t.lastSend = now
	// The link writes each piece's checksum of a super-segment (GSOLink),
	// so ours would be a wasted pass over 64 KiB: it is left partial.
	partial := pieces > 1
	switch {
	case s.split != nil && inPlace && n >= splitMin && !seq.LessThan(t.sndMax):
		// Zero-copy send: only the headers are built; the link gathers
		// the payload from the send ring. Only new data qualifies: no
		// ACK can cover it before it is written, so its bytes stay put
		// (retransmitted bytes could be acknowledged, freed and
		// overwritten while the write is pending). ring.lend keeps the
		// array out of the pool until the flusher is done with it.
		sg.Src = s.addr
		t.snd.lend(s.emitSplit(sg.AppendHeaders(s.packetBuf(), partial), payload))
		s.ctr.OutSegs += uint64(pieces)
	case partial:
		sg.Src = s.addr
		s.emitRaw(sg.AppendPartial(s.superBuf(hl + n)))
		s.ctr.OutSegs += uint64(pieces)
	default:
		s.emit(&sg)
	}
	if !partial && n > 0 {
		t.pushCandidate(sg.Flags.Has(seg.PSH))
	}
	t.ackSent()
	return n, fin
}

// output sends what the windows allow (RFC 9293 §3.8.6, RFC 5681): new
// data, the FIN after it, and arms the retransmission or persist timer.
func (t *tcb) output() { t.transmit(false) }

// outputCorked is output for the application's Write. On a segmenting
// link, when the ACK clock is running, new data that would leave as a
// super-segment smaller than the send quantum stays queued for the next
// ACK, whose output sends it together with whatever the application
// wrote meanwhile.
//
// This is our form of Linux's TCP autocorking (tcp_should_autocork) and
// TSO deferral (tcp_tso_should_defer). Linux holds a small skb while the
// previous one still sits in the device queue; our writes to the link
// are synchronous, so the event that releases the data is the next ACK
// instead. Without it an application writing 7 KB at a time sends 7 KB
// super-segments, and the peer pays its per-packet receive cost nine
// times over for every 64 KB.
//
// The hold lasts about one ACK interval, because it happens only when
// ACKs are flowing: two quanta or more in flight, for which the peer
// owes ACKs at once (RFC 9293 §3.8.6.3, RFC 5681 §4.2), and an ACK
// acknowledged data within the last half round trip (at least 1 ms), the
// test tcp_tso_should_defer makes. A burst from idle, such as a
// response written in several pieces, is never held waiting a whole
// round trip; neither are plain links (a runt there is Nagle's
// business) nor connections with TCP_NODELAY.
func (t *tcb) outputCorked() {
	t.transmit(!t.nodelay && t.sendQuantum() > t.mss &&
		t.s.now().Sub(t.ackedAt) < max(t.rto.SRTT()/2, time.Millisecond))
}

func (t *tcb) transmit(cork bool) {
	switch t.state {
	case Established, CloseWait, FinWait1, Closing, LastAck:
	default:
		return
	}
	if t.sndUna == t.sndMax && t.snd.Len() > 0 {
		t.lastProgress = t.s.now()
	}
	if t.sndUna == t.sndMax && t.snd.Len() > 0 && !t.inRecovery {
		// RFC 5681 §4.1 (Linux's tcp_slow_start_after_idle): after an
		// idle period longer than the RTO, restart from the initial
		// window, since the path may have changed.
		if now := t.s.now(); now.Sub(t.lastSend) > t.rto.Current() {
			t.cwnd = min(t.cwnd, uint32(initialWindow*t.mss))
		}
	}
	for {
		sackRecovery := t.inRecovery && t.sackOK
		cwndAvail := int(t.cwnd) - int(t.sndNxt.Sub(t.sndUna))
		if sackRecovery {
			// RFC 6675 §5: while cwnd - pipe >= 1 SMSS, send NextSeg:
			// first a lost segment, else new data.
			cwndAvail = int(t.cwnd) - t.pipe()
			if cwndAvail < t.mss {
				break
			}
			if seq, n, ok := t.nextLost(); ok {
				t.sendDataAt(seq, n, false)
				continue
			}
		}
		if t.sackOK && t.sndNxt.LessThan(t.sndMax) {
			// Resending after a timeout: skip what the peer SACKed.
			if end, in := t.sb.sackedAt(t.sndNxt); in {
				t.sndNxt = end
				continue
			}
		}
		off := int(t.sndNxt.Sub(t.sndStart))
		unsent := t.snd.Len() - off
		if unsent > 0 {
			inflight := int(t.sndNxt.Sub(t.sndUna))
			usable := min(int(int64(t.sndWnd)-int64(inflight)), cwndAvail)
			if usable <= 0 {
				break
			}
			quantum := t.sendQuantum()
			n := min(unsent, usable, quantum)
			if cork && n < quantum && t.sndNxt.GreaterEq(t.sndMax) && !t.finQueued &&
				inflight >= 2*quantum {
				break
			}
			if t.sackOK && t.sndNxt.LessThan(t.sndMax) {
				if next, ok := t.sb.nextStart(t.sndNxt); ok {
					n = min(n, int(next.Sub(t.sndNxt)))
				}
			}
			if n < t.mss {
				allFits := unsent <= usable
				// Sender silly-window avoidance (RFC 9293 §3.8.6.2.1):
				// don't send a window-limited runt unless it is at least
				// half the largest window the peer has offered.
				if !allFits && n < int(t.maxSndWnd/2) {
					break
				}
				// Nagle (RFC 896, RFC 9293 §3.7.4) in Minshall's form,
				// as Linux does: hold a small segment only while an
				// earlier small segment is unacknowledged. Plain Nagle
				// would also hold the runt that ends a bulk write behind
				// full-sized data, and with the peer delaying its ACK of
				// an odd last segment both sides would wait 40 ms.
				// Resending (after a timeout) is never held. "Earlier
				// small segment unacknowledged" is SND.UNA < sndSmall <=
				// SND.NXT (tcp_minshall_check): sndSmall alone would be
				// stale, or zero if no runt was ever sent, and in modular
				// sequence space zero is "after" SND.UNA for half of all
				// ISSs, which held the runt ending a bulk transfer with
				// nothing in flight until the 200 ms persist timer.
				if allFits && t.sndNxt.GreaterEq(t.sndMax) && t.sndSmall.GreaterThan(t.sndUna) && t.sndSmall.LessEq(t.sndNxt) && !t.nodelay && !t.finQueued {
					break
				}
			}
			n, fin := t.sendDataAt(t.sndNxt, n, t.finQueued && n == unsent)
			t.sndNxt = t.sndNxt.Add(uint32(n))
			if fin {
				t.sndNxt = t.sndNxt.Add(1)
			}
		} else if unsent == 0 && t.finQueued {
			t.sendDataAt(t.sndNxt, 0, true)
			t.sndNxt = t.sndNxt.Add(1)
		} else {
			break
		}
		if t.sndNxt.GreaterThan(t.sndMax) {
			t.sndMax = t.sndNxt
		}
	}
	if t.sndNxt.GreaterThan(t.sndMax) {
		t.sndMax = t.sndNxt
	}
	if t.sndUna != t.sndMax {
		// Re-arm as a probe once the flight has grown past one segment:
		// the timer was an RTO only because a lone segment's ACK may be
		// delayed (RFC 8985 §7.2).
		if !t.timers.Armed(timers.Retransmit) ||
			(!t.tlpPending && int(t.sndMax.Sub(t.sndUna)) > t.mss && t.tlpEligible()) {
			t.armRetransmit()
		}
	} else if t.snd.Len() > int(t.sndNxt.Sub(t.sndStart)) && !t.timers.Armed(timers.Persist) {
		// Data waiting, nothing in flight: only the window holds it back,
		// either zero (probe it, RFC 9293 §3.8.6.1) or too small to send
		// without silly-window avoidance. The latter needs the override
		// timeout of RFC 1122 §4.2.3.4 too: otherwise, should the peer's
		// window update be lost, no timer would ever recover (Linux arms
		// its probe timer the same way, tcp_check_probe_timer).
		t.arm(timers.Persist, t.persistTimeout())
	}
}

func (t *tcb) persistTimeout() time.Duration {
	d := t.rto.Current()
	for i := 0; i < t.probes && d < 120*time.Second; i++ {
		d *= 2
	}
	return min(d, 120*time.Second)
}

// onPersistTimer sends a zero-window probe. Like Linux, the probe is a
// segment carrying sequence SND.UNA-1, which the peer must ACK with its
// current window.
func (t *tcb) onPersistTimer() {
	if t.sndWnd != 0 || t.sndUna != t.sndMax {
		if t.sndWnd != 0 && t.sndUna == t.sndMax {
			// The SWS override timeout (RFC 1122 §4.2.3.4): send what
			// the small window allows, as Linux's tcp_write_wakeup does.
			// Its ACK then reports the peer's window, zero or not.
			if unsent := t.snd.Len() - int(t.sndNxt.Sub(t.sndStart)); unsent > 0 {
				n := min(unsent, int(t.sndWnd), t.mss)
				n, fin := t.sendDataAt(t.sndNxt, n, t.finQueued && n == unsent)
				t.sndNxt = t.sndNxt.Add(uint32(n))
				if fin {
					t.sndNxt = t.sndNxt.Add(1)
				}
				t.sndMax = seg.MaxSeq(t.sndMax, t.sndNxt)
			}
		}
		t.probes = 0
		t.output()
		return
	}
	if (t.orphan && t.probes >= t.s.cfg.Retries2) || t.userTimedOut(t.s.now()) {
		t.s.ctr.TCPAbortOnTimeout++
		t.fail(syscall.ETIMEDOUT, "timer persist", nil)
		return
	}
	sg := t.header(seg.ACK, t.sndUna-1) // keepalive-style probe
	t.s.emit(&sg)
	t.s.ctr.TCPWinProbe++
	t.probes++
	t.arm(timers.Persist, t.persistTimeout())
}

// onRetransmitTimer is RFC 6298 §5.4-5.6 with RFC 5681 §3.1's response to
// a timeout: collapse cwnd to one segment and resend from SND.UNA.
func (t *tcb) onRetransmitTimer() {
	s := t.s
	if t.state == SynSent {
		if t.retries >= s.cfg.SynRetries {
			t.fail(syscall.ETIMEDOUT, "timer retransmit (SYN)", nil)
			return
		}
		t.retries++
		t.rto.Backoff()
		t.rtt.Retransmitted()
		s.ctr.RetransSegs++
		s.ctr.TCPSynRetrans++
		t.totalRetx++
		t.sendSYN()
		t.arm(timers.Retransmit, t.rto.Current())
		return
	}
	if t.sndUna == t.sndMax {
		return
	}
	if t.tlpPending {
		if t.probeTimerRevealsLoss() {
			t.tlpPending = false
			t.enterRecovery()
			t.output()
			t.arm(timers.Retransmit, t.rto.Current())
			return
		}
		t.sendLossProbe()
		return
	}
	if t.retries >= s.cfg.Retries2 || t.userTimedOut(s.now()) {
		s.ctr.TCPAbortOnTimeout++
		t.fail(syscall.ETIMEDOUT, "timer retransmit", nil)
		return
	}
	t.retries++
	s.ctr.TCPTimeouts++
	t.rto.Backoff()
	if t.retries == 1 && t.tsOK {
		// Remember what to restore if the timeout proves spurious
		// (RFC 3522): the retransmission below carries this TSval.
		t.undoValid = true
		t.undoCwnd, t.undoSsthresh = t.cwnd, t.ssthresh
		t.rtoTSval = t.tsNow(s.now())
	}
	if t.retries == 1 || !t.rtoRecovery {
		t.ssthresh = t.cc.onLoss(t, s.now())
	}
	t.cwnd = uint32(t.mss)
	t.inRecovery = false
	t.rtoRecovery = true
	t.dupAcks = 0
	t.recover = t.sndMax
	t.sb.highRxt = t.sndUna
	t.sb.rackLost = false // all of it is being resent anyway
	if t.retries >= 2 {
		// RFC 2018 §8: the receiver may have reneged on what it
		// SACKed; after repeated timeouts stop trusting the scoreboard.
		t.sb.reset()
	}
	t.rtt.Retransmitted()
	t.sndNxt = t.sndUna
	t.output()
	t.arm(timers.Retransmit, t.rto.Current())
}

// onSynAckTimer retransmits a SYN-ACK with backoff; after SynAckRetries
// the request is dropped, as Linux does (no RST, no counter but the
// retransmissions).
func (t *tcb) onSynAckTimer() {
	s := t.s
	if t.state != SynReceived {
		return
	}
	if t.retries >= s.cfg.SynAckRetries {
		if !t.passive {
			t.fail(syscall.ETIMEDOUT, "timer synack", nil)
			return
		}
		t.remove("timer synack (retries exhausted)")
		return
	}
	t.retries++
	t.rto.Backoff()
	t.rtt.Retransmitted()
	s.ctr.RetransSegs++
	s.ctr.TCPSynRetrans++
	t.totalRetx++
	t.sendSynAck()
	t.arm(timers.SynAck, t.rto.Current())
}
