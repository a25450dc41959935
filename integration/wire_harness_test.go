package integration

// Wire-level conformance, in the spirit of gVisor's packetimpact: each
// scenario crafts TCP/IPv4 segments, injects them into a device under test
// (DUT) and checks the DUT's replies on the wire. Every scenario runs twice,
// as subtests "utcp" and "linux", so each expectation is first proven on
// the kernel:
//
//   - utcp: a stack.Stack over a tuntest pipe; the test owns the other end.
//     No kernel is involved.
//   - linux: the kernel's TCP inside a fresh network namespace (netns.Run),
//     reached through a TUN device "wire0" whose host side is the DUT
//     address 198.18.0.2/24. What the test writes into the TUN (from
//     198.18.0.1) is received by the kernel; the kernel's replies to
//     198.18.0.1 come out of the TUN to the test. The DUT's application side
//     is a kernel socket in the same process.
//
// The tester plays the peer at 198.18.0.1 by hand: it keeps its own
// sequence numbers and has no TCP of its own, so nothing answers the DUT
// except the scenario.

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"utcp/seg"
	"utcp/stack"
	"utcp/tun"
	"utcp/tun/netns"
	"utcp/tun/tuntest"
)

var (
	wireTester = netip.MustParseAddr("198.18.0.1") // the test's crafted peer
	wireDUTIP  = netip.MustParseAddr("198.18.0.2") // utcp or the kernel
)

const wireMTU = 1500

// wireLink is what the tester reads from and writes to: its end of the
// pipe (utcp) or the TUN device (linux).
type wireLink interface {
	ReadPackets(bufs [][]byte, sizes []int) (int, error)
	WritePackets(bufs [][]byte) (int, error)
	Close() error
}

// wireDUT is one device under test plus the tester's view of its wire.
type wireDUT struct {
	kind  string // "utcp" or "linux"
	link  wireLink
	st    *stack.Stack // utcp only
	rx    chan seg.Segment
	nextP uint16 // next tester port
}

// wireScenario runs f against utcp and against the kernel.
func wireScenario(t *testing.T, f func(t *testing.T, d *wireDUT)) {
	t.Run("utcp", func(t *testing.T) {
		f(t, newUTCPDUT(t, nil))
	})
	t.Run("linux", func(t *testing.T) {
		if !netns.Run(t) {
			return
		}
		f(t, newLinuxDUT(t, nil))
	})
}

// wireScenarioCfg is wireScenario with per-DUT setup: cfg adjusts the utcp
// Config, sysctls are written for the kernel ("net/ipv4/tcp_sack" = "0").
func wireScenarioCfg(t *testing.T, cfg func(*stack.Config), sysctls map[string]string, f func(t *testing.T, d *wireDUT)) {
	t.Run("utcp", func(t *testing.T) {
		f(t, newUTCPDUT(t, cfg))
	})
	t.Run("linux", func(t *testing.T) {
		if !netns.Run(t) {
			return
		}
		f(t, newLinuxDUT(t, sysctls))
	})
}

func newUTCPDUT(t *testing.T, cfg func(*stack.Config)) *wireDUT {
	t.Helper()
	tester, dutEnd := tuntest.NewPipe(wireMTU, 1024)
	// Linux defaults throughout (stack.Config's zero values are Linux's).
	c := stack.Config{Link: dutEnd, Addr: wireDUTIP}
	if cfg != nil {
		cfg(&c)
	}
	st, err := stack.New(c)
	if err != nil {
		t.Fatal(err)
	}
	d := &wireDUT{kind: "utcp", link: tester, st: st}
	d.start(t)
	t.Cleanup(func() { st.Close(); tester.Close() })
	return d
}

// linuxSysctls are set in every kernel DUT's namespace, before any
// per-scenario ones:
//   - tcp_syncookies=0: utcp answers a full SYN queue by dropping, which
//     is Linux's behaviour without cookies; the queue scenarios need it.
//   - tcp_invalid_ratelimit=0: Linux sends at most one duplicate ACK for
//     out-of-window segments per 500 ms per socket (tcp_oow_rate_limited);
//     a scenario that sends two such segments in a row would otherwise see
//     the second ignored. Each scenario uses a fresh connection, so this
//     only removes timing sensitivity.
//   - rp_filter off and IPv6 off on new interfaces: no surprises from
//     reverse-path checks, no router solicitations on the TUN.
var linuxSysctls = [][2]string{
	{"net/ipv4/tcp_syncookies", "0"},
	{"net/ipv4/tcp_invalid_ratelimit", "0"},
	{"net/ipv4/conf/all/rp_filter", "0"},
	{"net/ipv4/conf/default/rp_filter", "0"},
	{"net/ipv6/conf/default/disable_ipv6", "1"},
}

func writeSysctl(t *testing.T, name, val string) {
	t.Helper()
	if !netns.Inside() {
		t.Fatalf("sysctl %s outside a test namespace", name)
	}
	if err := os.WriteFile("/proc/sys/"+name, []byte(val), 0o644); err != nil {
		t.Fatalf("sysctl %s=%s: %v", name, val, err)
	}
}

func newLinuxDUT(t *testing.T, sysctls map[string]string) *wireDUT {
	t.Helper()
	for _, kv := range linuxSysctls {
		if strings.Contains(kv[0], "ipv6") {
			// Best effort: a kernel without IPv6 has no such file.
			os.WriteFile("/proc/sys/"+kv[0], []byte(kv[1]), 0o644)
			continue
		}
		writeSysctl(t, kv[0], kv[1])
	}
	for k, v := range sysctls {
		writeSysctl(t, k, v)
	}
	dev, err := tun.Open(tun.Config{Name: "wire0", HostAddr: netip.PrefixFrom(wireDUTIP, 24), MTU: wireMTU})
	if err != nil {
		t.Fatalf("tun.Open: %v", err)
	}
	d := &wireDUT{kind: "linux", link: dev}
	d.start(t)
	t.Cleanup(func() { dev.Close() })
	return d
}

// start runs the tester's reader: every IPv4/TCP packet from the DUT to
// the tester, parsed and copied, goes to d.rx; anything else (IPv6, ICMP,
// malformed) is ignored.
func (d *wireDUT) start(t *testing.T) {
	d.rx = make(chan seg.Segment, 4096)
	d.nextP = 40000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		bufs := make([][]byte, 16)
		sizes := make([]int, 16)
		for i := range bufs {
			bufs[i] = make([]byte, 65536)
		}
		for {
			n, err := d.link.ReadPackets(bufs, sizes)
			if err != nil {
				return
			}
			for i := range n {
				var s seg.Segment
				if s.Parse(bufs[i][:sizes[i]]) != nil || s.Dst != wireTester {
					continue
				}
				s.Payload = append([]byte(nil), s.Payload...)
				select {
				case d.rx <- s:
				default: // a scenario that floods itself; never block the link
				}
			}
		}
	}()
	// Cleanups run last-in first-out: this one, registered before the
	// link's Close, runs after it and so finds the reader returning.
	t.Cleanup(wg.Wait)
}

// port returns a fresh tester port.
func (d *wireDUT) port() uint16 {
	d.nextP++
	return d.nextP
}

// inject writes one crafted segment to the DUT.
func (d *wireDUT) inject(t *testing.T, s seg.Segment) {
	t.Helper()
	s.Src, s.Dst = wireTester, wireDUTIP
	pkt := s.AppendTo(nil)
	if _, err := d.link.WritePackets([][]byte{pkt}); err != nil {
		t.Fatalf("inject %v: %v", &s, err)
	}
}

// expect returns the first segment from the DUT that matches within
// timeout; segments that do not match are logged and skipped.
func (d *wireDUT) expect(t *testing.T, timeout time.Duration, what string, match func(*seg.Segment) bool) seg.Segment {
	t.Helper()
	s, ok := d.await(t, timeout, match)
	if !ok {
		t.Fatalf("%s: no %s within %v", d.kind, what, timeout)
	}
	return s
}

func (d *wireDUT) await(t *testing.T, timeout time.Duration, match func(*seg.Segment) bool) (seg.Segment, bool) {
	t.Helper()
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		select {
		case s := <-d.rx:
			if match(&s) {
				return s, true
			}
			t.Logf("%s: skipped %v", d.kind, &s)
		case <-tm.C:
			return seg.Segment{}, false
		}
	}
}

// expectNone fails if a segment matching match arrives within dur.
func (d *wireDUT) expectNone(t *testing.T, dur time.Duration, what string, match func(*seg.Segment) bool) {
	t.Helper()
	if s, ok := d.await(t, dur, match); ok {
		t.Fatalf("%s: unexpected %s: %v", d.kind, what, &s)
	}
}

// counter reads a Linux-named counter (e.g. "ListenOverflows").
func (d *wireDUT) counter(t *testing.T, name string) uint64 {
	t.Helper()
	if d.st != nil {
		c := d.st.Counters()
		v, ok := c.Get(name)
		if !ok {
			t.Fatalf("utcp has no counter %s", name)
		}
		return v
	}
	for _, f := range []string{"/proc/net/netstat", "/proc/net/snmp"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// Pairs of lines: "TcpExt: Name1 Name2 ..." then "TcpExt: v1 v2 ...".
		lines := strings.Split(string(b), "\n")
		for i := 0; i+1 < len(lines); i += 2 {
			names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			for j := 1; j < len(names) && j < len(vals); j++ {
				if names[j] == name {
					v, _ := strconv.ParseUint(vals[j], 10, 64)
					return v
				}
			}
		}
	}
	t.Fatalf("linux has no counter %s", name)
	return 0
}

// --- the DUT's application side ---------------------------------------------

// wireListener is the DUT's listening socket.
type wireListener interface {
	Accept() (net.Conn, error)
	Close() error
}

// listen opens a listening socket on the DUT with an exact backlog (the
// kernel one via listen(2) directly, because net.Listen always asks for
// somaxconn).
func (d *wireDUT) listen(t *testing.T, port uint16, backlog int) wireListener {
	t.Helper()
	if d.st != nil {
		l, err := d.st.Listen(port, backlog)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: int(port), Addr: wireDUTIP.As4()}); err != nil {
		syscall.Close(fd)
		t.Fatalf("bind: %v", err)
	}
	if err := syscall.Listen(fd, backlog); err != nil {
		syscall.Close(fd)
		t.Fatalf("listen: %v", err)
	}
	f := os.NewFile(uintptr(fd), "wire-listener")
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// accept takes one connection within a second.
func (d *wireDUT) accept(t *testing.T, l wireListener) net.Conn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		ch <- res{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s: accept: %v", d.kind, r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return r.c
	case <-time.After(time.Second):
		l.Close() // unblocks the goroutine
		t.Fatalf("%s: accept: nothing within 1s", d.kind)
		return nil
	}
}

// dialResult is the outcome of a DUT connect().
type dialResult struct {
	c   net.Conn
	err error
}

// dial makes the DUT connect to the tester's port; the result arrives on
// the channel once the handshake ends (or fails, or 5 s pass).
func (d *wireDUT) dial(t *testing.T, port uint16) <-chan dialResult {
	t.Helper()
	ch := make(chan dialResult, 1)
	done := make(chan struct{})
	var res dialResult
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	raddr := netip.AddrPortFrom(wireTester, port)
	go func() {
		defer close(done)
		defer cancel()
		var r dialResult
		if d.st != nil {
			var c *stack.Conn
			c, r.err = d.st.Dial(ctx, raddr)
			if r.err == nil {
				r.c = c
			}
		} else {
			dl := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(wireDUTIP, 0))}
			r.c, r.err = dl.DialContext(ctx, "tcp4", raddr.String())
		}
		res = r
		ch <- r
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if res.c != nil {
			res.c.Close() // a second Close is harmless
		}
	})
	return ch
}

// --- the tester's side of one connection -------------------------------------

// wireConn is the tester's hand-kept state for one connection with the DUT.
type wireConn struct {
	d             *wireDUT
	tport, dport  uint16  // tester's and DUT's ports
	snd           seg.Seq // tester's next sequence number
	rcv           seg.Seq // next sequence number expected from the DUT
	iss           seg.Seq // the DUT's ISS
	win           uint16  // window the tester advertises
	ts            bool    // timestamps negotiated
	tsVal         uint32  // tester's clock, bumped per segment
	dutShift      uint8   // the DUT's window scale (0 if not negotiated)
	synAck        seg.Segment
	conn          net.Conn // the DUT's socket, once accepted/connected
	sackPermOffer bool
	wsOffer       int // -1: none
	tsOffer       bool
	mssOffer      uint16 // 0: none
	lastDUTTS     uint32 // the DUT's latest TSVal, echoed as TSEcr
}

// synOpts describes the tester's SYN.
type synOpts struct {
	MSS      uint16 // 0: no MSS option
	WS       int    // -1: no window scale option
	SACKPerm bool
	TS       bool
	Win      uint16 // 0: 65535
}

// defaultSyn offers MSS 1460 and SACK; no window scaling and no
// timestamps, so the windows read raw and segments stay simple.
func defaultSyn() synOpts { return synOpts{MSS: 1460, WS: -1, SACKPerm: true} }

func (d *wireDUT) newConn(dport uint16, o synOpts) *wireConn {
	win := o.Win
	if win == 0 {
		win = 65535
	}
	return &wireConn{
		d: d, tport: d.port(), dport: dport, snd: 1000000, win: win,
		tsVal: 5000, sackPermOffer: o.SACKPerm, wsOffer: o.WS, tsOffer: o.TS, mssOffer: o.MSS,
	}
}

// seg builds a segment of this connection with the tester's current
// numbers; the caller may change any field before sending.
func (c *wireConn) seg(flags seg.Flags, payload []byte) seg.Segment {
	s := seg.Segment{
		SrcPort: c.tport, DstPort: c.dport,
		Seq: c.snd, Ack: c.rcv, Flags: flags, Window: c.win,
		Payload: payload,
	}
	if c.ts {
		c.tsVal++
		s.Opts.HasTS = true
		s.Opts.TSVal = c.tsVal
		s.Opts.TSEcr = c.tsRecent()
	}
	return s
}

func (c *wireConn) tsRecent() uint32 { return c.lastDUTTS }

// send sends a segment built by seg and advances the tester's SND.NXT
// past it.
func (c *wireConn) send(t *testing.T, flags seg.Flags, payload []byte) seg.Segment {
	t.Helper()
	s := c.seg(flags, payload)
	c.d.inject(t, s)
	c.snd = c.snd.Add(s.Len())
	return s
}

// mine reports whether s belongs to this connection.
func (c *wireConn) mine(s *seg.Segment) bool {
	return s.SrcPort == c.dport && s.DstPort == c.tport
}

// next returns the DUT's next segment on this connection, failing after
// timeout. Segments of other connections are skipped.
func (c *wireConn) next(t *testing.T, timeout time.Duration, what string) seg.Segment {
	t.Helper()
	s := c.d.expect(t, timeout, what, c.mine)
	if s.Opts.HasTS {
		c.lastDUTTS = s.Opts.TSVal
	}
	return s
}

// expectNone fails if the DUT sends anything on this connection within d.
func (c *wireConn) expectNone(t *testing.T, dur time.Duration, what string) {
	t.Helper()
	c.d.expectNone(t, dur, what, c.mine)
}

// synOptions turns the offer into options.
func (o synOpts) options(tsVal uint32) seg.Options {
	var op seg.Options
	if o.MSS != 0 {
		op.HasMSS, op.MSS = true, o.MSS
	}
	if o.WS >= 0 {
		op.HasWScale, op.WScale = true, uint8(o.WS)
	}
	op.SACKPermitted = o.SACKPerm
	if o.TS {
		op.HasTS, op.TSVal = true, tsVal
	}
	return op
}

// sendSYN sends the tester's SYN for c.
func (c *wireConn) sendSYN(t *testing.T, o synOpts) seg.Segment {
	t.Helper()
	s := seg.Segment{SrcPort: c.tport, DstPort: c.dport, Seq: c.snd, Flags: seg.SYN, Window: c.win}
	c.tsVal++
	s.Opts = o.options(c.tsVal)
	c.d.inject(t, s)
	c.snd = c.snd.Add(1)
	return s
}

// takeSynAck records what the DUT's SYN or SYN-ACK negotiated.
func (c *wireConn) takeSynAck(s seg.Segment, o synOpts) {
	c.synAck = s
	c.iss = s.Seq
	c.rcv = s.Seq.Add(1)
	c.ts = o.TS && s.Opts.HasTS
	if s.Opts.HasTS {
		c.lastDUTTS = s.Opts.TSVal
	}
	if o.WS >= 0 && s.Opts.HasWScale {
		c.dutShift = s.Opts.WScale
	}
}

// connect performs the tester's active open to a listening DUT port: SYN,
// the DUT's SYN-ACK, the final ACK. It does not accept.
func (d *wireDUT) connect(t *testing.T, dport uint16, o synOpts) *wireConn {
	t.Helper()
	c := d.newConn(dport, o)
	syn := c.sendSYN(t, o)
	sa := c.next(t, time.Second, "SYN-ACK")
	if sa.Flags != seg.SYN|seg.ACK || sa.Ack != syn.Seq.Add(1) {
		t.Fatalf("%s: want SYN-ACK ack=%d, got %v", d.kind, syn.Seq.Add(1), &sa)
	}
	c.takeSynAck(sa, o)
	c.send(t, seg.ACK, nil)
	return c
}

// established listens on dport, connects with o and accepts: the
// connection is ESTABLISHED on both sides and c.conn is the DUT's socket.
func (d *wireDUT) established(t *testing.T, dport uint16, o synOpts) *wireConn {
	t.Helper()
	l := d.listen(t, dport, 16)
	c := d.connect(t, dport, o)
	c.conn = d.accept(t, l)
	return c
}

// activeOpen has the DUT connect to the tester, who answers the SYN with a
// SYN-ACK offering o, and waits for the DUT's ACK and connect() to return.
func (d *wireDUT) activeOpen(t *testing.T, o synOpts) *wireConn {
	t.Helper()
	c := d.newConn(0, o)
	ch := d.dial(t, c.tport)
	syn := d.expect(t, 2*time.Second, "SYN", func(s *seg.Segment) bool { return s.DstPort == c.tport })
	c.dport = syn.SrcPort
	c.rcv = syn.Seq.Add(1)
	c.iss = syn.Seq
	sa := seg.Segment{SrcPort: c.tport, DstPort: c.dport, Seq: c.snd, Ack: c.rcv, Flags: seg.SYN | seg.ACK, Window: c.win}
	c.tsVal++
	sa.Opts = o.options(c.tsVal)
	if o.TS && syn.Opts.HasTS {
		sa.Opts.TSEcr = syn.Opts.TSVal
		c.ts = true
		c.lastDUTTS = syn.Opts.TSVal
	} else {
		sa.Opts.HasTS = false
	}
	if o.WS >= 0 && syn.Opts.HasWScale {
		c.dutShift = syn.Opts.WScale
	}
	c.synAck = syn
	d.inject(t, sa)
	c.snd = c.snd.Add(1)
	ack := c.next(t, time.Second, "ACK of SYN-ACK")
	if ack.Flags != seg.ACK || ack.Ack != c.snd {
		t.Fatalf("%s: want ACK ack=%d, got %v", d.kind, c.snd, &ack)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s: connect: %v", d.kind, r.err)
		}
		c.conn = r.c
	case <-time.After(time.Second):
		t.Fatalf("%s: connect did not return", d.kind)
	}
	return c
}

// --- small helpers -------------------------------------------------------------

// dutWrite writes on the DUT's socket, failing the test on error.
func (c *wireConn) dutWrite(t *testing.T, p []byte) {
	t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.conn.Write(p); err != nil {
		t.Fatalf("%s: write: %v", c.d.kind, err)
	}
}

// dutRead reads exactly n bytes from the DUT's socket within timeout.
func (c *wireConn) dutRead(t *testing.T, n int, timeout time.Duration) []byte {
	t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, n)
	got := 0
	for got < n {
		k, err := c.conn.Read(buf[got:])
		got += k
		if err != nil {
			t.Fatalf("%s: read after %d of %d bytes: %v", c.d.kind, got, n, err)
		}
	}
	return buf
}

// dutReadErr reads once and returns the error (nil if data came).
func (c *wireConn) dutReadErr(timeout time.Duration) (int, error) {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	return c.conn.Read(buf)
}

// closeWriter is what both *stack.Conn and *net.TCPConn offer.
type closeWriter interface {
	CloseWrite() error
	SetLinger(sec int) error
	SetNoDelay(noDelay bool) error
}

func (c *wireConn) cw(t *testing.T) closeWriter {
	t.Helper()
	x, ok := c.conn.(closeWriter)
	if !ok {
		t.Fatalf("%T has no CloseWrite/SetLinger", c.conn)
	}
	return x
}

// wantSeg fails unless s has exactly these flags, seq and ack.
func wantSeg(t *testing.T, kind string, s seg.Segment, flags seg.Flags, sq, ack seg.Seq) {
	t.Helper()
	if s.Flags != flags || s.Seq != sq || (flags.Has(seg.ACK) && s.Ack != ack) {
		t.Fatalf("%s: want %v seq=%d ack=%d, got %v", kind, flags, sq, ack, &s)
	}
}

// wantAck fails unless s is a pure ACK of ack at the DUT's current seq.
func (c *wireConn) wantAck(t *testing.T, s seg.Segment, ack seg.Seq) {
	t.Helper()
	if s.Flags != seg.ACK || s.Ack != ack || s.Seq != c.rcv || len(s.Payload) != 0 {
		t.Fatalf("%s: want ACK seq=%d ack=%d, got %v", c.d.kind, c.rcv, ack, &s)
	}
}

func isErrno(err error, e syscall.Errno) bool { return errors.Is(err, e) }

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}
