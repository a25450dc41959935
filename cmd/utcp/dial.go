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

TIME_WAIT lab: with --local-port P and --again D, once the connection has
ended (dial closed first on stdin EOF, so it holds the TIME_WAIT), dial
waits D and opens a second connection from the same port to the same
peer, then closes it. Without --tw-reuse that fails with "address already
in use"; with --tw-reuse (and timestamps, and D > 1s) the TIME_WAIT entry
is recycled (TcpExtTWRecycled). One line on stderr reports which.
`

func cmdDial(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var f netFlags
	fs := flag.NewFlagSet("dial", flag.ContinueOnError)
	f.register(fs, false)
	timeout := fs.Duration("timeout", 30*time.Second, "give up if the connection is not established within this time")
	lport := fs.Int("local-port", 0, "local port of the connection (0 picks an ephemeral one)")
	again := fs.Duration("again", 0, "after the connection ends, wait this long and connect again from the same local port (TIME_WAIT / --tw-reuse lab)")
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
	if *lport < 0 || *lport > 65535 {
		return &exitError{code: 2, msg: fmt.Sprintf("dial: --local-port %d: want 0-65535", *lport)}
	}
	if *again < 0 {
		return &exitError{code: 2, msg: fmt.Sprintf("dial: --again %v: must not be negative", *again)}
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
	c, err := env.stack.DialFrom(dctx, uint16(*lport), raddr)
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
	if *again > 0 {
		return dialAgain(ctx, env.stack, c, raddr, *again, *timeout, stderr)
	}
	return nil
}

// dialAgain is the TIME_WAIT lab: connect once more from the first
// connection's local port and report whether its TIME_WAIT was recycled.
func dialAgain(ctx context.Context, st *stack.Stack, first *stack.Conn, raddr netip.AddrPort, wait, timeout time.Duration, stderr io.Writer) error {
	local := first.Info().Local
	fmt.Fprintf(stderr, "utcp: %v -> %v ended in %v\n", local, raddr, first.Info().State)
	select {
	case <-time.After(wait):
	case <-ctx.Done():
		return &exitError{code: 130}
	}
	before := st.Counters().TWRecycled
	dctx, cancel := context.WithTimeout(ctx, timeout)
	c, err := st.DialFrom(dctx, local.Port(), raddr)
	cancel()
	if err != nil {
		return failf("again from %v to %v: %v", local, raddr, err)
	}
	recycled := st.Counters().TWRecycled - before
	c.CloseWrite()
	io.Copy(io.Discard, c)
	c.Close()
	linger(c, 2*time.Second)
	fmt.Fprintf(stderr, "utcp: again from %v to %v: connected (TcpExtTWRecycled +%d)\n", local, raddr, recycled)
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
