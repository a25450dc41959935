package tun

import (
	"encoding/binary"
	"math/bits"
)

// csumAdd adds b to a one's-complement accumulator (RFC 1071) and returns the
// new, unfolded accumulator. It reads 64-bit big-endian words and adds them
// with end-around carry: RFC 1071 §2(C) allows summing over wider words,
// since 2^16-1 divides 2^64-1, and big-endian loads keep every byte in its
// network-order lane. b must start at an even offset of the summed data
// (every caller passes whole headers or the rest of a packet).
func csumAdd(b []byte, acc uint64) uint64 {
	var c uint64
	for len(b) >= 32 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[8:16]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[16:24]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[24:32]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b), c)
		b = b[8:]
	}
	if len(b) > 0 {
		// Zero padding on the right: a lone last byte is the high byte of
		// its 16-bit word (RFC 1071 §4.1).
		var t [8]byte
		copy(t[:], b)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(t[:]), c)
	}
	acc, c = bits.Add64(acc, 0, c)
	return acc + c // cannot carry again: acc wrapped to at most 0 here
}

// csumFold folds an accumulator to 16 bits with end-around carry. The
// result is the sum, not its complement.
func csumFold(acc uint64) uint16 {
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 16) + (acc & 0xffff)
	acc = (acc >> 16) + (acc & 0xffff)
	return uint16(acc)
}

// pseudoSum is the one's-complement sum of the IPv4 pseudo-header (RFC 9293
// §3.1, RFC 768) for a transport segment of length l4 in packet p, whose
// addresses are at p[12:20].
func pseudoSum(p []byte, proto uint8, l4 int) uint64 {
	return csumAdd(p[12:20], uint64(proto)+uint64(l4))
}

// ipv4HeaderChecksum writes a fresh header checksum (RFC 791 §3.1) into the
// IPv4 header h[:ihl].
func ipv4HeaderChecksum(h []byte, ihl int) {
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], ^csumFold(csumAdd(h[:ihl], 0)))
}
