package seg

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Checksum returns the folded 16-bit one's-complement sum of b (RFC 1071),
// starting from initial (for example a PseudoHeaderSum). The result is NOT
// complemented: a checksum field is written as ^Checksum(...), and a
// received header verifies when Checksum over it, checksum field included,
// is 0xffff.
//
// Speed: RFC 1071 §2(B) lets the sum be taken in either byte order and
// §2(C) lets it be taken over wider words with the carries folded back in
// at the end. So this reads 64-bit little-endian words (a single load on
// the common hosts), adds them with add-with-carry, and swaps the folded
// result back to network order once.
func Checksum(b []byte, initial uint32) uint16 {
	// Bring initial into the byte-swapped domain the loop works in.
	acc := uint64(bits.ReverseBytes16(fold32(initial)))
	// Two independent add-with-carry chains let the CPU overlap them.
	var acc2, carry, carry2 uint64
	for len(b) >= 64 {
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[0:8]), carry)
		acc2, carry2 = bits.Add64(acc2, binary.LittleEndian.Uint64(b[8:16]), carry2)
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[16:24]), carry)
		acc2, carry2 = bits.Add64(acc2, binary.LittleEndian.Uint64(b[24:32]), carry2)
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[32:40]), carry)
		acc2, carry2 = bits.Add64(acc2, binary.LittleEndian.Uint64(b[40:48]), carry2)
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[48:56]), carry)
		acc2, carry2 = bits.Add64(acc2, binary.LittleEndian.Uint64(b[56:64]), carry2)
		b = b[64:]
	}
	acc, carry = bits.Add64(acc, acc2, carry)
	acc, carry = bits.Add64(acc, carry2, carry)
	for len(b) >= 8 {
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b), carry)
		b = b[8:]
	}
	if len(b) > 0 {
		// The tail starts at an even offset, so zero padding on the right
		// keeps every byte in its 16-bit lane; a lone last byte is the
		// high-order byte of its network-order word (RFC 1071 §4.1).
		var tail [8]byte
		copy(tail[:], b)
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(tail[:]), carry)
	}
	// End-around carry: if adding the pending carry wraps acc to zero, the
	// new carry is added once more (it cannot wrap again).
	acc, carry = bits.Add64(acc, 0, carry)
	acc += carry
	// Fold 64 -> 32 -> 16 bits, each step with end-around carry.
	s := (acc >> 32) + (acc & 0xffffffff)
	s = (s >> 32) + (s & 0xffffffff)
	return bits.ReverseBytes16(fold32(uint32(s)))
}

// fold32 folds a 32-bit partial sum to 16 bits with end-around carry.
func fold32(s uint32) uint16 {
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return uint16(s)
}

// PseudoHeaderSum returns the unfolded one's-complement sum of the IPv4
// pseudo-header (RFC 9293 §3.1): source, destination, zero, protocol and
// the TCP/UDP length. Pass it as the initial value to Checksum. Addresses
// that are not IPv4 (or IPv4-mapped IPv6) count as 0.0.0.0.
func PseudoHeaderSum(src, dst netip.Addr, proto uint8, length int) uint32 {
	s := as4(src)
	d := as4(dst)
	sum := uint32(s[0])<<8 | uint32(s[1])
	sum += uint32(s[2])<<8 | uint32(s[3])
	sum += uint32(d[0])<<8 | uint32(d[1])
	sum += uint32(d[2])<<8 | uint32(d[3])
	sum += uint32(proto)
	// The length is a 16-bit field; larger values cannot occur in IPv4.
	sum += uint32(uint16(length))
	return sum
}

// as4 returns the four octets of an IPv4 (or IPv4-mapped) address, or
// zeros for anything else, so no caller can reach netip's As4 panic.
func as4(a netip.Addr) [4]byte {
	a = a.Unmap()
	if !a.Is4() {
		return [4]byte{}
	}
	return a.As4()
}

// UpdateChecksum returns the checksum field that results from changing one
// 16-bit word covered by oldCsum from oldVal to newVal, without touching
// the rest of the data: RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m').
// Eqn. 3 (rather than RFC 1141's eqn. 2) is used because it never turns a
// valid checksum into the other representation of zero.
func UpdateChecksum(oldCsum, oldVal, newVal uint16) uint16 {
	sum := uint32(^oldCsum) + uint32(^oldVal) + uint32(newVal)
	return ^fold32(sum)
}
