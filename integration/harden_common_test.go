package integration

// Shared fixture of the black-box hardening tests (harden_*_test.go): a
// utcp stack running in this process on a real TUN (utcp0, host side
// 198.18.0.1/24, stack 198.18.0.2) inside the network namespace that
// netns.Run made for the test, an AF_PACKET injector that hands arbitrary
// bytes to the TUN's host side (so they reach utcp exactly as packets the
// kernel routes there would), and an echo service on the stack.
//
// SIGTERM under full load (exit 0 within 2 s, TUN removed) is not repeated
// here: TestCmd/Serve/SIGTERMUnderLoad in cmd_test.go already runs `utcp
// serve` under a curl download and a chargen reader, sends SIGTERM and
// checks the exit status, the 2 s bound and that utcp0 is gone.

import (
	"encoding/binary"
	"errors"
	"hash/maphash"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"utcp/seg"
	"utcp/seg/segtest"
	"utcp/stack"
	"utcp/tun"
	"utcp/tun/netns"
)

var (
	hdHostIP  = netip.MustParseAddr("198.18.0.1")
	hdStackIP = netip.MustParseAddr("198.18.0.2")
)

const hdTun = "utcp0"

// hdEnv is one stack on a real TUN in the test's namespace.
type hdEnv struct {
	st   *stack.Stack
	link *hdLink
	inj  *hdInjector
}

// hdSysctl writes a per-namespace sysctl; must says whether a failure (a
// kernel without the knob) fails the test.
func hdSysctl(t *testing.T, name, val string, must bool) {
	t.Helper()
	if !netns.Inside() {
		t.Fatalf("sysctl %s outside a test namespace", name)
	}
	if err := os.WriteFile("/proc/sys/"+name, []byte(val), 0o644); err != nil && must {
		t.Fatalf("sysctl %s=%s: %v", name, val, err)
	}
}

// hdStart opens utcp0 and runs a stack on it; tweak may change the config.
// Everything is torn down at the end of the test.
func hdStart(t *testing.T, tweak func(*stack.Config)) *hdEnv {
	t.Helper()
	// The stack's SYN-ACKs to spoofed sources come back to the kernel,
	// which must drop them (ip_error) rather than forward them into
	// utcp0 again; a new namespace may inherit forwarding from the host.
	hdSysctl(t, "net/ipv4/ip_forward", "0", true)
	// No IPv6 on utcp0: router solicitations would move InIPv6 and blur
	// the per-case counter checks. Best effort: IPv6 may be compiled out.
	hdSysctl(t, "net/ipv6/conf/all/disable_ipv6", "1", false)
	hdSysctl(t, "net/ipv6/conf/default/disable_ipv6", "1", false)
	dev, err := tun.Open(tun.Config{Name: hdTun, HostAddr: netip.PrefixFrom(hdHostIP, 24)})
	if err != nil {
		t.Fatalf("tun.Open: %v", err)
	}
	link := &hdLink{Device: dev, seed: maphash.MakeSeed()}
	cfg := stack.Config{Link: link, Addr: hdStackIP, Logf: t.Logf}
	if tweak != nil {
		tweak(&cfg)
	}
	st, err := stack.New(cfg)
	if err != nil {
		dev.Close()
		t.Fatalf("stack.New: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	inj := hdNewInjector(t, hdTun)
	return &hdEnv{st: st, link: link, inj: inj}
}

// hdLink is the TUN as the stack's Link, noting which of a set of watched
// packets the stack actually read: a malformed packet the kernel refused
// to pass through never shows up here.
type hdLink struct {
	*tun.Device
	seed     maphash.Seed
	watching atomic.Bool
	mu       sync.Mutex
	seen     map[uint64]int
}

func (l *hdLink) ReadPackets(bufs [][]byte, sizes []int) (int, error) {
	n, err := l.Device.ReadPackets(bufs, sizes)
	if n > 0 && l.watching.Load() {
		l.mu.Lock()
		for i := 0; i < n; i++ {
			h := maphash.Bytes(l.seed, bufs[i][:sizes[i]])
			if _, ok := l.seen[h]; ok {
				l.seen[h]++
			}
		}
		l.mu.Unlock()
	}
	return n, err
}

// watch starts counting arrivals of exactly these packets.
func (l *hdLink) watch(pkts [][]byte) {
	l.mu.Lock()
	l.seen = make(map[uint64]int, len(pkts))
	for _, p := range pkts {
		l.seen[maphash.Bytes(l.seed, p)] = 0
	}
	l.mu.Unlock()
	l.watching.Store(true)
}

// arrived reports how many of pkts the stack has read since watch.
func (l *hdLink) arrived(pkts [][]byte) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, p := range pkts {
		if l.seen[maphash.Bytes(l.seed, p)] > 0 {
			n++
		}
	}
	return n
}

// hdInjector sends raw IPv4 packets out of utcp0 through an AF_PACKET
// socket: the TUN driver queues them for utcp's reader as it does packets
// the kernel routes there, without the kernel's IP layer looking at them.
type hdInjector struct {
	fd int
	sa unix.SockaddrLinklayer
}

func hdHtons(v uint16) uint16 { return v<<8 | v>>8 }

func hdNewInjector(t *testing.T, ifname string) *hdInjector {
	t.Helper()
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	// Protocol 0: the socket only sends. Bound to ETH_P_IP it would also
	// receive a copy of every packet on utcp0, which is load and nothing
	// else.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("AF_PACKET socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	in := &hdInjector{fd: fd, sa: unix.SockaddrLinklayer{Protocol: hdHtons(unix.ETH_P_IP), Ifindex: ifi.Index}}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
		t.Fatalf("bind AF_PACKET to %s: %v", ifname, err)
	}
	// Straight to the driver: the qdisc (fq_codel) may reorder packets of
	// different flows, and the malformed table relies on an ICMP marker
	// being read after the packets sent before it.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
		t.Fatalf("PACKET_QDISC_BYPASS: %v", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	return in
}

// send hands one packet to the TUN driver. ENOBUFS means the driver's
// queue (txqueuelen packets) was full and the packet was freed, not queued:
// the bypassed qdisc no longer absorbs bursts, so wait for utcp's reader
// to drain it and try again, for at most about a second.
func (in *hdInjector) send(pkt []byte) error {
	for try := 0; ; try++ {
		err := unix.Sendto(in.fd, pkt, 0, &in.sa)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ENOBUFS && try < 10000:
			time.Sleep(100 * time.Microsecond)
			continue
		}
		return err
	}
}

// trySend is send without the retry, for the flood: a full queue drops
// the SYN as it would drop a real one.
func (in *hdInjector) trySend(pkt []byte) error {
	return unix.Sendto(in.fd, pkt, 0, &in.sa)
}

// hdRaw is a hand-built IPv4 packet (segtest.Raw): every field may be
// wrong on purpose.
type hdRaw = segtest.Raw

// hdEchoRequest is an ICMP echo request from the host to the stack.
func hdEchoRequest(id, seqNum uint16) []byte {
	m := make([]byte, 8, 16)
	m[0] = seg.ICMPEchoRequest
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seqNum)
	m = append(m, "hdmarker"...)
	binary.BigEndian.PutUint16(m[2:], ^seg.Checksum(m, 0))
	return hdRaw{Src: hdHostIP, Dst: hdStackIP, Proto: seg.ProtoICMP, L4: m, ID: id}.Bytes()
}

// hdEcho is an echo service on a stack listener that remembers each
// accepted connection by the peer's port, so a test can look at (and aim
// packets at) the utcp side of a connection it dialled from the kernel.
type hdEcho struct {
	ln    *stack.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[uint16]*stack.Conn
	errs  atomic.Int64 // echo copies that ended in an error other than EOF
}

// hdServeEcho listens on port; keep says whether to remember connections
// (the soak test does not, so nothing holds on to closed ones).
func hdServeEcho(t *testing.T, st *stack.Stack, port uint16, backlog int, keep bool) *hdEcho {
	t.Helper()
	ln, err := st.Listen(port, backlog)
	if err != nil {
		t.Fatal(err)
	}
	e := &hdEcho{ln: ln, conns: make(map[uint16]*stack.Conn)}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			if keep {
				e.mu.Lock()
				e.conns[c.Info().Remote.Port()] = c
				e.mu.Unlock()
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				if _, err := io.Copy(c, c); err != nil {
					e.errs.Add(1)
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		e.mu.Lock()
		for _, c := range e.conns {
			c.Close()
		}
		e.mu.Unlock()
	})
	return e
}

// conn waits for the utcp side of the connection from the kernel's port.
func (e *hdEcho) conn(t *testing.T, peerPort uint16) *stack.Conn {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		e.mu.Lock()
		c := e.conns[peerPort]
		e.mu.Unlock()
		if c != nil {
			return c
		}
	}
	t.Fatalf("no accepted connection from port %d", peerPort)
	return nil
}

// hdDial connects a kernel socket to the stack.
func hdDial(port uint16, timeout time.Duration) (*net.TCPConn, error) {
	c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(hdStackIP, port).String(), timeout)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// hdPort is a kernel connection's local port.
func hdPort(c net.Conn) uint16 {
	return uint16(c.LocalAddr().(*net.TCPAddr).Port)
}

// hdIsTimeout reports a deadline error.
func hdIsTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}
