package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"utcp/stack"
	"utcp/tun"
	"utcp/tun/tuntest"
)

// netFlags are the flags serve and dial share: the TUN device, the
// addresses, and the stack's knobs, named after the Linux sysctls they
// mirror (net.ipv4.tcp_*), so an operator's habits carry over.
type netFlags struct {
	tun      string
	hostAddr string
	addr     string
	mtu      int
	control  string
	pcap     string
	trace    bool

	msl          time.Duration
	finTimeout   time.Duration
	maxTWBuckets int
	twReuse      bool
	synRetries   int
	synAckRetrs  int
	retries2     int
	sndbuf       int
	rcvbuf       int
	delayedACK   time.Duration
	nodelay      bool
	rcvbufMax    int
	noAutoTune   bool
	congestion   string
	sack         bool
	syncookies   int
	kaTime       time.Duration
	kaIntvl      time.Duration
	kaProbes     int
	offload      bool
	ioURing      bool
	queues       int
	procs        int
	busyPoll     time.Duration
	groFlush     time.Duration
	txqueuelen   int
	cpuprofile   string
	pprof        string
}

func (n *netFlags) register(fs *flag.FlagSet, withControl bool) {
	fs.StringVar(&n.tun, "tun", tun.DefaultName, "name of the TUN device to create")
	fs.StringVar(&n.hostAddr, "host-addr", "198.18.0.1/24", "host (kernel) side address of the TUN device, as CIDR")
	fs.StringVar(&n.addr, "addr", "198.18.0.2", "IPv4 address the stack answers as")
	fs.IntVar(&n.mtu, "mtu", tun.DefaultMTU, "MTU of the TUN device (68-65535)")
	if withControl {
		fs.StringVar(&n.control, "control", "", "control socket for utcp ss and utcp nstat (default /run/utcp/NAME.sock)")
	}
	fs.StringVar(&n.pcap, "pcap", "", "write every packet read from and written to the TUN to this pcap `file` (LINKTYPE_RAW)")
	fs.BoolVar(&n.trace, "trace", false, "print every TCP state transition and its cause to stderr, one line each")

	fs.DurationVar(&n.msl, "msl", 30*time.Second, "maximum segment lifetime; TIME_WAIT lasts 2*MSL")
	fs.DurationVar(&n.finTimeout, "fin-timeout", 60*time.Second, "lifetime of an orphaned FIN_WAIT2 connection (tcp_fin_timeout)")
	fs.IntVar(&n.maxTWBuckets, "max-tw-buckets", 262144, "most TIME_WAIT entries held at once (tcp_max_tw_buckets)")
	fs.BoolVar(&n.twReuse, "tw-reuse", false, "let active opens reuse a TIME_WAIT 4-tuple older than 1 s when timestamps are on (tcp_tw_reuse)")
	fs.IntVar(&n.synRetries, "syn-retries", 6, "SYN retransmissions before an active open fails (tcp_syn_retries)")
	fs.IntVar(&n.synAckRetrs, "synack-retries", 5, "SYN-ACK retransmissions before a passive open is dropped (tcp_synack_retries)")
	fs.IntVar(&n.retries2, "retries2", 15, "retransmission timeouts before an established connection fails with ETIMEDOUT (tcp_retries2)")
	fs.IntVar(&n.sndbuf, "sndbuf", 1<<20, "send buffer per connection, bytes")
	fs.IntVar(&n.rcvbuf, "rcvbuf", 1<<20, "receive buffer per connection, bytes")
	fs.DurationVar(&n.delayedACK, "delayed-ack", 40*time.Millisecond, "delayed-ACK timeout; 0 acknowledges every segment at once")
	fs.BoolVar(&n.nodelay, "nodelay", false, "turn Nagle's algorithm off on every connection (TCP_NODELAY)")
	fs.IntVar(&n.rcvbufMax, "rcvbuf-max", 6<<20, "largest receive buffer autotuning may grow to, bytes (tcp_rmem max)")
	fs.BoolVar(&n.noAutoTune, "no-moderate-rcvbuf", false, "keep every receive buffer at --rcvbuf (tcp_moderate_rcvbuf=0)")
	fs.StringVar(&n.congestion, "congestion", "cubic", "congestion control: cubic or reno (tcp_congestion_control)")
	fs.BoolVar(&n.sack, "sack", true, "offer and accept selective acknowledgments (tcp_sack)")
	fs.IntVar(&n.syncookies, "syncookies", 1, "SYN cookies: 0 never, 1 when a SYN queue overflows, 2 always (tcp_syncookies)")
	fs.DurationVar(&n.kaTime, "keepalive-time", 2*time.Hour, "idle time before the first keepalive probe, for connections with keepalive on (tcp_keepalive_time)")
	fs.DurationVar(&n.kaIntvl, "keepalive-intvl", 75*time.Second, "time between keepalive probes (tcp_keepalive_intvl)")
	fs.IntVar(&n.kaProbes, "keepalive-probes", 9, "unanswered keepalive probes before the connection fails (tcp_keepalive_probes)")
	fs.BoolVar(&n.offload, "offload", false, "open the TUN with virtio-net headers and checksum/TSO offloads: the kernel hands over 64 KiB super-segments and splits ours (falls back if refused)")
	fs.BoolVar(&n.ioURing, "io-uring", true, "batch the TUN's packet reads and writes through io_uring, one system call per batch instead of per packet (falls back if the kernel refuses); --io-uring=false for one call per packet")
	fs.IntVar(&n.queues, "queues", 1, "TUN queues (IFF_MULTI_QUEUE), each read and written by its own goroutine so system calls use several cores; the kernel spreads connections over them by flow")
	fs.IntVar(&n.procs, "procs", 0, "cores the stack process runs Go code on at once (GOMAXPROCS); 0 means one per TUN queue, or $GOMAXPROCS if set")
	fs.DurationVar(&n.busyPoll, "busy-poll", tun.DefaultBusyPoll, "how long a TUN read keeps polling an empty queue before it sleeps (like net.core.busy_read): lower latency for some CPU; 0 turns it off")
	fs.DurationVar(&n.groFlush, "gro-flush-timeout", tun.DefaultGROFlushTimeout, "on a plain TUN (no --offload), let the kernel merge utcp's segments before its TCP receives them: IFF_NAPI with this gro_flush_timeout, the longest GRO may hold a full segment without PSH (utcp ends every batch with one); 0 turns it off")
	fs.IntVar(&n.txqueuelen, "txqueuelen", 4096, "TUN transmit queue length: packets the kernel holds for utcp to read before it drops (ip link txqueuelen); 0 keeps the kernel's 500, which one fast kernel sender overflows")
	fs.StringVar(&n.cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run to this `file` (go tool pprof)")
	fs.StringVar(&n.pprof, "pprof", "", "serve net/http/pprof on this unix socket `path` (mode 0600), e.g. curl --unix-socket PATH http://x/debug/pprof/profile?seconds=10")
}

// netSetup is what check derives from the flags.
type netSetup struct {
	host netip.Prefix
	addr netip.Addr
}

// check validates the flags before anything is created, so a bad value
// costs one line and no device.
func (n *netFlags) check() (netSetup, error) {
	var ns netSetup
	host, err := netip.ParsePrefix(n.hostAddr)
	if err != nil || !host.Addr().Is4() {
		return ns, failf("--host-addr %q: want an IPv4 address with a prefix length, like 198.18.0.1/24", n.hostAddr)
	}
	addr, err := netip.ParseAddr(n.addr)
	if err != nil || !addr.Is4() {
		return ns, failf("--addr %q: want an IPv4 address, like 198.18.0.2", n.addr)
	}
	if addr == host.Addr() {
		return ns, failf("--addr %v is the host side's own address (--host-addr %v): pick another one in its subnet", addr, host)
	}
	if !host.Contains(addr) {
		return ns, failf("--addr %v is outside --host-addr %v: the kernel would not route to it through the TUN", addr, host)
	}
	if n.mtu < 68 || n.mtu > 65535 {
		return ns, failf("--mtu %d: a TUN device accepts 68 to 65535", n.mtu)
	}
	for _, c := range []struct {
		name string
		v    int
	}{
		{"max-tw-buckets", n.maxTWBuckets}, {"syn-retries", n.synRetries}, {"synack-retries", n.synAckRetrs},
		{"retries2", n.retries2}, {"sndbuf", n.sndbuf}, {"rcvbuf", n.rcvbuf},
	} {
		if c.v <= 0 {
			return ns, failf("--%s %d: must be positive", c.name, c.v)
		}
	}
	for _, c := range []struct {
		name string
		v    time.Duration
	}{{"msl", n.msl}, {"fin-timeout", n.finTimeout}} {
		if c.v <= 0 {
			return ns, failf("--%s %v: must be positive", c.name, c.v)
		}
	}
	if n.congestion != "cubic" && n.congestion != "reno" {
		return ns, failf("--congestion %q: want cubic or reno", n.congestion)
	}
	if n.syncookies < 0 || n.syncookies > 2 {
		return ns, failf("--syncookies %d: want 0, 1 or 2", n.syncookies)
	}
	if n.rcvbufMax < n.rcvbuf {
		return ns, failf("--rcvbuf-max %d is below --rcvbuf %d", n.rcvbufMax, n.rcvbuf)
	}
	if n.kaTime <= 0 || n.kaIntvl <= 0 || n.kaProbes <= 0 {
		return ns, failf("--keepalive-time, --keepalive-intvl and --keepalive-probes must be positive")
	}
	if n.delayedACK < 0 {
		return ns, failf("--delayed-ack %v: must be zero (off) or positive", n.delayedACK)
	}
	if n.txqueuelen < 0 || n.txqueuelen > tun.MaxTxQueueLen {
		return ns, failf("--txqueuelen %d: must be 0 (kernel default) to %d", n.txqueuelen, tun.MaxTxQueueLen)
	}
	if n.queues < 1 || n.queues > tun.MaxQueues {
		return ns, failf("--queues %d: must be 1 to %d", n.queues, tun.MaxQueues)
	}
	if n.procs < 0 {
		return ns, failf("--procs %d: must be 0 (one per queue) or positive", n.procs)
	}
	if n.groFlush < 0 || n.groFlush > tun.MaxGROFlushTimeout {
		return ns, failf("--gro-flush-timeout %v: must be 0 (off) to %v", n.groFlush, tun.MaxGROFlushTimeout)
	}
	if n.busyPoll < 0 || n.busyPoll > tun.MaxBusyPoll {
		return ns, failf("--busy-poll %v: must be 0 (off) to %v", n.busyPoll, tun.MaxBusyPoll)
	}
	if n.queues > 1 && n.pcap != "" {
		// The capture tap is a single-queue Link: behind it the stack
		// would read queue 0 only and miss the flows steered elsewhere.
		return ns, failf("--pcap captures a single queue: use it with --queues 1")
	}
	ns.host, ns.addr = host, addr
	return ns, nil
}

// netEnv is an open device, optional capture and running stack.
type netEnv struct {
	stopProfiling func()
	dev           tunDevice
	pcapF         *os.File
	stack         *stack.Stack
	tracer        *tracer
}

// open creates the TUN device and the stack on it.
func (n *netFlags) open(ns netSetup, stderr io.Writer) (*netEnv, error) {
	runtime.GOMAXPROCS(n.gomaxprocs(os.Getenv("GOMAXPROCS") != ""))
	stopProfiling, err := n.startProfiling()
	if err != nil {
		return nil, err
	}
	dev, link, err := n.openDevice(ns)
	if err != nil {
		stopProfiling()
		return nil, tunError(n.tun, err)
	}
	if n.offload && !dev.Offload() {
		fmt.Fprintf(stderr, "utcp: --offload: the kernel refused TUN offloads on %s; running without them\n", n.tun)
	}
	if _, err := dev.GRO(); n.groFlush > 0 && err != nil {
		fmt.Fprintf(stderr, "utcp: --gro-flush-timeout: %v; the kernel receives every segment on %s on its own\n", err, n.tun)
	}
	if n.ioURing && !dev.IOURing() {
		fmt.Fprintf(stderr, "utcp: --io-uring: the kernel refused io_uring (see sysctl kernel.io_uring_disabled); one system call per packet on %s\n", n.tun)
	}
	env := &netEnv{dev: dev, stopProfiling: stopProfiling}
	if n.pcap != "" {
		f, err := os.OpenFile(n.pcap, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			dev.Close()
			stopProfiling()
			return nil, failf("--pcap: %v", err)
		}
		w, err := tuntest.NewPcapWriter(f, 0)
		if err != nil {
			f.Close()
			dev.Close()
			stopProfiling()
			return nil, failf("--pcap: %v", err)
		}
		env.pcapF = f
		link = tuntest.NewTap(link, w)
	}
	cfg := stack.Config{
		Link:          link,
		Addr:          ns.addr,
		MSL:           n.msl,
		FinTimeout:    n.finTimeout,
		MaxTimeWait:   n.maxTWBuckets,
		TWReuse:       n.twReuse,
		SynRetries:    n.synRetries,
		SynAckRetries: n.synAckRetrs,
		Retries2:      n.retries2,
		SendBuf:       n.sndbuf,
		RecvBuf:       n.rcvbuf,
		DelayedACK:    n.delayedACK,
		NoDelay:       n.nodelay,
		RecvBufMax:    n.rcvbufMax,
		NoRcvAutoTune: n.noAutoTune,
		Congestion:    n.congestion,
		NoSACK:        !n.sack,
		SynCookies:    n.syncookies,

		KeepAliveIdle:     n.kaTime,
		KeepAliveInterval: n.kaIntvl,
		KeepAliveCount:    n.kaProbes,
		Logf: func(format string, args ...any) {
			fmt.Fprintf(stderr, oneLine(format)+"\n", args...)
		},
	}
	if n.delayedACK == 0 {
		cfg.DelayedACK = -1 // the stack reads 0 as "default", negative as off
	}
	if n.syncookies == 0 {
		cfg.SynCookies = -1 // likewise
	}
	if n.trace {
		env.tracer = newTracer(stderr)
		cfg.Trace = env.tracer.event
	}
	st, err := stack.New(cfg)
	if err != nil {
		env.closeDevice()
		stopProfiling()
		return nil, err
	}
	env.stack = st
	return env, nil
}

// close stops the stack (resetting every connection), which closes the
// device and with it the interface, then flushes the capture and trace.
func (e *netEnv) close() {
	if e.stack != nil {
		e.stack.Close()
	}
	e.closeDevice()
	if e.tracer != nil {
		e.tracer.close()
	}
	if e.stopProfiling != nil {
		e.stopProfiling()
	}
}

func (e *netEnv) closeDevice() {
	e.dev.Close() // a second Close (after the stack's) just reports ErrClosed
	if e.pcapF != nil {
		e.pcapF.Close()
	}
}

// tunDevice is what the command needs of a single- or multi-queue device.
type tunDevice interface {
	Name() string
	Offload() bool
	IOURing() bool
	GRO() (time.Duration, error)
	Close() error
}

// gomaxprocs is the GOMAXPROCS the stack process runs with: --procs, else
// $GOMAXPROCS when set (envSet), else one P per TUN queue, at most Go's
// own default.
//
// One P per queue because each queue is one goroutine reading it, and
// the stack's work on a packet is serial behind that read. A second P
// buys no parallelism there, only cross-thread wake-ups: every goroutine
// a read batch makes runnable (the application, the flusher) wakes a
// second thread, which spins, sleeps and parks again. Measured with
// go run ./bench --rounds 2 --mem-rounds 0 (bench/RESULTS.md), one P
// against two for a single queue, both with --busy-poll: offload upload
// 0.12 against 0.16 CPU s/GB, plain download 890 against 698 MB/s. Two
// Ps had one thing going for them, request/response latency on this
// virtual machine: an idle P's thread spinning kept a vCPU from halting.
// --busy-poll (default tun.DefaultBusyPoll) does that on purpose, and only
// right after traffic; the two defaults go together.
func (n *netFlags) gomaxprocs(envSet bool) int {
	def := runtime.GOMAXPROCS(0)
	switch {
	case n.procs > 0:
		return n.procs
	case envSet:
		return def
	}
	return min(n.queues, def)
}

// openDevice opens the TUN with --queues queues: a plain tun.Device for
// one, a tun.MultiQueue (which the stack reads with one goroutine per
// queue) for more.
func (n *netFlags) openDevice(ns netSetup) (tunDevice, stack.Link, error) {
	cfg := tun.Config{Name: n.tun, HostAddr: ns.host, MTU: n.mtu, Offload: n.offload, TxQueueLen: n.txqueuelen, BusyPoll: n.busyPoll, NoIOURing: !n.ioURing, GROFlushTimeout: n.groFlush}
	if n.queues > 1 {
		m, err := tun.OpenMultiQueue(cfg, n.queues)
		if err != nil {
			return nil, nil, err
		}
		return m, m, nil
	}
	d, err := tun.Open(cfg)
	if err != nil {
		return nil, nil, err
	}
	return d, d.Trusted(), nil
}

// tunError turns a failure to create the device into one line that says
// what to do. A missing capability is the common case.
func tunError(name string, err error) error {
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		return failf("creating TUN %s needs CAP_NET_ADMIN: run as root", name)
	}
	return failf("creating TUN %s: %s", name, strings.TrimPrefix(err.Error(), "tun: "))
}

// defaultControl is where serve listens and ss/nstat look when not told.
func defaultControl(tunName string) string {
	return filepath.Join("/run/utcp", tunName+".sock")
}

// tracer prints state transitions. The stack calls Trace under its lock,
// so event only formats the line and hands it to a writer goroutine; if
// stderr cannot keep up, lines are dropped and the count is reported
// rather than stalling the stack.
type tracer struct {
	ch      chan string
	dropped atomic.Uint64
	done    sync.WaitGroup
	once    sync.Once
	w       io.Writer
}

func newTracer(w io.Writer) *tracer {
	t := &tracer{ch: make(chan string, 4096), w: w}
	t.done.Add(1)
	go func() {
		defer t.done.Done()
		for line := range t.ch {
			io.WriteString(t.w, line)
		}
	}()
	return t
}

func (t *tracer) event(ev stack.TraceEvent) {
	line := formatTrace(ev)
	select {
	case t.ch <- line:
	default:
		t.dropped.Add(1)
	}
}

// formatTrace is one line: time since start, local, remote, from -> to,
// cause, and the segment in tcpdump style when a segment caused it.
func formatTrace(ev stack.TraceEvent) string {
	var b strings.Builder
	fmt.Fprintf(&b, "trace %.6f %v %v %v -> %v (%s)", time.Duration(ev.Time).Seconds(), ev.Local, ev.Remote, ev.From, ev.To, ev.Cause)
	if ev.Seg != nil {
		b.WriteString(": ")
		b.WriteString(ev.Seg.String())
	}
	b.WriteByte('\n')
	return b.String()
}

func (t *tracer) close() {
	t.once.Do(func() {
		close(t.ch)
		t.done.Wait()
		if n := t.dropped.Load(); n > 0 {
			fmt.Fprintf(t.w, "utcp: trace: %d lines dropped (stderr too slow)\n", n)
		}
	})
}
