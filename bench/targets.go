package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"utcp/cmd/utcp/svc"
)

// Addresses: the benchmark uses 198.18.0.0/24 only.
var (
	hostAddr  = netip.MustParseAddr("198.18.0.1")
	stackAddr = netip.MustParseAddr("198.18.0.2")
	// extraSrcs are secondary host-side addresses, so 100,000 connections
	// to one server port do not run out of ephemeral ports (28,232 each).
	extraSrcs = func() []netip.Addr {
		var a []netip.Addr
		for i := 101; i <= 108; i++ {
			a = append(a, netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}))
		}
		return a
	}()
)

const holdPort = 5000

// server is one running target: the process serving the stack under test.
type server struct {
	name   string
	cmd    *exec.Cmd
	hostIf string // host-side interface (TUN or veth) in the driver's namespace
	tmp    string
	stderr *bytes.Buffer
	exited chan struct{}
}

// serverOpts vary between the fast rounds and the memory figures.
type serverOpts struct {
	longTimeWait bool          // keep TIME_WAIT entries for minutes (memory figure)
	cpuprofile   string        // utcp only
	queues       int           // utcp only: --queues
	procs        int           // utcp only: --procs, 0 for serve's default
	busyPoll     time.Duration // utcp only: --busy-poll, negative for serve's default
	noIOURing    bool          // utcp only: --io-uring=false
	noGRO        bool          // utcp only: --gro-flush-timeout 0
	gvProcs      int           // gVisor only: GOMAXPROCS, 0 for Go's default
	txqlen       int           // TUN txqueuelen for utcp and gVisor alike; 0 for the kernel's 500
	cc           string        // kernel only: its server's congestion control, as the clients'
	verbose      bool
}

// utcpFlags are the utcp serve flags that o sets; an option left at its
// "serve's default" value adds none.
func (o serverOpts) utcpFlags() []string {
	var args []string
	if o.longTimeWait {
		args = append(args, "--msl", "300s")
	}
	if o.cpuprofile != "" {
		args = append(args, "--cpuprofile", o.cpuprofile)
	}
	if o.queues > 1 {
		args = append(args, "--queues", strconv.Itoa(o.queues))
	}
	if o.procs > 0 {
		args = append(args, "--procs", strconv.Itoa(o.procs))
	}
	if o.busyPoll >= 0 {
		args = append(args, "--busy-poll", o.busyPoll.String())
	}
	if o.noIOURing {
		args = append(args, "--io-uring=false")
	}
	if o.noGRO {
		args = append(args, "--gro-flush-timeout", "0")
	}
	return append(args, "--txqueuelen", strconv.Itoa(o.txqlen))
}

// startServer starts target name, gives the host side its addresses and
// waits until 198.18.0.2:7 accepts a connection (the readiness rule of
// utcp serve).
func startServer(ctx context.Context, name string, o serverOpts) (*server, error) {
	tmp := os.Getenv(envTmp)
	s := &server{name: name, tmp: tmp, stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	switch name {
	case "utcp", "utcp+off":
		s.hostIf = "butcp0"
		args := []string{"serve", "--tun", s.hostIf, "--control", s.controlPath(),
			"--hold", strconv.Itoa(holdPort), "--backlog", "1024"}
		if name == "utcp+off" {
			s.hostIf = "butcpo0"
			args[2] = s.hostIf
			args = append(args, "--offload")
		}
		s.cmd = exec.Command(filepath.Join(tmp, "utcp"), append(args, o.utcpFlags()...)...)
	case "gvisor", "gvisor+off":
		s.hostIf = "bgvs0"
		if name == "gvisor+off" {
			s.hostIf = "bgvso0"
		}
		args := []string{"--tun", s.hostIf, "--control", s.controlPath(),
			"--hold", strconv.Itoa(holdPort)}
		if name == "gvisor+off" {
			args = append(args, "--offload")
		}
		if o.longTimeWait {
			args = append(args, "--tw-timeout", "10m")
		}
		args = append(args, "--txqueuelen", strconv.Itoa(o.txqlen))
		s.cmd = exec.Command(filepath.Join(tmp, "gvisor"), args...)
		if o.gvProcs > 0 {
			s.cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(o.gvProcs))
		}
	case "kernel":
		// The kernel server runs in a second fresh namespace (a child
		// created with CLONE_NEWNET); a veth pair joins the two.
		s.hostIf = "bk0"
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		s.cmd = exec.Command(self, "--hold-port", strconv.Itoa(holdPort))
		s.cmd.Env = append(os.Environ(), envRole+"=kernelserve", envCC+"="+o.cc)
		attr.Cloneflags = syscall.CLONE_NEWNET
	default:
		return nil, fmt.Errorf("unknown target %q", name)
	}
	s.cmd.SysProcAttr = attr
	s.cmd.Stdout = s.stderr
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start: %v", name, err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	if name == "kernel" {
		pid := strconv.Itoa(s.cmd.Process.Pid)
		if err := ipCmd("link", "add", "bk0", "type", "veth", "peer", "name", "bk1", "netns", pid); err != nil {
			s.stop()
			return nil, err
		}
		if err := ipCmd("addr", "add", hostAddr.String()+"/24", "dev", "bk0"); err != nil {
			s.stop()
			return nil, err
		}
		if err := ipCmd("link", "set", "bk0", "up"); err != nil {
			s.stop()
			return nil, err
		}
	}
	if err := s.waitReady(ctx, 15*time.Second); err != nil {
		s.stop()
		return nil, err
	}
	for _, a := range extraSrcs {
		if err := ipCmd("addr", "add", a.String()+"/24", "dev", s.hostIf); err != nil {
			s.stop()
			return nil, err
		}
	}
	return s, nil
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// controlPath is the target's control socket (utcp and gVisor targets).
func (s *server) controlPath() string {
	return filepath.Join(s.tmp, strings.ReplaceAll(s.name, "+", "-")+".sock")
}

// offloadRefused reports whether an offload target said it runs without
// offloads (utcp serve --offload falls back with a notice when the kernel
// refuses TUNSETOFFLOAD; gvisorserve --offload exits instead).
func (s *server) offloadRefused() bool {
	return strings.HasSuffix(s.name, "+off") && strings.Contains(s.stderr.String(), "running without them")
}

func (s *server) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("%s exited before it was ready: %s", s.name, strings.TrimSpace(s.stderr.String()))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		var c net.Conn
		c, err = net.DialTimeout("tcp", netip.AddrPortFrom(stackAddr, 7).String(), 500*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %v (last error %v): %s", s.name, limit, err, strings.TrimSpace(s.stderr.String()))
}

// stop ends the server (our own child, by PID): SIGTERM, then SIGKILL after
// 3 s; the host-side veth is deleted explicitly, because a dying
// namespace releases its devices asynchronously and the next target needs
// 198.18.0.1 free at once.
func (s *server) stop() {
	if s.name == "kernel" {
		ipCmd("link", "del", "bk0")
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(3 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	// The TUN goes with its last descriptor; wait (bounded) until it has.
	for i := 0; i < 100; i++ {
		if _, err := net.InterfaceByName(s.hostIf); err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// timeWaitCount asks the target how many TIME_WAIT entries it holds.
func (s *server) timeWaitCount() (int, error) {
	switch baseTarget(s.name) {
	case "utcp":
		var resp struct {
			OK    bool   `json:"ok"`
			Error string `json:"error"`
			Conns []struct {
				State string `json:"state"`
			} `json:"conns"`
		}
		if err := controlJSON(s.controlPath(), `{"op":"ss"}`+"\n", &resp); err != nil {
			return 0, err
		}
		if !resp.OK {
			return 0, errors.New(resp.Error)
		}
		n := 0
		for _, c := range resp.Conns {
			if strings.Contains(strings.ToUpper(c.State), "TIME") {
				n++
			}
		}
		return n, nil
	case "gvisor":
		var resp struct {
			States map[string]int `json:"states"`
		}
		if err := controlJSON(s.controlPath(), "", &resp); err != nil {
			return 0, err
		}
		n := 0
		for st, k := range resp.States {
			if strings.Contains(strings.ToUpper(st), "TIME") {
				n += k
			}
		}
		return n, nil
	case "kernel":
		// /proc/PID/net/tcp shows the namespace of PID; state 06 is TIME_WAIT.
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/tcp", s.pid()))
		if err != nil {
			return 0, err
		}
		defer f.Close()
		n := 0
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fl := strings.Fields(sc.Text()); len(fl) > 3 && fl[3] == "06" {
				n++
			}
		}
		return n, sc.Err()
	}
	return 0, errors.ErrUnsupported
}

func controlJSON(path, req string, v any) error {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if req != "" {
		if _, err := c.Write([]byte(req)); err != nil {
			return err
		}
	}
	r := bufio.NewReaderSize(c, 1<<20)
	line, err := r.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return err
	}
	return json.Unmarshal(line, v)
}

// kernelCC is the congestion control the bench's kernel sockets use (the
// load clients, and the kernel reference server's listeners, whose
// connections inherit it); "" leaves each socket the namespace default.
//
// The default is per namespace and a new namespace inherits the host's,
// but only the host may make a restricted algorithm (one missing from
// tcp_allowed_congestion_control) the default, so the bench sets it per
// socket (TCP_CONGESTION, which root may set to any algorithm). Why it
// matters: on a host whose default is bbr, the kernel clients pace
// themselves with BBR, and over a TUN BBR's min_rtt reads a few
// microseconds (ss -ti shows mrtt:0.004 against an srtt of 0.23 ms). Its
// cwnd then stays near 690 segments and the sender, not the stack under
// test, sets the pace of an upload. Linux's own default is cubic.
var kernelCC string

// setKernelCC checks that the kernel accepts cc on a TCP socket and makes
// it kernelCC. It returns the algorithm the bench's sockets will use.
func setKernelCC(cc string) (string, error) {
	if cc == "" {
		cur, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
		if err != nil {
			return "", fmt.Errorf("read the namespace's congestion control: %v", err)
		}
		kernelCC = ""
		return strings.TrimSpace(string(cur)), nil
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return "", fmt.Errorf("--cc %s: %v", cc, err)
	}
	defer syscall.Close(fd)
	if err := syscall.SetsockoptString(fd, syscall.IPPROTO_TCP, tcpCongestion, cc); err != nil {
		avail, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
		return "", fmt.Errorf("--cc %s: the kernel refused it (%v); available: %s", cc, err, strings.TrimSpace(string(avail)))
	}
	kernelCC = cc
	return cc, nil
}

const tcpCongestion = 13 // TCP_CONGESTION, <netinet/tcp.h>

// ccControl is a net.Dialer / net.ListenConfig Control that applies
// kernelCC to the socket before it connects or listens.
func ccControl(network, address string, c syscall.RawConn) error {
	if kernelCC == "" {
		return nil
	}
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptString(int(fd), syscall.IPPROTO_TCP, tcpCongestion, kernelCC)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("TCP_CONGESTION %s: %v", kernelCC, serr)
	}
	return nil
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// kernelServeMain is the kernel reference server. It runs in a namespace
// of its own (its parent, the driver, created it with CLONE_NEWNET and
// moves the veth peer bk1 into it), configures bk1 as 198.18.0.2/24 and
// serves the services on kernel sockets until SIGTERM.
func kernelServeMain(args []string) error {
	hold := holdPort
	if len(args) == 2 && args[0] == "--hold-port" {
		hold, _ = strconv.Atoi(args[1])
	}
	// Wait (bounded) for the driver to move bk1 in.
	var err error
	for i := 0; i < 250; i++ {
		if _, err = net.InterfaceByName("bk1"); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("kernelserve: veth bk1 never appeared: %v", err)
	}
	for _, a := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", stackAddr.String() + "/24", "dev", "bk1"},
		{"link", "set", "bk1", "up"},
	} {
		if err := ipCmd(a...); err != nil {
			return err
		}
	}
	// Per-namespace sysctls, so the kernel is not capped below the load
	// (a new namespace starts with tcp_max_tw_buckets 131072 or less).
	os.WriteFile("/proc/sys/net/ipv4/tcp_max_tw_buckets", []byte("262144"), 0)
	os.WriteFile("/proc/sys/net/core/somaxconn", []byte("4096"), 0)
	if _, err := setKernelCC(os.Getenv(envCC)); err != nil {
		return err
	}
	lc := net.ListenConfig{Control: ccControl}
	var srv svc.Server
	for _, p := range []struct {
		name string
		port int
	}{{"echo", 7}, {"discard", 9}, {"chargen", 19}, {"http", 80}, {"hold", hold}} {
		ln, err := lc.Listen(context.Background(), "tcp4", netip.AddrPortFrom(stackAddr, uint16(p.port)).String())
		if err != nil {
			return err
		}
		srv.Serve(p.name, ln)
	}
	sig := make(chan os.Signal, 1)
	signalNotify(sig)
	<-sig
	srv.Close()
	return nil
}
