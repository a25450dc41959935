package integration

import (
	"net"
	"strings"
	"testing"
	"time"

	"utcp/tun/netns"
)

// The TIME_WAIT lab on dial (tcp_tw_reuse): utcp dial closes first (stdin
// EOF), so it holds the TIME_WAIT of its 4-tuple; connecting again from the
// same local port fails while that entry lives, unless --tw-reuse lets an
// active open recycle an entry older than a second (with timestamps, which
// the kernel peer negotiates). The kernel listener sees two connections
// from the same port only with --tw-reuse.
func TestDialTimeWaitReuse(t *testing.T) {
	buildUtcp(t)
	if !netns.Run(t) {
		return
	}
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan string, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c.RemoteAddr().String()
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				b := make([]byte, 64)
				for {
					if _, err := c.Read(b); err != nil {
						return
					}
				}
			}()
		}
	}()
	raddr := ln.Addr().(*net.TCPAddr)
	target := cmdHostIP + ":" + itoa(raddr.Port)

	_, errOut, code := runUtcp(t, strings.NewReader("hello\n"), "dial", "--tun", "utcp1", "--local-port", "41000", "--again", "1500ms", target)
	if code == 0 || !strings.Contains(errOut, "address already in use") {
		t.Fatalf("without --tw-reuse the second dial should fail with EADDRINUSE: exit %d\n%s", code, errOut)
	}
	if !strings.Contains(errOut, "ended in TIME_WAIT") {
		t.Fatalf("dial closed first but did not hold the TIME_WAIT:\n%s", errOut)
	}
	drain := func() int {
		n := 0
		for {
			select {
			case <-accepted:
				n++
			case <-time.After(300 * time.Millisecond):
				return n
			}
		}
	}
	if n := drain(); n != 1 {
		t.Fatalf("kernel accepted %d connections, want 1", n)
	}

	_, errOut, code = runUtcp(t, strings.NewReader("hello\n"), "dial", "--tun", "utcp2", "--tw-reuse", "--local-port", "41001", "--again", "1500ms", target)
	if code != 0 || !strings.Contains(errOut, "TcpExtTWRecycled +1") {
		t.Fatalf("with --tw-reuse the second dial should recycle the TIME_WAIT: exit %d\n%s", code, errOut)
	}
	if n := drain(); n != 2 {
		t.Fatalf("kernel accepted %d connections, want 2 from the same port", n)
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
