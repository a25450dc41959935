package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os/signal"
	"syscall"
	"time"

	"utcp/stack"
)

const dialSynopsis = `usage: utcp dial [flags] HOST:PORT

Creates the TUN device like utcp serve, opens a connection from the stack
to HOST:PORT (normally on the host side, e.g. 198.18.0.1:8080) and copies
stdin to it and it to stdout, like nc. On stdin EOF it half-closes
(sends FIN) and keeps reading; it exits when the peer closes.
`

func cmdDial(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var f netFlags
	fs := flag.NewFlagSet("dial", flag.ContinueOnError)
	f.register(fs, false)
	timeout := fs.Duration("timeout", 30*time.Second, "give up if the connection is not established within this time")
	setUsage(fs, dialSynopsis)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &exitError{code: 2, msg: "dial: want exactly one HOST:PORT argument (see utcp dial -h)"}
	}
	raddr, err := netip.ParseAddrPort(fs.Arg(0))
	if err != nil || !raddr.Addr().Is4() || raddr.Port() == 0 {
		return &exitError{code: 2, msg: fmt.Sprintf("dial: %q: want IPv4:PORT, like 198.18.0.1:8080", fs.Arg(0))}
	}
	ns, err := f.check()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	env, err := f.open(ns, stderr)
	if err != nil {
		return err
	}
	defer env.close()

	dctx, cancel := context.WithTimeout(ctx, *timeout)
	c, err := env.stack.Dial(dctx, raddr)
	cancel()
	if err != nil {
		return failf("dial %v: %v", raddr, err)
	}

	// stdin -> conn; EOF half-closes (RFC 9293 §3.10.4: our FIN, reading
	// continues). A failed write means the peer is gone: stop sending.
	sendErr := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, stdin)
		if err == nil {
			err = c.CloseWrite()
		}
		sendErr <- err
	}()
	// conn -> stdout until the peer's FIN (io.EOF) or a reset.
	recvErr := make(chan error, 1)
	go func() {
		_, err := io.Copy(stdout, c)
		recvErr <- err
	}()

	var rerr error
	select {
	case rerr = <-recvErr:
	case <-ctx.Done():
		c.SetLinger(0)
		c.Close()
		return &exitError{code: 130}
	}
	// The peer closed (and all it sent is on stdout). Close our side
	// gracefully and give the FIN a moment to be acknowledged, so the peer
	// sees an orderly close rather than the reset Stack.Close would send.
	c.Close()
	linger(c, 2*time.Second)
	if rerr != nil {
		return failf("connection to %v: %v", raddr, rerr)
	}
	select {
	case err := <-sendErr:
		if err != nil {
			fmt.Fprintf(stderr, "utcp: sending to %v: %v\n", raddr, err)
		}
	default:
		// stdin still open: the peer closed first, which ends us like nc.
	}
	return nil
}

// linger waits (bounded) until the connection has finished its closing
// handshake: CLOSED or TIME_WAIT.
func linger(c *stack.Conn, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		switch c.Info().State {
		case stack.Closed, stack.TimeWait:
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
