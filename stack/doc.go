// Package stack is utcp's TCP/IPv4: demultiplexing, listeners with a SYN
// queue and an accept queue, the RFC 9293 connection state machine,
// retransmission, TIME_WAIT records, counters with Linux's names, and
// net.Conn / net.Listener sockets on top.
//
// Invariants:
//   - The stack imports only seg and timers. It never touches a device: it
//     reads and writes whole IPv4 packets through the Link interface.
//   - One mutex (Stack.mu) guards every connection, listener, table and
//     counter. Code under the lock never does I/O and never blocks: it
//     appends outgoing packets to Stack.outq, which one "flusher" at a time
//     writes to the link after the lock is released, in the order they were
//     produced.
//   - Every state change goes through (*tcb).setState, which keeps the
//     per-state gauges and the transition trace.
//   - Time comes from Config.Clock; timers are deadlines in each TCB's
//     timers.Set, mirrored into one stack-wide timers.Queue. In manual mode
//     (Config.Manual) no goroutine or timer is started: a test feeds packets
//     with Inject and moves time with Advance, so every exchange is scripted
//     and deterministic.
//   - Nothing a peer sends can panic the stack: seg validates every packet
//     and the stack counts and drops what it rejects.
//
// Copies on the data path. Bulk bytes are copied once each way inside the
// process, by the application's Write into the send ring, and otherwise
// only by the kernel (read and writev on the TUN):
//   - Receive (rcvq.go): a large in-order segment is adopted, the link read
//     buffer it lies in becomes a chunk of the receive queue and the read
//     loop takes a fresh buffer; Conn.Read copies out of it, and
//     Conn.WriteTo (io.Copy) hands the chunk itself to the writer.
//   - Send: with a SplitLink, new data is written from the send ring in
//     place (headers built apart, writev gathers both); the ring keeps its
//     array out of the shared pool until that flush is done (ring.lend).
//     Super-segments for a GSOLink carry a partial checksum the link
//     completes.
package stack
