package seg

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// ParseTCPTrusted must yield exactly what ParseTCP yields on any valid
// segment, and accept a corrupted checksum that ParseTCP rejects.
func TestParseTCPTrustedMatchesParseTCP(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	for i := range 2000 {
		in := randSeg(r, 200)
		pkt := in.AppendTo(nil)
		tcp := IPv4(pkt).Payload()
		var want, got Segment
		if err := want.ParseTCP(in.Src, in.Dst, tcp); err != nil {
			t.Fatalf("%d: ParseTCP: %v", i, err)
		}
		if err := got.ParseTCPTrusted(in.Src, in.Dst, tcp); err != nil {
			t.Fatalf("%d: ParseTCPTrusted: %v", i, err)
		}
		if d := diffSeg(&got, &want); d != "" {
			t.Fatalf("%d: trusted parse differs:\n%s", i, d)
		}
		// A partial checksum (what the kernel leaves with NEEDS_CSUM)
		// fails the ordinary parse and passes the trusted one.
		tcp[16] ^= 0x5a
		if err := want.ParseTCP(in.Src, in.Dst, tcp); !errors.Is(err, ErrTCPChecksum) {
			t.Fatalf("%d: ParseTCP on a bad checksum: %v, want ErrTCPChecksum", i, err)
		}
		if err := got.ParseTCPTrusted(in.Src, in.Dst, tcp); err != nil {
			t.Fatalf("%d: ParseTCPTrusted on a bad checksum: %v", i, err)
		}
	}
}

// Everything but the checksum is still checked.
func TestParseTCPTrustedRejectsMalformed(t *testing.T) {
	sg := Segment{Src: addrA, Dst: addrB, SrcPort: 1, DstPort: 2, Flags: ACK}
	good := IPv4(sg.AppendTo(nil)).Payload()
	var s Segment
	cases := []struct {
		name     string
		src, dst netip.Addr
		tcp      []byte
		want     error
	}{
		{"short", addrA, addrB, good[:19], ErrTooShort},
		{"offset below 5", addrA, addrB, withByte(good, 12, 4<<4), ErrDataOffset},
		{"offset past end", addrA, addrB, withByte(good, 12, 6<<4), ErrDataOffset},
		{"ipv6 source", netip.MustParseAddr("::1"), addrB, good, ErrVersion},
		{"too long", addrA, addrB, make([]byte, 0x10000), ErrTotalLen},
		{"bad option", addrA, addrB, append(withByte(good, 12, 6<<4), OptMSS, 3, 0, 0), ErrOptionLen},
	}
	for _, c := range cases {
		if err := s.ParseTCPTrusted(c.src, c.dst, c.tcp); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func withByte(b []byte, i int, v byte) []byte {
	c := append([]byte(nil), b...)
	c[i] = v
	return c
}
