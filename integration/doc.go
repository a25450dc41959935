// Package integration proves utcp against independent TCP stacks.
//
//   - gVisor's netstack in memory (gvisor_peer.go: a gVisor host bridged to
//     utcp through a stack.Link): handshakes, bulk transfers, half-close,
//     resets, zero windows and a fault matrix over tuntest.Lossy.
//   - The Linux kernel through a real TUN: the utcp binary's black-box tests
//     (cmd_test.go, labs_test.go, kernel_test.go, which compare the host's
//     ss with utcp ss), and the packetimpact-style wire suite
//     (wire_*_test.go), where every scenario runs against utcp and against
//     Linux so each expectation is proven on the kernel first.
//   - Hardening: malformed packets, SYN floods and a soak (harden_*_test.go).
//
// Invariants: every test that touches a TUN or a kernel socket runs in a
// network namespace of its own (tun/netns.Run) that disappears with it, and
// uses only 198.18.0.0/24; gVisor always runs on real time, never inside a
// testing/synctest bubble; every load loop is bounded in count and time.
package integration
