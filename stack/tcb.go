package stack

import (
	"net/netip"
	"syscall"
	"time"

	"utcp/seg"
	"utcp/timers"
)

// tcb is a transmission control block (RFC 9293 §3.3.1). Every field is
// guarded by Stack.mu.
type tcb struct {
	s             *Stack
	key           uint64
	local, remote netip.AddrPort
	state         State
	passive       bool      // created by a listener (RFC 9293 passive OPEN)
	listener      *Listener // set while in the SYN queue or the accept queue
	inAcceptQueue bool
	ackedOverflow bool // a SYN_RECV whose final ACK we dropped because the accept queue was full
	created       timers.Instant

	// Send sequence space (RFC 9293 §3.3.1, Figure 4).
	iss       seg.Seq
	sndUna    seg.Seq
	sndNxt    seg.Seq
	sndMax    seg.Seq // highest sequence number sent plus one (sndNxt rolls back on RTO)
	sndWnd    uint32  // peer's window, scaled
	maxSndWnd uint32
	sndWl1    seg.Seq
	sndWl2    seg.Seq
	sndShift  uint8   // peer's window scale (RFC 7323 §2)
	sndSmall  seg.Seq // end of the last sub-MSS segment sent (Minshall's Nagle)
	pushAt    int     // 1 + index in s.outq of our latest data segment, if it lacks PSH; 0 if none (push.go)
	wsOK      bool    // both sides offered window scaling
	rcvShift  uint8   // ours
	mss       int     // payload bytes per segment we send (MSS less our options)
	peerMSS   int

	// Receive sequence space (Figure 5).
	irs    seg.Seq
	rcvNxt seg.Seq
	rcvAdv seg.Seq // right edge of the window last advertised; never moves left (RFC 9293 §3.8.6.2.2)

	// Timestamps (RFC 7323 §3).
	tsOK     bool
	tsRecent uint32
	tsOffset uint32

	// Buffers. snd holds bytes from sndStart on: acknowledged bytes are
	// dropped from its front, the application appends at its end.
	snd       ring
	sndStart  seg.Seq
	finQueued bool // the application closed its sending side: FIN follows the data
	rcv       rcvQueue
	ooo       []oooSeg
	oooBytes  int
	finRcvd   bool // the peer's FIN was consumed in order

	// Timers.
	timers    timers.Set
	item      timers.Item[timerTarget]
	rto       timers.RTO
	rtt       timers.RTTSampler
	retries   int // consecutive RTO expirations without progress
	probes    int // zero-window probes without the window opening
	totalRetx int

	// Congestion control (RFC 5681, RFC 6582 NewReno, RFC 6675 SACK).
	cc             congestionControl
	cwnd           uint32
	ssthresh       uint32
	dupAcks        int
	recover        seg.Seq
	inRecovery     bool
	rtoRecovery    bool    // retransmitting after a timeout until SND.UNA passes recover
	tlpPending     bool    // the retransmission timer is armed as a tail-loss probe
	rxtWatch       bool    // watching the retransmission of rxtUna for loss
	rxtUna         seg.Seq // SND.UNA when it was retransmitted in recovery
	rxtMark        seg.Seq // SND.MAX at that moment
	tlpOutstanding bool    // a probe was sent and no ACK has advanced SND.UNA since
	tlpStart       seg.Seq // the outstanding probe's data: [tlpStart, tlpEnd), empty when
	tlpEnd         seg.Seq // its SACK would say nothing (a FIN, or data SACKed before)
	// Spurious-timeout undo (Eifel detection, RFC 3522).
	undoValid    bool
	undoCwnd     uint32
	undoSsthresh uint32
	rtoTSval     uint32 // TSval of the first retransmission after the timeout
	lastSend     timers.Instant
	lastSackAt   timers.Instant // when an ACK last SACKed new data (probeTimerRevealsLoss)
	sackOK       bool
	sb           scoreboard
	dsack        seqRange
	dsackPending bool
	recentOOO    [4]seg.Seq // starts of the latest out-of-order arrivals, newest first (appendSACK)
	nRecentOOO   int

	// ACK policy.
	ackQueued     bool // on Stack.ackList
	ackNow        bool // send an ACK at the end of this input batch
	unackedSegs   int  // in-order full-sized data segments (a short one counts 1) received since the last ACK we sent
	quickAcks     int  // ACK immediately for this many more segments (Linux's quickack at start)
	lastChallenge timers.Instant

	// Socket side.
	conn       *Conn
	orphan     bool // the application called Close: nobody will read (Linux's "orphan")
	rdShut     bool
	err        error // what ended the connection, for the application
	lingerZero bool
	nodelay    bool

	bytesAcked, bytesReceived uint64

	// Receive buffer autotuning (Linux's tcp_moderate_rcvbuf).
	rcvRTT       time.Duration // receiver's RTT estimate from timestamps
	rcvSpaceTime timers.Instant
	rcvSpaceMark uint64 // bytesRead at rcvSpaceTime
	rcvSpace     uint64 // most bytes the application read in one RTT
	bytesRead    uint64
	advZero      bool // our last advertised window was zero

	// Keepalive and user timeout.
	keepAlive    bool
	kaIdle       time.Duration
	kaInterval   time.Duration
	kaCount      int
	kaProbes     int
	lastRecv     timers.Instant
	userTimeout  time.Duration
	lastProgress timers.Instant // when SND.UNA last advanced, or sending began from idle
	ackedAt      timers.Instant // when an ACK last acknowledged data (outputCorked)
}

type oooSeg struct {
	seq  seg.Seq
	data []byte
	fin  bool
}

func (s *Stack) newTCB(key uint64, remote netip.AddrPort, lport uint16, now timers.Instant) *tcb {
	t := &tcb{
		s:       s,
		key:     key,
		local:   netip.AddrPortFrom(s.addr, lport),
		remote:  remote,
		created: now,
		snd:     newRing(s.cfg.SendBuf, &s.bufs),
		rcv:     newRcvQueue(s.cfg.RecvBuf, &s.bufs, &s.rx),
		rto:     timers.NewRTO(s.cfg.RTO),
		nodelay: s.cfg.NoDelay,
		peerMSS: 536, // RFC 9293 §3.7.1 default when the peer sends no MSS option
	}
	t.item.Value = t
	// "Long ago": Instant 0 is a real time (the stack's epoch), so
	// "never" is the minimum instant.
	t.lastChallenge = timers.MinInstant
	t.lastSend = timers.MinInstant
	t.rcvSpaceTime = timers.MinInstant
	// The shift is fixed at the handshake, so it is chosen for the
	// largest buffer autotuning may reach.
	t.rcvShift = windowShift(s.cfg.RecvBufMax)
	t.tsOffset = s.tsOffsetFor(key)
	return t
}

// windowShift is the smallest RFC 7323 shift that lets a 16-bit window
// field describe the whole receive buffer.
func windowShift(buf int) uint8 {
	var sh uint8
	for buf>>sh > 0xffff && sh < 14 {
		sh++
	}
	return sh
}

// setState is the one place a connection changes state. It keeps the
// per-state gauges, Linux's EstabResets, and the transition trace.
func (t *tcb) setState(to State, cause string, sg *seg.Segment) {
	from := t.state
	if from == to {
		return
	}
	s := t.s
	if from != Closed {
		s.gauges[from]--
	}
	if to != Closed {
		s.gauges[to]++
	}
	// Linux tcp_set_state: leaving ESTABLISHED or CLOSE_WAIT straight to
	// CLOSED is an "establishment reset".
	if to == Closed && (from == Established || from == CloseWait) {
		s.ctr.EstabResets++
	}
	t.state = to
	if s.cfg.Trace != nil {
		s.cfg.Trace(TraceEvent{Time: s.now(), Local: t.local, Remote: t.remote, From: from, To: to, Cause: cause, Seg: sg})
	}
	if t.conn != nil {
		t.conn.wake()
	}
}

// arm sets a deadline d from now and keeps the stack-wide queue in step.
func (t *tcb) arm(k timers.Kind, d time.Duration) {
	t.timers.Arm(k, t.s.now().Add(d))
	t.syncTimer()
}

func (t *tcb) stop(k timers.Kind) {
	if t.timers.Armed(k) {
		t.timers.Stop(k)
		t.syncTimer()
	}
}

func (t *tcb) syncTimer() {
	if at, ok := t.timers.Earliest(); ok {
		t.s.tq.Schedule(&t.item, at)
		t.s.rearm()
	} else {
		t.s.tq.Cancel(&t.item)
	}
}

// fire runs every expired timer of this connection.
func (t *tcb) fire(now timers.Instant) {
	for t.state != Closed {
		k, ok := t.timers.PopDue(now)
		if !ok {
			break
		}
		switch k {
		case timers.Retransmit:
			t.onRetransmitTimer()
		case timers.SynAck:
			t.onSynAckTimer()
		case timers.DelayedACK:
			t.s.ctr.DelayedACKs++
			t.sendAck()
		case timers.Persist:
			t.onPersistTimer()
		case timers.Keepalive:
			t.onKeepaliveTimer(now)
		case timers.FinWait2:
			// Linux: an orphaned FIN_WAIT2 lasts tcp_fin_timeout, then the
			// connection is dropped without a RST.
			t.s.ctr.TCPFINWait2Timeout++
			t.remove("timer fin_wait2")
		}
	}
	if t.state != Closed {
		t.syncTimer()
	}
}

// remove takes the connection out of every table and marks it CLOSED.
func (t *tcb) remove(cause string) {
	s := t.s
	if s.conns[t.key] == t {
		delete(s.conns, t.key)
	}
	s.tq.Cancel(&t.item)
	t.timers.Clear()
	if t.listener != nil {
		t.listener.forget(t)
	}
	t.ooo, t.oooBytes = nil, 0
	t.setState(Closed, cause, nil)
	if t.err == nil {
		t.err = errClosedConn
	}
	t.snd.Discard(t.snd.Len())
	t.snd.release()
	if t.conn == nil || t.orphan {
		t.rcv.Discard(t.rcv.Len())
		t.rcv.release()
	}
	if t.conn != nil {
		t.conn.wake()
	}
}

// abort ends the connection with err; with sendRST it tells the peer
// (RFC 9293 §3.10.4 ABORT call).
func (t *tcb) abort(err error, sendRST bool, cause string) {
	if t.state == Closed {
		return
	}
	if sendRST && t.state != SynSent && t.state != Listen {
		t.sendRST(t.sndMax)
	}
	if t.state == SynSent || t.state == SynReceived {
		t.s.ctr.AttemptFails++
	}
	t.err = err
	t.remove(cause)
}

// fail ends the connection because of the peer or a timeout.
func (t *tcb) fail(errno syscall.Errno, cause string, sg *seg.Segment) {
	if t.state == SynSent || (t.state == SynReceived && !t.passive) {
		t.s.ctr.AttemptFails++
	}
	t.err = errno
	s := t.s
	if s.conns[t.key] == t {
		delete(s.conns, t.key)
	}
	s.tq.Cancel(&t.item)
	t.timers.Clear()
	if t.listener != nil {
		t.listener.forget(t)
	}
	t.setState(Closed, cause, sg)
	t.snd.Discard(t.snd.Len())
	t.snd.release()
	if t.conn != nil {
		t.conn.wake()
	}
}

// enterTimeWait turns the connection into a compact TIME_WAIT record
// (RFC 9293 §3.10.7.4, eighth step) and frees the TCB.
func (t *tcb) enterTimeWait(cause string, sg *seg.Segment) {
	s := t.s
	t.setState(TimeWait, cause, sg)
	delete(s.conns, t.key)
	s.tq.Cancel(&t.item)
	t.timers.Clear()
	t.snd.release()
	if t.conn == nil || t.orphan {
		t.rcv.Discard(t.rcv.Len())
		t.rcv.release()
	}
	if len(s.tw) >= s.cfg.MaxTimeWait {
		// Like tcp_max_tw_buckets: over the cap the connection simply
		// closes and TCPTimeWaitOverflow counts it.
		s.ctr.TCPTimeWaitOverflow++
		s.gauges[TimeWait]--
		t.state = Closed
		if s.cfg.Trace != nil {
			s.cfg.Trace(TraceEvent{Time: s.now(), Local: t.local, Remote: t.remote, From: TimeWait, To: Closed, Cause: "time_wait overflow"})
		}
		return
	}
	s.addTimeWait(t)
}
