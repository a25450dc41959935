package stack

import (
	"time"

	"utcp/seg"
	"utcp/timers"
)

// twEntry is a connection in TIME_WAIT reduced to what the state needs
// (RFC 9293 §3.10.7.4, RFC 6191): the sequence numbers to re-ACK a
// retransmitted FIN and to judge a new SYN, the timestamps, and its timer.
// About 90 bytes plus its map slot, against kilobytes for a full TCB.
type twEntry struct {
	key      uint64
	sndNxt   seg.Seq
	rcvNxt   seg.Seq
	tsRecent uint32
	tsOffset uint32
	rcvWnd   uint16
	tsOK     bool
	created  timers.Instant
	item     timers.Item[timerTarget]
	s        *Stack
}

func (s *Stack) addTimeWait(t *tcb) {
	now := s.clock.Now()
	e := &twEntry{
		key:      t.key,
		sndNxt:   t.sndMax,
		rcvNxt:   t.rcvNxt,
		tsRecent: t.tsRecent,
		tsOffset: t.tsOffset,
		rcvWnd:   uint16(min(t.rcvWndNow()>>t.rcvShift, 0xffff)),
		tsOK:     t.tsOK,
		created:  now,
		s:        s,
	}
	e.item.Value = e
	s.tw[e.key] = e
	s.tq.Schedule(&e.item, now.Add(2*s.cfg.MSL))
	s.rearm()
}

func (s *Stack) removeTimeWait(e *twEntry) {
	delete(s.tw, e.key)
	s.tq.Cancel(&e.item)
	s.gauges[TimeWait]--
}

// fire ends TIME_WAIT after 2*MSL (RFC 9293 §3.10.8).
func (e *twEntry) fire(now timers.Instant) {
	s := e.s
	if s.tw[e.key] != e {
		return
	}
	s.removeTimeWait(e)
	s.ctr.TW++
	e.trace("timer time_wait", nil)
}

func (e *twEntry) trace(cause string, sg *seg.Segment) {
	s := e.s
	if s.cfg.Trace == nil {
		return
	}
	ra, rp, lp := keyParts(e.key)
	s.cfg.Trace(TraceEvent{Time: s.clock.Now(), Local: addrPort(s.addr, lp), Remote: addrPort(ra, rp), From: TimeWait, To: Closed, Cause: cause, Seg: sg})
}

func (e *twEntry) sendAck(dst seg.Segment) {
	s := e.s
	_, rp, lp := keyParts(e.key)
	r := seg.Segment{Dst: dst.Src, SrcPort: lp, DstPort: rp, Seq: e.sndNxt, Ack: e.rcvNxt, Flags: seg.ACK, Window: e.rcvWnd}
	if e.tsOK {
		r.Opts.HasTS = true
		r.Opts.TSVal = uint32(int64(s.clock.Now())/int64(time.Millisecond)) + e.tsOffset
		r.Opts.TSEcr = e.tsRecent
	}
	s.emit(&r)
}

// timeWaitArrives handles a segment for a TIME_WAIT 4-tuple. It returns
// reopen=true when a new SYN may take over the 4-tuple (RFC 6191 §2): its
// timestamp is newer than the last one seen, or, without timestamps, its
// sequence number is beyond RCV.NXT. The new ISN then lies beyond the old
// connection's sequence space, as Linux does.
func (s *Stack) timeWaitArrives(e *twEntry, sg *seg.Segment) (isn seg.Seq, reopen bool) {
	f := sg.Flags
	switch {
	case f.Has(seg.RST):
		// Linux's default (tcp_rfc1337=0): an in-sequence RST ends
		// TIME_WAIT early. RFC 1337 would ignore it.
		if sg.Seq == e.rcvNxt {
			s.removeTimeWait(e)
			e.trace("rcv RST", sg)
		}
		return 0, false
	case f.Has(seg.SYN) && !f.Has(seg.ACK):
		var newer bool
		if e.tsOK && sg.Opts.HasTS {
			newer = int32(sg.Opts.TSVal-e.tsRecent) > 0
		} else {
			newer = sg.Seq.GreaterThan(e.rcvNxt)
		}
		if newer && s.listeners[sg.DstPort] != nil {
			s.removeTimeWait(e)
			e.trace("rcv SYN (reopen, RFC 6191)", sg)
			return e.sndNxt.Add(65535 + 2), true
		}
		e.sendAck(*sg)
		return 0, false
	case f.Has(seg.FIN):
		// The peer's FIN again: our ACK was lost. ACK it and restart the
		// 2*MSL timer (RFC 9293 §3.10.7.4, eighth step).
		e.sendAck(*sg)
		s.tq.Schedule(&e.item, s.clock.Now().Add(2*s.cfg.MSL))
		s.rearm()
		return 0, false
	case len(sg.Payload) > 0 || sg.Seq != e.rcvNxt:
		e.sendAck(*sg)
	}
	return 0, false
}
