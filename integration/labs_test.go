package integration

// Black-box tests of `utcp lab`: it must run the serve and the command in
// a namespace of its own, pass the command's status through, and leave
// nothing behind (serve stopped, namespace gone), also after SIGINT. Each
// subtest first enters a namespace of the test's own (netns.Run), so even
// a broken lab could never touch the host's network.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"utcp/tun/netns"
)

func TestLab(t *testing.T) {
	buildUtcp(t)
	t.Run("Command", testLabCommand)
	t.Run("ShellFromStdin", testLabShell)
	t.Run("SIGINT", testLabSIGINT)
	t.Run("Concurrent", testLabConcurrent)
	t.Run("Errors", testLabErrors)
	t.Run("GRO", testLabGRO)
}

// docs/LABS.md lab 6: with utcp serve's default GRO the kernel's TCP
// receives a download in merged segments, far fewer than utcp wrote;
// with --gro-flush-timeout 0 it receives every one.
func testLabGRO(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	for _, gro := range []string{"5ms", "0"} {
		out, errOut, code := labRun(t, "", nil, "--gro-flush-timeout", gro, "--", "sh", "-c",
			`curl -sS -o /dev/null http://198.18.0.2/bytes/20000000 && utcp nstat -a TcpOutSegs && nstat -asz TcpInSegs`)
		if code != 0 {
			t.Fatalf("--gro-flush-timeout %s: lab exit %d\nstdout:\n%s\nstderr:\n%s", gro, code, out, errOut)
		}
		var sent, got int
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "TcpOutSegs" {
				sent, _ = strconv.Atoi(f[1])
			}
			if len(f) >= 2 && f[0] == "TcpInSegs" {
				got, _ = strconv.Atoi(f[1])
			}
		}
		t.Logf("--gro-flush-timeout %s: utcp sent %d segments, the kernel's TCP received %d", gro, sent, got)
		if sent < 20000000/1460 {
			t.Fatalf("utcp sent %d segments for 20 MB:\n%s", sent, out)
		}
		if gro != "0" && got > sent/4 {
			t.Errorf("with GRO the kernel's TCP received %d segments of %d: nothing merged", got, sent)
		}
		if gro == "0" && got < sent*9/10 {
			t.Errorf("without GRO the kernel's TCP received only %d segments of %d", got, sent)
		}
	}
}

// labRun runs `utcp lab args...` to completion with stdin, bounded in time.
func labRun(t *testing.T, stdin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdRunLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, cmdBin(t), append([]string{"lab"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
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
		t.Fatalf("utcp lab: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("utcp lab %s: still running after %v", strings.Join(args, " "), cmdRunLimit)
	}
	return o.String(), e.String(), code
}

// labVars reads "key=value" lines the lab's command printed.
func labVars(out string) map[string]string {
	m := map[string]string{}
	for line := range strings.Lines(out) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			m[k] = v
		}
	}
	return m
}

// assertLabGone checks that the serve pid has exited and no process is
// left in the lab's network namespace, which the kernel then frees.
func assertLabGone(t *testing.T, pid, netNS string) {
	t.Helper()
	if pid == "" || netNS == "" {
		t.Fatalf("the lab command did not report its serve pid (%q) and namespace (%q)", pid, netNS)
	}
	if mine, _ := os.Readlink("/proc/self/ns/net"); mine == netNS {
		t.Fatalf("the lab ran in the caller's own network namespace %s", netNS)
	}
	if b, err := os.ReadFile("/proc/" + pid + "/cmdline"); err == nil && bytes.Contains(b, []byte("serve")) {
		t.Fatalf("utcp serve (pid %s) still running after lab exited", pid)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	for _, p := range procs {
		if l, err := os.Readlink(p); err == nil && l == netNS {
			t.Fatalf("%s is still in the lab's namespace %s after lab exited", p, netNS)
		}
	}
	if _, err := os.Stat("/sys/class/net/utcp0"); err == nil {
		t.Fatal("utcp0 exists in the caller's namespace: lab leaked its device")
	}
}

const labReport = `echo pid=$UTCP_LAB_SERVE_PID; echo ns=$(readlink /proc/self/ns/net); echo log=$UTCP_LAB_LOG; `

func testLabCommand(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	out, errOut, code := labRun(t, "", nil, "--hold", "5000", "--", "sh", "-c", labReport+
		`curl -sS http://198.18.0.2/bytes/5; echo; utcp ss -l; ss -tan; exit 3`)
	if code != 3 {
		t.Fatalf("lab exit %d, want the command's 3\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "abcde\n") {
		t.Fatalf("curl inside the lab did not reach utcp:\n%s\n%s", out, errOut)
	}
	// utcp ss found the serve without --control: the lab's /run/utcp.
	if ssRow(out, "LISTEN", cmdStackIP+":5000", "0.0.0.0:*") == nil {
		t.Fatalf("utcp ss -l inside the lab shows no listener for --hold 5000:\n%s", out)
	}
	v := labVars(out)
	assertLabGone(t, v["pid"], v["ns"])
	if _, err := os.Stat(v["log"]); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary serve log %q left behind (%v)", v["log"], err)
	}

	// --log keeps the serve's output, trace lines included.
	logPath := filepath.Join(t.TempDir(), "serve.log")
	_, errOut, code = labRun(t, "", nil, "--log", logPath, "--trace", "--", "curl", "-sS", "-o", "/dev/null", "http://198.18.0.2/")
	if code != 0 {
		t.Fatalf("lab --log: exit %d\n%s", code, errOut)
	}
	b, err := os.ReadFile(logPath)
	if err != nil || !bytes.Contains(b, []byte("utcp: serving as")) || !bytes.Contains(b, []byte("-> ESTAB")) {
		t.Fatalf("--log %s: %v\n%s", logPath, err, b)
	}
}

func testLabShell(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	// No COMMAND: $SHELL runs inside; here it reads its commands from stdin.
	out, errOut, code := labRun(t, labReport+"curl -sS http://198.18.0.2/bytes/3; exit 7\n", []string{"SHELL=/bin/sh"})
	if code != 7 || !strings.Contains(out, "abc") {
		t.Fatalf("lab shell: exit %d, want 7\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "utcp lab: utcp serve (pid ") {
		t.Fatalf("lab shell: no banner on stderr:\n%s", errOut)
	}
	v := labVars(out)
	assertLabGone(t, v["pid"], v["ns"])
}

func testLabSIGINT(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdRunLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, cmdBin(t), "lab", "--", "sh", "-c", labReport+"echo ready; exec sleep 60")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = pw
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var mu sync.Mutex
	var out strings.Builder
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			mu.Lock()
			out.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if sc.Text() == "ready" {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("lab command never started\n%s", stderr.String())
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT) // to lab alone, not the command
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("lab still running 10 s after SIGINT\n%s", stderr.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("lab after SIGINT: %v, want exit status 130", err)
	}
	t.Logf("lab exited %v after SIGINT", time.Since(start).Round(time.Millisecond))
	mu.Lock()
	v := labVars(out.String())
	mu.Unlock()
	assertLabGone(t, v["pid"], v["ns"])
}

func testLabConcurrent(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	// Two labs at once: separate namespaces and separate /run/utcp, so
	// both serves get utcp0 and the default control socket.
	var wg sync.WaitGroup
	res := make([]string, 2)
	codes := make([]int, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, errOut, code := labRun(t, "", nil, "--", "sh", "-c",
				"curl -sS http://198.18.0.2/bytes/"+strconv.Itoa(i+1)+" >/dev/null; sleep 1; utcp nstat -a TcpPassiveOpens")
			res[i], codes[i] = out+errOut, code
		}()
	}
	wg.Wait()
	for i := range 2 {
		// Each serve saw exactly its own connections: curl's and the
		// lab's readiness probe is none (lab waits on serve's output).
		if v, _ := nstatValue(res[i], "TcpPassiveOpens"); codes[i] != 0 || v != 1 {
			t.Fatalf("lab %d: exit %d, TcpPassiveOpens %d, want 0 and 1:\n%s", i, codes[i], v, res[i])
		}
	}
}

func testLabErrors(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	// A bad serve flag: the serve's one line, non-zero, nothing left.
	_, errOut, code := labRun(t, "", nil, "--mtu", "10", "--", "true")
	if code == 0 || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "utcp: ") {
		t.Fatalf("lab --mtu 10: exit %d, stderr %q; want one utcp: line and a failure", code, errOut)
	}
	_, errOut, code = labRun(t, "", nil, "--", "no-such-command-utcp")
	if code != 127 || !strings.HasPrefix(errOut, "utcp: lab: ") {
		t.Fatalf("lab -- no-such-command: exit %d, stderr %q; want 127", code, errOut)
	}
	help, _, code := labRun(t, "", nil, "-h")
	if code != 0 {
		t.Fatalf("lab -h: exit %d", code)
	}
	for _, s := range []string{"network namespace", "SIGINT", "$SHELL", "--log", "-hold", "-stall", "-delayed-ack", "nsenter"} {
		if !strings.Contains(help, s) {
			t.Errorf("lab -h does not mention %s", s)
		}
	}
}
