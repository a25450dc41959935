package integration

// A soak over the wire: 16 kernel clients loop for a bounded time, each
// dialling utcp, sending 64 KiB of random bytes, reading them back through
// the echo service and closing. Half the rounds close from the kernel side
// first (shutdown after writing: utcp goes CLOSE_WAIT → LAST_ACK → gone),
// half from utcp's (a service that echoes exactly 64 KiB and closes: utcp
// holds TIME_WAIT). Afterwards: every transfer was byte-exact, the
// goroutines return to the baseline, the heap is back within a bound and
// utcp's table holds nothing but the listeners and TIME_WAIT records.
//
// 20 s by default; UTCP_SOAK=5m (any time.ParseDuration value) for longer.

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"utcp/stack"
	"utcp/tun/netns"
)

func TestHardenWireSoak(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	dur := 20 * time.Second
	if v := os.Getenv("UTCP_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("UTCP_SOAK=%q: %v", v, err)
		}
		dur = d
	}
	const (
		clients = 16
		size    = 64 << 10
	)
	// Kernel-first closes leave TIME_WAIT on the kernel's side; let it
	// reuse those ports for new connects (timestamps make that safe) so
	// a long soak cannot run out of ephemeral ports.
	hdSysctl(t, "net/ipv4/tcp_tw_reuse", "1", true)
	env := hdStart(t, nil)
	hdServeEcho(t, env.st, 7, 128, false)

	// Port 9: echo exactly size bytes, then close first.
	ln9, err := env.st.Listen(9, 128)
	if err != nil {
		t.Fatal(err)
	}
	var serveWG sync.WaitGroup
	var serveErrs atomic.Int64
	serveWG.Add(1)
	go func() {
		defer serveWG.Done()
		for {
			c, err := ln9.AcceptTCP()
			if err != nil {
				return
			}
			serveWG.Add(1)
			go func() {
				defer serveWG.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := io.CopyN(c, c, size); err != nil {
					serveErrs.Add(1)
				}
			}()
		}
	}()
	defer func() { ln9.Close(); serveWG.Wait() }()

	settle := func() int {
		runtime.GC()
		return runtime.NumGoroutine()
	}
	baseG := settle()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapInuse

	var rounds, bytesOK atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) { firstErr.CompareAndSwap(nil, err) }
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	seed := uint64(time.Now().UnixNano())
	t.Logf("soak: %d clients for %v, seed %d", clients, dur, seed)
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			out := make([]byte, size)
			in := make([]byte, size)
			for i := 0; time.Now().Before(deadline) && firstErr.Load() == nil; i++ {
				for k := range out {
					out[k] = byte(r.Uint32())
				}
				kernelFirst := i%2 == 0
				port := uint16(9)
				if kernelFirst {
					port = 7
				}
				if err := hdSoakRound(port, kernelFirst, out, in); err != nil {
					fail(fmt.Errorf("client %d round %d (port %d): %w", w, i, port, err))
					return
				}
				rounds.Add(1)
				bytesOK.Add(size)
			}
		}()
	}
	wg.Wait()
	if err := firstErr.Load(); err != nil {
		t.Fatal(err)
	}
	if n := serveErrs.Load(); n != 0 {
		t.Fatalf("%d port-9 connections ended in an error on utcp's side", n)
	}
	t.Logf("soak: %d rounds, %d MiB each way, all byte-exact", rounds.Load(), bytesOK.Load()>>20)
	if rounds.Load() < clients {
		t.Fatalf("only %d rounds in %v", rounds.Load(), dur)
	}

	// The table drains: the last LAST_ACKs see their ACK, nothing else is
	// left than the two listeners and TIME_WAIT records.
	var left []stack.ConnInfo
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left = left[:0]
		for _, ci := range env.st.Connections() {
			if ci.State != stack.Listen && ci.State != stack.TimeWait {
				left = append(left, ci)
			}
		}
		if len(left) == 0 || time.Now().After(end) {
			break
		}
	}
	for i, ci := range left {
		if i < 10 {
			t.Errorf("left in utcp's table: %v %v -> %v", ci.State, ci.Local, ci.Remote)
		}
	}
	if len(left) > 0 {
		t.Fatalf("%d connections left in utcp's table that are neither listeners nor TIME_WAIT", len(left))
	}
	sc := env.st.StateCounts()
	t.Logf("utcp table: %v", sc)
	if c := env.st.Counters(); c.CurrEstab != 0 || c.EstabResets != 0 {
		t.Fatalf("CurrEstab %d, EstabResets %d after the soak", c.CurrEstab, c.EstabResets)
	}

	// Goroutines: every per-connection one (utcp's side and the echo
	// handlers) has ended; the stack's own (reader) and the two accept
	// loops were there at the baseline already.
	var g int
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if g = settle(); g <= baseG || time.Now().After(end) {
			break
		}
	}
	if g > baseG {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("%d goroutines after the soak, %d before:\n%s", g, baseG, bytes.TrimSpace(buf))
	}
	runtime.ReadMemStats(&ms)
	growth := int64(ms.HeapInuse) - int64(heapBefore)
	t.Logf("goroutines %d (baseline %d); HeapInuse %d KiB before, %d KiB after (after GC): %+d KiB with %d TIME_WAIT records",
		g, baseG, heapBefore>>10, ms.HeapInuse>>10, growth>>10, sc[stack.TimeWait])
	// What may stay: TIME_WAIT records (small, bounded by MaxTimeWait)
	// and the stack's recycled packet and ring buffers (bounded pools).
	if limit := int64(16<<20) + int64(sc[stack.TimeWait])*1024; growth > limit {
		t.Fatalf("heap grew by %d KiB, bound %d KiB", growth>>10, limit>>10)
	}
}

// hdSoakRound runs one connection: out goes up, in must come back equal.
// kernelFirst: shut down writing after out and read to EOF (utcp's echo
// closes on our FIN); otherwise read len(out) bytes, then expect utcp's
// FIN (it closes first) and close.
func hdSoakRound(port uint16, kernelFirst bool, out, in []byte) error {
	c, err := hdDial(port, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(out)
		if err == nil && kernelFirst {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	if _, err := io.ReadFull(c, in); err != nil {
		<-werr
		return fmt.Errorf("read: %w", err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if !bytes.Equal(in, out) {
		i := 0
		for i < len(in) && in[i] == out[i] {
			i++
		}
		return fmt.Errorf("echo differs from byte %d on", i)
	}
	// Either way the next thing is utcp's FIN, and nothing before it.
	var b [1]byte
	if n, err := c.Read(b[:]); n != 0 || err != io.EOF {
		return fmt.Errorf("after the echo: %d bytes, %v; want EOF", n, err)
	}
	return nil
}
