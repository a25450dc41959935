package integration

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"utcp/stack"
	"utcp/tun"
	"utcp/tun/netns"
	"utcp/tun/tuntest"
)

// The kernel receives utcp's segments through GRO (the default of utcp
// serve) while the link drops, reorders and delays what utcp writes:
// GRO holds full-sized segments without PSH, and a retransmission or the
// tail of a burst it held would stall the transfer until its timer. Both
// directions must arrive intact, with retransmissions, in bounded time.
func TestKernelGROLossy(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	dev, err := tun.Open(tun.Config{Name: "grol0", HostAddr: netip.MustParsePrefix("198.18.0.1/24"),
		GROFlushTimeout: tun.DefaultGROFlushTimeout})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := dev.GRO(); d != tun.DefaultGROFlushTimeout || err != nil {
		t.Fatalf("GRO() = %v, %v", d, err)
	}
	seed := testSeed(t)
	t.Logf("seed %d (UTCP_SEED to replay the faults)", seed)
	link := tuntest.NewLossy(dev, tuntest.Faults{Seed: seed, Drop: 0.01, Reorder: 0.02, Delay: time.Millisecond})
	st, err := stack.New(stack.Config{Link: link, Addr: netip.MustParseAddr("198.18.0.2")})
	if err != nil {
		dev.Close()
		t.Fatal(err)
	}
	defer st.Close()
	ln, err := st.Listen(5301, 16)
	if err != nil {
		t.Fatal(err)
	}
	const size = 4 << 20
	down := randomBytes(size, uint64(seed))
	up := randomBytes(size, uint64(seed)+1)
	gotUp := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			gotUp <- nil
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		go func() {
			c.Write(down)
			c.(*stack.Conn).CloseWrite()
		}()
		b, _ := io.ReadAll(c)
		gotUp <- b
	}()

	start := time.Now()
	k, err := net.DialTimeout("tcp4", "198.18.0.2:5301", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	k.SetDeadline(time.Now().Add(60 * time.Second))
	go func() {
		k.Write(up)
		k.(*net.TCPConn).CloseWrite()
	}()
	gotDown, err := io.ReadAll(k)
	if err != nil {
		t.Fatalf("kernel read after %d bytes: %v", len(gotDown), err)
	}
	if !bytes.Equal(gotDown, down) {
		t.Fatalf("the kernel received %d bytes, not the %d utcp sent", len(gotDown), size)
	}
	if b := <-gotUp; !bytes.Equal(b, up) {
		t.Fatalf("utcp received %d bytes, not the %d the kernel sent", len(b), size)
	}
	ctr := st.Counters()
	t.Logf("%v for 4 MiB each way; faults %+v; RetransSegs %d", time.Since(start), link.Stats(), ctr.RetransSegs)
	if link.Stats().Dropped == 0 || ctr.RetransSegs == 0 {
		t.Errorf("no loss to recover from (dropped %d, retransmitted %d)", link.Stats().Dropped, ctr.RetransSegs)
	}
}
