package main

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"utcp/stack"
	"utcp/tun/tuntest"
)

func TestParseStateFilter(t *testing.T) {
	for name, want := range map[string]stateSet{
		"established": setOf(stack.Established),
		"time-wait":   setOf(stack.TimeWait),
		"close-wait":  setOf(stack.CloseWait),
		"fin-wait-1":  setOf(stack.FinWait1),
		"syn-recv":    setOf(stack.SynReceived),
		"listening":   setOf(stack.Listen),
		"bucket":      setOf(stack.SynReceived, stack.TimeWait),
		"connected":   connectedStates,
	} {
		if got, ok := parseStateFilter(name); !ok || got != want {
			t.Errorf("parseStateFilter(%q) = %b %v, want %b", name, got, ok, want)
		}
	}
	if _, ok := parseStateFilter("bogus"); ok {
		t.Error("parseStateFilter accepted bogus")
	}
}

func TestWriteSS(t *testing.T) {
	ap := netip.MustParseAddrPort
	conns := []stack.ConnInfo{
		{State: stack.Listen, Local: ap("198.18.0.2:7"), RecvQ: 3, SendQ: 2},
		{State: stack.Established, Local: ap("198.18.0.2:7"), Remote: ap("198.18.0.1:40000"), RecvQ: 10, SendQ: 20, MSS: 1448, Cwnd: 14480, Ssthresh: 1 << 30,
			Timers: []stack.TimerInfo{{Kind: "retransmit", In: 200 * time.Millisecond}}},
		{State: stack.TimeWait, Local: ap("198.18.0.2:80"), Remote: ap("198.18.0.1:40001"),
			Timers: []stack.TimerInfo{{Kind: "time_wait", In: 59 * time.Second}}},
	}
	fields := func(out string) [][]string {
		var rows [][]string
		for line := range strings.Lines(out) {
			if !strings.HasPrefix(line, "\t") {
				rows = append(rows, strings.Fields(line))
			}
		}
		return rows
	}
	var b bytes.Buffer
	writeSS(&b, conns, ssOpts{})
	rows := fields(b.String())
	if len(rows) != 3 || rows[1][0] != "ESTAB" || rows[2][0] != "TIME-WAIT" {
		t.Fatalf("default: want ESTAB and TIME-WAIT, no LISTEN:\n%s", b.String())
	}
	if rows[1][1] != "10" || rows[1][2] != "20" || rows[1][4] != "198.18.0.1:40000" {
		t.Fatalf("ESTAB row %v", rows[1])
	}
	b.Reset()
	writeSS(&b, conns, ssOpts{listening: true})
	rows = fields(b.String())
	if len(rows) != 2 || strings.Join(rows[1], " ") != "LISTEN 3 2 198.18.0.2:7 0.0.0.0:*" {
		t.Fatalf("-l:\n%s", b.String())
	}
	b.Reset()
	writeSS(&b, conns, ssOpts{states: setOf(stack.TimeWait), timers: true, info: true})
	if !strings.Contains(b.String(), "timer:(time_wait,59sec,0)") || strings.Contains(b.String(), "ESTAB") {
		t.Fatalf("state time-wait -o:\n%s", b.String())
	}
	b.Reset()
	writeSS(&b, conns, ssOpts{states: setOf(stack.Established), info: true})
	if out := b.String(); !strings.Contains(out, "mss:1448 cwnd:10 bytes_acked") || strings.Contains(out, "ssthresh") {
		t.Fatalf("-i (cwnd in segments, infinite ssthresh left out):\n%s", out)
	}
}

func TestExpandShort(t *testing.T) {
	got := strings.Join(expandShort([]string{"-tan", "--control", "x", "-io", "state", "-tx"}, "tnlaio"), " ")
	if want := "-t -a -n --control x -i -o state -tx"; got != want {
		t.Fatalf("expandShort = %q, want %q", got, want)
	}
}

// TestControlSSNstat runs the control server on a stack joined to a second
// stack by an in-memory pipe, and drives ss and nstat through run().
func TestControlSSNstat(t *testing.T) {
	la, lb := tuntest.NewPipe(1500, 1024)
	srvStack, err := stack.New(stack.Config{Link: la, Addr: netip.MustParseAddr("198.18.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	defer srvStack.Close()
	cli, err := stack.New(stack.Config{Link: lb, Addr: netip.MustParseAddr("198.18.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ln, err := srvStack.Listen(7, 4)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "c.sock")
	cs, err := listenControl(sock, srvStack, serverInfo{PID: 1, Start: 42})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.close()
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: %v %v, want mode 0600", fi, err)
	}
	// A second server on the same live socket is refused.
	if _, err := listenControl(sock, srvStack, serverInfo{}); err == nil {
		t.Fatal("second listenControl on a live socket succeeded")
	}
	t.Setenv("UTCP_NSTAT_HISTORY", filepath.Join(dir, "hist"))

	utcp := func(args ...string) string {
		t.Helper()
		var o, e bytes.Buffer
		if code := run(args, nil, &o, &e); code != 0 {
			t.Fatalf("utcp %v: exit %d: %s", args, code, e.String())
		}
		return o.String()
	}
	dial := func() *stack.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := cli.Dial(ctx, netip.MustParseAddrPort("198.18.0.2:7"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// Dial returns once the client is established; the handshake's last
	// ACK may still be on its way to the server, which counts the passive
	// open only when it arrives.
	waitPassiveOpens := func(n uint64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for srvStack.Counters().PassiveOpens < n {
			if time.Now().After(deadline) {
				t.Fatalf("server counted %d passive opens in 5 s, want %d", srvStack.Counters().PassiveOpens, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	c1 := dial()
	defer c1.Close()
	waitPassiveOpens(1)
	utcp("nstat", "-n", "--control", sock) // baseline: one passive open
	c2 := dial()
	defer c2.Close()
	waitPassiveOpens(2)
	out := utcp("nstat", "--control", sock, "TcpPassiveOpens")
	if want := "#utcp\nTcpPassiveOpens                 1\n"; out != want {
		t.Fatalf("nstat delta:\n%q\nwant\n%q", out, want)
	}
	out = utcp("nstat", "-a", "--control", sock, "--json", "TcpPassiveOpens")
	if want := `{"utcp":{"TcpPassiveOpens":2}}` + "\n"; out != want {
		t.Fatalf("nstat -a --json = %q, want %q", out, want)
	}
	out = utcp("ss", "-tan", "--control", sock)
	if !strings.Contains(out, "LISTEN") || strings.Count(out, "SYN-RECV")+strings.Count(out, "ESTAB") != 2 {
		t.Fatalf("ss -tan: want the listener and two connections:\n%s", out)
	}
	_ = ln
}

func TestBadUsageIsOneLine(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--bogus"},
		{"serve", "--host-addr", "10.0.0.1"},
		{"serve", "--addr", "198.18.0.1"},
		{"serve", "--backlog", "0"},
		{"serve", "--echo", "80"},
		{"serve", "--delayed-ack", "-1s"},
		{"serve", "--procs", "-1"},
		{"serve", "--busy-poll", "-1us"},
		{"serve", "--busy-poll", "1s"},
		{"dial", "1.2.3.4"},
		{"nstat", "[", "--control", "/nonexistent"},
		{"nope"},
	} {
		var o, e bytes.Buffer
		code := run(args, nil, &o, &e)
		if code == 0 || strings.Count(e.String(), "\n") != 1 || !strings.HasPrefix(e.String(), "utcp") {
			t.Errorf("utcp %v: exit %d, stderr %q: want failure with one line", args, code, e.String())
		}
	}
}

// GOMAXPROCS for the stack process: --procs wins, then $GOMAXPROCS, then
// one P per TUN queue, never more than Go's own default.
func TestGomaxprocs(t *testing.T) {
	def := runtime.GOMAXPROCS(0)
	for _, c := range []struct {
		procs, queues int
		envSet        bool
		want          int
	}{
		{procs: 3, queues: 1, want: 3},
		{procs: 3, queues: 1, envSet: true, want: 3},
		{queues: 1, envSet: true, want: def},
		{queues: 1, want: 1},
		{queues: def + 4, want: def},
	} {
		n := netFlags{procs: c.procs, queues: c.queues}
		if got := n.gomaxprocs(c.envSet); got != c.want {
			t.Errorf("--procs %d --queues %d, $GOMAXPROCS set %v: got %d, want %d (Go's default here %d)", c.procs, c.queues, c.envSet, got, c.want, def)
		}
	}
}
