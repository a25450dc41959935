package netns

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// envChild marks a child started by Run; its value is the name of the test
// the child was started for.
const envChild = "UTCP_NETNS_CHILD"

// Inside reports whether this process runs in a namespace created by Run.
func Inside() bool { return os.Getenv(envChild) != "" }

// Run re-executes the current test binary for the calling test only, inside
// a fresh network namespace with loopback up. In the parent it waits for the
// child, logs its output, fails the test if the child failed (or skips it if
// the child skipped), and returns false: the caller returns. In the child it
// returns true and the test body runs.
//
//	if !netns.Run(t) {
//		return
//	}
func Run(t *testing.T) bool {
	t.Helper()
	if Inside() {
		setupChild(t)
		return true
	}
	args := []string{
		"-test.run=" + Pattern(t.Name()),
		"-test.v=true", // so the parent can see that the test ran and how it ended
	}
	args = append(args, passFlags("test.short", "test.failfast", "test.paniconexit0")...)
	out, failed, err := runChild(t, t.Name(), args, func(line string) { t.Log(line) })
	if err != nil {
		t.Fatalf("netns: %v", err)
	}
	switch {
	case failed:
		t.Fatalf("netns: %s failed inside the network namespace (its output is above)", t.Name())
	case hasLine(out, "--- SKIP: "+t.Name()):
		t.Skipf("netns: %s skipped inside the network namespace (reason above)", t.Name())
	case !hasLine(out, "--- PASS: "+t.Name()):
		t.Fatalf("netns: the child process did not run %s (pattern %s); its output is above", t.Name(), Pattern(t.Name()))
	}
	return false
}

// Pattern returns the -test.run / -test.bench pattern that selects exactly
// the test or benchmark with this full name: each '/'-separated element is
// quoted and anchored, because the testing package matches element by
// element.
func Pattern(name string) string {
	elems := strings.Split(name, "/")
	for i, e := range elems {
		elems[i] = "^" + regexp.QuoteMeta(e) + "$"
	}
	return strings.Join(elems, "/")
}

// Cmd runs a command in the current network namespace and returns its
// combined output; it fails the test, showing the output, if the command
// fails or runs longer than 30 s. It also fails when called outside a
// namespace created by Run, so that a command like `ip addr add` can never
// change the host's network.
func Cmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	if !Inside() {
		t.Fatalf("netns: Cmd(%s) called outside a namespace created by netns.Run: refusing to run it on the host", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("netns: %s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return string(out)
}

var loOnce struct {
	sync.Once
	err error
}

// setupChild brings loopback up: a fresh namespace starts with lo down.
func setupChild(tb testing.TB) {
	tb.Helper()
	loOnce.Do(func() { loOnce.err = setUp("lo") })
	if loOnce.err != nil {
		tb.Fatalf("netns: bringing lo up in the new namespace: %v", loOnce.err)
	}
}

// setUp sets IFF_UP on an interface with SIOCGIFFLAGS/SIOCSIFFLAGS.
func setUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("ioctl SIOCGIFFLAGS", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("ioctl SIOCSIFFLAGS", err)
	}
	return nil
}

// passFlags returns -flag=value for each named testing flag that is set.
func passFlags(names ...string) []string {
	var args []string
	for _, n := range names {
		if f := flag.Lookup(n); f != nil {
			args = append(args, "-"+n+"="+f.Value.String())
		}
	}
	return args
}

// childTimeout derives the child's -test.timeout from the parent's deadline,
// leaving a margin so the child's own timeout panic (with its goroutine
// dump) fires before the parent has to kill it.
func childTimeout(deadline time.Time, ok bool) (timeout time.Duration, kill time.Time) {
	if !ok {
		return 10 * time.Minute, time.Now().Add(11 * time.Minute)
	}
	left := time.Until(deadline)
	margin := min(left/10, 5*time.Second)
	return max(left-2*margin, time.Second), deadline.Add(-margin)
}

// runChild starts the test binary with args in a new network namespace,
// sends each output line to logLine as it arrives, and returns the whole
// output. failed is true when the child exited with status 1, which is how
// the testing package reports a failed test. The error is non-nil when the
// child could not be started, was killed, or exited with another status.
func runChild(tb testing.TB, name string, args []string, logLine func(string)) (out string, failed bool, err error) {
	exe, err := os.Executable()
	if err != nil {
		return "", false, fmt.Errorf("finding the test binary to re-execute: %w", err)
	}
	dl, hasDL := deadlineOf(tb)
	timeout, kill := childTimeout(dl, hasDL)
	args = append(args, "-test.timeout="+timeout.String())

	ctx, cancel := context.WithDeadline(context.Background(), kill)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), envChild+"="+name)
	if race := os.Getenv("GORACE"); !strings.Contains(race, "atexit_sleep_ms") {
		// A -race binary sleeps 1 s at exit by default; each child would
		// pay it. Reports during the test still fail the child's test.
		cmd.Env = append(cmd.Env, strings.TrimSpace("GORACE="+race+" atexit_sleep_ms=0"))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// A network namespace owned by the child process alone: it is
		// freed when the child exits, however it exits.
		Cloneflags: syscall.CLONE_NEWNET,
		// If this process dies, take the child with it.
		Pdeathsig: syscall.SIGKILL,
	}
	cmd.WaitDelay = 5 * time.Second
	w := &lineWriter{logLine: logLine}
	cmd.Stdout, cmd.Stderr = w, w

	// Pdeathsig fires when the thread that forked exits; keep it alive.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return "", false, fmt.Errorf("creating a network namespace needs CAP_SYS_ADMIN: run the tests as root (e.g. sudo go test) or with that capability: %w", err)
		}
		return "", false, fmt.Errorf("starting %s in a new network namespace: %w", exe, err)
	}
	err = cmd.Wait()
	w.flush()
	out = w.buf.String()
	if ctx.Err() != nil {
		return out, true, fmt.Errorf("%s still running at the deadline %s: killed it (pid %d)", name, kill.Format(time.TimeOnly), cmd.Process.Pid)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return out, true, nil
	}
	if err != nil {
		return out, true, fmt.Errorf("%s in the network namespace: %w", name, err)
	}
	return out, false, nil
}

func deadlineOf(tb testing.TB) (time.Time, bool) {
	if d, ok := tb.(interface{ Deadline() (time.Time, bool) }); ok {
		return d.Deadline()
	}
	// testing.B has no Deadline: use -test.timeout from the start of the
	// benchmark, which is conservative enough for one child.
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > 0 {
			return time.Now().Add(d), true
		}
	}
	return time.Time{}, false
}

// lineWriter hands complete lines to logLine and keeps everything. exec.Cmd
// calls Write from one goroutine at a time because Stdout == Stderr.
type lineWriter struct {
	logLine func(string)
	buf     bytes.Buffer
	partial []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.logLine(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	if len(w.partial) > 0 {
		w.logLine(string(w.partial))
		w.partial = nil
	}
}

// hasLine reports whether out has a line that, with leading spaces removed,
// starts with prefix followed by a space or the end of the line.
func hasLine(out, prefix string) bool {
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, prefix); ok && (rest == "" || rest[0] == ' ') {
			return true
		}
	}
	return false
}

// benchResult is what a child's benchmark line said.
type benchResult struct {
	line    string
	metrics map[string]float64 // unit → value, including ns/op
}

var benchCache struct {
	sync.Mutex
	m map[string]benchResult
}

// RunB is Run for benchmarks. The child runs the whole benchmark (with the
// parent's -test.benchtime, -test.benchmem and the current GOMAXPROCS); the
// parent re-reports the child's metrics (ns/op, MB/s, B/op, allocs/op and
// custom ones) as its own and logs the child's result line, which carries
// the real iteration count. The parent's own iteration count is not
// meaningful: the testing package calls the benchmark again with a larger
// b.N when the first call was fast, and those calls reuse the child's result.
//
//	if !netns.RunB(b) {
//		return
//	}
func RunB(b *testing.B) bool {
	b.Helper()
	if Inside() {
		setupChild(b)
		return true
	}
	benchCache.Lock()
	res, ok := benchCache.m[b.Name()]
	benchCache.Unlock()
	// b.N == 1 is the testing package's first call of a new run (run1),
	// also for each -test.count repetition: measure afresh then.
	if b.N == 1 || !ok {
		res = runBenchChild(b)
		benchCache.Lock()
		if benchCache.m == nil {
			benchCache.m = make(map[string]benchResult)
		}
		benchCache.m[b.Name()] = res
		benchCache.Unlock()
		b.Logf("in netns: %s", res.line)
	}
	for unit, v := range res.metrics {
		b.ReportMetric(v, unit)
	}
	return false
}

func runBenchChild(b *testing.B) benchResult {
	b.Helper()
	args := []string{
		"-test.run=^$",
		"-test.bench=" + Pattern(b.Name()),
		"-test.cpu=" + strconv.Itoa(runtime.GOMAXPROCS(0)),
		"-test.count=1",
	}
	args = append(args, passFlags("test.benchtime", "test.benchmem", "test.short")...)
	out, failed, err := runChild(b, b.Name(), args, func(string) {})
	if err != nil {
		b.Fatalf("netns: %v\n%s", err, out)
	}
	res, ok := parseBench(out, b.Name())
	if !ok || failed {
		b.Fatalf("netns: %s failed or reported nothing inside the network namespace:\n%s", b.Name(), out)
	}
	return res
}

// parseBench finds the result line for name ("Name[-P] N v unit v unit...").
func parseBench(out, name string) (benchResult, bool) {
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue
		}
		if f[0] != name {
			procs, ok := strings.CutPrefix(f[0], name+"-")
			if !ok {
				continue
			}
			if _, err := strconv.Atoi(procs); err != nil {
				continue
			}
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		res := benchResult{line: strings.TrimSpace(line), metrics: make(map[string]float64)}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return benchResult{}, false
			}
			res.metrics[f[i+1]] = v
		}
		return res, true
	}
	return benchResult{}, false
}
