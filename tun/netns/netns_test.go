package netns

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestIsolation proves the namespace is fresh: only lo, and it is up, and
// it is not the namespace of the parent test process.
func TestIsolation(t *testing.T) {
	if !Run(t) {
		return
	}
	if !Inside() {
		t.Fatal("Run returned true but Inside is false")
	}
	ifcs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	if len(ifcs) != 1 || ifcs[0].Name != "lo" {
		t.Fatalf("interfaces = %v, want only lo", ifcs)
	}
	if ifcs[0].Flags&net.FlagUp == 0 {
		t.Fatalf("lo is down: %v", ifcs[0].Flags)
	}
	mine, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	parent, err := os.Readlink("/proc/" + strconv.Itoa(os.Getppid()) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if mine == parent {
		t.Fatalf("child and parent share network namespace %s", mine)
	}
	// Loopback works: a UDP datagram to ourselves over lo.
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteTo([]byte("ping"), c.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 8)
	if n, _, err := c.ReadFrom(buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("loopback read = %q, %v", buf[:n], err)
	}
}

// TestSubtestNames runs subtests whose names need escaping: if Pattern were
// wrong the child would run nothing (or the wrong subtest) and Run would
// fail the parent.
func TestSubtestNames(t *testing.T) {
	for _, name := range []string{"plain", "with space (and parens)|pipe.dot*", "plain"} {
		t.Run(name, func(t *testing.T) {
			if !Run(t) {
				return
			}
			if got := os.Getenv(envChild); got != t.Name() {
				t.Fatalf("child started for %q runs %q", got, t.Name())
			}
		})
	}
}

func TestPattern(t *testing.T) {
	for _, tc := range []struct {
		name, want string
	}{
		{"TestA", "^TestA$"},
		{"TestA/sub", "^TestA$/^sub$"},
		{"TestA/a_b_(c)|d#01", `^TestA$/^a_b_\(c\)\|d#01$`},
	} {
		if got := Pattern(tc.name); got != tc.want {
			t.Errorf("Pattern(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
	// Each element matches its own name and not a longer one.
	p := strings.Split(Pattern("TestA/x.y"), "/")
	if !regexp.MustCompile(p[1]).MatchString("x.y") || regexp.MustCompile(p[1]).MatchString("xzy") || regexp.MustCompile(p[0]).MatchString("TestAB") {
		t.Errorf("pattern %v matches too much", p)
	}
}

func TestCmd(t *testing.T) {
	if !Run(t) {
		return
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip(8) not installed")
	}
	out := Cmd(t, "ip", "-o", "link", "show")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(lines[0], ": lo:") {
		t.Fatalf("ip link in the namespace shows:\n%s\nwant only lo", out)
	}
}

func TestParseBench(t *testing.T) {
	out := "goos: linux\nBenchmarkX/sub-2   \t  123456\t      8123 ns/op\t 172.35 MB/s\t   123118 packets/s\nPASS\n"
	res, ok := parseBench(out, "BenchmarkX/sub")
	if !ok || res.metrics["ns/op"] != 8123 || res.metrics["packets/s"] != 123118 || res.metrics["MB/s"] != 172.35 {
		t.Fatalf("parseBench = %+v, %v", res, ok)
	}
	if _, ok := parseBench(out, "BenchmarkX"); ok {
		t.Fatal("BenchmarkX matched the line of BenchmarkX/sub")
	}
	if _, ok := parseBench("BenchmarkX/subway-2 1 1 ns/op\n", "BenchmarkX/sub"); ok {
		t.Fatal("BenchmarkX/sub matched BenchmarkX/subway")
	}
}

func TestHasLine(t *testing.T) {
	out := "=== RUN   TestA\n    --- PASS: TestA/b (0.00s)\n--- PASS: TestA (0.01s)\n"
	if !hasLine(out, "--- PASS: TestA") || !hasLine(out, "--- PASS: TestA/b") || hasLine(out, "--- PASS: TestA/") || hasLine(out, "--- FAIL: TestA") {
		t.Fatal("hasLine does not match whole test names")
	}
}

func TestChildTimeout(t *testing.T) {
	dl := time.Now().Add(100 * time.Second)
	timeout, kill := childTimeout(dl, true)
	if timeout > 95*time.Second || timeout < 85*time.Second || !kill.Before(dl) || !kill.After(time.Now().Add(timeout)) {
		t.Fatalf("childTimeout = %v, kill at %v before deadline", timeout, time.Until(kill))
	}
}

// BenchmarkRunB checks that RunB relays the child's metrics; the body is
// trivial on purpose.
func BenchmarkRunB(b *testing.B) {
	if !RunB(b) {
		return
	}
	if len(ifaces(b)) != 1 {
		b.Fatal("not in a fresh namespace")
	}
	for b.Loop() {
	}
	b.ReportMetric(42, "answers/s")
}

func ifaces(b *testing.B) []net.Interface {
	ifcs, err := net.Interfaces()
	if err != nil {
		b.Fatal(err)
	}
	return ifcs
}

// TestNamespaceGoneAfterChild records the child's namespace and checks,
// after Run returns, that no process is in it any more. (A namespace with
// no member and no bind mount or open descriptor is freed by the kernel.)
func TestNamespaceGoneAfterChild(t *testing.T) {
	const env = "NETNS_TEST_NS_FILE"
	path := os.Getenv(env)
	if path == "" { // the parent: pick the file and hand it to the child
		path = filepath.Join(t.TempDir(), "ns")
		t.Setenv(env, path)
	}
	if Run(t) {
		ns, err := os.Readlink("/proc/self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(ns), 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	ns, err := os.ReadFile(path)
	if err != nil || len(ns) == 0 {
		t.Fatalf("child left no namespace id: %v", err)
	}
	mine, _ := os.Readlink("/proc/self/ns/net")
	if string(ns) == mine {
		t.Fatalf("child ran in the parent's namespace %s", ns)
	}
	procs, err := filepath.Glob("/proc/[0-9]*/task/[0-9]*/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if l, err := os.Readlink(p); err == nil && l == string(ns) {
			t.Fatalf("%s is still in the child's namespace %s", p, ns)
		}
	}
	t.Logf("child namespace %s has no members among %d threads", ns, len(procs))
}
