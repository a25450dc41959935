package seg

import (
	"math"
	"testing"
)

func TestSeqArithmetic(t *testing.T) {
	const top = Seq(math.MaxUint32)
	tests := []struct {
		a, b Seq
		sub  int32
	}{
		{0, 0, 0},
		{1, 0, 1},
		{0, 1, -1},
		{0, top, 1}, // wrap: 0 is just after 2^32-1
		{top, 0, -1},
		{5, top - 4, 10},
		{1 << 31, 0, math.MinInt32}, // exactly half the ring apart
		{1<<31 - 1, 0, math.MaxInt32},
	}
	for _, tc := range tests {
		if got := tc.a.Sub(tc.b); got != tc.sub {
			t.Errorf("%d.Sub(%d) = %d, want %d", tc.a, tc.b, got, tc.sub)
		}
		lt, gt := tc.sub < 0, tc.sub > 0
		if tc.a.LessThan(tc.b) != lt || tc.a.GreaterThan(tc.b) != gt ||
			tc.a.LessEq(tc.b) != !gt || tc.a.GreaterEq(tc.b) != !lt {
			t.Errorf("comparisons of %d and %d disagree with Sub %d", tc.a, tc.b, tc.sub)
		}
	}
	if got := top.Add(2); got != 1 {
		t.Errorf("Add wraps: got %d", got)
	}
	if MaxSeq(top, 3) != 3 || MinSeq(top, 3) != top || MaxSeq(3, top) != 3 || MinSeq(3, top) != top {
		t.Error("MaxSeq/MinSeq ignore wrap")
	}
	if MaxSeq(10, 20) != 20 || MinSeq(10, 20) != 10 {
		t.Error("MaxSeq/MinSeq plain order")
	}
}

func TestSeqInRangeAndWindow(t *testing.T) {
	const top = Seq(math.MaxUint32)
	tests := []struct {
		s, a, b Seq
		in      bool
	}{
		{10, 10, 20, true},
		{19, 10, 20, true},
		{20, 10, 20, false},
		{9, 10, 20, false},
		{10, 10, 10, false}, // empty range
		// Straddling the wrap point.
		{top, top - 5, 5, true},
		{0, top - 5, 5, true},
		{4, top - 5, 5, true},
		{5, top - 5, 5, false},
		{top - 6, top - 5, 5, false},
		// A range wider than 2^31 still works: InRange does not rely on
		// signed comparison.
		{1 << 31, 0, 3 << 30, true},
		{3 << 30, 0, 3 << 30, false},
	}
	for _, tc := range tests {
		if got := tc.s.InRange(tc.a, tc.b); got != tc.in {
			t.Errorf("%d.InRange(%d, %d) = %v, want %v", tc.s, tc.a, tc.b, got, tc.in)
		}
		if got := tc.s.InWindow(tc.a, uint32(tc.b-tc.a)); got != tc.in {
			t.Errorf("%d.InWindow(%d, %d) = %v, want %v", tc.s, tc.a, uint32(tc.b-tc.a), got, tc.in)
		}
	}
	if Seq(5).InWindow(5, 0) {
		t.Error("zero window contains its start")
	}
	// A window of 2^32-1 from 5 covers everything but 4.
	if !Seq(3).InWindow(5, math.MaxUint32) || Seq(4).InWindow(5, math.MaxUint32) || Seq(3).InWindow(5, math.MaxUint32-1) {
		t.Error("maximum window")
	}
}

func TestFlagsString(t *testing.T) {
	tests := []struct {
		f    Flags
		want string
	}{
		{0, "none"},
		{SYN, "S"},
		{SYN | ACK, "S."},
		{PSH | ACK, "P."},
		{FIN | ACK, "F."},
		{FIN | PSH | ACK, "FP."},
		{RST, "R"},
		{RST | ACK, "R."},
		{ACK, "."},
		{SYN | ECE | CWR, "SEW"},
		{SYN | ACK | ECE, "S.E"},
		{ACK | URG, ".U"},
		{0xff, "FSRP.UEW"},
	}
	for _, tc := range tests {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("%#02x: got %q, want %q", uint8(tc.f), got, tc.want)
		}
	}
	if !(SYN | ACK).Has(ACK) || !(SYN | ACK).Has(SYN|ACK) || SYN.Has(SYN|ACK) || !SYN.Has(0) {
		t.Error("Has")
	}
	// Wire values (RFC 9293 §3.1, RFC 3168 §23.2).
	if FIN != 0x01 || SYN != 0x02 || RST != 0x04 || PSH != 0x08 || ACK != 0x10 || URG != 0x20 || ECE != 0x40 || CWR != 0x80 {
		t.Error("flag bit values")
	}
}
