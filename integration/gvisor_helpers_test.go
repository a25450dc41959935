package integration

import (
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"utcp/stack"
	"utcp/tun/tuntest"
)

// utcpAddr is utcp's address on the test subnet.
var utcpAddr = netip.MustParseAddr("198.18.0.2")

// tracer records utcp's state transitions (Config.Trace).
type tracer struct {
	mu     sync.Mutex
	events []stack.TraceEvent
}

func (tr *tracer) record(ev stack.TraceEvent) {
	ev.Seg = nil // only valid during the call
	tr.mu.Lock()
	tr.events = append(tr.events, ev)
	tr.mu.Unlock()
}

// transitions returns "FROM>TO" for every transition of the connection
// whose local address is local.
func (tr *tracer) transitions(local netip.AddrPort) []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []string
	for _, ev := range tr.events {
		if ev.Local == local {
			out = append(out, ev.From.String()+">"+ev.To.String())
		}
	}
	return out
}

// gvPair is a gVisor peer and a utcp stack joined by the bridge.
type gvPair struct {
	gv *GVisorPeer
	u  *stack.Stack
	tr *tracer
}

type gvOpts struct {
	faults *tuntest.Faults // both directions, each with its own seed
	toUTCP *tuntest.Faults // only the packets gVisor sends
	cfg    func(*stack.Config)
}

func newGVPair(t *testing.T, o gvOpts) *gvPair {
	t.Helper()
	gcfg := GVisorConfig{}
	if o.faults != nil {
		f := *o.faults
		f.Seed++
		f.Logf = t.Logf
		gcfg.ToUTCP = &f
	} else if o.toUTCP != nil {
		f := *o.toUTCP
		f.Logf = t.Logf
		gcfg.ToUTCP = &f
	}
	gv, err := NewGVisorPeer(gcfg)
	if err != nil {
		t.Fatal(err)
	}
	var link stack.Link = gv.Link()
	if o.faults != nil {
		f := *o.faults
		f.Logf = t.Logf
		link = tuntest.NewLossy(link, f)
	}
	tr := &tracer{}
	cfg := stack.Config{Link: link, Addr: utcpAddr, Trace: tr.record, Logf: t.Logf}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	u, err := stack.New(cfg)
	if err != nil {
		gv.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		u.Close()
		gv.Close()
	})
	return &gvPair{gv: gv, u: u, tr: tr}
}

// connected returns an established utcp/gVisor connection pair, dialed by
// utcp (utcpDials) or by gVisor.
func (p *gvPair) connected(t *testing.T, utcpDials bool, port uint16) (*stack.Conn, net.Conn) {
	t.Helper()
	ctx := testCtx(t, 5*time.Second)
	if utcpDials {
		ln, err := p.gv.Listen(port)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		acc := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				t.Error(err)
			}
			acc <- c
		}()
		uc, err := p.u.Dial(ctx, netip.AddrPortFrom(p.gv.Addr, port))
		if err != nil {
			t.Fatal(err)
		}
		gc := <-acc
		if gc == nil {
			t.FailNow()
		}
		t.Cleanup(func() { uc.Close(); gc.Close() })
		return uc, gc
	}
	ln, err := p.u.Listen(port, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan *stack.Conn, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			t.Error(err)
		}
		acc <- c
	}()
	gc, err := p.gv.Dial(ctx, netip.AddrPortFrom(utcpAddr, port))
	if err != nil {
		t.Fatal(err)
	}
	uc := <-acc
	if uc == nil {
		t.FailNow()
	}
	t.Cleanup(func() { uc.Close(); gc.Close() })
	return uc, gc
}

// dialers runs f as two subtests: utcp dialing gVisor and gVisor dialing utcp.
func dialers(t *testing.T, f func(t *testing.T, utcpDials bool)) {
	t.Run("utcp-dials", func(t *testing.T) { f(t, true) })
	t.Run("gvisor-dials", func(t *testing.T) { f(t, false) })
}

// halfCloser is a net.Conn that can send FIN while still reading.
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// exchange sends size bytes each way at once; each side half-closes after
// its data and reads the other's to EOF. Both directions are compared by
// SHA-256.
func exchange(t *testing.T, a, b halfCloser, size int, timeout time.Duration) {
	t.Helper()
	dl := time.Now().Add(timeout)
	a.SetDeadline(dl)
	b.SetDeadline(dl)
	dataA, dataB := randomBytes(size, 1), randomBytes(size, 2)
	start := time.Now()
	var wg sync.WaitGroup
	send := func(name string, c halfCloser, data []byte) {
		defer wg.Done()
		if _, err := c.Write(data); err != nil {
			t.Errorf("%s write: %v", name, err)
			return
		}
		if err := c.CloseWrite(); err != nil {
			t.Errorf("%s CloseWrite: %v", name, err)
		}
	}
	var arrived [2]time.Duration // when a's data, then b's, had all arrived
	recv := func(name string, c halfCloser, want []byte, at *time.Duration) {
		defer wg.Done()
		h := sha256.New()
		n, err := io.Copy(h, c)
		*at = time.Since(start)
		if err != nil {
			t.Errorf("%s read after %d bytes: %v", name, n, err)
			return
		}
		if n != int64(len(want)) {
			t.Errorf("%s read %d bytes, want %d", name, n, len(want))
		}
		if got, w := h.Sum(nil), sha256.Sum256(want); string(got) != string(w[:]) {
			t.Errorf("%s: SHA-256 of received data differs from what was sent", name)
		}
	}
	wg.Add(4)
	go send("a", a, dataA)
	go send("b", b, dataB)
	go recv("a", a, dataB, &arrived[1])
	go recv("b", b, dataA, &arrived[0])
	wg.Wait()
	d := time.Since(start)
	// Per direction too, so that the two senders (utcp and gVisor in the
	// gVisor matrix) can be compared under the same faults.
	t.Logf("%d MiB each way in %v (%.1f MB/s each way); a's data in %v (%.1f MB/s), b's in %v (%.1f MB/s)",
		size>>20, d.Round(time.Millisecond), float64(size)/d.Seconds()/1e6,
		arrived[0].Round(time.Millisecond), float64(size)/arrived[0].Seconds()/1e6,
		arrived[1].Round(time.Millisecond), float64(size)/arrived[1].Seconds()/1e6)
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 'u', 't', 'c', 'p'}).Read(b)
	return b
}

// testSeed is UTCP_SEED if set (to replay a failure), else time-derived;
// the caller logs it.
func testSeed(t *testing.T) int64 {
	t.Helper()
	if s := os.Getenv("UTCP_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("UTCP_SEED: %v", err)
		}
		return v
	}
	return time.Now().UnixNano() & 0x7fffffff
}

// waitFor polls cond every millisecond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// connState finds the 4-tuple in Stack.Connections().
func connState(s *stack.Stack, local, remote netip.AddrPort) (stack.State, bool) {
	for _, ci := range s.Connections() {
		if ci.Local == local && ci.Remote == remote {
			return ci.State, true
		}
	}
	return 0, false
}

func addrPort(a net.Addr) netip.AddrPort {
	return a.(*net.TCPAddr).AddrPort()
}

func wantSeq(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s transitions\n got %v\nwant %v", what, got, want)
	}
}

// testCtx is a context that ends after d or with the test.
func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
