package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"utcp/cmd/utcp/svc"
)

const serveSynopsis = `usage: utcp serve [flags]

Creates TUN device --tun, gives its host side --host-addr, and runs the utcp
stack on it as --addr with these services (a port of 0 turns one off):
echo (RFC 862), discard (RFC 863), chargen (RFC 864), http (GET /,
GET /bytes/N, POST /sha256), and the lab services hold (accept, then never
read, write or close) and stall (listen, never accept).
Runs until SIGINT or SIGTERM, then removes the device and exits 0.
Inspect it with utcp ss and utcp nstat.
`

// shutdownBudget is how long serve may spend shutting down; the contract
// gives 2 s and the rest is margin for the process exit.
const shutdownBudget = 1500 * time.Millisecond

type serveFlags struct {
	netFlags
	echo, discard, chargen, http, hold, stall int
	backlog                                   int
}

func cmdServe(args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	f.register(fs, true)
	fs.IntVar(&f.echo, "echo", 7, "echo service port (RFC 862); 0 turns it off")
	fs.IntVar(&f.discard, "discard", 9, "discard service port (RFC 863); 0 turns it off")
	fs.IntVar(&f.chargen, "chargen", 19, "chargen service port (RFC 864); 0 turns it off")
	fs.IntVar(&f.http, "http", 80, "HTTP/1.1 service port; 0 turns it off")
	fs.IntVar(&f.hold, "hold", 0, "lab: accept on this port, then never read, write or close (CLOSE_WAIT, zero window); 0 is off")
	fs.IntVar(&f.stall, "stall", 0, "lab: listen on this port and never accept (accept-queue overflow); 0 is off")
	fs.IntVar(&f.backlog, "backlog", 128, "listen backlog of every service (capped at 4096 like net.core.somaxconn)")
	setUsage(fs, serveSynopsis)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, msg: fmt.Sprintf("serve: unexpected argument %q (see utcp serve -h)", fs.Arg(0))}
	}
	ns, err := f.check()
	if err != nil {
		return err
	}
	ports := []struct {
		name string
		port int
	}{
		{"echo", f.echo},
		{"discard", f.discard},
		{"chargen", f.chargen},
		{"http", f.http},
		{"hold", f.hold},
		{"stall", f.stall},
	}
	seen := map[int]string{}
	for _, p := range ports {
		if p.port < 0 || p.port > 65535 {
			return failf("--%s %d: a port is 0 (off) to 65535", p.name, p.port)
		}
		if other, dup := seen[p.port]; dup && p.port != 0 {
			return failf("--%s and --%s both use port %d", other, p.name, p.port)
		}
		seen[p.port] = p.name
	}
	if f.backlog <= 0 {
		return failf("--backlog %d: must be positive", f.backlog)
	}
	control := f.control
	if control == "" {
		control = defaultControl(f.tun)
	}

	// Signals first, so a SIGTERM during start-up is not lost.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	env, err := f.open(ns, stderr)
	if err != nil {
		return err
	}
	var srv svc.Server
	cs, err := listenControl(control, env.stack, serverInfo{
		PID: os.Getpid(), Start: time.Now().UnixNano(), Tun: env.dev.Name(), Addr: ns.addr.String(),
	})
	if err != nil {
		env.close()
		return failf("%v", err)
	}
	for _, p := range ports {
		if p.port == 0 {
			continue
		}
		ln, err := env.stack.Listen(uint16(p.port), f.backlog)
		if err == nil {
			if err = srv.Serve(p.name, ln); err != nil {
				ln.Close()
			}
		}
		if err != nil {
			srv.Close()
			cs.close()
			env.close()
			return failf("--%s %d: %v", p.name, p.port, err)
		}
	}
	fmt.Fprintf(stderr, "utcp: serving as %v on %s (host side %v, mtu %d); control socket %s\n",
		ns.addr, env.dev.Name(), ns.host, f.mtu, control)

	<-ctx.Done()
	stop()
	began := time.Now()

	// Shut down within the budget even under load: the stack's Close
	// resets every connection at once, which unblocks every service
	// goroutine; if something still hangs, the watchdog ends the process
	// (the kernel removes the TUN with the last descriptor).
	watchdog := time.AfterFunc(shutdownBudget, func() {
		fmt.Fprintln(stderr, "utcp: shutdown took too long; exiting anyway")
		env.dev.Close()
		os.Exit(0)
	})
	defer watchdog.Stop()
	cs.close()
	srv.Close()
	env.close()
	srv.Wait(500 * time.Millisecond)
	fmt.Fprintf(stderr, "utcp: stopped (shutdown took %v)\n", time.Since(began).Round(time.Millisecond))
	return nil
}
