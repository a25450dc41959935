package seg

// Seq is a TCP sequence number. Sequence space is a ring of 2^32 values, so
// ordering is only meaningful between numbers less than 2^31 apart; all
// comparisons here use serial-number arithmetic (RFC 9293 §3.4, RFC 1982):
// a < b iff the signed 32-bit difference a-b is negative.
type Seq uint32

// Add returns s advanced by n, wrapping modulo 2^32.
func (s Seq) Add(n uint32) Seq { return s + Seq(n) }

// Sub returns the signed distance s-o. It is exact when the two numbers are
// less than 2^31 apart, which RFC 9293 §3.4 guarantees for any two numbers
// that can be compared within one connection.
func (s Seq) Sub(o Seq) int32 { return int32(uint32(s) - uint32(o)) }

// LessThan reports s < o in sequence space.
func (s Seq) LessThan(o Seq) bool { return s.Sub(o) < 0 }

// LessEq reports s <= o in sequence space.
func (s Seq) LessEq(o Seq) bool { return s.Sub(o) <= 0 }

// GreaterThan reports s > o in sequence space.
func (s Seq) GreaterThan(o Seq) bool { return s.Sub(o) > 0 }

// GreaterEq reports s >= o in sequence space.
func (s Seq) GreaterEq(o Seq) bool { return s.Sub(o) >= 0 }

// InRange reports a <= s < b. It measures both s and b as unsigned
// distances from a, so it stays correct for ranges that straddle the
// wrap point and for any range shorter than 2^32 (the acceptability tests
// of RFC 9293 §3.10.7.4 are all of this shape). An empty range (a == b)
// contains nothing.
func (s Seq) InRange(a, b Seq) bool { return uint32(s-a) < uint32(b-a) }

// InWindow reports start <= s < start+size, i.e. whether s falls in a
// window of size octets beginning at start. A zero-size window contains
// nothing.
func (s Seq) InWindow(start Seq, size uint32) bool { return uint32(s-start) < size }

// MaxSeq returns the later of a and b in sequence space.
func MaxSeq(a, b Seq) Seq {
	if a.GreaterThan(b) {
		return a
	}
	return b
}

// MinSeq returns the earlier of a and b in sequence space.
func MinSeq(a, b Seq) Seq {
	if a.LessThan(b) {
		return a
	}
	return b
}
