// Package netns runs a test or benchmark inside a fresh Linux network
// namespace, so tests that create TUN devices, configure addresses or send
// packets never touch the host's network.
//
// Run (and RunB) re-executes the current test binary for just the calling
// test, in a child process created with CLONE_NEWNET (what `unshare --net`
// does). The namespace belongs to that child alone, so it vanishes when the
// child exits, even if it crashes or is killed. In the child, loopback is
// brought up and Run returns true; in the parent, Run waits for the child,
// relays its output, fails if it failed, and returns false.
//
// Invariants:
//
//   - The parent never touches the network: it only forks, waits and reads
//     the child's output.
//   - The child runs exactly the calling test (its anchored, escaped name,
//     element by element), and the parent fails if the child ran nothing.
//   - The child is bounded: it gets the parent's remaining -test.timeout minus
//     a margin, and the parent kills it (by its own PID) at the deadline.
//   - Cmd refuses to run outside a namespace created by Run, so a command
//     that configures the network cannot reach the host by mistake.
package netns
