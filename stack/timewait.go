package stack

import (
	"time"

	"utcp/seg"
	"utcp/timers"
)

// twEntry is a connection in TIME_WAIT reduced to what the state needs
// (RFC 9293 §3.10.7.4, RFC 6191): the sequence numbers to re-ACK a
// retransmitted FIN and to judge a new SYN, the last timestamp seen, and
// when it ends. It is a plain value of 40 bytes kept in a map by 4-tuple
// (no pointer, nothing for the garbage collector to trace), plus 16
// bytes in the expiry FIFO: a host holds 100,000 of them in under 10 MB.
// The timestamp offset is not stored: it is a keyed hash of the 4-tuple
// (tsOffsetFor).
type twEntry struct {
	sndNxt   seg.Seq
	rcvNxt   seg.Seq
	tsRecent uint32
	rcvWnd   uint16
	tsOK     bool
	created  timers.Instant
	expires  timers.Instant
}

// twExpiry is one FIFO slot. Every entry lives 2*MSL, so the order in
// which entries are pushed is the order in which they expire: no heap is
// needed. When an entry's timer restarts, a new slot is pushed and the
// old one is recognised as stale (its time no longer matches) when popped.
type twExpiry struct {
	key uint64
	at  timers.Instant
}

// twTimer is the single stack-wide timer target for all TIME_WAIT entries.
type twTimer struct{ s *Stack }

func (s *Stack) addTimeWait(t *tcb) {
	now := s.now()
	e := twEntry{
		sndNxt:   t.sndMax,
		rcvNxt:   t.rcvNxt,
		tsRecent: t.tsRecent,
		rcvWnd:   uint16(min(t.rcvWndNow()>>t.rcvShift, 0xffff)),
		tsOK:     t.tsOK,
		created:  now,
		expires:  now.Add(2 * s.cfg.MSL),
	}
	s.tw[t.key] = e
	s.pushTWExpiry(t.key, e.expires)
}

func (s *Stack) pushTWExpiry(key uint64, at timers.Instant) {
	s.twFIFO = append(s.twFIFO, twExpiry{key, at})
	if !s.twItem.Scheduled() {
		s.tq.Schedule(&s.twItem, at)
		s.rearm()
	}
}

// removeTimeWait forgets an entry early (reuse, reopen, RST). Its FIFO slot
// goes stale and is skipped later.
func (s *Stack) removeTimeWait(key uint64) {
	delete(s.tw, key)
	s.gauges[TimeWait]--
}

// fire ends every TIME_WAIT entry whose 2*MSL is over (RFC 9293 §3.10.8).
func (w twTimer) fire(now timers.Instant) {
	s := w.s
	n := 0
	for n < len(s.twFIFO) && !s.twFIFO[n].at.After(now) {
		x := s.twFIFO[n]
		n++
		if e, ok := s.tw[x.key]; ok && e.expires == x.at {
			s.removeTimeWait(x.key)
			s.ctr.TW++
			s.twTrace(x.key, "timer time_wait", nil)
		}
	}
	// Drop the expired prefix; reuse the array once it is mostly empty.
	s.twFIFO = s.twFIFO[n:]
	if cap(s.twFIFO) > 1024 && len(s.twFIFO) < cap(s.twFIFO)/4 {
		s.twFIFO = append(make([]twExpiry, 0, 2*len(s.twFIFO)+16), s.twFIFO...)
	}
	if len(s.twFIFO) > 0 {
		s.tq.Schedule(&s.twItem, s.twFIFO[0].at)
	}
}

func (s *Stack) twTrace(key uint64, cause string, sg *seg.Segment) {
	if s.cfg.Trace == nil {
		return
	}
	ra, rp, lp := keyParts(key)
	s.cfg.Trace(TraceEvent{Time: s.now(), Local: addrPort(s.addr, lp), Remote: addrPort(ra, rp), From: TimeWait, To: Closed, Cause: cause, Seg: sg})
}

func (s *Stack) twSendAck(key uint64, e twEntry, dst seg.Segment) {
	_, rp, lp := keyParts(key)
	r := seg.Segment{Dst: dst.Src, SrcPort: lp, DstPort: rp, Seq: e.sndNxt, Ack: e.rcvNxt, Flags: seg.ACK, Window: e.rcvWnd}
	if e.tsOK {
		r.Opts.HasTS = true
		r.Opts.TSVal = uint32(int64(s.now())/int64(time.Millisecond)) + s.tsOffsetFor(key)
		r.Opts.TSEcr = e.tsRecent
	}
	s.emit(&r)
}

// timeWaitArrives handles a segment for a TIME_WAIT 4-tuple. It returns
// reopen=true when a new SYN may take over the 4-tuple (RFC 6191 §2): its
// timestamp is newer than the last one seen, or, without timestamps, its
// sequence number is beyond RCV.NXT. The new ISN then lies beyond the old
// connection's sequence space, as Linux does.
func (s *Stack) timeWaitArrives(key uint64, e twEntry, sg *seg.Segment) (isn seg.Seq, reopen bool) {
	f := sg.Flags
	switch {
	case f.Has(seg.RST):
		// Linux's default (tcp_rfc1337=0): an in-sequence RST ends
		// TIME_WAIT early. RFC 1337 would ignore it.
		if sg.Seq == e.rcvNxt {
			s.removeTimeWait(key)
			s.twTrace(key, "rcv RST", sg)
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
			s.removeTimeWait(key)
			s.twTrace(key, "rcv SYN (reopen, RFC 6191)", sg)
			return e.sndNxt.Add(65535 + 2), true
		}
		s.twSendAck(key, e, *sg)
		return 0, false
	case f.Has(seg.FIN):
		// The peer's FIN again: our ACK was lost. ACK it and restart the
		// 2*MSL timer (RFC 9293 §3.10.7.4, eighth step).
		s.twSendAck(key, e, *sg)
		e.expires = s.now().Add(2 * s.cfg.MSL)
		s.tw[key] = e
		s.pushTWExpiry(key, e.expires)
		return 0, false
	case len(sg.Payload) > 0 || sg.Seq != e.rcvNxt:
		s.twSendAck(key, e, *sg)
	}
	return 0, false
}
