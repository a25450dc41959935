// Command bench is the side-by-side benchmark: the same load from kernel
// sockets against utcp (the real `utcp serve` binary on a TUN), gVisor's
// netstack on a TUN (bench/gvisorserve), each plain and with TUN offloads
// (utcp+off, gvisor+off: IFF_VNET_HDR and TUNSETOFFLOAD), the kernel
// against itself over a veth pair (the upper reference) and the raw TUN
// ceiling (no stack).
//
//	go run ./bench [--rounds 3] [--duration 2s] [--only utcp,utcp+off,gvisor,gvisor+off,kernel,tun]
//	               [--mem-rounds 1] [--idle 10000] [--tw 100000] [--json] [--cpuprofile FILE]
//	               [--no-io-uring] [--no-gro] [--utcp-procs N] [--utcp-busy-poll D] [--gvisor-procs N]
//
// Figures: upload and download MB/s on one connection, CPU seconds of the
// stack process per GB moved, echo 1-byte round trip p50/p99, HTTP
// Connection: close connections per second with 1 and 32 clients, RSS per
// idle connection (10,000 to the hold service) and per TIME_WAIT entry
// (100,000, made by the server closing first), raw TUN packets per second
// both ways (read: a host packet socket offers packets as fast as it can
// and the process reads them; write: the process writes, a kernel UDP
// socket receives; write as TCP: the process answers the kernel client's
// SYN by hand and writes in-window segments, bench/rawtcp.go). Ratios: utcp/gVisor (plain), utcp+off/gVisor+off, utcp+off
// as a percentage of the kernel, and plain utcp upload/download as a
// percentage of the raw TUN read/write ceiling of the same run (its packet
// rate as TCP payload, 1448 bytes a packet, since the stacks' MB/s count
// payload). The ceiling reads and writes through the same tun code as
// utcp serve (busy poll, io_uring batches, GRO on a plain device), so it
// is not lower for want of a technique the stack uses; --no-io-uring turns
// batching off in both, --no-gro GRO.
// bench/RESULTS.md holds a run and reads the figures.
// In-memory bulk benchmarks (no TUN) are `go test -bench . ./bench`.
//
// Invariants:
//   - The process started by `go run` never touches the network: it builds
//     the binaries and re-executes itself as the driver in a fresh network
//     namespace (CLONE_NEWNET). Every device (TUN, veth) and address lives
//     in that namespace or in the kernel server's own namespace (a child
//     also made with CLONE_NEWNET), and both vanish with their processes,
//     also on a crash, a kill or an interrupt. Children get Pdeathsig.
//   - Only 198.18.0.0/24 is used: host side 198.18.0.1 and 198.18.0.101-108
//     (extra source addresses against ephemeral-port exhaustion), stacks
//     198.18.0.2.
//   - Rounds are interleaved (utcp, utcp+off, gvisor, gvisor+off, kernel,
//     tun, utcp, ...) and each round starts a fresh server process;
//     figures are median [min–max].
//   - Every load loop is bounded by a deadline and a count, every socket
//     operation by a socket deadline; servers are stopped by their PID
//     (SIGTERM, then SIGKILL after 3 s).
package main
