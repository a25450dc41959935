package stack

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"sync"
	"time"

	"utcp/seg"
	"utcp/timers"
)

// Config holds the stack's settings. Zero values mean the Linux-like
// defaults given beside each field.
type Config struct {
	Link  Link         // required unless Manual
	Addr  netip.Addr   // the stack's IPv4 address; default 198.18.0.2
	Clock timers.Clock // default timers.NewRealClock()

	// Manual starts no goroutine and no timer: the caller feeds packets with
	// Inject, moves time with Advance and collects output with TakeOutput.
	// Scripted tests use it with a timers.ManualClock.
	Manual bool

	// InlineFlush makes every goroutine that queues packets (the read
	// loop, an application's Write or Read, a timer) write them itself,
	// instead of handing them to the flusher goroutine and going on. See
	// unlockAndHandoff for why the hand-off is the default; it applies to
	// a single-queue link only.
	InlineFlush bool

	MSL         time.Duration // default 30s, so TIME_WAIT lasts 2*MSL = 60s as on Linux
	FinTimeout  time.Duration // orphaned FIN_WAIT2 lifetime; default 60s (tcp_fin_timeout)
	MaxTimeWait int           // TIME_WAIT entries; default 262144 (tcp_max_tw_buckets)
	TWReuse     bool          // reuse a TIME_WAIT 4-tuple for Dial (tcp_tw_reuse)
	// SynCookies is tcp_syncookies: 1 (the default) answers with SYN
	// cookies once a listener's SYN queue is full, 2 always, -1 never (a
	// full SYN queue then drops SYNs).
	SynCookies    int
	SynRetries    int  // default 6 (tcp_syn_retries)
	SynAckRetries int  // default 5 (tcp_synack_retries)
	Retries2      int  // RTO retransmissions before ETIMEDOUT; default 15 (tcp_retries2)
	SendBuf       int  // per-connection send buffer; default 4 MiB (allocated as used)
	RecvBuf       int  // initial receive buffer; default 128 KiB (tcp_rmem default)
	RecvBufMax    int  // receive buffer autotuning cap; default 6 MiB (tcp_rmem max)
	NoRcvAutoTune bool // keep the receive buffer at RecvBuf (tcp_moderate_rcvbuf=0)

	KeepAliveIdle     time.Duration // default 2h (tcp_keepalive_time)
	KeepAliveInterval time.Duration // default 75s (tcp_keepalive_intvl)
	KeepAliveCount    int           // default 9 (tcp_keepalive_probes)
	MaxOOOSegs        int           // out-of-order segments held per connection; default 256
	DelayedACK        time.Duration // delayed-ACK timeout; default 40ms (Linux's minimum), negative disables delaying
	NoDelay           bool          // default TCP_NODELAY for new connections (Nagle off)
	QuickAcks         int           // segments ACKed at once after the handshake (Linux quickack); default 16, negative for none
	NoSACK            bool          // do not offer or accept SACK (tcp_sack=0)
	Congestion        string        // "cubic" (default, as Linux) or "reno"
	RTO               timers.RTOConfig

	// Seed, when non-zero, makes ISNs, ephemeral ports and timestamp
	// offsets deterministic (simulations); zero draws them from crypto/rand.
	Seed uint64

	// Trace, if set, is called (under the stack's lock: it must be quick
	// and must not call back into the stack) for every state transition.
	Trace func(TraceEvent)
	// Logf receives rare diagnostics (link errors); default discards.
	Logf func(format string, args ...any)
}

func (c *Config) setDefaults() {
	if !c.Addr.IsValid() {
		c.Addr = netip.AddrFrom4([4]byte{198, 18, 0, 2})
	}
	if c.Clock == nil {
		c.Clock = timers.NewRealClock()
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defd(&c.MSL, 30*time.Second)
	defd(&c.FinTimeout, 60*time.Second)
	defd(&c.DelayedACK, 40*time.Millisecond)
	def(&c.MaxTimeWait, 262144)
	if c.SynCookies == 0 {
		c.SynCookies = 1
	}
	def(&c.SynRetries, 6)
	def(&c.SynAckRetries, 5)
	def(&c.Retries2, 15)
	if c.QuickAcks == 0 {
		c.QuickAcks = 16 // Linux's TCP_MAX_QUICKACKS
	}
	c.QuickAcks = max(c.QuickAcks, 0)
	def(&c.SendBuf, 4<<20)
	def(&c.RecvBuf, 128<<10)
	def(&c.RecvBufMax, 6<<20)
	c.RecvBufMax = max(c.RecvBufMax, c.RecvBuf)
	defd(&c.KeepAliveIdle, 2*time.Hour)
	defd(&c.KeepAliveInterval, 75*time.Second)
	def(&c.KeepAliveCount, 9)
	def(&c.MaxOOOSegs, 256)
	if c.RTO == (timers.RTOConfig{}) {
		c.RTO = timers.DefaultRTOConfig()
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// TraceEvent is one state transition and what caused it.
type TraceEvent struct {
	Time          timers.Instant
	Local, Remote netip.AddrPort
	From, To      State
	Cause         string       // e.g. "rcv SYN", "timer time_wait", "close()"
	Seg           *seg.Segment // the segment that caused it, if any; valid only during the call
}

// timerTarget is anything with deadlines in the stack-wide queue.
type timerTarget interface {
	fire(now timers.Instant)
}

// Stack is one TCP/IPv4 host.
type Stack struct {
	cfg   Config
	addr  netip.Addr
	addr4 [4]byte
	link  Link
	clock timers.Clock
	mtu   int

	mu          sync.Mutex
	conns       map[uint64]*tcb
	listeners   map[uint16]*Listener
	tw          map[uint64]twEntry
	twFIFO      []twExpiry
	twItem      timers.Item[timerTarget]
	tq          timers.Queue[timerTarget]
	reasm       reassembler
	ctr         Counters
	gauges      [numStates]int
	rng         *mrand.Rand
	isnKey      [32]byte
	rxSeg       seg.Segment // the segment being processed; reused to avoid allocation
	ackList     []*tcb      // connections owing an ACK at the end of an input batch
	scratch     []byte      // payload assembly when the send ring wraps
	sackScratch []seqRange
	bufs        bufPool
	nowVal      timers.Instant // the section's time (see now)
	nowSet      bool
	// Wakes owed to applications by the input batch in progress (see
	// wakeSoon); deferWakes is set while the single read loop holds mu.
	wakeQ      []*Conn
	deferWakes bool
	// Zero-copy receive (rcvq.go): rxCur is the link buffer holding the
	// packet being processed (nil for injected packets); a receive queue
	// that adopts it sets rxTaken and the read loop replaces it from rx.
	rx      rxPool
	rxCur   []byte
	rxTaken bool
	adopted uint64 // segments adopted, for tests
	closed  bool

	// Output: packets produced under mu, written by one flusher at a time.
	outq, spare [][]byte
	// pushCands are the connections whose latest data segment in outq
	// lacks PSH (tcb.pushAt); markPushes sets it when outq is taken.
	pushCands []*tcb
	// With a SplitLink (split, nil otherwise), outPay runs beside outq:
	// the payload of a packet whose outq entry holds only its headers.
	outPay, paySpare [][]byte
	split            SplitLink
	gsoSize          int // the link's super-packet limit, 0 without one (gsoMax)
	// flushKick wakes the flusher goroutine (flushLoop) to write what was
	// queued; nil when every goroutine writes its own (InlineFlush, manual
	// mode, multi-queue links).
	flushKick, flushStop chan struct{}
	free                 [][]byte
	flushing             bool
	bufSize              int
	mq                   *multiQueue // per-queue output of a MultiQueueLink; nil with one queue

	timer      *time.Timer
	timerArmed bool
	timerAt    timers.Instant

	wg sync.WaitGroup
}

// ErrStackClosed is returned by operations on a closed stack.
var ErrStackClosed = errors.New("utcp: stack closed")

// New creates a stack. Unless cfg.Manual, it starts reading from cfg.Link
// at once; Close stops it.
func New(cfg Config) (*Stack, error) {
	cfg.setDefaults()
	if !cfg.Addr.Is4() {
		return nil, fmt.Errorf("utcp: address %v is not IPv4", cfg.Addr)
	}
	if cfg.Link == nil && !cfg.Manual {
		return nil, errors.New("utcp: Config.Link is required")
	}
	s := &Stack{
		cfg:       cfg,
		addr:      cfg.Addr,
		addr4:     cfg.Addr.As4(),
		link:      cfg.Link,
		clock:     cfg.Clock,
		mtu:       1500,
		conns:     make(map[uint64]*tcb),
		listeners: make(map[uint16]*Listener),
		tw:        make(map[uint64]twEntry),
	}
	if cfg.Link != nil {
		s.mtu = cfg.Link.MTU()
		s.gsoSize = linkGSOMax(cfg.Link)
	}
	if s.mtu < 68 {
		return nil, fmt.Errorf("utcp: link MTU %d is below the IPv4 minimum of 68", s.mtu)
	}
	s.bufSize = s.mtu + 64
	var seed [32]byte
	if cfg.Seed != 0 {
		binary.LittleEndian.PutUint64(seed[:], cfg.Seed)
		binary.LittleEndian.PutUint64(s.isnKey[:], cfg.Seed*0x9e3779b97f4a7c15+1)
	} else {
		rand.Read(seed[:])
		rand.Read(s.isnKey[:])
	}
	s.rng = mrand.New(mrand.NewChaCha8(seed))
	s.reasm.init(s)
	s.twItem.Value = twTimer{s}
	s.bufs.maxBytes = 64 << 20
	s.rx = rxPool{size: rxBufSize, maxFree: 256}
	s.scratch = make([]byte, 0, 65536)
	if !cfg.Manual {
		s.timer = time.AfterFunc(time.Hour, s.onTimer)
		s.timer.Stop()
		s.startReaders() // multiqueue.go: one reader per link queue
	}
	return s, nil
}

// now is the time every rule sees. Inside a section, an input batch, a
// timer pass or one Write, it is read once when the section begins and is
// the same for everything the section does (as Linux reads tcp_mstamp once
// per packet, not per use); each section ends in unlockAndFlush, which
// closes it. Outside a section it reads the clock. A clock read is a vDSO
// call, and the send and ACK paths used to make four or five per segment.
func (s *Stack) now() timers.Instant {
	if s.nowSet {
		return s.nowVal
	}
	return s.clock.Now()
}

// beginNow opens a timed section (see now); mu must be held.
func (s *Stack) beginNow() { s.nowVal, s.nowSet = s.clock.Now(), true }

// Addr is the stack's IPv4 address.
func (s *Stack) Addr() netip.Addr { return s.addr }

// Now is the stack's clock.
func (s *Stack) Now() timers.Instant { return s.clock.Now() }

// Close resets every connection, closes the link and waits for the reader.
func (s *Stack) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, l := range s.listeners {
		l.closeLocked()
	}
	for _, t := range s.conns {
		t.abort(errStackClosed, true, "stack closed")
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.flushStop != nil {
		close(s.flushStop)
	}
	s.unlockAndWrite() // the flusher is stopping: write the RSTs here
	var err error
	if s.link != nil {
		err = s.link.Close()
	}
	s.wg.Wait()
	return err
}

var errStackClosed = ErrStackClosed

func (s *Stack) readLoop() {
	defer s.wg.Done()
	n := max(s.link.BatchSize(), 1)
	bufs := make([][]byte, n)
	sizes := make([]int, n)
	trusted := make([]bool, n)
	read := s.linkReader()
	for i := range bufs {
		bufs[i] = make([]byte, rxBufSize)
	}
	for {
		k, err := read(bufs, sizes, trusted)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			s.cfg.Logf("utcp: link read: %v", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		s.beginNow()
		s.deferWakes = true
		for i := 0; i < k; i++ {
			s.inputOwned(bufs, i, sizes[i], trusted[i])
		}
		s.endBatch()
		s.unlockAndFlush()
	}
}

// unlockAndHandoff ends a section like unlockAndWrite, except that the
// flusher goroutine writes the packets the section queued, and the caller
// (the read loop, an application's Write or Read, a timer) goes on at once.
//
// On a TUN those writes are where the host's TCP does its work: writing
// our ACK runs the kernel sender's tcp_ack and tcp_write_xmit (and, on a
// plain TUN, the segmentation of its 64 KB skbs), and writing our data
// runs the kernel receiver. When the read loop wrote its own ACKs, reading
// stopped meanwhile; when an application's Write wrote its own data, the
// application stopped. With the flusher, they use two cores. Measured
// with the bench (utcp targets, 3 rounds, same minute):
//   - read loop hand-off: offload upload 2797 -> 3446 MB/s and 0.29 ->
//     0.25 CPU s/GB, HTTP with 32 clients 20.0k -> 24.8k conn/s;
//   - Write hand-off on top: offload download 1970 -> 2736 MB/s and 0.51
//     -> 0.37 CPU s/GB, plain download 375 -> 420 MB/s;
//   - echo p50 no worse in either step.
//
// The kernel sender then runs alongside our reads and can fill the TUN's
// queue faster than we read it. Only its window bounds what it queues
// there (TCP small queues do not count packets waiting in a TUN), and on
// a plain TUN that is more than the default 500 packets, so utcp serve
// lengthens the queue (tun.Config.TxQueueLen).
func (s *Stack) unlockAndHandoff() {
	if s.flushing || len(s.outq) == 0 {
		// Nothing to write, or a flusher is at work and takes this batch
		// after its current write (it loops until outq is empty).
		s.unlockAndWrite()
		return
	}
	s.nowSet = false
	var wakes [maxDeferredWakes]*Conn
	var kinds [maxDeferredWakes]uint8
	nw := s.takeWakes(&wakes, &kinds)
	s.mu.Unlock()
	select {
	case s.flushKick <- struct{}{}:
	default: // a kick is pending: the flusher will see this batch too
	}
	doWakes(wakes[:nw], kinds[:nw])
}

// flushLoop is the flusher goroutine of unlockAndHandoff.
func (s *Stack) flushLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.flushKick:
			s.mu.Lock()
			s.unlockAndWrite()
		case <-s.flushStop:
			return
		}
	}
}

// onTimer runs on the AfterFunc timer: fire everything due and re-arm.
func (s *Stack) onTimer() {
	s.mu.Lock()
	s.timerArmed = false
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.fireDue(s.clock.Now())
	s.rearm()
	s.unlockAndFlush()
}

func (s *Stack) fireDue(now timers.Instant) {
	s.nowVal, s.nowSet = now, true
	for {
		it, ok := s.tq.PopDue(now)
		if !ok {
			return
		}
		it.Value.fire(now)
	}
}

// rearm points the one real timer at the earliest deadline.
func (s *Stack) rearm() {
	if s.timer == nil || s.closed {
		return
	}
	next, ok := s.tq.Next()
	if !ok {
		return
	}
	if s.timerArmed && !next.Before(s.timerAt) {
		return // armed earlier or at the same time already; it will re-arm when it fires
	}
	d := next.Sub(s.clock.Now())
	if d < 0 {
		d = 0
	}
	s.timer.Reset(d)
	s.timerArmed = true
	s.timerAt = next
}

// unlockAndFlush ends a section under mu: it releases mu and sees that
// the packets the section queued are written, by the flusher goroutine if
// there is one (unlockAndHandoff), else here (unlockAndWrite).
func (s *Stack) unlockAndFlush() {
	if s.flushKick != nil && !s.closed {
		s.unlockAndHandoff()
		return
	}
	s.unlockAndWrite()
}

// unlockAndWrite releases mu and writes queued packets to the link. One
// goroutine at a time writes, taking batches in the order they were
// produced, so packets never overtake each other.
func (s *Stack) unlockAndWrite() {
	s.nowSet = false // every timed section ends here (see now)
	if s.mq != nil {
		s.unlockAndFlushQueues()
		return
	}
	var wakes [maxDeferredWakes]*Conn
	var kinds [maxDeferredWakes]uint8
	nw := s.takeWakes(&wakes, &kinds)
	if s.cfg.Manual || s.flushing || len(s.outq) == 0 || s.link == nil {
		s.mu.Unlock()
		doWakes(wakes[:nw], kinds[:nw])
		return
	}
	s.flushing = true
	for first := true; len(s.outq) > 0; first = false {
		s.markPushes()
		batch, pays := s.outq, s.outPay
		s.outq = s.spare[:0]
		if s.split != nil {
			s.outPay = s.paySpare[:0]
		}
		s.bufs.takenEpoch++
		epoch := s.bufs.takenEpoch
		s.mu.Unlock()
		if first {
			// The applications run (on another core, if there is one)
			// while this goroutine makes the write system calls.
			doWakes(wakes[:nw], kinds[:nw])
		}
		var err error
		if s.split != nil {
			_, err = s.split.WritePacketsSplit(batch, pays)
		} else {
			_, err = s.link.WritePackets(batch)
		}
		if err != nil && !errors.Is(err, os.ErrClosed) {
			s.cfg.Logf("utcp: link write: %v", err)
		}
		s.mu.Lock()
		s.bufs.doneEpoch = epoch // send-buffer bytes lent to the batch are free again
		for i := range batch {
			if len(s.free) < 4096 {
				s.free = append(s.free, batch[i][:0])
			}
			batch[i] = nil
		}
		s.spare = batch[:0]
		if s.split != nil {
			clear(pays)
			s.paySpare = pays[:0]
		}
	}
	s.flushing = false
	s.mu.Unlock()
}

// Deferred wakes. Data or an ACK arriving in a read batch makes a reader
// or writer runnable; waking it at once, with mu still held for the rest
// of the batch, lets it run on another core only to block on mu, and the
// unlock then wakes it a second time. So the read loop queues the wakes
// (wakeSoon) and unlockAndFlush sends them just after it releases mu.
const (
	wakeR = 1 << iota
	wakeW

	maxDeferredWakes = 16 // more in one batch are sent under mu
)

// wakeSoon wakes c's reader (wakeR) or writer (wakeW): after the read
// batch if one is in progress, else now.
func (s *Stack) wakeSoon(c *Conn, kind uint8) {
	if !s.deferWakes {
		doWake(c, kind)
		return
	}
	if c.wakes == 0 {
		s.wakeQ = append(s.wakeQ, c)
	}
	c.wakes |= kind
}

// takeWakes moves up to maxDeferredWakes queued wakes into the caller's
// arrays (sending any beyond that now) and ends deferral; mu is held.
func (s *Stack) takeWakes(conns *[maxDeferredWakes]*Conn, kinds *[maxDeferredWakes]uint8) int {
	s.deferWakes = false
	n := 0
	for i, c := range s.wakeQ {
		if n < maxDeferredWakes {
			conns[n], kinds[n] = c, c.wakes
			n++
		} else {
			doWake(c, c.wakes)
		}
		c.wakes = 0
		s.wakeQ[i] = nil
	}
	s.wakeQ = s.wakeQ[:0]
	return n
}

func doWakes(conns []*Conn, kinds []uint8) {
	for i, c := range conns {
		doWake(c, kinds[i])
	}
}

func doWake(c *Conn, kind uint8) {
	if kind&wakeR != 0 {
		c.wakeRead()
	}
	if kind&wakeW != 0 {
		c.wakeWrite()
	}
}

// packetBuf returns an empty buffer able to hold one MTU-sized packet.
func (s *Stack) packetBuf() []byte {
	if n := len(s.free); n > 0 {
		b := s.free[n-1]
		s.free = s.free[:n-1]
		return b
	}
	return make([]byte, 0, s.bufSize)
}

// emit serializes a segment from this host and queues it for the link.
func (s *Stack) emit(sg *seg.Segment) {
	sg.Src = s.addr
	b := sg.AppendTo(s.packetBuf())
	s.emitRaw(b)
	s.ctr.OutSegs++
}

// emitRaw queues an already built packet.
func (s *Stack) emitRaw(b []byte) {
	s.outq = append(s.outq, b)
	if s.split != nil {
		s.outPay = append(s.outPay, nil)
	}
}

// emitSplit queues a packet in two parts for a SplitLink: head, its
// headers, and pay, its payload, which stays where it is until written.
// It returns the flush epoch that will have written it (see ring.lend).
func (s *Stack) emitSplit(head, pay []byte) uint64 {
	s.outq = append(s.outq, head)
	s.outPay = append(s.outPay, pay)
	return s.bufs.takenEpoch + 1
}

// --- manual mode -------------------------------------------------------

// Inject processes one packet as if read from the link (manual mode, or
// tests). The packet is not retained.
func (s *Stack) Inject(pkt []byte) {
	s.mu.Lock()
	s.beginNow()
	s.input(pkt)
	s.endBatch()
	s.unlockAndFlush()
}

// Advance fires every timer due at the clock's current time (manual mode).
func (s *Stack) Advance() {
	s.mu.Lock()
	s.fireDue(s.clock.Now())
	s.unlockAndFlush()
}

// NextDeadline reports the earliest armed deadline (manual mode).
func (s *Stack) NextDeadline() (timers.Instant, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tq.Next()
}

// TakeOutput returns the packets produced since the last call (manual
// mode). The caller owns them.
func (s *Stack) TakeOutput() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.markPushes()
	out := make([][]byte, len(s.outq))
	copy(out, s.outq)
	s.outq = s.outq[:0]
	return out
}

// busyPoller is a link that busy-polls its reads and counts what that
// found (tun.Device and tun.MultiQueue with Config.BusyPoll).
type busyPoller interface{ BusyPollRxPackets() uint64 }

// Counters returns a snapshot of the counters.
func (s *Stack) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.ctr
	c.CurrEstab = uint64(s.gauges[Established] + s.gauges[CloseWait])
	if bp, ok := s.link.(busyPoller); ok {
		c.BusyPollRxPackets = bp.BusyPollRxPackets()
	}
	return c
}

// StateCounts returns how many connections are in each state now.
func (s *Stack) StateCounts() map[State]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[State]int)
	for st, n := range s.gauges {
		if n != 0 {
			m[State(st)] = n
		}
	}
	if n := len(s.listeners); n > 0 {
		m[Listen] = n
	}
	return m
}

// --- keys, ISNs, ports -----------------------------------------------

// connKey identifies a connection by remote address, remote port and local
// port (the local address is always the stack's).
func connKey(raddr [4]byte, rport, lport uint16) uint64 {
	return uint64(binary.BigEndian.Uint32(raddr[:]))<<32 | uint64(rport)<<16 | uint64(lport)
}

func keyParts(k uint64) (raddr netip.Addr, rport, lport uint16) {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], uint32(k>>32))
	return netip.AddrFrom4(a), uint16(k >> 16), uint16(k)
}

// isn picks an initial sequence number per RFC 6528 §3: a keyed hash of
// the 4-tuple plus a clock ticking every 4 microseconds, so ISNs of one
// 4-tuple keep increasing while other 4-tuples' ISNs are unguessable.
func (s *Stack) isn(key uint64, now timers.Instant) seg.Seq {
	var in [40]byte
	copy(in[:32], s.isnKey[:])
	binary.BigEndian.PutUint64(in[32:], key)
	h := sha256.Sum256(in[:])
	f := binary.BigEndian.Uint32(h[:4])
	m := uint32(int64(now) / 4000)
	return seg.Seq(f + m)
}
