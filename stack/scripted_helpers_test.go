package stack

// A small DSL for scripted tests of the state machine. A fixture is one
// manual-mode stack (no goroutines, a timers.ManualClock) plus a simulated
// peer at 198.18.0.1. The test plays the peer: f.in injects a segment, f.out
// asserts the next segment the stack sent, f.advance moves time and fires
// the timers that fall due.
//
// Sequence numbers: the peer's are absolute (the test picks them, e.g. a
// SYN with seq(1000)); the stack's are relative to its ISS for that peer
// port, which the fixture learns from the first SYN or SYN-ACK it sends. So
// f.in(ACK, seq(1001), ack(1)) acknowledges our SYN, and
// f.out(ACK|PSH, seq(1), ack(1006), data("x")) expects our first data byte.
// Until an ISS is known the offset is zero and ack()/seq() are absolute.

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"utcp/seg"
	"utcp/timers"
)

// Flags, so scripts read like the RFC's <CTL=SYN,ACK>.
const (
	FIN = seg.FIN
	SYN = seg.SYN
	RST = seg.RST
	PSH = seg.PSH
	ACK = seg.ACK
)

const (
	fxListenPort = 80
	fxPeerPort   = 40000
)

var (
	fxPeerAddr  = netip.MustParseAddr("198.18.0.1")
	fxStackAddr = netip.MustParseAddr("198.18.0.2")
)

// spec is what a script says about one segment; nil/false fields are
// "don't care" in f.out and defaults in f.in.
type spec struct {
	seq, ack   *uint32
	win        *uint16
	data       []byte
	hasData    bool
	mss        *uint16
	wscale     *uint8
	ts         *[2]uint32
	noTS       bool
	absoluteSq bool // seq in f.out is absolute, not relative to ISS
}

type field func(*spec)

func seq(n uint32) field       { return func(s *spec) { s.seq = &n } }
func ack(n uint32) field       { return func(s *spec) { s.ack = &n } }
func win(n uint16) field       { return func(s *spec) { s.win = &n } }
func mss(n uint16) field       { return func(s *spec) { s.mss = &n } }
func wscale(n uint8) field     { return func(s *spec) { s.wscale = &n } }
func data(d string) field      { return func(s *spec) { s.data, s.hasData = []byte(d), true } }
func ts(val, ecr uint32) field { return func(s *spec) { s.ts = &[2]uint32{val, ecr} } }

// noTS makes f.in omit the timestamp option a timestamp fixture adds.
func noTS() field { return func(s *spec) { s.noTS = true } }

// absSeq makes f.out compare seq as an absolute number.
func absSeq() field { return func(s *spec) { s.absoluteSq = true } }

type fixture struct {
	t     *testing.T
	s     *Stack
	clk   *timers.ManualClock
	pport uint16             // the peer's current port
	iss   map[uint16]seg.Seq // our ISS per peer port
	ln    *Listener
	conn  *Conn
	// peerTS, when non-zero, is the TSval the peer puts on every segment
	// (RFC 7323) unless a script gives ts() or noTS().
	peerTS  uint32
	pending []seg.Segment // output not yet consumed by f.out
	log     []string      // the exchange so far, for failure messages
	events  []TraceEvent
}

// newFixture makes a manual-mode stack with Seed 1; mods adjust its Config.
func newFixture(t *testing.T, mods ...func(*Config)) *fixture {
	t.Helper()
	f := &fixture{t: t, clk: &timers.ManualClock{}, pport: fxPeerPort, iss: map[uint16]seg.Seq{}}
	cfg := Config{Manual: true, Clock: f.clk, Addr: fxStackAddr, Seed: 1}
	cfg.Trace = func(ev TraceEvent) {
		ev.Seg = nil
		f.events = append(f.events, ev)
	}
	for _, m := range mods {
		m(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.s = s
	// Start away from Instant 0 so "never" and "now" differ for timers
	// that use 0 as unset (the challenge-ACK rate limit).
	f.clk.Advance(time.Second)
	t.Cleanup(func() { s.Close() })
	return f
}

func (f *fixture) now() time.Duration { return time.Duration(f.clk.Now()) }

// listen opens the listener on port 80.
func (f *fixture) listen(backlog int) *Listener {
	f.t.Helper()
	ln, err := f.s.Listen(fxListenPort, backlog)
	if err != nil {
		f.t.Fatal(err)
	}
	f.ln = ln
	return ln
}

// port switches the peer to another source port (another connection).
func (f *fixture) port(p uint16) { f.pport = p }

// localPort is the stack's port for the current peer port: the listener's,
// or the ephemeral port of an active open.
func (f *fixture) localPort() uint16 {
	if f.conn != nil && f.conn.t.remote.Port() == f.pport {
		return f.conn.t.local.Port()
	}
	return fxListenPort
}

func (f *fixture) build(flags seg.Flags, fields []field) seg.Segment {
	var sp spec
	for _, fl := range fields {
		fl(&sp)
	}
	sg := seg.Segment{
		Src: fxPeerAddr, Dst: fxStackAddr,
		SrcPort: f.pport, DstPort: f.localPort(),
		Flags:  flags,
		Window: 65535,
	}
	if sp.seq != nil {
		sg.Seq = seg.Seq(*sp.seq)
	}
	if sp.ack != nil {
		sg.Ack = f.iss[f.pport].Add(*sp.ack)
	}
	if sp.win != nil {
		sg.Window = *sp.win
	}
	if sp.mss != nil {
		sg.Opts.HasMSS, sg.Opts.MSS = true, *sp.mss
	}
	if sp.wscale != nil {
		sg.Opts.HasWScale, sg.Opts.WScale = true, *sp.wscale
	}
	switch {
	case sp.ts != nil:
		sg.Opts.HasTS, sg.Opts.TSVal, sg.Opts.TSEcr = true, sp.ts[0], sp.ts[1]
	case f.peerTS != 0 && !sp.noTS:
		sg.Opts.HasTS, sg.Opts.TSVal = true, f.peerTS
	}
	sg.Payload = sp.data
	return sg
}

// in injects one segment from the peer and collects what the stack sends.
func (f *fixture) in(flags seg.Flags, fields ...field) {
	f.t.Helper()
	sg := f.build(flags, fields)
	f.log = append(f.log, fmt.Sprintf("%8v  in: %s", f.now(), sg.String()))
	f.s.Inject(sg.AppendTo(nil))
	f.collect()
}

// collect parses the stack's output into f.pending.
func (f *fixture) collect() {
	f.t.Helper()
	for _, pkt := range f.s.TakeOutput() {
		if len(pkt) > f.s.mtu {
			// A super-packet for a segmenting link carries a partial
			// checksum (GSOLink); complete it as the link would.
			if pkt = completePartial(pkt); pkt == nil {
				f.t.Fatalf("super-packet without the partial checksum GSOLink asks for")
			}
		}
		var sg seg.Segment
		if err := sg.Parse(pkt); err != nil {
			f.t.Fatalf("stack sent an unparsable packet (%v): % x", err, pkt)
		}
		if sg.Flags.Has(SYN) {
			f.iss[sg.DstPort] = sg.Seq
		}
		sg.Payload = bytes.Clone(sg.Payload)
		f.log = append(f.log, fmt.Sprintf("%8v out: %s", f.now(), sg.String()))
		f.pending = append(f.pending, sg)
	}
}

// advance moves the clock by d and fires every timer due.
func (f *fixture) advance(d time.Duration) {
	f.t.Helper()
	f.clk.Advance(d)
	f.log = append(f.log, fmt.Sprintf("%8v  -- advanced %v", f.now(), d))
	f.s.Advance()
	f.collect()
}

// step advances in increments of at most d until total has passed, so
// every timer fires at its own time rather than all at the end.
func (f *fixture) step(total, d time.Duration) {
	f.t.Helper()
	for total > 0 {
		x := min(d, total)
		f.advance(x)
		total -= x
	}
}

func (f *fixture) fail(format string, args ...any) {
	f.t.Helper()
	f.t.Fatalf("%s\nexchange so far:\n%s", fmt.Sprintf(format, args...), strings.Join(f.log, "\n"))
}

// out asserts the next segment sent: exact flags, the peer's address, and
// every field the script names. Payload length must match data() (zero
// when data() is absent).
func (f *fixture) out(flags seg.Flags, fields ...field) seg.Segment {
	f.t.Helper()
	f.collect()
	if len(f.pending) == 0 {
		f.fail("want a segment with flags [%v], got nothing", flags)
	}
	got := f.pending[0]
	f.pending = f.pending[1:]
	var sp spec
	for _, fl := range fields {
		fl(&sp)
	}
	iss := f.iss[got.DstPort]
	var errs []string
	if got.Flags != flags {
		errs = append(errs, fmt.Sprintf("flags [%v], want [%v]", got.Flags, flags))
	}
	if got.Dst != fxPeerAddr || got.DstPort != f.pport {
		errs = append(errs, fmt.Sprintf("sent to %v:%d, want port %d", got.Dst, got.DstPort, f.pport))
	}
	if sp.seq != nil {
		want := iss.Add(*sp.seq)
		if sp.absoluteSq {
			want = seg.Seq(*sp.seq)
		}
		if got.Seq != want {
			errs = append(errs, fmt.Sprintf("seq ISS%+d (%d), want ISS%+d (%d)", got.Seq.Sub(iss), got.Seq, want.Sub(iss), want))
		}
	}
	if sp.ack != nil && got.Ack != seg.Seq(*sp.ack) {
		errs = append(errs, fmt.Sprintf("ack %d, want %d", got.Ack, *sp.ack))
	}
	if sp.win != nil && got.Window != *sp.win {
		errs = append(errs, fmt.Sprintf("win %d, want %d", got.Window, *sp.win))
	}
	if sp.mss != nil && (!got.Opts.HasMSS || got.Opts.MSS != *sp.mss) {
		errs = append(errs, fmt.Sprintf("options [%v], want mss %d", got.Opts, *sp.mss))
	}
	if sp.wscale != nil && (!got.Opts.HasWScale || got.Opts.WScale != *sp.wscale) {
		errs = append(errs, fmt.Sprintf("options [%v], want wscale %d", got.Opts, *sp.wscale))
	}
	if sp.ts != nil && (!got.Opts.HasTS || got.Opts.TSEcr != sp.ts[1]) {
		errs = append(errs, fmt.Sprintf("options [%v], want TS ecr %d", got.Opts, sp.ts[1]))
	}
	if sp.noTS && got.Opts.HasTS {
		errs = append(errs, fmt.Sprintf("options [%v], want no timestamp", got.Opts))
	}
	if !bytes.Equal(got.Payload, sp.data) {
		errs = append(errs, fmt.Sprintf("payload %q, want %q", got.Payload, sp.data))
	}
	if len(errs) > 0 {
		f.fail("segment %s:\n\t%s", got.String(), strings.Join(errs, "\n\t"))
	}
	return got
}

// noOutput asserts that the stack has sent nothing not yet consumed.
func (f *fixture) noOutput() {
	f.t.Helper()
	f.collect()
	if len(f.pending) > 0 {
		var b strings.Builder
		for _, sg := range f.pending {
			b.WriteString("\n\t" + sg.String())
		}
		f.fail("want no output, got:%s", b.String())
	}
}

// stateOf is the state of the connection with the current peer port:
// a connection, a TIME_WAIT entry, or CLOSED when there is neither.
func (f *fixture) stateOf() State {
	for _, ci := range f.s.Connections() {
		if ci.State != Listen && ci.Remote == netip.AddrPortFrom(fxPeerAddr, f.pport) {
			return ci.State
		}
	}
	return Closed
}

// state asserts the current connection's state.
func (f *fixture) state(want State) {
	f.t.Helper()
	if got := f.stateOf(); got != want {
		f.fail("state %v, want %v", got, want)
	}
}

// counter asserts a counter's value (each fixture starts from zero).
func (f *fixture) counter(name string, want uint64) {
	f.t.Helper()
	c := f.s.Counters()
	got, ok := c.Get(name)
	if !ok {
		f.t.Fatalf("no counter %q", name)
	}
	if got != want {
		f.fail("counter %s = %d, want %d", name, got, want)
	}
}

// accept takes the next connection from the accept queue, which must not
// be empty (AcceptTCP would block: nothing else runs in manual mode).
func (f *fixture) accept() *Conn {
	f.t.Helper()
	f.s.mu.Lock()
	n := len(f.ln.acceptQ)
	f.s.mu.Unlock()
	if n == 0 {
		f.fail("accept queue is empty")
	}
	c, err := f.ln.AcceptTCP()
	if err != nil {
		f.t.Fatal(err)
	}
	f.conn = c
	return c
}

// acceptQueueLen is the listener's accept queue length.
func (f *fixture) acceptQueueLen() int {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	return len(f.ln.acceptQ)
}

// connect starts an active open to the peer's current port without
// blocking (Dial would wait for the handshake, which the script plays).
func (f *fixture) connect() *Conn {
	f.t.Helper()
	f.s.mu.Lock()
	t, err := f.s.connect(0, netip.AddrPortFrom(fxPeerAddr, f.pport))
	if err != nil {
		f.s.mu.Unlock()
		f.t.Fatal(err)
	}
	c := newConn(t)
	t.conn = c
	f.conn = c
	f.s.mu.Unlock()
	f.collect()
	return c
}

// established makes a passive-open connection from the current peer port
// with IRS irs (the peer's first data byte is irs+1), accepts it, and
// leaves the pending output empty. The handshake takes 10 ms, so the
// RTO from that sample is the 200 ms floor.
func (f *fixture) established(irs uint32) *Conn {
	f.t.Helper()
	if f.ln == nil {
		f.listen(16)
	}
	f.in(SYN, seq(irs), mss(1460))
	f.out(SYN|ACK, seq(0), ack(irs+1))
	f.advance(10 * time.Millisecond)
	f.in(ACK, seq(irs+1), ack(1))
	f.state(Established)
	f.noOutput()
	return f.accept()
}

// available returns what the application can read now without blocking.
func (f *fixture) available() string {
	f.t.Helper()
	f.s.mu.Lock()
	n := f.conn.t.rcv.Len()
	f.s.mu.Unlock()
	if n == 0 {
		return ""
	}
	b := make([]byte, n)
	k, err := f.conn.Read(b)
	if err != nil {
		f.t.Fatal(err)
	}
	f.collect()
	return string(b[:k])
}

// connErr returns the error a Read reports on a connection that has
// ended (it must have: a Read on a live connection would block).
func (f *fixture) connErr() error {
	f.t.Helper()
	f.s.mu.Lock()
	st := f.conn.t.state
	f.s.mu.Unlock()
	if st != Closed && st != TimeWait {
		f.fail("connection is %v, not ended", st)
	}
	_, err := f.conn.Read(make([]byte, 1))
	return err
}

// wantErrno asserts that the ended connection reports errno.
func (f *fixture) wantErrno(errno syscall.Errno) {
	f.t.Helper()
	if err := f.connErr(); !errors.Is(err, errno) {
		f.fail("read error %v, want %v", err, errno)
	}
}

// transitions lists "FROM>TO" for the current peer port.
func (f *fixture) transitions() []string {
	var out []string
	for _, ev := range f.events {
		if ev.Remote.Port() == f.pport {
			out = append(out, ev.From.String()+">"+ev.To.String())
		}
	}
	return out
}
