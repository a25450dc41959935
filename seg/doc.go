// Package seg is utcp's wire format: IPv4, TCP and ICMP echo headers,
// TCP options, Internet checksums and sequence-number arithmetic. It
// imports only the standard library.
//
// Invariants:
//
//   - Validate once, then read freely. IPv4, TCP and ICMPv4 are byte-slice
//     views; after Validate returns nil every accessor of that view is in
//     bounds. Accessors on an unvalidated view may panic.
//   - Nothing on the wire can panic or loop. Segment.Parse and the
//     Validate methods accept any byte slice and either succeed or return
//     one of the named Err* values, which the stack counts. Every option
//     step advances by at least one byte.
//   - The per-packet path does not allocate. Segment.Parse never does;
//     Segment.AppendTo does not when the destination has capacity.
//     Segment.Payload and the views alias the packet buffer.
//   - Parse accepts exactly what it checks: IPv4 version, IHL, total
//     length, header checksum, protocol TCP, not a fragment, TCP data
//     offset, TCP checksum over the pseudo-header, well-formed options.
//     Policy (addresses, ports, flag combinations, SYN-only options on
//     non-SYN segments, clamping window scale to 14) is the stack's.
//   - AppendTo is canonical: 20-byte IPv4 header with DF, TCP options in
//     Linux's order and 4-byte alignment, at most 40 option bytes (SACK
//     blocks that do not fit are dropped, see Options.SACKBlocksFit).
//     Parse(AppendTo(s)) reproduces s's fields, with TTL 0 read back as
//     DefaultTTL and NumSACK as SACKBlocksFit.
//   - Seq comparisons are serial-number arithmetic (RFC 9293 §3.4): they
//     are meaningful only for numbers less than 2^31 apart.
//   - Checksum returns the folded, uncomplemented one's-complement sum;
//     a received header verifies when the sum over it is 0xffff.
package seg
