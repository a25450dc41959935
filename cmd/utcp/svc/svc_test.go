package svc

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"utcp/stack"
	"utcp/tun/tuntest"
)

func TestChargenLines(t *testing.T) {
	// RFC 864's example, first two lines.
	want0 := "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n"
	want1 := "\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghi\r\n"
	if got := string(chargenLine(0)); got != want0 {
		t.Fatalf("line 0 = %q, want %q", got, want0)
	}
	if got := string(chargenLine(1)); got != want1 {
		t.Fatalf("line 1 = %q, want %q", got, want1)
	}
	// The pattern has a period of 95 lines and wraps from '~' to ' '.
	if !bytes.Equal(chargenLine(95), chargenLine(0)) {
		t.Fatal("line 95 differs from line 0")
	}
	if l := chargenLine(93); l[0] != '~' || l[1] != ' ' {
		t.Fatalf("line 93 = %q: want it to start \"~ \"", l)
	}
	if len(chargenPattern) != 95*74 {
		t.Fatalf("pattern is %d bytes, want 95 lines of 74", len(chargenPattern))
	}
}

// TestServicesOverUtcp serves every service on one utcp stack and uses
// them from another, joined by an in-memory pipe (no device, no kernel).
func TestServicesOverUtcp(t *testing.T) {
	// Two stacks on the ends of one pipe: the server 198.18.0.2 and the
	// client 198.18.0.1.
	la, lb := tuntest.NewPipe(1500, 1024)
	var stacks [2]*stack.Stack
	for i, link := range []*tuntest.Endpoint{la, lb} {
		st, err := stack.New(stack.Config{Link: link, Addr: netip.AddrFrom4([4]byte{198, 18, 0, byte(2 - i)})})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		stacks[i] = st
	}
	srvStack, cli := stacks[0], stacks[1]
	var srv Server
	ports := map[string]uint16{"echo": 7, "discard": 9, "chargen": 19, "http": 80, "hold": 5000, "stall": 5001}
	for name, port := range ports {
		ln, err := srvStack.Listen(port, 8)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Serve(name, ln); err != nil {
			t.Fatalf("Serve(%s): %v", name, err)
		}
	}
	if err := srv.Serve("daytime", nil); err == nil {
		t.Fatal("Serve accepted an unknown service")
	}
	dial := func(port uint16) *stack.Conn {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := cli.Dial(ctx, netip.AddrPortFrom(netip.MustParseAddr("198.18.0.2"), port))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}

	// echo: everything comes back, then EOF after our FIN.
	c := dial(7)
	msg := bytes.Repeat([]byte("utcp echo "), 10000)
	go func() { c.Write(msg); c.CloseWrite() }()
	if got, err := io.ReadAll(c); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo returned %d bytes (want %d), err %v", len(got), len(msg), err)
	}
	c.Close()

	// discard: nothing comes back, and our FIN is answered by its FIN.
	c = dial(9)
	c.Write(msg)
	c.CloseWrite()
	if got, err := io.ReadAll(c); err != nil || len(got) != 0 {
		t.Fatalf("discard sent %d bytes, err %v; want EOF and nothing", len(got), err)
	}
	c.Close()

	// chargen: the RFC 864 pattern from its first line, across a period.
	c = dial(19)
	got := make([]byte, 2*len(chargenPattern))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, append(append([]byte{}, chargenPattern...), chargenPattern...)) {
		t.Fatalf("chargen sent %q..., want the pattern", got[:80])
	}
	c.Close()

	// http: GET /bytes/N with Connection: close, answered and closed.
	c = dial(80)
	io.WriteString(c, "GET /bytes/100000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || len(body) != 100000 || body[0] != 'a' || body[26] != 'a' {
		t.Fatalf("GET /bytes/100000: status %d, %d bytes, err %v", resp.StatusCode, len(body), err)
	}
	c.Close()

	// hold: the connection is kept, and our data stays unread.
	c = dial(5000)
	defer c.Close()
	c.Write([]byte("never read"))
	deadline := time.Now().Add(5 * time.Second)
	for srv.Held() != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if srv.Held() != 1 {
		t.Fatalf("hold keeps %d connections, want 1", srv.Held())
	}

	// stall: the handshake completes into the accept queue, and nothing
	// ever takes the connection (it would have been echoed or discarded).
	stalled := dial(5001)
	defer stalled.Close()

	// Close ends every accept loop and the HTTP server, and closes every
	// listener, stall's too; Serve refuses after it.
	srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if c, err := cli.Dial(ctx, netip.MustParseAddrPort("198.18.0.2:5001")); err == nil {
		c.Close()
		t.Fatal("stall's listener still accepts connections after Close")
	}
	if !srv.Wait(5 * time.Second) {
		t.Fatal("accept loops still running 5 s after Close")
	}
	ln, err := srvStack.Listen(7007, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := srv.Serve("echo", ln); err == nil {
		t.Fatal("Serve after Close succeeded")
	}
}
