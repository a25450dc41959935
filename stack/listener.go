package stack

import (
	"net"
	"net/netip"
	"syscall"
	"time"

	"utcp/seg"
	"utcp/timers"
)

// Listener is a passive open on one port with Linux's two queues: the SYN
// queue holds connections in SYN_RECV, the accept queue holds established
// connections until Accept takes them.
type Listener struct {
	s          *Stack
	port       uint16
	backlog    int
	synQLen    int
	acceptQ    []*tcb
	closed     bool
	ready      chan struct{} // signalled when the accept queue gains an entry
	done       chan struct{} // closed by Close
	deadline   deadline
	lastCookie timers.Instant // when this listener last sent a SYN cookie
}

var _ net.Listener = (*Listener)(nil)

// SomaxConn caps a listen backlog, as net.core.somaxconn does.
const SomaxConn = 4096

// Listen opens a listener on port (0 picks an ephemeral port). backlog
// bounds both queues as on Linux; 0 or less means 128.
func (s *Stack) Listen(port uint16, backlog int) (*Listener, error) {
	if backlog <= 0 {
		backlog = 128
	}
	backlog = min(backlog, SomaxConn)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Err: net.ErrClosed}
	}
	if port == 0 {
		for i := 0; i < 28232; i++ {
			p := uint16(32768 + s.rng.IntN(28232))
			if s.listeners[p] == nil {
				port = p
				break
			}
		}
	}
	if port == 0 || s.listeners[port] != nil {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Addr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(s.addr, port)), Err: syscall.EADDRINUSE}
	}
	l := &Listener{s: s, port: port, backlog: backlog, ready: make(chan struct{}, 1), done: make(chan struct{}), lastCookie: timers.MinInstant}
	l.deadline.init()
	s.listeners[port] = l
	return l, nil
}

// acceptQueueFull is Linux's sk_acceptq_is_full: the queue counts as full
// only when it holds more than backlog entries, so backlog+1 fit.
func (l *Listener) acceptQueueFull() bool { return len(l.acceptQ) > l.backlog }

// synQueueFull is Linux's inet_csk_reqsk_queue_is_full: the SYN queue
// holds at most backlog requests. This is where SYN cookies will step in.
func (l *Listener) synQueueFull() bool { return l.synQLen >= l.backlog }

// arrives handles a segment for a listening port with no connection (RFC
// 9293 §3.10.7.2). reopen is set when a SYN legitimately reuses the
// 4-tuple of a TIME_WAIT entry (RFC 6191), whose sequence space the new
// ISN must lie beyond.
func (l *Listener) arrives(sg *seg.Segment, key uint64, isnOverride seg.Seq, reopen bool) {
	s := l.s
	f := sg.Flags
	if f.Has(seg.RST) {
		return
	}
	if f.Has(seg.ACK) {
		if s.cfg.SynCookies > 0 && l.acceptCookie(sg, key) {
			return
		}
		// Any other ACK reaching a listener is bad (RFC 9293
		// §3.10.7.2): <SEQ=SEG.ACK><CTL=RST>.
		s.replyRST(sg)
		return
	}
	if !f.Has(seg.SYN) || f.Has(seg.FIN) {
		// Linux discards SYN|FIN in LISTEN; other segments are dropped.
		return
	}
	if l.acceptQueueFull() {
		// Linux drops the SYN while the accept queue is full; the peer
		// retransmits it later.
		s.ctr.ListenOverflows++
		s.ctr.ListenDrops++
		return
	}
	if s.cfg.SynCookies == 2 || (l.synQueueFull() && s.cfg.SynCookies == 1) {
		if l.synQueueFull() {
			s.ctr.TCPReqQFullDoCookies++
		}
		l.sendCookie(sg, key)
		return
	}
	if l.synQueueFull() {
		// tcp_syncookies=0: drop and count.
		s.ctr.TCPReqQFullDrop++
		s.ctr.ListenDrops++
		return
	}
	now := s.now()
	remote := netip.AddrPortFrom(sg.Src, sg.SrcPort)
	t := s.newTCB(key, remote, l.port, now)
	t.passive = true
	t.listener = l
	t.irs = sg.Seq
	t.rcvNxt = sg.Seq.Add(1)
	// The advertised right edge starts at RCV.NXT: left at zero, a peer
	// ISN in the upper half of the sequence space would make every edge
	// compare below it, so rcvWndNow would report ~2^31 and advertise()
	// would offer the largest window whatever the free buffer space.
	t.rcvAdv = t.rcvNxt
	t.takeSynOptions(sg)
	if reopen {
		t.iss = isnOverride
	} else {
		t.iss = s.isn(key, now)
	}
	t.sndUna = t.iss
	t.sndNxt = t.iss.Add(1)
	t.sndMax = t.sndNxt
	t.sndStart = t.iss.Add(1)
	t.sndWnd = uint32(sg.Window) // unscaled in a SYN (RFC 7323 §2.2)
	t.maxSndWnd = t.sndWnd
	t.sndWl1 = sg.Seq
	s.conns[key] = t
	l.synQLen++
	t.setState(SynReceived, "rcv SYN", sg)
	t.sendSynAck()
	t.arm(timers.SynAck, t.rto.Current())
}

// promote moves a connection from the SYN queue to the accept queue.
func (l *Listener) promote(t *tcb) {
	l.synQLen--
	l.acceptQ = append(l.acceptQ, t)
	t.inAcceptQueue = true
	t.conn = newConn(t)
}

// forget removes a connection from whichever queue holds it.
func (l *Listener) forget(t *tcb) {
	if t.inAcceptQueue {
		for i, x := range l.acceptQ {
			if x == t {
				l.acceptQ = append(l.acceptQ[:i], l.acceptQ[i+1:]...)
				break
			}
		}
		t.inAcceptQueue = false
	} else {
		l.synQLen--
	}
	t.listener = nil
}

func (l *Listener) wake() {
	select {
	case l.ready <- struct{}{}:
	default:
	}
}

// Accept waits for and returns the next connection.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptTCP is Accept returning the concrete type.
func (l *Listener) AcceptTCP() (*Conn, error) {
	s := l.s
	for {
		s.mu.Lock()
		if l.closed {
			s.mu.Unlock()
			return nil, l.opErr(net.ErrClosed)
		}
		if len(l.acceptQ) > 0 {
			t := l.acceptQ[0]
			copy(l.acceptQ, l.acceptQ[1:])
			l.acceptQ[len(l.acceptQ)-1] = nil
			l.acceptQ = l.acceptQ[:len(l.acceptQ)-1]
			t.inAcceptQueue = false
			t.listener = nil
			if len(l.acceptQ) > 0 {
				l.wake()
			}
			s.mu.Unlock()
			return t.conn, nil
		}
		s.mu.Unlock()
		select {
		case <-l.ready:
		case <-l.done:
		case <-l.deadline.wait():
			return nil, l.opErr(errTimeout)
		}
	}
}

// SetDeadline sets the deadline for Accept.
func (l *Listener) SetDeadline(t time.Time) error {
	l.deadline.set(t)
	return nil
}

func (l *Listener) opErr(err error) error {
	return &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: err}
}

// Close stops listening. Connections waiting in the accept queue are
// reset and SYN_RECV requests dropped, as Linux's inet_csk_listen_stop.
func (l *Listener) Close() error {
	s := l.s
	s.mu.Lock()
	if l.closed {
		s.mu.Unlock()
		return l.opErr(net.ErrClosed)
	}
	l.closeLocked()
	s.unlockAndFlush()
	return nil
}

func (l *Listener) closeLocked() {
	s := l.s
	l.closed = true
	close(l.done)
	if s.listeners[l.port] == l {
		delete(s.listeners, l.port)
	}
	for len(l.acceptQ) > 0 {
		t := l.acceptQ[0]
		t.orphan = true
		t.abort(syscall.ECONNRESET, true, "listener closed")
	}
	for _, t := range s.conns {
		if t.listener == l {
			t.remove("listener closed")
		}
	}
}

// Addr is the listening address.
func (l *Listener) Addr() net.Addr {
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(l.s.addr, l.port))
}

// Port is the listening port.
func (l *Listener) Port() uint16 { return l.port }

// Backlog is the listen backlog.
func (l *Listener) Backlog() int { return l.backlog }
