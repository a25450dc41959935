package seg

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// refChecksum is the obvious RFC 1071 sum: 16-bit big-endian words, the
// odd last byte padded on the right, carries folded at the end.
func refChecksum(b []byte, initial uint32) uint16 {
	sum := uint64(initial)
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint64(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

func TestChecksumMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const maxLen = 9001
	// One spare byte in front so every length is also tried at an odd
	// address.
	buf := make([]byte, maxLen+1)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	ones := make([]byte, maxLen+1)
	for i := range ones {
		ones[i] = 0xff
	}
	initials := []uint32{0, 1, 0xffff, 0x1fffe, 0xffffffff, r.Uint32()}
	for n := 0; n <= maxLen; n++ {
		for _, off := range []int{0, 1} {
			for _, data := range [][]byte{buf, ones} {
				b := data[off : off+n]
				init := initials[(n+off)%len(initials)]
				if got, want := Checksum(b, init), refChecksum(b, init); got != want {
					t.Fatalf("len %d off %d initial %#x: got %#04x, want %#04x", n, off, init, got, want)
				}
			}
		}
	}
	// Every initial value on a few lengths around the unroll boundaries.
	for _, n := range []int{0, 1, 7, 8, 63, 64, 65, 1500} {
		for _, init := range initials {
			if got, want := Checksum(buf[:n], init), refChecksum(buf[:n], init); got != want {
				t.Fatalf("len %d initial %#x: got %#04x, want %#04x", n, init, got, want)
			}
		}
	}
}

// TestChecksumRFC1071Example is the worked example of RFC 1071 §3.
func TestChecksumRFC1071Example(t *testing.T) {
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := Checksum(b, 0); got != 0xddf2 {
		t.Errorf("got %#04x, want 0xddf2", got)
	}
}

func TestChecksumVerifiesToAllOnes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		b := make([]byte, 2+2*r.IntN(300))
		for i := 2; i < len(b); i++ {
			b[i] = byte(r.Uint32())
		}
		binary.BigEndian.PutUint16(b, ^Checksum(b, 0))
		if got := Checksum(b, 0); got != 0xffff {
			t.Fatalf("sum over data with its checksum = %#04x, want 0xffff", got)
		}
	}
}

func TestUpdateChecksumMatchesRecompute(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		n := 4 + 2*r.IntN(40)
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		// Field at offset 0 holds the checksum of the rest plus a
		// pseudo-header-like initial sum.
		init := r.Uint32() | 1
		b[0], b[1] = 0, 0
		binary.BigEndian.PutUint16(b, ^Checksum(b, init))
		csum := binary.BigEndian.Uint16(b)

		// Change one other 16-bit word; sometimes to the extremes.
		at := 2 + 2*r.IntN(n/2-1)
		old := binary.BigEndian.Uint16(b[at:])
		nv := uint16(r.Uint32())
		switch r.IntN(4) {
		case 0:
			nv = 0
		case 1:
			nv = 0xffff
		}
		binary.BigEndian.PutUint16(b[at:], nv)
		got := UpdateChecksum(csum, old, nv)
		b[0], b[1] = 0, 0
		want := ^Checksum(b, init)
		if got != want {
			t.Fatalf("update %#04x->%#04x at %d: got %#04x, recomputed %#04x", old, nv, at, got, want)
		}
	}
}

// TestUpdateChecksumOnPacket rewrites a TCP port the way a NAT would and
// checks the packet still parses.
func TestUpdateChecksumOnPacket(t *testing.T) {
	s := Segment{Src: addrA, Dst: addrB, SrcPort: 1234, DstPort: 80, Seq: 7, Flags: SYN, Window: 1000,
		Opts: Options{HasMSS: true, MSS: 1460}}
	p := s.AppendTo(nil)
	tcp := p[20:]
	old := binary.BigEndian.Uint16(tcp[0:2])
	binary.BigEndian.PutUint16(tcp[0:2], 40000)
	binary.BigEndian.PutUint16(tcp[16:18], UpdateChecksum(binary.BigEndian.Uint16(tcp[16:18]), old, 40000))
	var got Segment
	if err := got.Parse(p); err != nil {
		t.Fatal(err)
	}
	if got.SrcPort != 40000 {
		t.Errorf("SrcPort %d", got.SrcPort)
	}
}

func TestPseudoHeaderSum(t *testing.T) {
	src := netip.MustParseAddr("198.18.0.1")
	dst := netip.MustParseAddr("198.18.0.2")
	// c612 + 0001 + c612 + 0002 + 0006 + 0028
	want := uint32(0xc612 + 0x0001 + 0xc612 + 0x0002 + 6 + 40)
	if got := PseudoHeaderSum(src, dst, ProtoTCP, 40); got != want {
		t.Errorf("got %#x, want %#x", got, want)
	}
	// IPv4-mapped IPv6 is the same address; anything else counts as zero.
	mapped := netip.AddrFrom16(src.As16())
	if got := PseudoHeaderSum(mapped, dst, ProtoTCP, 40); got != want {
		t.Errorf("mapped: got %#x, want %#x", got, want)
	}
	if got := PseudoHeaderSum(netip.Addr{}, netip.IPv6Loopback(), ProtoTCP, 40); got != 46 {
		t.Errorf("non-IPv4: got %#x, want 46", got)
	}
}
