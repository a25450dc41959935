package stack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"testing/synctest"
	"time"
	"utcp/tun/tuntest"
)

func TestConnectTransferClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, pairOpts{})
		ln, err := p.b.Listen(80, 16)
		if err != nil {
			t.Fatal(err)
		}
		const size = 16 << 20
		data := make([]byte, size)
		fillRandom(data, 1)
		want := sha256.Sum256(data)

		got := make(chan [32]byte, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				t.Error(err)
				return
			}
			h := sha256.New()
			if _, err := io.Copy(h, c); err != nil {
				t.Error(err)
			}
			var sum [32]byte
			copy(sum[:], h.Sum(nil))
			got <- sum
			c.Close()
		}()
		c, err := p.a.Dial(context.Background(), netip.AddrPortFrom(addrB, 80))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := io.Copy(c, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if g := <-got; g != want {
			t.Fatalf("sha256 mismatch")
		}
		t.Logf("16 MiB in %v virtual", time.Since(start))
		local := c.LocalAddr().(interface{ AddrPort() netip.AddrPort }).AddrPort()
		synctest.Wait()
		// The active closer passes FIN_WAIT1 -> FIN_WAIT2 -> TIME_WAIT.
		wantA := []string{"CLOSED>SYN_SENT", "SYN_SENT>ESTABLISHED", "ESTABLISHED>FIN_WAIT1", "FIN_WAIT1>FIN_WAIT2", "FIN_WAIT2>TIME_WAIT"}
		if tr := p.transitions(local); !slices.Equal(tr, wantA) {
			t.Fatalf("active closer transitions %v, want %v", tr, wantA)
		}
		server := netip.AddrPortFrom(addrB, 80)
		wantB := []string{"CLOSED>SYN_RECV", "SYN_RECV>ESTABLISHED", "ESTABLISHED>CLOSE_WAIT", "CLOSE_WAIT>LAST_ACK", "LAST_ACK>CLOSED"}
		if tr := p.transitions(server); !slices.Equal(tr, wantB) {
			t.Fatalf("passive closer transitions %v, want %v", tr, wantB)
		}
		// TIME_WAIT lasts exactly 2*MSL.
		entered := time.Now()
		for p.a.StateCounts()[TimeWait] == 1 {
			time.Sleep(time.Second)
		}
		if d := time.Since(entered); d < 59*time.Second || d > 61*time.Second {
			t.Fatalf("TIME_WAIT lasted %v, want 60s", d)
		}
		if n := p.a.Counters().TW; n != 1 {
			t.Fatalf("TW counter %d, want 1", n)
		}
	})
}

// fillRandom fills b with deterministic pseudo-random bytes.
func fillRandom(b []byte, seed uint64) {
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
}

// dialAccept connects a to b's listener and returns both ends.
func dialAccept(t *testing.T, p *pair, ln *Listener) (client, server *Conn) {
	t.Helper()
	acc := make(chan *Conn, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			t.Error(err)
		}
		acc <- c
	}()
	c, err := p.a.Dial(context.Background(), netip.AddrPortFrom(addrB, ln.Port()))
	if err != nil {
		t.Fatal(err)
	}
	return c, <-acc
}

func addrOf(c *Conn) netip.AddrPort { return c.Info().Local }

// Bulk transfer both ways over a link that drops, duplicates, reorders and
// delays: every byte arrives, in order, for several seeds.
func TestLossyTransferBothWays(t *testing.T) {
	for seed := int64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &tuntest.Faults{Seed: seed * 100, Drop: 0.02, Duplicate: 0.01, Reorder: 0.02, Delay: 5 * time.Millisecond, Jitter: 2 * time.Millisecond}
				p := newPair(t, pairOpts{faults: f})
				ln, _ := p.b.Listen(9, 4)
				client, server := dialAccept(t, p, ln)
				const size = 2 << 20
				up, down := make([]byte, size), make([]byte, size)
				fillRandom(up, uint64(seed))
				fillRandom(down, uint64(seed)+1000)
				errc := make(chan error, 4)
				var gotUp, gotDown []byte
				go func() { _, err := client.Write(up); client.CloseWrite(); errc <- err }()
				go func() { _, err := server.Write(down); server.CloseWrite(); errc <- err }()
				go func() { b, err := io.ReadAll(server); gotUp = b; errc <- err }()
				go func() { b, err := io.ReadAll(client); gotDown = b; errc <- err }()
				for i := 0; i < 4; i++ {
					if err := <-errc; err != nil {
						t.Fatal(err)
					}
				}
				if !bytes.Equal(gotUp, up) || !bytes.Equal(gotDown, down) {
					t.Fatalf("data corrupted: up %d/%d bytes equal=%v, down %d/%d equal=%v", len(gotUp), size, bytes.Equal(gotUp, up), len(gotDown), size, bytes.Equal(gotDown, down))
				}
				ca, cb := p.a.Counters(), p.b.Counters()
				t.Logf("retransmits a=%d b=%d fastretrans a=%d b=%d timeouts a=%d b=%d", ca.RetransSegs, cb.RetransSegs, ca.TCPFastRetrans, cb.TCPFastRetrans, ca.TCPTimeouts, cb.TCPTimeouts)
				if ca.RetransSegs == 0 || cb.RetransSegs == 0 {
					t.Fatalf("no retransmissions under 2%% loss: the test did not exercise recovery")
				}
				client.Close()
				server.Close()
			})
		})
	}
}

// RFC 9293 §3.5 Figure 8: both sides send SYN at once; both pass SYN_SENT
// -> SYN_RECV -> ESTABLISHED.
func TestSimultaneousOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &tuntest.Faults{Seed: 7, Delay: 10 * time.Millisecond}
		p := newPair(t, pairOpts{faults: f})
		type res struct {
			c   *Conn
			err error
		}
		ra, rb := make(chan res, 1), make(chan res, 1)
		go func() {
			c, err := p.a.DialFrom(context.Background(), 5000, netip.AddrPortFrom(addrB, 6000))
			ra <- res{c, err}
		}()
		go func() {
			c, err := p.b.DialFrom(context.Background(), 6000, netip.AddrPortFrom(addrA, 5000))
			rb <- res{c, err}
		}()
		a, b := <-ra, <-rb
		if a.err != nil || b.err != nil {
			t.Fatalf("dial errors: %v, %v", a.err, b.err)
		}
		want := []string{"CLOSED>SYN_SENT", "SYN_SENT>SYN_RECV", "SYN_RECV>ESTABLISHED"}
		for _, ap := range []netip.AddrPort{netip.AddrPortFrom(addrA, 5000), netip.AddrPortFrom(addrB, 6000)} {
			if tr := p.transitions(ap); !slices.Equal(tr, want) {
				t.Fatalf("%v transitions %v, want %v", ap, tr, want)
			}
		}
		// And data flows.
		go a.c.Write([]byte("ping"))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(b.c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("read %q, %v", buf, err)
		}
	})
}

// RFC 9293 §3.6 Figure 13: both close at once; FINs cross; both pass
// FIN_WAIT1 -> CLOSING -> TIME_WAIT.
func TestSimultaneousClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &tuntest.Faults{Seed: 8, Delay: 10 * time.Millisecond}
		p := newPair(t, pairOpts{faults: f})
		ln, _ := p.b.Listen(80, 4)
		c, s := dialAccept(t, p, ln)
		synctest.Wait()
		c.Close()
		s.Close()
		time.Sleep(100 * time.Millisecond)
		want := []string{"ESTABLISHED>FIN_WAIT1", "FIN_WAIT1>CLOSING", "CLOSING>TIME_WAIT"}
		for _, ap := range []netip.AddrPort{addrOf(c), addrOf(s)} {
			tr := p.transitions(ap)
			if len(tr) < 3 || !slices.Equal(tr[len(tr)-3:], want) {
				t.Fatalf("%v transitions %v, want ... %v", ap, tr, want)
			}
		}
		if p.a.StateCounts()[TimeWait] != 1 || p.b.StateCounts()[TimeWait] != 1 {
			t.Fatalf("want one TIME_WAIT on each side: %v %v", p.a.StateCounts(), p.b.StateCounts())
		}
	})
}

// A server that never closes keeps the connection in CLOSE_WAIT, however
// long: that is the production lesson.
func TestCloseWaitPersists(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, pairOpts{})
		ln, _ := p.b.Listen(80, 4)
		c, s := dialAccept(t, p, ln)
		c.Close()
		time.Sleep(10 * time.Minute)
		if st := s.Info().State; st != CloseWait {
			t.Fatalf("server state %v after 10 min, want CLOSE_WAIT", st)
		}
		// The client, orphaned in FIN_WAIT2, gave up after tcp_fin_timeout.
		if n := p.a.StateCounts()[FinWait2]; n != 0 {
			t.Fatalf("client still has %d FIN_WAIT2", n)
		}
		if n := p.a.Counters().TCPFINWait2Timeout; n != 1 {
			t.Fatalf("TCPFINWait2Timeout %d, want 1", n)
		}
		// Reading gives EOF; closing now sends FIN to a peer that forgot
		// the connection, which answers RST.
		if _, err := s.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("read %v, want EOF", err)
		}
		s.Close()
		time.Sleep(5 * time.Second)
		if n := len(p.b.Connections()); n != 1 { // only the listener
			t.Fatalf("server table %v", p.b.Connections())
		}
	})
}

// Linux accept-queue semantics: with backlog 1 and a listener that does
// not accept, two connections complete (backlog+1), further final ACKs and
// SYNs are dropped and counted; once the application accepts, the waiting
// peers complete by retransmission. With SYN cookies (the default) the SYNs
// beyond the SYN queue are answered statelessly; a client whose cookie ACK
// was dropped completes when its first data segment arrives (as on Linux:
// a client that never sends would wait forever).
func TestAcceptQueueOverflowAndRecovery(t *testing.T) {
	for _, cookies := range []int{-1, 1} {
		t.Run(fmt.Sprint("syncookies=", cookies), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newPair(t, pairOpts{cfgB: func(c *Config) { c.SynCookies = cookies }})
				ln, _ := p.b.Listen(80, 1)
				const n = 4
				dialed := make(chan *Conn, n)
				for i := 0; i < n; i++ {
					go func() {
						c, err := p.a.Dial(context.Background(), netip.AddrPortFrom(addrB, 80))
						if err != nil {
							t.Error(err)
						} else if _, err := c.Write([]byte{byte(i)}); err != nil {
							t.Error(err)
						}
						dialed <- c
					}()
				}
				// Without cookies the SYN queue is bounded by the backlog,
				// so later SYNs get in on their retransmissions.
				time.Sleep(20 * time.Second)
				synctest.Wait()
				infos := p.b.Connections()
				if infos[0].State != Listen || infos[0].RecvQ != 2 || infos[0].SendQ != 1 {
					t.Fatalf("listener %+v: want accept queue 2 (backlog+1) of backlog 1", infos[0])
				}
				ctr := p.b.Counters()
				if ctr.ListenOverflows == 0 || ctr.ListenDrops < ctr.ListenOverflows {
					t.Fatalf("ListenOverflows %d ListenDrops %d", ctr.ListenOverflows, ctr.ListenDrops)
				}
				if cookies > 0 && ctr.SyncookiesSent == 0 {
					t.Fatalf("SyncookiesSent %d: the SYNs beyond the SYN queue got no cookie", ctr.SyncookiesSent)
				}
				if cookies < 0 && ctr.SyncookiesSent != 0 {
					t.Fatalf("cookies sent while disabled")
				}
				// Now accept everything: the rest complete by retransmission.
				accepted := make(chan *Conn, n)
				go func() {
					for i := 0; i < n; i++ {
						c, err := ln.AcceptTCP()
						if err != nil {
							t.Error(err)
							return
						}
						accepted <- c
					}
				}()
				seen := map[byte]bool{}
				for i := 0; i < n; i++ {
					select {
					case c := <-accepted:
						b := make([]byte, 1)
						if _, err := io.ReadFull(c, b); err != nil {
							t.Fatal(err)
						}
						seen[b[0]] = true
					case <-time.After(2 * time.Minute):
						t.Fatalf("only %d of %d accepted", i, n)
					}
				}
				for i := 0; i < n; i++ {
					<-dialed
				}
				if len(seen) != n {
					t.Fatalf("got the first bytes of %d distinct clients, want %d", len(seen), n)
				}
				if got := p.b.Counters().PassiveOpens; got != n {
					t.Fatalf("PassiveOpens %d, want %d", got, n)
				}
				// Whether a cookie's ACK found room at once depends on the
				// order the dialers ran in; by now every cookie client has
				// been let in, by its ACK or by its data segment.
				if c := p.b.Counters(); cookies > 0 && c.SyncookiesRecv == 0 {
					t.Fatalf("SyncookiesSent %d SyncookiesRecv %d", c.SyncookiesSent, c.SyncookiesRecv)
				}
			})
		})
	}
}

// Connection setup and teardown rate, utcp <-> utcp in memory.
func BenchmarkConnectClose(b *testing.B) {
	la, lb := tuntest.NewPipe(1500, 4096)
	sa, _ := New(Config{Link: la, Addr: addrA, MSL: time.Millisecond})
	sb, _ := New(Config{Link: lb, Addr: addrB, MSL: time.Millisecond})
	defer sa.Close()
	defer sb.Close()
	ln, _ := sb.Listen(80, 1024)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := sa.Dial(context.Background(), netip.AddrPortFrom(addrB, 80))
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
