package stack

import (
	"syscall"
	"time"

	"utcp/seg"
	"utcp/timers"
)

// Keepalive (RFC 1122 §4.2.3.6, with Linux's tcp_keepalive_* knobs): after
// Idle without hearing from the peer, probe every Interval; after Count
// unanswered probes the connection fails with ETIMEDOUT. Off unless the
// application asks.

// KeepAliveConfig mirrors net.KeepAliveConfig. Zero fields keep the
// stack's defaults.
type KeepAliveConfig struct {
	Enable   bool
	Idle     time.Duration
	Interval time.Duration
	Count    int
}

// SetKeepAliveConfig turns keepalive on or off with the given timings.
func (c *Conn) SetKeepAliveConfig(kc KeepAliveConfig) error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	t := c.t
	cfg := &s.cfg
	t.keepAlive = kc.Enable
	t.kaIdle = cmpOr(kc.Idle, cfg.KeepAliveIdle)
	t.kaInterval = cmpOr(kc.Interval, cfg.KeepAliveInterval)
	t.kaCount = cfg.KeepAliveCount
	if kc.Count > 0 {
		t.kaCount = kc.Count
	}
	t.kaProbes = 0
	if t.keepAlive && t.state.synchronized() && t.state != TimeWait {
		t.arm(timers.Keepalive, t.kaIdle)
	} else if !t.keepAlive {
		t.stop(timers.Keepalive)
	}
	return nil
}

// SetKeepAlive is net.TCPConn's: on or off with the current timings.
func (c *Conn) SetKeepAlive(on bool) error {
	c.s.mu.Lock()
	kc := KeepAliveConfig{Enable: on, Idle: c.t.kaIdle, Interval: c.t.kaInterval, Count: c.t.kaCount}
	c.s.mu.Unlock()
	return c.SetKeepAliveConfig(kc)
}

// SetKeepAlivePeriod is net.TCPConn's: sets both idle time and interval.
func (c *Conn) SetKeepAlivePeriod(d time.Duration) error {
	c.s.mu.Lock()
	kc := KeepAliveConfig{Enable: c.t.keepAlive, Idle: d, Interval: d, Count: c.t.kaCount}
	c.s.mu.Unlock()
	return c.SetKeepAliveConfig(kc)
}

// SetUserTimeout is TCP_USER_TIMEOUT (RFC 5482): how long sent data may
// stay unacknowledged before the connection fails with ETIMEDOUT. Zero
// leaves it to the retry limit.
func (c *Conn) SetUserTimeout(d time.Duration) error {
	c.s.mu.Lock()
	c.t.userTimeout = d
	c.s.mu.Unlock()
	return nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (t *tcb) onKeepaliveTimer(now timers.Instant) {
	if !t.keepAlive || !t.state.synchronized() {
		return
	}
	idle := now.Sub(t.lastRecv)
	if idle < t.kaIdle && t.kaProbes == 0 {
		t.arm(timers.Keepalive, t.kaIdle-idle)
		return
	}
	// Linux probes only an idle connection: with data in flight the
	// retransmission timer watches the peer instead.
	if t.sndUna != t.sndMax || t.snd.Len() > 0 {
		t.arm(timers.Keepalive, t.kaIdle)
		return
	}
	if t.kaProbes >= t.kaCount || (t.userTimeout > 0 && idle >= t.userTimeout && t.kaProbes > 0) {
		t.s.ctr.TCPAbortOnTimeout++
		t.fail(syscall.ETIMEDOUT, "timer keepalive", nil)
		return
	}
	// The probe carries SND.UNA-1 so the peer must answer with an ACK.
	sg := t.header(seg.ACK, t.sndUna-1)
	t.s.emit(&sg)
	t.s.ctr.TCPKeepAlive++
	t.kaProbes++
	t.arm(timers.Keepalive, t.kaInterval)
}

// heard notes a segment from the peer: keepalive starts over.
func (t *tcb) heard(now timers.Instant) {
	t.lastRecv = now
	t.kaProbes = 0
}

// userTimedOut reports whether TCP_USER_TIMEOUT has passed since the
// connection last made progress.
func (t *tcb) userTimedOut(now timers.Instant) bool {
	return t.userTimeout > 0 && now.Sub(t.lastProgress) >= t.userTimeout
}

// rcvSpaceAdjust is receive-buffer autotuning in the manner of Linux's
// tcp_rcv_space_adjust: once per round trip, if the application read
// more than ever before in one round trip, let the buffer hold four
// times that (twice for the window, twice again for growth), up to
// RecvBufMax. Run from Read, since what matters is what the application
// consumes.
func (t *tcb) rcvSpaceAdjust(now timers.Instant) {
	s := t.s
	if s.cfg.NoRcvAutoTune {
		return
	}
	if t.rcvSpaceTime == timers.MinInstant {
		t.rcvSpaceTime, t.rcvSpaceMark = now, t.bytesRead
		return
	}
	rtt := max(t.rcvRTT, t.rto.SRTT(), time.Millisecond)
	if now.Sub(t.rcvSpaceTime) < rtt {
		return
	}
	copied := t.bytesRead - t.rcvSpaceMark
	t.rcvSpaceTime, t.rcvSpaceMark = now, t.bytesRead
	if copied <= t.rcvSpace {
		return
	}
	t.rcvSpace = copied
	want := int(min(4*copied, uint64(s.cfg.RecvBufMax)))
	if want > t.rcv.limit {
		t.rcv.limit = want
	}
}

// sampleRcvRTT estimates the round trip as a receiver from the echoed
// timestamp of arriving data (like Linux's tcp_rcv_rtt_measure_ts).
func (t *tcb) sampleRcvRTT(sg *seg.Segment, now timers.Instant) {
	if !t.tsOK || !sg.Opts.HasTS || sg.Opts.TSEcr == 0 || len(sg.Payload) == 0 {
		return
	}
	d := int32(t.tsNow(now) - sg.Opts.TSEcr)
	if d < 0 {
		return
	}
	rtt := time.Duration(d) * time.Millisecond
	if t.rcvRTT == 0 || rtt < t.rcvRTT {
		t.rcvRTT = rtt
	} else {
		t.rcvRTT += (rtt - t.rcvRTT) / 8
	}
}

// established sets up what a connection needs once synchronized.
func (t *tcb) established() {
	now := t.s.now()
	t.lastRecv = now
	t.lastProgress = now
	t.quickAcks = t.s.cfg.QuickAcks
	t.kaIdle = cmpOr(t.kaIdle, t.s.cfg.KeepAliveIdle)
	t.kaInterval = cmpOr(t.kaInterval, t.s.cfg.KeepAliveInterval)
	if t.kaCount == 0 {
		t.kaCount = t.s.cfg.KeepAliveCount
	}
}
