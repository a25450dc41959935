// Package tun opens and drives a Linux TUN device: one IP packet per read or
// write, no packet-information header (IFF_TUN|IFF_NO_PI), optionally with
// checksum and segmentation offloads (IFF_VNET_HDR), configured through
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
//   - With Config.BusyPoll, a read that finds nothing queued tries again,
//     yielding the processor between tries, until BusyPoll has passed since
//     its first try; only then does it park. Polling never outlasts that
//     bound, so an idle device costs no CPU. Packets a retry found are
//     counted (Device.BusyPollRxPackets).
//   - A read returns whole packets only: bufs[0] is filled by a read that may
//     block, bufs[1:] only by packets the kernel has already queued, so a
//     batch never waits for a second packet.
//   - WritePackets never keeps a reference to the caller's buffers, and each
//     buffer is exactly one write(2), which the kernel treats atomically, so
//     concurrent callers never interleave bytes of different packets.
//   - The device batches its system calls through io_uring unless
//     Config.NoIOURing is set or the kernel refuses (Device.IOURing tells):
//     one io_uring_enter carries a read batch's reads or a write batch's
//     writes, each still one packet, and every request completes inside
//     that call (reads with RWF_NOWAIT, so an empty queue ends the batch
//     with EAGAIN instead of arming a poll). Reads hand packets back in the
//     order the kernel queued them; writes keep the caller's order and
//     WritePackets' contract (bufs[n] failed and nothing after it was
//     written). On an offload device a GSO write stays a call of its own.
//     Waiting for a packet is still Go's poller, as above.
//   - With Config.GROFlushTimeout a plain device is opened with IFF_NAPI and
//     its gro_flush_timeout set (gro.go): the kernel's GRO merges a flow's
//     full-sized segments written to it until one with PSH, a short one or
//     the timer ends the run. Nothing about what the caller reads or
//     writes changes; the setting is written through a sysfs mounted in a
//     private mount namespace of a thread that is then discarded, so no
//     mount outlives the call and the namespace written is the device's
//     own. A refusal leaves a working device; Device.GRO says why.
//   - Every error from Open names what failed and what to do about it.
//   - With Config.Offload (and Device.Offload reporting true) the descriptor
//     carries a struct virtio_net_hdr before every packet, but callers never
//     see it: ReadPackets returns plain IP packets whose transport checksums
//     are complete (NEEDS_CSUM finished in software) and whose IPv4 total
//     length covers the whole packet, which for a TCP super-packet (GSO) may
//     be up to 64 KiB, far above the MTU; buffers for it must hold 65535
//     bytes or such packets are dropped and counted as truncated.
//     WritePackets sends the same bytes the caller gave, except that runs of
//     consecutive same-flow TCP segments the kernel could re-cut exactly
//     (coalesceRun) go out as one GSO write; anything else is written alone
//     and unchanged. Offload copies no payload byte and, in steady state,
//     allocates nothing.
//   - If the kernel refuses the offloads, Open falls back to the plain
//     device silently; the caller can read Device.Offload and report it.
//
// The kernel may queue packets the stack did not ask for (IPv6 router
// solicitations, MLD reports when the link comes up); ReadPackets returns them
// like any other packet and the caller filters.
package tun
