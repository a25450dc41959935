package integration

// The kernel as utcp's peer through the real TUN, seen from both sides:
// bulk transfers with curl and nc checked byte for byte, utcp dial to a
// kernel listener in both directions, and the kernel's own `ss -tan`
// beside `utcp ss` for the states each side should be in (RFC 9293
// Figure 5). Every subtest runs `utcp serve` (or dial) in a network
// namespace of its own (netns.Run) on 198.18.0.0/24, using the helpers of
// cmd_test.go (startServe, utcpOK, ssRow, nstatValue, cmdEventually).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"utcp/tun/netns"
)

// buildUtcp builds the command once per top-level test, in the parent
// process; children in their namespaces find it through cmdEnvBin.
func buildUtcp(t *testing.T) {
	t.Helper()
	if netns.Inside() {
		return
	}
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

func TestKernel(t *testing.T) {
	buildUtcp(t)
	t.Run("CurlBytes100MiB", testKernelCurlBytes)
	t.Run("CurlPostSHA256", testKernelCurlPost)
	t.Run("NcEcho10MiB", testKernelNcEcho)
	t.Run("NcChargen", testKernelNcChargen)
	t.Run("DialToKernel", testKernelDial)
	t.Run("CloseWaitFinWait2", testKernelCloseWait)
	t.Run("HostClosesFirstTimeWait", testKernelHostTimeWait)
	t.Run("UtcpClosesFirstTimeWait", testKernelUtcpTimeWait)
	t.Run("AcceptQueueStall", testKernelStall)
	t.Run("ZeroWindow", testKernelZeroWindow)
	t.Run("DelayedACKs", testKernelDelayedACKs)
}

// shell runs a sh -c script (bounded in time) and returns its stdout.
func shell(t *testing.T, script string) string {
	t.Helper()
	// A missing tool inside a pipeline (nc ... | head) would show only as
	// empty output; say what is missing instead.
	for _, w := range strings.Fields(script) {
		if pkg, ok := testTools[w]; ok {
			if _, err := exec.LookPath(w); err != nil {
				t.Fatalf("%s is not installed (Debian package %s; .ci/run installs what the tests use)", w, pkg)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("sh -c %q: %v\nstderr:\n%s", script, err, e.String())
	}
	return o.String()
}

// testTools are the host commands the kernel tests run, with the Debian
// package of each.
var testTools = map[string]string{"nc": "netcat-openbsd", "curl": "curl", "ping": "iputils-ping", "tcpdump": "tcpdump"}

// randomFile writes n seeded pseudo-random bytes and returns the path and
// their SHA-256. The seed is logged so a failure replays.
func randomFile(t *testing.T, n int, seed uint64) (string, string) {
	t.Helper()
	t.Logf("random file: %d bytes, seed %d", n, seed)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	path := filepath.Join(t.TempDir(), "random")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return path, hex.EncodeToString(sum[:])
}

// hostSS runs the kernel's `ss -tan` (this namespace only).
func hostSS(t *testing.T, args ...string) string {
	t.Helper()
	return netns.Cmd(t, "ss", append([]string{"-tan"}, args...)...)
}

func testKernelCurlBytes(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	startServe(t)
	const n = 104857600
	// The content GET /bytes/N promises (cmd/utcp/svc): 64 KiB
	// chunks of 'a'+i%26, the pattern restarting at each chunk.
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = 'a' + byte(i%26)
	}
	want := sha256.New()
	for left := n; left > 0; left -= min(left, len(chunk)) {
		want.Write(chunk[:min(left, len(chunk))])
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	curl := exec.CommandContext(ctx, "curl", "-sS", "--fail", "http://"+cmdStackIP+"/bytes/104857600")
	out, err := curl.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	curl.Stderr = &stderr
	if err := curl.Start(); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	got, err := io.Copy(h, out)
	if werr := curl.Wait(); err != nil || werr != nil {
		t.Fatalf("curl: copy %v, exit %v\n%s", err, werr, stderr.String())
	}
	if got != n {
		t.Fatalf("curl got %d bytes, want %d", got, n)
	}
	if g, w := hex.EncodeToString(h.Sum(nil)), hex.EncodeToString(want.Sum(nil)); g != w {
		t.Fatalf("GET /bytes/%d: SHA-256 %s, want %s", n, g, w)
	}
}

func testKernelCurlPost(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	startServe(t)
	path, sum := randomFile(t, 100<<20, uint64(time.Now().UnixNano()))
	got := cmdCurl(t, "--data-binary", "@"+path, "http://"+cmdStackIP+"/sha256")
	if strings.TrimSpace(got) != sum {
		t.Fatalf("POST /sha256 of 100 MiB = %q, want %s", got, sum)
	}
}

func testKernelNcEcho(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	startServe(t)
	path, sum := randomFile(t, 10<<20, uint64(time.Now().UnixNano()))
	out := filepath.Join(t.TempDir(), "out")
	// -N: shut down the sending side at stdin EOF, so echo sees our FIN,
	// closes after echoing everything, and nc exits on the EOF.
	shell(t, fmt.Sprintf("nc -N %s 7 < %s > %s", cmdStackIP, path, out))
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.Sum256(b)
	if len(b) != 10<<20 || hex.EncodeToString(got[:]) != sum {
		t.Fatalf("echo through nc returned %d bytes (sha256 %x), want %d bytes %s", len(b), got, 10<<20, sum)
	}
}

func testKernelNcChargen(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	srv := startServe(t)
	// -d: nc reads nothing from stdin; head ends the pipeline, nc dies of
	// SIGPIPE and the kernel closes (RST, as data is still unread).
	const n = 74 * 95 * 20 // 20 periods of the RFC 864 pattern
	out := shell(t, fmt.Sprintf("nc -d %s 19 | head -c %d", cmdStackIP, n))
	if len(out) != n {
		t.Fatalf("chargen: read %d bytes, want %d", len(out), n)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for i := 0; sc.Scan(); i++ {
		line := sc.Text()
		// RFC 864: 72 printable characters, each line starting one
		// further along the 95-character cycle beginning at '!'.
		want := make([]byte, 72)
		for k := range want {
			want[k] = byte(' ' + (1+i+k)%95)
		}
		if line != string(want) { // ScanLines drops the CR LF
			t.Fatalf("chargen line %d = %q, want %q", i, line, want)
		}
	}
	// utcp forgets the connection once nc is gone.
	cmdEventually(t, 10*time.Second, "no chargen connection left in utcp ss", func() (bool, string) {
		o := utcpOK(t, "ss", "--control", srv.control)
		return !strings.Contains(o, cmdStackIP+":19 "), o
	})
}

func testKernelDial(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	// A kernel listener bound before utcp0 exists, so on the wildcard.
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	raddr := fmt.Sprintf("%s:%d", cmdHostIP, port)

	t.Run("StdinToKernel", func(t *testing.T) {
		data := cmdPattern(5<<20+3, 7)
		got := make(chan []byte, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- nil
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			b, _ := io.ReadAll(c) // until utcp's FIN (stdin EOF)
			got <- b
		}()
		_, errOut, code := runUtcp(t, bytes.NewReader(data), "dial", raddr)
		if code != 0 {
			t.Fatalf("utcp dial: exit %d\n%s", code, errOut)
		}
		if b := <-got; !bytes.Equal(b, data) {
			t.Fatalf("kernel received %d bytes, want the %d of stdin, byte-exact", len(b), len(data))
		}
	})
	t.Run("KernelToStdout", func(t *testing.T) {
		data := cmdPattern(5<<20+11, 8)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			c.Write(data) // then close: utcp dial exits on our FIN
		}()
		// stdin stays open (a pipe nobody writes) so dial's own FIN
		// does not race the data: the kernel closes first.
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pw.Close()
		defer pr.Close()
		out, errOut, code := runUtcp(t, pr, "dial", raddr)
		if code != 0 {
			t.Fatalf("utcp dial: exit %d\n%s", code, errOut)
		}
		if !bytes.Equal([]byte(out), data) {
			t.Fatalf("utcp dial printed %d bytes, want the kernel's %d, byte-exact", len(out), len(data))
		}
	})
}

func testKernelCloseWait(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	srv := startServe(t, "--hold", "5000")
	c := cmdDialKernel(t, 5000)
	local := c.LocalAddr().String()
	c.Close() // our FIN; hold never closes
	// RFC 9293 Figure 5: the closer goes FIN_WAIT_1 -> FIN_WAIT_2 on the
	// ACK of its FIN; the other side sits in CLOSE_WAIT until its
	// application closes, which hold never does.
	cmdEventually(t, 5*time.Second, "host FIN-WAIT-2 and utcp CLOSE-WAIT", func() (bool, string) {
		h := hostSS(t)
		u := utcpOK(t, "ss", "--control", srv.control)
		ok := ssRow(h, "FIN-WAIT-2", local, cmdStackIP+":5000") != nil &&
			ssRow(u, "CLOSE-WAIT", cmdStackIP+":5000", local) != nil
		return ok, "host:\n" + h + "utcp:\n" + u
	})
}

func testKernelHostTimeWait(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	srv := startServe(t)
	c := cmdDialKernel(t, 7)
	local := c.LocalAddr().String()
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil { // echo's FIN
		t.Fatal(err)
	}
	c.Close()
	// The side that sends the first FIN holds TIME_WAIT (RFC 9293
	// §3.6); utcp went CLOSE_WAIT -> LAST_ACK -> CLOSED and keeps nothing.
	cmdEventually(t, 5*time.Second, "host TIME-WAIT, nothing in utcp", func() (bool, string) {
		h := hostSS(t)
		u := utcpOK(t, "ss", "-a", "--control", srv.control)
		ok := ssRow(h, "TIME-WAIT", local, cmdStackIP+":7") != nil && !strings.Contains(u, local)
		return ok, "host:\n" + h + "utcp:\n" + u
	})
}

func testKernelUtcpTimeWait(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	srv := startServe(t)
	// A client that waits for the server's FIN before closing, so utcp
	// is the only side to close first. (curl closes as soon as it has
	// Content-Length bytes, which races net/http's FIN and can end in a
	// simultaneous close with both sides in TIME_WAIT, RFC 9293 Figure 13.)
	c := cmdDialKernel(t, 80)
	io.WriteString(c, "GET /bytes/5 HTTP/1.1\r\nHost: utcp\r\nConnection: close\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := io.ReadAll(c) // until utcp's FIN
	if err != nil || !bytes.HasSuffix(resp, []byte("\r\n\r\nabcde")) {
		t.Fatalf("GET /bytes/5 with Connection: close: %v\n%q", err, resp)
	}
	c.Close()
	_, port, _ := net.SplitHostPort(c.LocalAddr().String())
	peer := cmdHostIP + ":" + port
	cmdEventually(t, 5*time.Second, "utcp TIME-WAIT, nothing on the host", func() (bool, string) {
		h := hostSS(t)
		u := utcpOK(t, "ss", "-o", "--control", srv.control)
		ok := ssRow(u, "TIME-WAIT", cmdStackIP+":80", peer) != nil && !strings.Contains(h, peer)
		return ok, "host:\n" + h + "utcp:\n" + u
	})
	// 2*MSL with the default --msl 30s.
	if u := utcpOK(t, "ss", "-o", "state", "time-wait", "--control", srv.control); !strings.Contains(u, "timer:(time_wait,") {
		t.Fatalf("utcp ss -o shows no time_wait timer:\n%s", u)
	}
}

func testKernelStall(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	srv := startServe(t, "--stall", "5001", "--backlog", "2")
	ctl := []string{"--control", srv.control}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	var d net.Dialer
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c, err := d.DialContext(ctx, "tcp", cmdStackIP+":5001"); err == nil {
				<-ctx.Done()
				c.Close()
			}
		}()
		time.Sleep(50 * time.Millisecond)
	}
	// Linux sk_acceptq_is_full: the queue takes backlog+1 = 3; later SYNs
	// are dropped and counted, so those clients stay in SYN-SENT and
	// retransmit their SYN (RFC 6298 backoff: 1 s, 3 s, ...).
	cmdEventually(t, 5*time.Second, "3 ESTAB and 3 SYN-SENT on the host", func() (bool, string) {
		h := hostSS(t, "dst", cmdStackIP+":5001")
		return strings.Count(h, "ESTAB") == 3 && strings.Count(h, "SYN-SENT") == 3, h
	})
	row := ssRow(utcpOK(t, append([]string{"ss", "-l"}, ctl...)...), "LISTEN", cmdStackIP+":5001", "")
	if row == nil || row[1] != "3" || row[2] != "2" {
		t.Fatalf("utcp ss -l: want 5001 with Recv-Q 3 (queued) and Send-Q 2 (backlog), got %v", row)
	}
	first, _ := nstatValue(utcpOK(t, append([]string{"nstat", "-a"}, ctl...)...), "TcpExtListenOverflows")
	if first < 3 {
		t.Fatalf("TcpExtListenOverflows %d, want at least the 3 dropped SYNs", first)
	}
	cmdEventually(t, 5*time.Second, "ListenOverflows rising with SYN retransmissions", func() (bool, string) {
		out := utcpOK(t, append([]string{"nstat", "-a"}, ctl...)...)
		v, _ := nstatValue(out, "TcpExtListenOverflows")
		return v > first, out
	})
}

func testKernelZeroWindow(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	srv := startServe(t, "--hold", "5000")
	ctl := []string{"--control", srv.control}
	c := cmdDialKernel(t, 5000)
	local := c.LocalAddr().String()
	// The client keeps writing; hold never reads, so utcp's receive
	// buffer fills and it advertises a zero window (RFC 9293 §3.8.6.2.2);
	// then the kernel's send queue fills behind it and Write blocks.
	sendQ := func() (int, string) {
		h := hostSS(t)
		row := ssRow(h, "ESTAB", local, cmdStackIP+":5000")
		if row == nil {
			return -1, h
		}
		v, _ := strconv.Atoi(row[2])
		return v, h
	}
	base, h := sendQ() // nothing written yet
	if base != 0 {
		t.Fatalf("host Send-Q %d before writing:\n%s", base, h)
	}
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		buf := make([]byte, 64<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			c.Write(buf)
		}
	}()
	defer func() {
		close(stop)
		<-writerDone
	}()
	cmdEventually(t, 10*time.Second, "utcp advertised a zero window", func() (bool, string) {
		out := utcpOK(t, append([]string{"nstat", "-a"}, ctl...)...)
		v, _ := nstatValue(out, "TcpExtTCPToZeroWindowAdv")
		return v >= 1, out
	})
	// The kernel's unsent data piles up behind the closed window (it
	// filled within milliseconds here; on a slower path ss shows it climb).
	cmdEventually(t, 10*time.Second, "host Send-Q grown behind the zero window", func() (bool, string) {
		v, h := sendQ()
		return v > 64<<10, fmt.Sprintf("Send-Q %d (was %d)\n%s", v, base, h)
	})
	// And the kernel probes the window (persist timer, RFC 9293 §3.8.6.1).
	cmdEventually(t, 10*time.Second, "host persist timer", func() (bool, string) {
		h := hostSS(t, "-o")
		return strings.Contains(h, "timer:(persist"), h
	})
	// utcp's side: the whole receive buffer (1 MiB) is queued, unread.
	u := utcpOK(t, append([]string{"ss"}, ctl...)...)
	if row := ssRow(u, "ESTAB", cmdStackIP+":5000", local); row == nil {
		t.Fatalf("utcp ss: no held connection:\n%s", u)
	} else if q, _ := strconv.Atoi(row[1]); q < 1<<20-64<<10 {
		t.Fatalf("utcp ss: Recv-Q %d, want the receive buffer nearly full:\n%s", q, u)
	}
}

func testKernelDelayedACKs(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	srv := startServe(t)
	ctl := []string{"--control", srv.control}
	c := cmdDialKernel(t, 9)
	// Lone small segments 100 ms apart: after the quickack start-up (the
	// first 16 segments are acknowledged at once, like Linux), each waits
	// for the 40 ms delayed-ACK timer (RFC 9293 §3.8.6.3, RFC 1122
	// 4.2.3.2), which counts TcpExtDelayedACKs.
	for i := 0; i < 30; i++ {
		if _, err := c.Write([]byte{'x'}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := utcpOK(t, append([]string{"nstat", "-a"}, ctl...)...)
	if v, _ := nstatValue(out, "TcpExtDelayedACKs"); v < 5 {
		t.Fatalf("TcpExtDelayedACKs %d after 30 lone segments, want at least 5:\n%s", v, out)
	}
}
