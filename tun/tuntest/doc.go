// Package tuntest provides in-memory links for testing a packet stack
// without a kernel: Pipe (two connected endpoints), Lossy (a seeded fault
// model: drop, duplicate, reorder, corrupt, delay, jitter, rate limit) and
// Tap (a pcap recorder), plus PcapWriter for classic libpcap files.
//
// Every link type implements Link, the same batch interface the stack
// declares for a TUN device, so a stack runs unchanged over a real device, a
// Pipe, a Lossy Pipe, or a Tap around any of them.
//
// Invariants:
//   - Packet-opaque: nothing here parses packets. Lossy selects packets only
//     through the caller's Filter func([]byte) bool; Tap records bytes as is.
//   - WritePackets never keeps the caller's buffers: Pipe copies into its
//     queue, Lossy copies what it holds or delays.
//   - Pipe preserves order and packet boundaries; its queues are bounded and
//     drop the newest packet when full (drop-tail), counting it.
//   - Lossy is deterministic: its decisions come from math/rand/v2 PCG seeded
//     with Faults.Seed, six draws per packet that reaches the fault model, in
//     write order. The same seed and the same written sequence give the same
//     delivered sequence. The seed is logged via Faults.Logf.
//   - Lossy reorders only through Faults.Reorder: delay, jitter and the rate
//     limiter never let a packet overtake an earlier one.
//   - Time comes only from the time package (time.Now, time.AfterFunc), so
//     inside a testing/synctest bubble delays are virtual and exact. No type
//     here starts a goroutine that outlives Close: Pipe starts none and Lossy
//     only runs short timer callbacks, stopped by Close.
//   - After Close, reads return os.ErrClosed and a blocked reader is woken.
//   - Everything is safe for concurrent use and race-free.
package tuntest
