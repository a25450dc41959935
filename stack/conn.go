package stack

import (
	"context"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	"utcp/timers"
)

// Conn is a TCP connection. It satisfies net.Conn, with CloseRead,
// CloseWrite, linger and no-delay options and an Info snapshot.
type Conn struct {
	s      *Stack
	t      *tcb
	rdCh   chan struct{}
	wrCh   chan struct{}
	closed bool  // Close was called
	wakes  uint8 // wakeR|wakeW owed at the end of the input batch (Stack.wakeSoon)
	rdDL   deadline
	wrDL   deadline
}

var _ net.Conn = (*Conn)(nil)

func newConn(t *tcb) *Conn {
	c := &Conn{s: t.s, t: t, rdCh: make(chan struct{}, 1), wrCh: make(chan struct{}, 1)}
	c.rdDL.init()
	c.wrDL.init()
	return c
}

func (c *Conn) wakeRead() {
	select {
	case c.rdCh <- struct{}{}:
	default:
	}
}

func (c *Conn) wakeWrite() {
	select {
	case c.wrCh <- struct{}{}:
	default:
	}
}

func (c *Conn) wake() {
	c.wakeRead()
	c.wakeWrite()
}

func (c *Conn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Read reads data in order. It returns io.EOF after the peer's FIN,
// ECONNRESET after a reset, os.ErrDeadlineExceeded after the read
// deadline and net.ErrClosed after Close.
func (c *Conn) Read(b []byte) (int, error) {
	s := c.s
	s.mu.Lock()
	if err := c.awaitData(len(b) == 0); err != nil {
		return 0, err
	}
	t := c.t
	if len(b) == 0 {
		s.mu.Unlock()
		return 0, nil
	}
	n := t.rcv.Read(b)
	t.consumed(n)
	s.unlockAndFlush()
	return n, nil
}

// WriteTo hands the received bytes to w until the peer's FIN (then it
// returns a nil error, as io.WriterTo asks) or an error. io.Copy uses it:
// each chunk of the receive queue is passed to w.Write as it lies in the
// queue, without the copy Read makes, and its window space is released at
// once. The read deadline applies to the waits.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	s := c.s
	var total int64
	s.mu.Lock()
	for {
		if err := c.awaitData(false); err != nil {
			if err == io.EOF {
				err = nil
			}
			return total, err
		}
		t := c.t
		data, chunk := t.rcv.takeHead()
		t.consumed(len(data))
		s.unlockAndFlush()
		n, err := w.Write(data)
		total += int64(n)
		s.mu.Lock()
		t.rcv.giveBack(chunk)
		if err != nil {
			s.mu.Unlock()
			return total, err
		}
		if n < len(data) {
			s.mu.Unlock()
			return total, io.ErrShortWrite
		}
	}
}

// consumed does the bookkeeping after the application took n bytes:
// receive-buffer autotuning and a window update if one is due.
func (t *tcb) consumed(n int) {
	t.bytesRead += uint64(n)
	t.rcvSpaceAdjust(t.s.now())
	t.windowUpdate()
}

// awaitData waits, with s.mu held, until the receive queue has bytes (it
// returns nil with s.mu still held) or reading must stop (it returns the
// error, io.EOF at the peer's FIN, with s.mu released). With zeroOK a
// zero-length read returns at once.
func (c *Conn) awaitData(zeroOK bool) error {
	s := c.s
	for {
		t := c.t
		switch {
		case c.closed:
			s.mu.Unlock()
			return c.opErr("read", net.ErrClosed)
		case c.rdDL.expired():
			s.mu.Unlock()
			return c.opErr("read", errTimeout)
		case t.rcv.Len() > 0:
			return nil
		case t.finRcvd || t.rdShut:
			s.mu.Unlock()
			return io.EOF
		case t.state == Closed || t.state == TimeWait:
			err := t.err
			s.mu.Unlock()
			if err == nil || err == errClosedConn {
				return io.EOF
			}
			return c.opErr("read", err)
		case zeroOK:
			return nil
		}
		s.mu.Unlock()
		select {
		case <-c.rdCh:
		case <-c.rdDL.wait():
		}
		s.mu.Lock()
	}
}

// windowUpdate sends an ACK after the application read, if the window the
// peer may use has at least doubled and grown by a segment (Linux's
// tcp_cleanup_rbuf rule), so a closed window reopens promptly.
func (t *tcb) windowUpdate() {
	if t.state != Established && t.state != FinWait1 && t.state != FinWait2 {
		t.rcv.release()
		return
	}
	if t.rcv.Len() == 0 {
		t.rcv.release()
	}
	cur := t.rcvWndNow()
	// What we could advertise is bounded by the 16-bit window field and our
	// scale (RFC 7323 §2.3): without that bound a buffer larger than the
	// largest window makes every read send a useless window update.
	free := min(uint32(t.rcv.Free()), uint32(0xffff)<<t.rcvShift)
	if free >= 2*cur && free-cur >= uint32(t.mssOrDefault()) {
		t.sendAck()
	}
}

// Write writes all of b unless an error (reset, deadline, close) stops it.
func (c *Conn) Write(b []byte) (int, error) {
	s := c.s
	n := 0
	s.mu.Lock()
	for {
		t := c.t
		switch {
		case c.closed:
			s.mu.Unlock()
			return n, c.opErr("write", net.ErrClosed)
		case c.wrDL.expired():
			s.mu.Unlock()
			return n, c.opErr("write", errTimeout)
		case t.state == Closed || t.state == TimeWait:
			err := t.err
			s.mu.Unlock()
			if err == nil || err == errClosedConn {
				err = syscall.EPIPE
			}
			return n, c.opErr("write", err)
		case t.finQueued:
			s.mu.Unlock()
			return n, c.opErr("write", syscall.EPIPE)
		case t.state == Established || t.state == CloseWait:
			if n == len(b) {
				s.mu.Unlock()
				return n, nil
			}
			k := t.snd.Write(b[n:])
			n += k
			if k > 0 {
				s.beginNow()
				t.outputCorked()
			}
			if n == len(b) {
				s.unlockAndFlush()
				return n, nil
			}
		}
		s.unlockAndFlush()
		select {
		case <-c.wrCh:
		case <-c.wrDL.wait():
		}
		s.mu.Lock()
	}
}

// Close closes the connection. With unread data, or with SetLinger(0), it
// aborts with a RST (RFC 9293 §3.10.4; RFC 2525 §2.17; Linux counts
// TCPAbortOnClose / TCPAbortOnLinger). Otherwise it sends FIN after the
// queued data; the connection finishes in the background.
func (c *Conn) Close() error {
	s := c.s
	s.mu.Lock()
	if c.closed {
		s.mu.Unlock()
		return c.opErr("close", net.ErrClosed)
	}
	c.closed = true
	t := c.t
	t.orphan = true
	switch t.state {
	case Closed, TimeWait:
		t.rcv.Discard(t.rcv.Len())
		t.rcv.release()
	case SynSent:
		t.abort(net.ErrClosed, false, "close()")
	default:
		switch {
		case t.lingerZero:
			s.ctr.TCPAbortOnLinger++
			t.abort(net.ErrClosed, true, "close() with linger 0")
		case t.rcv.Len() > 0:
			s.ctr.TCPAbortOnClose++
			t.abort(net.ErrClosed, true, "close() with unread data")
		default:
			t.rdShut = true
			t.shutdownWrite("close()")
			if t.state == FinWait2 {
				t.arm(timers.FinWait2, s.cfg.FinTimeout)
			}
		}
	}
	c.wake()
	s.unlockAndFlush()
	return nil
}

// shutdownWrite queues our FIN after the data (RFC 9293 §3.10.4 CLOSE).
func (t *tcb) shutdownWrite(cause string) {
	if t.finQueued {
		return
	}
	switch t.state {
	case Established:
		t.finQueued = true
		t.setState(FinWait1, cause, nil)
	case CloseWait:
		t.finQueued = true
		t.setState(LastAck, cause, nil)
	default:
		return
	}
	t.output()
}

// CloseWrite sends FIN after the queued data (a half-close); reading
// continues.
func (c *Conn) CloseWrite() error {
	s := c.s
	s.mu.Lock()
	if c.closed {
		s.mu.Unlock()
		return c.opErr("close", net.ErrClosed)
	}
	c.t.shutdownWrite("shutdown(SHUT_WR)")
	c.wakeWrite()
	s.unlockAndFlush()
	return nil
}

// CloseRead makes further reads return io.EOF; data that arrives later is
// acknowledged and discarded.
func (c *Conn) CloseRead() error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.closed {
		return c.opErr("close", net.ErrClosed)
	}
	c.t.rdShut = true
	c.t.rcv.Discard(c.t.rcv.Len())
	c.t.rcv.release()
	c.wakeRead()
	return nil
}

// SetLinger with sec == 0 makes Close abort with a RST (SO_LINGER 0);
// any other value restores the normal graceful close.
func (c *Conn) SetLinger(sec int) error {
	c.s.mu.Lock()
	c.t.lingerZero = sec == 0
	c.s.mu.Unlock()
	return nil
}

// SetNoDelay turns Nagle's algorithm off (true) or on.
func (c *Conn) SetNoDelay(noDelay bool) error {
	s := c.s
	s.mu.Lock()
	c.t.nodelay = noDelay
	if noDelay {
		c.t.output()
	}
	s.unlockAndFlush()
	return nil
}

func (c *Conn) LocalAddr() net.Addr  { return net.TCPAddrFromAddrPort(c.t.local) }
func (c *Conn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.t.remote) }

func (c *Conn) SetDeadline(t time.Time) error {
	c.rdDL.set(t)
	c.wrDL.set(t)
	c.wake()
	return nil
}

func (c *Conn) SetReadDeadline(t time.Time) error {
	c.rdDL.set(t)
	c.wakeRead()
	return nil
}

func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wrDL.set(t)
	c.wakeWrite()
	return nil
}

// Info returns a snapshot of the connection's variables (like TCP_INFO).
func (c *Conn) Info() ConnInfo {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.t.info(c.s.now())
}

// --- active open ----------------------------------------------------------

// Dial opens a connection to raddr (RFC 9293 §3.10.1 active OPEN) and waits
// for the handshake, until ctx is done.
func (s *Stack) Dial(ctx context.Context, raddr netip.AddrPort) (*Conn, error) {
	return s.DialFrom(ctx, 0, raddr)
}

// DialFrom is Dial from a chosen local port (0 picks an ephemeral one),
// like bind() before connect(); it makes simultaneous open possible.
func (s *Stack) DialFrom(ctx context.Context, lport uint16, raddr netip.AddrPort) (*Conn, error) {
	s.mu.Lock()
	t, err := s.connect(lport, raddr)
	if err != nil {
		s.mu.Unlock()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(raddr), Err: err}
	}
	c := newConn(t)
	t.conn = c
	s.unlockAndFlush()
	for {
		s.mu.Lock()
		st, e := t.state, t.err
		s.mu.Unlock()
		switch {
		case st == Closed:
			return nil, c.opErr("dial", e)
		case st != SynSent && st != SynReceived:
			return c, nil
		}
		select {
		case <-c.rdCh:
		case <-ctx.Done():
			s.mu.Lock()
			t.abort(ctx.Err(), false, "dial canceled")
			s.unlockAndFlush()
			return nil, c.opErr("dial", ctx.Err())
		}
	}
}

// DialContext has net.Dialer's signature so http.Transport and friends
// can use the stack directly.
func (s *Stack) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if network != "tcp" && network != "tcp4" {
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	c, err := s.Dial(ctx, ap)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// connect creates a SYN_SENT connection and sends the SYN.
func (s *Stack) connect(lport uint16, raddr netip.AddrPort) (*tcb, error) {
	if s.closed {
		return nil, net.ErrClosed
	}
	if !raddr.Addr().Is4() || raddr.Port() == 0 {
		return nil, syscall.EINVAL
	}
	now := s.now()
	ra := raddr.Addr().As4()
	var reuse *twEntry
	var reuseKey uint64
	if lport == 0 {
		var err error
		if lport, reuse, err = s.pickPort(ra, raddr.Port(), now); err != nil {
			return nil, err
		}
		reuseKey = connKey(ra, raddr.Port(), lport)
	} else {
		k := connKey(ra, raddr.Port(), lport)
		if s.conns[k] != nil {
			return nil, syscall.EADDRINUSE
		}
		if e, ok := s.tw[k]; ok {
			if !s.twReusable(&e, now) {
				return nil, syscall.EADDRINUSE
			}
			reuse, reuseKey = &e, k
		}
	}
	key := connKey(ra, raddr.Port(), lport)
	t := s.newTCB(key, raddr, lport, now)
	if reuse != nil {
		// tcp_tw_reuse: start beyond the old incarnation's sequence
		// space and keep its timestamps monotonic (RFC 6191 needs both).
		t.iss = reuse.sndNxt.Add(65535 + 2)
		s.removeTimeWait(reuseKey)
		s.ctr.TWRecycled++
	} else {
		t.iss = s.isn(key, now)
	}
	t.sndUna = t.iss
	t.sndNxt = t.iss.Add(1)
	t.sndMax = t.sndNxt
	t.sndStart = t.iss.Add(1)
	t.mss = min(536, s.mtu-40)
	s.conns[key] = t
	s.ctr.ActiveOpens++
	t.setState(SynSent, "connect()", nil)
	t.sendSYN()
	t.arm(timers.Retransmit, t.rto.Current())
	return t, nil
}

// pickPort chooses an ephemeral port (RFC 6056 §3.3.1: a random start in
// Linux's ip_local_port_range 32768-60999, then the next free one).
func (s *Stack) pickPort(ra [4]byte, rport uint16, now timers.Instant) (uint16, *twEntry, error) {
	const lo, n = 32768, 60999 - 32768 + 1
	start := s.rng.IntN(n)
	for i := 0; i < n; i++ {
		p := uint16(lo + (start+i)%n)
		if s.listeners[p] != nil {
			continue
		}
		k := connKey(ra, rport, p)
		if s.conns[k] != nil {
			continue
		}
		if e, ok := s.tw[k]; ok {
			if s.twReusable(&e, now) {
				return p, &e, nil
			}
			continue
		}
		return p, nil, nil
	}
	return 0, nil, syscall.EADDRNOTAVAIL
}

// twReusable is tcp_tw_reuse's test: only for outgoing connections, only
// when the old connection used timestamps (so PAWS protects the new one
// from its old segments), and only when the entry is over a second old.
func (s *Stack) twReusable(e *twEntry, now timers.Instant) bool {
	return s.cfg.TWReuse && e.tsOK && now.Sub(e.created) > time.Second
}
