package stack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"testing/synctest"
	"time"
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
