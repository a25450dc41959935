// Command utcp runs the utcp TCP/IPv4 stack on a Linux TUN device and
// inspects it.
//
//	utcp serve [network and stack flags] [--echo P] [--discard P] [--chargen P] [--http P] [--hold P] [--stall P] [--backlog N]
//	utcp dial  [network and stack flags] HOST:PORT
//	utcp ss    [--tun NAME | --control PATH] [-t] [-l | -a] [-i] [-o] [state STATE]...
//	utcp nstat [--tun NAME | --control PATH] [-a] [-z] [-n] [-r] [-s] [--json] [PATTERN]...
//	utcp lab   [--log FILE] [serve flags] [-- COMMAND [ARG...]]
//
// The serve and dial command lines are a contract (CONTRACT.md); ss and
// nstat print like their Linux namesakes. Stack knobs carry the names of
// the sysctls they mirror (--msl, --fin-timeout, --max-tw-buckets,
// --tw-reuse, --syn-retries, --synack-retries, --retries2, --sndbuf,
// --rcvbuf, --rcvbuf-max, --no-moderate-rcvbuf, --congestion, --sack,
// --syncookies, --keepalive-time/intvl/probes, --delayed-ack, --nodelay);
// --offload opens the TUN with virtio-net offloads, --cpuprofile and
// --pprof expose profiles. lab runs serve in a throwaway network (and
// mount) namespace and a shell or COMMAND beside it, and removes all of it
// on exit (lab.go states its rules).
//
// # Control protocol
//
// serve listens on a unix stream socket (default /run/utcp/NAME.sock,
// mode 0600 from creation, so only its owner and root may connect). The
// protocol is JSON lines: the client writes one object per line, the
// server answers each with exactly one object on one line, in order, on
// the same connection; an idle connection is closed after 30 s.
//
//	→ {"op":"ss"}       ← {"ok":true,"server":{...},"conns":[{"state":"ESTABLISHED","info":{ConnInfo}}...]}
//	→ {"op":"nstat"}    ← {"ok":true,"server":{...},"counters":[{"MIB":"Tcp","Name":"ActiveOpens","Value":1}...]}
//	→ {"op":"hello"}    ← {"ok":true,"server":{...}}
//	→ anything else     ← {"ok":false,"error":"..."}
//
// "server" is {"pid","start" (unix ns),"tun","addr"}: nstat keys its
// history on pid and start, so a restarted serve is not diffed against its
// predecessor. ConnInfo is stack.ConnInfo as encoding/json writes it
// (addresses as "ip:port", durations in nanoseconds, State as its number;
// "state" carries the Linux name).
//
// # Invariants
//
//   - Every failure the user can cause (bad flag, missing capability, busy
//     name, no serve running) ends with exactly one "utcp: ..." line on
//     stderr and a non-zero status, never a usage dump or a stack trace;
//     -h prints the usage to stdout and exits 0.
//   - serve removes its TUN device and control socket on SIGINT/SIGTERM
//     and exits 0 within 2 s: Stack.Close resets every connection, which
//     unblocks every service; a watchdog exits after 1.5 s regardless (the
//     kernel removes a non-persistent TUN with its last descriptor).
//   - The stack's Trace callback runs under the stack's lock, so --trace
//     only formats the line there and a separate goroutine writes it; when
//     stderr falls behind, lines are dropped and counted, never blocking
//     the stack.
//   - hold keeps every accepted *stack.Conn referenced until shutdown;
//     stall never calls Accept.
package main
