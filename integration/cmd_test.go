package integration

// Black-box tests of the utcp command against the kernel: the binary is
// built once, then each subtest runs it on a real TUN inside a network
// namespace of its own (netns.Run) and talks to it with kernel sockets,
// curl and ping, as a user would.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"utcp/tun/netns"
)

const (
	cmdEnvBin   = "UTCP_CMD_TEST_BIN"
	cmdStackIP  = "198.18.0.2"
	cmdHostIP   = "198.18.0.1"
	cmdRunLimit = 30 * time.Second // any one command run by a test
)

func TestCmd(t *testing.T) {
	if !netns.Inside() {
		// Build once, in the parent; each subtest's child process (in its
		// own namespace) finds the binary through the environment.
		bin := filepath.Join(t.TempDir(), "utcp")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "utcp/cmd/utcp")
		build.Dir = ".."
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build utcp/cmd/utcp: %v\n%s", err, out)
		}
		t.Setenv(cmdEnvBin, bin)
	}
	t.Run("Serve", testCmdServe)
	t.Run("Dial", testCmdDial)
	t.Run("Errors", testCmdErrors)
}

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func cmdBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv(cmdEnvBin)
	if bin == "" {
		t.Fatalf("%s not set: run the whole TestCmd, which builds the binary", cmdEnvBin)
	}
	return bin
}

// cmdServer is a running `utcp serve`.
type cmdServer struct {
	cmd     *exec.Cmd
	stderr  *syncBuffer
	control string
	done    chan struct{}
	err     error // Wait's result, once done is closed
}

// startServe starts utcp serve with args (plus a private control socket)
// and waits until a kernel TCP connect to 198.18.0.2:7 succeeds, which is
// the contract's definition of ready.
func startServe(t *testing.T, args ...string) *cmdServer {
	t.Helper()
	s := &cmdServer{stderr: &syncBuffer{}, control: filepath.Join(t.TempDir(), "utcp.sock"), done: make(chan struct{})}
	s.cmd = exec.Command(cmdBin(t), append([]string{"serve", "--control", s.control}, args...)...)
	s.cmd.Stderr = s.stderr
	s.cmd.Stdout = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill() // ours, by PID
			<-s.done
		}
		t.Logf("utcp serve stderr:\n%s", s.stderr.String())
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", cmdStackIP+":7", 500*time.Millisecond)
		if err == nil {
			c.Close()
			return s
		}
		select {
		case <-s.done:
			t.Fatalf("utcp serve exited before it was ready: %v\n%s", s.err, s.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("utcp serve not ready after 10 s (last error %v)\n%s", err, s.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runUtcp runs one utcp command to completion and returns its output and
// exit status.
func runUtcp(t *testing.T, stdin io.Reader, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdRunLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, cmdBin(t), args...)
	cmd.Stdin = stdin
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("utcp %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("utcp %s: still running after %v", strings.Join(args, " "), cmdRunLimit)
	}
	return o.String(), e.String(), code
}

// utcpOK runs a utcp command that must succeed.
func utcpOK(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := runUtcp(t, nil, args...)
	if code != 0 {
		t.Fatalf("utcp %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// cmdEventually polls cond every 50 ms for up to d.
func cmdEventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v; last:\n%s", what, d, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ssRow finds the ss line for a state and peer/local address; fields are
// State Recv-Q Send-Q Local Peer.
func ssRow(out, state, local, peer string) []string {
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) >= 5 && f[0] == state && (local == "" || f[3] == local) && (peer == "" || f[4] == peer) {
			return f
		}
	}
	return nil
}

// nstatValue reads one counter from nstat's "Name Value" output.
func nstatValue(out, name string) (uint64, bool) {
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == name {
			v, err := strconv.ParseUint(f[1], 10, 64)
			return v, err == nil
		}
	}
	return 0, false
}

func cmdPattern(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

func testCmdServe(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	t.Setenv("TMPDIR", t.TempDir()) // nstat keeps its history there
	pcap := filepath.Join(t.TempDir(), "cap.pcap")
	srv := startServe(t, "--hold", "5000", "--stall", "5001", "--backlog", "2", "--pcap", pcap)
	ctl := []string{"--control", srv.control}

	t.Run("ControlSocketMode", func(t *testing.T) {
		fi, err := os.Stat(srv.control)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
			t.Fatalf("control socket mode %v, want a 0600 socket", fi.Mode())
		}
	})

	t.Run("TxQueueLen", func(t *testing.T) {
		// --txqueuelen defaults to 4096 (the kernel's TUN default is 500).
		out, err := exec.Command("ip", "-o", "link", "show", "utcp0").CombinedOutput()
		if err != nil {
			t.Fatalf("ip link show utcp0: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "qlen 4096") {
			t.Fatalf("utcp0 does not have txqueuelen 4096: %s", out)
		}
	})

	t.Run("HTTP", func(t *testing.T) {
		dir := t.TempDir()
		page := cmdCurl(t, "http://"+cmdStackIP+"/")
		if !strings.Contains(page, "utcp") {
			t.Fatalf("GET / = %q", page)
		}
		out := filepath.Join(dir, "bytes")
		cmdCurl(t, "-o", out, "http://"+cmdStackIP+"/bytes/1000000")
		if fi, err := os.Stat(out); err != nil || fi.Size() != 1000000 {
			t.Fatalf("GET /bytes/1000000: %v, size %v", err, fi)
		}
		body := cmdPattern(3<<20+17, 1)
		bodyFile := filepath.Join(dir, "body")
		if err := os.WriteFile(bodyFile, body, 0o600); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(body)
		got := cmdCurl(t, "--data-binary", "@"+bodyFile, "http://"+cmdStackIP+"/sha256")
		if want := hex.EncodeToString(sum[:]); strings.TrimSpace(got) != want {
			t.Fatalf("POST /sha256 = %q, want %q", got, want)
		}
		// Connection: close makes the server close first; curl still
		// gets the whole answer.
		if got := cmdCurl(t, "-H", "Connection: close", "http://"+cmdStackIP+"/bytes/5"); got != "abcde" {
			t.Fatalf("GET /bytes/5 with Connection: close = %q", got)
		}
	})

	t.Run("Echo", func(t *testing.T) {
		c := cmdDialKernel(t, 7)
		data := cmdPattern(1<<20, 2)
		got := make(chan []byte, 1)
		go func() {
			b, err := io.ReadAll(c)
			if err != nil {
				t.Errorf("reading echo: %v", err)
			}
			got <- b
		}()
		if _, err := c.Write(data); err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).CloseWrite()
		select {
		case b := <-got:
			// EOF after the data: echo closed its side after our FIN.
			if !bytes.Equal(b, data) {
				t.Fatalf("echo returned %d bytes, want the %d sent", len(b), len(data))
			}
		case <-time.After(20 * time.Second):
			t.Fatal("echo: no EOF within 20 s")
		}
	})

	t.Run("Discard", func(t *testing.T) {
		c := cmdDialKernel(t, 9)
		if _, err := c.Write(cmdPattern(1<<20, 3)); err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := io.Copy(io.Discard, c)
		if err != nil || n != 0 {
			t.Fatalf("discard answered %d bytes, err %v; want nothing and a clean close", n, err)
		}
	})

	t.Run("Chargen", func(t *testing.T) {
		c := cmdDialKernel(t, 19)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		// RFC 864's example lines.
		want := []string{
			"!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n",
			"\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghi\r\n",
		}
		for i, w := range want {
			line, err := r.ReadString('\n')
			if err != nil || line != w {
				t.Fatalf("chargen line %d = %q (%v), want %q", i, line, err, w)
			}
		}
		// Keep reading: the stream goes on (well past one buffer).
		if _, err := io.CopyN(io.Discard, r, 256<<10); err != nil {
			t.Fatalf("chargen stopped early: %v", err)
		}
	})

	t.Run("Ping", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ping", "-c", "3", "-i", "0.2", "-W", "2", cmdStackIP).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "3 received") {
			t.Fatalf("ping: %v\n%s", err, out)
		}
	})

	t.Run("SSListenersAndEstablished", func(t *testing.T) {
		out := utcpOK(t, append([]string{"ss", "-l"}, ctl...)...)
		for _, port := range []string{"7", "9", "19", "80", "5000", "5001"} {
			row := ssRow(out, "LISTEN", cmdStackIP+":"+port, "0.0.0.0:*")
			if row == nil || row[2] != "2" {
				t.Fatalf("ss -l: no LISTEN row with Send-Q (backlog) 2 for port %s:\n%s", port, out)
			}
		}
		c := cmdDialKernel(t, 7)
		local := c.LocalAddr().String()
		cmdEventually(t, 5*time.Second, "ESTAB in utcp ss", func() (bool, string) {
			out := utcpOK(t, append([]string{"ss"}, ctl...)...)
			return ssRow(out, "ESTAB", cmdStackIP+":7", local) != nil, out
		})
		// -i and -o add the details line.
		out = utcpOK(t, append([]string{"ss", "-tio", "state", "established"}, ctl...)...)
		if !regexp.MustCompile(`rto:\S+ rtt:\S+/\S+ mss:\d+ cwnd:\d+`).MatchString(out) {
			t.Fatalf("ss -i: no TCP_INFO details:\n%s", out)
		}
		if ssRow(out, "LISTEN", "", "") != nil {
			t.Fatalf("state established shows a listener:\n%s", out)
		}
		// The advertised window never exceeds the receive buffer (1 MiB
		// by default); a stray ~2^31 here was a real stack bug.
		for _, m := range regexp.MustCompile(`rcv_wnd:(\d+)`).FindAllStringSubmatch(out, -1) {
			if v, _ := strconv.Atoi(m[1]); v > 1<<20 {
				t.Fatalf("ss -i: rcv_wnd %d exceeds the 1 MiB receive buffer:\n%s", v, out)
			}
		}
	})

	t.Run("HoldCloseWait", func(t *testing.T) {
		c := cmdDialKernel(t, 5000)
		local := c.LocalAddr().String()
		c.Close() // our FIN; hold never closes, so utcp stays in CLOSE_WAIT
		cmdEventually(t, 5*time.Second, "CLOSE-WAIT in utcp ss state close-wait", func() (bool, string) {
			out := utcpOK(t, append([]string{"ss", "state", "close-wait"}, ctl...)...)
			return ssRow(out, "CLOSE-WAIT", cmdStackIP+":5000", local) != nil, out
		})
	})

	t.Run("StallOverflow", func(t *testing.T) {
		// backlog 2: the accept queue takes backlog+1 = 3 (Linux's
		// sk_acceptq_is_full is len > backlog); later SYNs are dropped.
		var wg sync.WaitGroup
		var mu sync.Mutex
		var conns []net.Conn
		for i := 0; i < 6; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.DialTimeout("tcp", cmdStackIP+":5001", 1500*time.Millisecond)
				if err == nil {
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
			}()
			time.Sleep(50 * time.Millisecond) // fill the queue in order
		}
		wg.Wait()
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		out := utcpOK(t, append([]string{"nstat", "-a"}, ctl...)...)
		if v, ok := nstatValue(out, "TcpExtListenOverflows"); !ok || v == 0 {
			t.Fatalf("nstat -a: TcpExtListenOverflows missing or zero:\n%s", out)
		}
		out = utcpOK(t, append([]string{"ss", "-l"}, ctl...)...)
		row := ssRow(out, "LISTEN", cmdStackIP+":5001", "")
		if row == nil || row[1] != "3" || row[2] != "2" {
			t.Fatalf("ss -l: want port 5001 with Recv-Q 3 and Send-Q 2:\n%s", out)
		}
	})

	t.Run("NstatDeltas", func(t *testing.T) {
		utcpOK(t, append([]string{"nstat", "-n"}, ctl...)...) // take a baseline
		for i := 0; i < 2; i++ {
			c := cmdDialKernel(t, 9)
			c.Close()
		}
		out := utcpOK(t, append([]string{"nstat"}, ctl...)...)
		if v, _ := nstatValue(out, "TcpPassiveOpens"); v != 2 {
			t.Fatalf("nstat after 2 connections: TcpPassiveOpens %d, want the increment 2:\n%s", v, out)
		}
		abs := utcpOK(t, append([]string{"nstat", "-a", "--json"}, ctl...)...)
		m := regexp.MustCompile(`"TcpPassiveOpens":(\d+)`).FindStringSubmatch(abs)
		if m == nil {
			t.Fatalf("nstat -a --json has no TcpPassiveOpens:\n%s", abs)
		}
		if v, _ := strconv.Atoi(m[1]); v <= 2 {
			t.Fatalf("absolute TcpPassiveOpens %d, want more than the 2 of this subtest", v)
		}
	})

	t.Run("SIGTERMUnderLoad", func(t *testing.T) {
		// Load: a download and a chargen reader in flight.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		curl := exec.CommandContext(ctx, "curl", "-s", "-o", "/dev/null", "http://"+cmdStackIP+"/bytes/10000000000")
		if err := curl.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			curl.Process.Kill()
			curl.Wait()
		}()
		cg := cmdDialKernel(t, 19)
		go io.Copy(io.Discard, cg)
		time.Sleep(300 * time.Millisecond)

		start := time.Now()
		if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-srv.done:
		case <-time.After(5 * time.Second):
			t.Fatal("utcp serve still running 5 s after SIGTERM")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("utcp serve took %v to exit after SIGTERM, want at most 2 s", d)
		}
		if srv.err != nil {
			t.Fatalf("utcp serve exit after SIGTERM: %v, want status 0", srv.err)
		}
		if _, err := net.InterfaceByName("utcp0"); err == nil {
			t.Fatal("TUN device utcp0 still exists after serve exited")
		}
		if _, err := os.Stat(srv.control); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("control socket left behind: %v", err)
		}
		// The capture holds a pcap header and packets.
		if fi, err := os.Stat(pcap); err != nil || fi.Size() <= 24 {
			t.Fatalf("--pcap file: %v %v", err, fi)
		}
	})
}

// cmdCurl runs curl and returns its output, failing on any HTTP error.
func cmdCurl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args = append([]string{"-sS", "--fail", "-m", "25"}, args...)
	out, err := exec.CommandContext(ctx, "curl", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatalf("curl %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// cmdDialKernel connects a kernel socket to a port of the stack.
func cmdDialKernel(t *testing.T, port int) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", cmdStackIP, port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCmdDial(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	// A kernel listener on the host side (bound before the TUN exists, so
	// on the wildcard address) answers with the SHA-256 of what it got,
	// after our half-close, then closes.
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	type result struct {
		peer string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			res <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			res <- result{err: err}
			return
		}
		_, err = io.WriteString(c, "sha256 "+hex.EncodeToString(h.Sum(nil))+"\n")
		res <- result{peer: c.RemoteAddr().String(), err: err}
	}()
	data := cmdPattern(2<<20+5, 4)
	sum := sha256.Sum256(data)
	out, errOut, code := runUtcp(t, bytes.NewReader(data), "dial", fmt.Sprintf("%s:%d", cmdHostIP, port))
	if code != 0 {
		t.Fatalf("utcp dial: exit %d\n%s", code, errOut)
	}
	if want := "sha256 " + hex.EncodeToString(sum[:]) + "\n"; out != want {
		t.Fatalf("utcp dial printed %q, want %q (stderr %s)", out, want, errOut)
	}
	r := <-res
	if r.err != nil {
		t.Fatalf("kernel side: %v", r.err)
	}
	if !strings.HasPrefix(r.peer, cmdStackIP+":") {
		t.Fatalf("kernel saw the connection from %s, want %s", r.peer, cmdStackIP)
	}
	if _, err := net.InterfaceByName("utcp0"); err == nil {
		t.Fatal("TUN device utcp0 still exists after dial exited")
	}
}

func testCmdErrors(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	bin := cmdBin(t)
	oneLine := func(t *testing.T, what, stderr string, code int) {
		t.Helper()
		if code == 0 {
			t.Fatalf("%s: exit 0, want failure", what)
		}
		if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "utcp: ") ||
			strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "panic") {
			t.Fatalf("%s: want one \"utcp: ...\" line on stderr, got:\n%s", what, stderr)
		}
	}
	for _, args := range [][]string{
		{"serve", "--no-such-flag"},
		{"serve", "--mtu", "10"},
		{"serve", "--txqueuelen", "-1"},
		{"serve", "--addr", "nonsense"},
		{"serve", "--echo", "70000"},
		{"dial"},
		{"dial", "nohost"},
		{"ss", "--control", filepath.Join(t.TempDir(), "none.sock")},
		{"ss", "state", "bogus"},
		{"frobnicate"},
	} {
		_, stderr, code := runUtcp(t, nil, args...)
		oneLine(t, strings.Join(args, " "), stderr, code)
	}

	// -h documents every flag and succeeds.
	help, _, code := runUtcp(t, nil, "serve", "-h")
	if code != 0 {
		t.Fatalf("serve -h: exit %d", code)
	}
	for _, f := range []string{"tun", "host-addr", "addr", "mtu", "echo", "discard", "chargen", "http", "hold", "stall", "backlog",
		"msl", "fin-timeout", "max-tw-buckets", "tw-reuse", "syn-retries", "synack-retries", "retries2", "sndbuf", "rcvbuf",
		"delayed-ack", "nodelay", "trace", "pcap", "control", "txqueuelen"} {
		if !strings.Contains(help, "-"+f) {
			t.Errorf("serve -h does not document --%s", f)
		}
	}

	// Without CAP_NET_ADMIN: a user without privileges gets one clear line.
	dir, err := os.MkdirTemp("", "utcp-nobody")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	nbin := filepath.Join(dir, "utcp")
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nbin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdRunLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, nbin, "serve", "--control", filepath.Join(dir, "x.sock"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("serve as uid 65534: %v, want a non-zero exit", err)
	}
	if want := "utcp: creating TUN utcp0 needs CAP_NET_ADMIN: run as root\n"; stderr.String() != want {
		t.Fatalf("serve as uid 65534: stderr %q, want %q", stderr.String(), want)
	}
}
