// Package tun opens and drives a Linux TUN device: one IP packet per read or
// write, no packet-information header (IFF_TUN|IFF_NO_PI), configured through
// rtnetlink (address, MTU, link up) without shelling out to ip(8).
//
// The package knows nothing of TCP or of any other utcp package; *Device has
// the shape of the stack's Link (ReadPackets, WritePackets, MTU, BatchSize,
// Close).
//
// Invariants:
//
//   - The device is non-persistent: the kernel removes the interface when its
//     only descriptor is closed, so Close (or the process dying) leaves
//     nothing behind. Close returns only after the descriptor is closed, so
//     the interface is gone when it returns.
//   - The descriptor is non-blocking and registered with Go's poller. A
//     ReadPackets blocked waiting for a packet parks its goroutine, not a
//     thread, and Close wakes it; it then returns an error that
//     errors.Is(err, os.ErrClosed). Every call after Close does the same.
//   - A read returns whole packets only: bufs[0] is filled by a read that may
//     block, bufs[1:] only by packets the kernel has already queued, so a
//     batch never waits for a second packet.
//   - WritePackets never keeps a reference to the caller's buffers, and each
//     buffer is exactly one write(2), which the kernel treats atomically, so
//     concurrent callers never interleave bytes of different packets.
//   - Every error from Open names what failed and what to do about it.
//
// The kernel may queue packets the stack did not ask for (IPv6 router
// solicitations, MLD reports when the link comes up); ReadPackets returns them
// like any other packet and the caller filters.
package tun
