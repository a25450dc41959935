package integration

// golang.org/x/net/nettest.TestConn: the net.Conn contract (I/O,
// deadlines, concurrent methods, Close) over utcp <-> utcp.

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/nettest"

	"utcp/stack"
	"utcp/tun/tuntest"
)

func TestNettestConn(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		// A fresh pair of stacks per subtest, so no state leaks between them.
		la, lb := tuntest.NewPipe(1500, 4096)
		a, err := stack.New(stack.Config{Link: la, Addr: GVisorAddr})
		if err != nil {
			return nil, nil, nil, err
		}
		b, err := stack.New(stack.Config{Link: lb, Addr: utcpAddr})
		if err != nil {
			a.Close()
			return nil, nil, nil, err
		}
		stop = func() {
			if c1 != nil {
				c1.Close()
			}
			if c2 != nil {
				c2.Close()
			}
			a.Close()
			b.Close()
		}
		ln, err := b.Listen(9000, 1)
		if err != nil {
			stop()
			return nil, nil, nil, err
		}
		defer ln.Close()
		acc := make(chan net.Conn, 1)
		go func() {
			c, _ := ln.Accept()
			acc <- c
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c1, err = a.DialContext(ctx, "tcp", netip.AddrPortFrom(utcpAddr, 9000).String())
		if err != nil {
			stop()
			return nil, nil, nil, err
		}
		c2 = <-acc
		if c2 == nil {
			stop()
			return nil, nil, nil, net.ErrClosed
		}
		return c1, c2, stop, nil
	})
}
