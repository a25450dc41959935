package integration

// utcp against gVisor's netstack, in memory and on real time. Each test
// starts a fresh pair (gVisor at 198.18.0.1, utcp at 198.18.0.2) joined by
// GVisorLink.

import (
	"errors"
	"io"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"utcp/stack"
	"utcp/tun/tuntest"
)

// handshake transitions of utcp's side, by who dialed.
func openSeq(utcpDials bool) []string {
	if utcpDials {
		return []string{"CLOSED>SYN_SENT", "SYN_SENT>ESTABLISHED"}
	}
	return []string{"CLOSED>SYN_RECV", "SYN_RECV>ESTABLISHED"}
}

func TestGVisorHandshake(t *testing.T) {
	dialers(t, func(t *testing.T, utcpDials bool) {
		p := newGVPair(t, gvOpts{})
		uc, gc := p.connected(t, utcpDials, 8080)
		if st := uc.Info().State; st != stack.Established {
			t.Fatalf("utcp state %v, want ESTABLISHED", st)
		}
		ul, ur := addrPort(uc.LocalAddr()), addrPort(uc.RemoteAddr())
		gl, gr := addrPort(gc.LocalAddr()), addrPort(gc.RemoteAddr())
		if ul != gr || ur != gl {
			t.Fatalf("4-tuples disagree: utcp %v<->%v, gVisor %v<->%v", ul, ur, gl, gr)
		}
		if ul.Addr() != utcpAddr || ur.Addr() != GVisorAddr {
			t.Fatalf("utcp 4-tuple %v<->%v, want 198.18.0.2<->198.18.0.1", ul, ur)
		}
		if st, ok := connState(p.u, ul, ur); !ok || st != stack.Established {
			t.Fatalf("Connections() has %v (found %v), want ESTABLISHED", st, ok)
		}
		ctr := p.u.Counters()
		if utcpDials && ctr.ActiveOpens != 1 || !utcpDials && ctr.PassiveOpens != 1 {
			t.Fatalf("ActiveOpens %d PassiveOpens %d", ctr.ActiveOpens, ctr.PassiveOpens)
		}
		wantSeq(t, "utcp", p.tr.transitions(ul), openSeq(utcpDials))

		// One small round trip proves the synchronized sequence numbers.
		gc.SetDeadline(time.Now().Add(5 * time.Second))
		uc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := uc.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(gc, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("gVisor read %q, %v", buf, err)
		}
		if _, err := gc.Write([]byte("pong")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(uc, buf); err != nil || string(buf) != "pong" {
			t.Fatalf("utcp read %q, %v", buf, err)
		}
	})
}

func TestGVisorBulk16MiB(t *testing.T) {
	dialers(t, func(t *testing.T, utcpDials bool) {
		p := newGVPair(t, gvOpts{})
		uc, gc := p.connected(t, utcpDials, 5001)
		exchange(t, uc, gc.(halfCloser), 16<<20, 90*time.Second)
		ctr := p.u.Counters()
		t.Logf("utcp: InSegs %d OutSegs %d RetransSegs %d", ctr.InSegs, ctr.OutSegs, ctr.RetransSegs)
	})
}

func TestGVisorLossy4MiB(t *testing.T) {
	dialers(t, func(t *testing.T, utcpDials bool) {
		seed := testSeed(t)
		t.Logf("seed %d (UTCP_SEED=%d replays the fault pattern)", seed, seed)
		f := tuntest.Faults{Seed: seed, Drop: 0.01, Reorder: 0.01, Duplicate: 0.01}
		p := newGVPair(t, gvOpts{faults: &f})
		uc, gc := p.connected(t, utcpDials, 5002)
		exchange(t, uc, gc.(halfCloser), 4<<20, 90*time.Second)
		ctr := p.u.Counters()
		t.Logf("utcp: RetransSegs %d TCPFastRetrans %d TCPTimeouts %d TCPOFOQueue %d",
			ctr.RetransSegs, ctr.TCPFastRetrans, ctr.TCPTimeouts, ctr.TCPOFOQueue)
		if ctr.RetransSegs == 0 {
			t.Errorf("no retransmissions: the loss model did not act on utcp's packets")
		}
	})
}

// TestGVisorDupAcks: gVisor sends to utcp over a link that drops 1% of
// gVisor's packets (none of utcp's). utcp must answer every out-of-order
// segment with an immediate duplicate ACK (RFC 5681 §4.2), so gVisor
// repairs most losses by fast retransmit (§3.2) rather than by its
// retransmission timer. (When utcp sent one ACK per input batch, gVisor saw
// 3 fast retransmits against 27 timeouts and 4 MiB took 5.5 s.)
func TestGVisorDupAcks(t *testing.T) {
	seed := testSeed(t)
	t.Logf("seed %d (UTCP_SEED=%d replays the fault pattern)", seed, seed)
	p := newGVPair(t, gvOpts{toUTCP: &tuntest.Faults{Seed: seed, Drop: 0.01}})
	uc, gc := p.connected(t, true, 5003)
	data := randomBytes(4<<20, 10)
	dl := time.Now().Add(60 * time.Second)
	uc.SetDeadline(dl)
	gc.SetDeadline(dl)
	go func() {
		gc.Write(data)
		gc.Close()
	}()
	start := time.Now()
	got, err := io.ReadAll(uc)
	if err != nil || string(got) != string(data) {
		t.Fatalf("utcp read %d bytes (want %d), %v", len(got), len(data), err)
	}
	st := p.gv.Stack.Stats().TCP
	fr, to := st.FastRetransmit.Value(), st.Timeouts.Value()
	t.Logf("4 MiB in %v; gVisor FastRetransmit %d Timeouts %d; utcp TCPOFOQueue %d",
		time.Since(start).Round(time.Millisecond), fr, to, p.u.Counters().TCPOFOQueue)
	if fr <= to {
		t.Fatalf("gVisor fast retransmits %d <= timeouts %d: utcp's duplicate ACKs do not reach it", fr, to)
	}
}

// TestGVisorHalfCloseByUTCP: utcp sends a request and shuts down writing;
// gVisor reads to EOF, answers and closes. utcp, the active closer, goes
// FIN_WAIT1 -> FIN_WAIT2 -> TIME_WAIT.
func TestGVisorHalfCloseByUTCP(t *testing.T) {
	dialers(t, func(t *testing.T, utcpDials bool) {
		p := newGVPair(t, gvOpts{})
		uc, gc := p.connected(t, utcpDials, 7000)
		dl := time.Now().Add(10 * time.Second)
		uc.SetDeadline(dl)
		gc.SetDeadline(dl)
		local, remote := addrPort(uc.LocalAddr()), addrPort(uc.RemoteAddr())

		req, resp := randomBytes(100000, 3), randomBytes(200000, 4)
		if _, err := uc.Write(req); err != nil {
			t.Fatal(err)
		}
		if err := uc.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(gc)
		if err != nil || string(got) != string(req) {
			t.Fatalf("gVisor read %d bytes (want %d), %v", len(got), len(req), err)
		}
		waitFor(t, 5*time.Second, "utcp FIN_WAIT2", func() bool { return uc.Info().State == stack.FinWait2 })
		if st, _ := connState(p.u, local, remote); st != stack.FinWait2 {
			t.Fatalf("Connections() says %v, want FIN_WAIT2", st)
		}
		// Half-closed: utcp still receives.
		if _, err := gc.Write(resp); err != nil {
			t.Fatal(err)
		}
		if err := gc.Close(); err != nil {
			t.Fatal(err)
		}
		got, err = io.ReadAll(uc)
		if err != nil || string(got) != string(resp) {
			t.Fatalf("utcp read %d bytes (want %d), %v", len(got), len(resp), err)
		}
		waitFor(t, 5*time.Second, "utcp TIME_WAIT", func() bool { return uc.Info().State == stack.TimeWait })
		if st, ok := connState(p.u, local, remote); !ok || st != stack.TimeWait {
			t.Fatalf("Connections() says %v (found %v), want TIME_WAIT", st, ok)
		}
		if n := p.u.StateCounts()[stack.TimeWait]; n != 1 {
			t.Fatalf("StateCounts()[TIME_WAIT] = %d, want 1", n)
		}
		want := append(openSeq(utcpDials), "ESTABLISHED>FIN_WAIT1", "FIN_WAIT1>FIN_WAIT2", "FIN_WAIT2>TIME_WAIT")
		wantSeq(t, "utcp", p.tr.transitions(local), want)
	})
}

// TestGVisorHalfCloseByGVisor: gVisor sends a request and shuts down
// writing; utcp reads to EOF (CLOSE_WAIT), answers and closes: LAST_ACK,
// then CLOSED when gVisor acknowledges the FIN.
func TestGVisorHalfCloseByGVisor(t *testing.T) {
	dialers(t, func(t *testing.T, utcpDials bool) {
		p := newGVPair(t, gvOpts{})
		uc, gc := p.connected(t, utcpDials, 7001)
		dl := time.Now().Add(10 * time.Second)
		uc.SetDeadline(dl)
		gc.SetDeadline(dl)
		local, remote := addrPort(uc.LocalAddr()), addrPort(uc.RemoteAddr())

		req, resp := randomBytes(100000, 5), randomBytes(200000, 6)
		if _, err := gc.Write(req); err != nil {
			t.Fatal(err)
		}
		if err := gc.(halfCloser).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(uc)
		if err != nil || string(got) != string(req) {
			t.Fatalf("utcp read %d bytes (want %d), %v", len(got), len(req), err)
		}
		if st := uc.Info().State; st != stack.CloseWait {
			t.Fatalf("utcp state after EOF %v, want CLOSE_WAIT", st)
		}
		if st, _ := connState(p.u, local, remote); st != stack.CloseWait {
			t.Fatalf("Connections() says %v, want CLOSE_WAIT", st)
		}
		if _, err := uc.Write(resp); err != nil {
			t.Fatal(err)
		}
		if err := uc.Close(); err != nil {
			t.Fatal(err)
		}
		got, err = io.ReadAll(gc)
		if err != nil || string(got) != string(resp) {
			t.Fatalf("gVisor read %d bytes (want %d), %v", len(got), len(resp), err)
		}
		waitFor(t, 5*time.Second, "utcp CLOSED", func() bool { return uc.Info().State == stack.Closed })
		if st, ok := connState(p.u, local, remote); ok {
			t.Fatalf("Connections() still lists the connection in %v", st)
		}
		want := append(openSeq(utcpDials), "ESTABLISHED>CLOSE_WAIT", "CLOSE_WAIT>LAST_ACK", "LAST_ACK>CLOSED")
		wantSeq(t, "utcp", p.tr.transitions(local), want)
	})
}

// gvisorState returns the TCP state of gVisor's endpoint for the 4-tuple
// (gVisor's local = utcp's remote).
func gvisorState(p *gvPair, utcpLocal, utcpRemote netip.AddrPort) (tcp.EndpointState, bool) {
	for _, te := range p.gv.Stack.RegisteredEndpoints() {
		ep, ok := te.(tcpip.Endpoint)
		if !ok {
			continue
		}
		la, err1 := ep.GetLocalAddress()
		ra, err2 := ep.GetRemoteAddress()
		if err1 != nil || err2 != nil {
			continue
		}
		if la.Port == utcpRemote.Port() && ra.Port == utcpLocal.Port() {
			return tcp.EndpointState(ep.State()), true
		}
	}
	return 0, false
}

// TestGVisorClose: a plain Close from each side, with the closing side's
// state sequence.
func TestGVisorClose(t *testing.T) {
	t.Run("utcp-closes", func(t *testing.T) {
		dialers(t, func(t *testing.T, utcpDials bool) {
			p := newGVPair(t, gvOpts{})
			uc, gc := p.connected(t, utcpDials, 7002)
			gc.SetDeadline(time.Now().Add(10 * time.Second))
			local := addrPort(uc.LocalAddr())
			if err := uc.Close(); err != nil {
				t.Fatal(err)
			}
			if n, err := gc.Read(make([]byte, 10)); err != io.EOF {
				t.Fatalf("gVisor read %d, %v; want EOF", n, err)
			}
			// The ACK of our FIN arrives before gVisor closes: FIN_WAIT2.
			waitFor(t, 5*time.Second, "utcp FIN_WAIT2", func() bool { return uc.Info().State == stack.FinWait2 })
			if err := gc.Close(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "utcp TIME_WAIT", func() bool { return uc.Info().State == stack.TimeWait })
			want := append(openSeq(utcpDials), "ESTABLISHED>FIN_WAIT1", "FIN_WAIT1>FIN_WAIT2", "FIN_WAIT2>TIME_WAIT")
			wantSeq(t, "utcp (active closer)", p.tr.transitions(local), want)
			if st, ok := connState(p.u, local, addrPort(uc.RemoteAddr())); !ok || st != stack.TimeWait {
				t.Fatalf("Connections() says %v (found %v), want TIME_WAIT", st, ok)
			}
		})
	})
	t.Run("gvisor-closes", func(t *testing.T) {
		dialers(t, func(t *testing.T, utcpDials bool) {
			p := newGVPair(t, gvOpts{})
			uc, gc := p.connected(t, utcpDials, 7003)
			uc.SetDeadline(time.Now().Add(10 * time.Second))
			local, remote := addrPort(uc.LocalAddr()), addrPort(uc.RemoteAddr())
			if err := gc.Close(); err != nil {
				t.Fatal(err)
			}
			if n, err := uc.Read(make([]byte, 10)); err != io.EOF {
				t.Fatalf("utcp read %d, %v; want EOF", n, err)
			}
			waitFor(t, 5*time.Second, "gVisor FIN-WAIT2", func() bool {
				st, _ := gvisorState(p, local, remote)
				return st == tcp.StateFinWait2
			})
			if err := uc.Close(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "gVisor TIME-WAIT", func() bool {
				st, _ := gvisorState(p, local, remote)
				return st == tcp.StateTimeWait
			})
			waitFor(t, 5*time.Second, "utcp CLOSED", func() bool { return uc.Info().State == stack.Closed })
			want := append(openSeq(utcpDials), "ESTABLISHED>CLOSE_WAIT", "CLOSE_WAIT>LAST_ACK", "LAST_ACK>CLOSED")
			wantSeq(t, "utcp (passive closer)", p.tr.transitions(local), want)
		})
	})
}

// TestGVisorRefused: a SYN to a port without a listener is answered with
// RST (RFC 9293 §3.10.7.1), which the dialer reports as ECONNREFUSED.
func TestGVisorRefused(t *testing.T) {
	t.Run("gvisor-dials-utcp", func(t *testing.T) {
		p := newGVPair(t, gvOpts{})
		c, err := p.gv.Dial(testCtx(t, 5*time.Second), netip.AddrPortFrom(utcpAddr, 9))
		if err == nil {
			c.Close()
			t.Fatal("gVisor connected to a utcp port with no listener")
		}
		if errno, ok := GVisorErrno(err); !ok || errno != syscall.ECONNREFUSED {
			t.Fatalf("gVisor dial error %v, want connection refused", err)
		}
		if n := p.u.Counters().OutRsts; n != 1 {
			t.Fatalf("utcp OutRsts %d, want 1", n)
		}
	})
	t.Run("utcp-dials-gvisor", func(t *testing.T) {
		p := newGVPair(t, gvOpts{})
		c, err := p.u.Dial(testCtx(t, 5*time.Second), netip.AddrPortFrom(GVisorAddr, 9))
		if err == nil {
			c.Close()
			t.Fatal("utcp connected to a gVisor port with no listener")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("utcp dial error %v, want ECONNREFUSED", err)
		}
		if n := p.u.Counters().AttemptFails; n != 1 {
			t.Fatalf("utcp AttemptFails %d, want 1", n)
		}
		if cs := p.u.Connections(); len(cs) != 0 {
			t.Fatalf("utcp still lists %v", cs)
		}
	})
}

// TestGVisorAbortOnClose: closing with unread data resets the connection
// (RFC 9293 §3.10.4; RFC 2525 §2.17), and the peer reads ECONNRESET.
func TestGVisorAbortOnClose(t *testing.T) {
	t.Run("utcp-closes-unread", func(t *testing.T) {
		dialers(t, func(t *testing.T, utcpDials bool) {
			p := newGVPair(t, gvOpts{})
			uc, gc := p.connected(t, utcpDials, 7004)
			gc.SetDeadline(time.Now().Add(10 * time.Second))
			local := addrPort(uc.LocalAddr())
			if _, err := gc.Write(randomBytes(3000, 7)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "3000 bytes queued in utcp", func() bool { return uc.Info().RecvQ == 3000 })
			if err := uc.Close(); err != nil {
				t.Fatal(err)
			}
			n, err := gc.Read(make([]byte, 100))
			if errno, ok := GVisorErrno(err); !ok || errno != syscall.ECONNRESET {
				t.Fatalf("gVisor read %d, %v; want connection reset", n, err)
			}
			ctr := p.u.Counters()
			if ctr.TCPAbortOnClose != 1 {
				t.Fatalf("utcp TCPAbortOnClose %d, want 1", ctr.TCPAbortOnClose)
			}
			if ctr.OutRsts != 1 {
				t.Fatalf("utcp OutRsts %d, want 1", ctr.OutRsts)
			}
			want := append(openSeq(utcpDials), "ESTABLISHED>CLOSED")
			wantSeq(t, "utcp", p.tr.transitions(local), want)
		})
	})
	t.Run("gvisor-closes-unread", func(t *testing.T) {
		dialers(t, func(t *testing.T, utcpDials bool) {
			p := newGVPair(t, gvOpts{})
			uc, gc := p.connected(t, utcpDials, 7005)
			uc.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := uc.Write(randomBytes(3000, 8)); err != nil {
				t.Fatal(err)
			}
			// Everything acknowledged: it sits unread in gVisor's queue.
			waitFor(t, 5*time.Second, "utcp data acknowledged", func() bool {
				ci := uc.Info()
				return ci.SendQ == 0 && ci.InFlight == 0
			})
			if err := gc.Close(); err != nil {
				t.Fatal(err)
			}
			n, err := uc.Read(make([]byte, 100))
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("utcp read %d, %v; want ECONNRESET", n, err)
			}
			if st := uc.Info().State; st != stack.Closed {
				t.Fatalf("utcp state %v after RST, want CLOSED", st)
			}
			if n := p.u.Counters().EstabResets; n != 1 {
				t.Fatalf("utcp EstabResets %d, want 1", n)
			}
		})
	})
}
