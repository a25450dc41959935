package seg

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

var namedErrors = []error{ErrTooShort, ErrVersion, ErrHeaderLen, ErrTotalLen, ErrIPChecksum, ErrNotTCP,
	ErrFragment, ErrDataOffset, ErrOptionLen, ErrTCPChecksum, ErrICMPChecksum}

func isNamed(err error) bool {
	for _, e := range namedErrors {
		if err == e {
			return true
		}
	}
	return false
}

// basePacket is a valid TCP/IPv4 packet with options and data.
func basePacket() []byte {
	s := Segment{Src: addrA, Dst: addrB, SrcPort: 40000, DstPort: 80, Seq: 1000, Ack: 2000, Flags: PSH | ACK,
		Window: 500, Opts: Options{HasTS: true, TSVal: 1, TSEcr: 2}, Payload: []byte("hello, world"), ID: 9}
	return s.AppendTo(nil)
}

// fixChecksums recomputes both checksums of a (possibly doctored) packet
// from its IHL, total length and TCP bytes, so a test can reach the check
// after them. It tolerates nonsense and leaves what it cannot fix.
func fixChecksums(p []byte) []byte {
	if len(p) < 20 {
		return p
	}
	hl := int(p[0]&0x0f) * 4
	if hl < 20 || hl > len(p) {
		return p
	}
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:], ^Checksum(p[:hl], 0))
	tl := int(binary.BigEndian.Uint16(p[2:4]))
	if tl > len(p) || tl < hl+18 {
		return p
	}
	tcp := p[hl:tl]
	tcp[16], tcp[17] = 0, 0
	binary.BigEndian.PutUint16(tcp[16:], ^Checksum(tcp, pseudoSum4([4]byte(p[12:16]), [4]byte(p[16:20]), ProtoTCP, len(tcp))))
	return p
}

func TestMalformed(t *testing.T) {
	const tcpOff = 20
	tests := []struct {
		name string
		mod  func(p []byte) []byte
		want error
	}{
		{"valid", func(p []byte) []byte { return p }, nil},
		{"empty", func(p []byte) []byte { return nil }, ErrTooShort},
		{"19 bytes", func(p []byte) []byte { return p[:19] }, ErrTooShort},
		{"version 6", func(p []byte) []byte { p[0] = 0x65; return fixChecksums(p) }, ErrVersion},
		{"version 0", func(p []byte) []byte { p[0] = 0x05; return p }, ErrVersion},
		{"IHL 4", func(p []byte) []byte { p[0] = 0x44; return p }, ErrHeaderLen},
		{"IHL 0", func(p []byte) []byte { p[0] = 0x40; return p }, ErrHeaderLen},
		{"IHL past packet", func(p []byte) []byte { p[0] = 0x4f; return p[:59] }, ErrHeaderLen},
		{"total length > buffer", func(p []byte) []byte {
			binary.BigEndian.PutUint16(p[2:], uint16(len(p)+1))
			return fixChecksums(p)
		}, ErrTotalLen},
		{"total length < IHL", func(p []byte) []byte { binary.BigEndian.PutUint16(p[2:], 19); return fixChecksums(p) }, ErrTotalLen},
		{"total length 0", func(p []byte) []byte { binary.BigEndian.PutUint16(p[2:], 0); return fixChecksums(p) }, ErrTotalLen},
		{"total length cuts TCP header", func(p []byte) []byte {
			binary.BigEndian.PutUint16(p[2:], 30)
			return fixChecksums(p)
		}, ErrTooShort},
		{"total length cuts options", func(p []byte) []byte {
			binary.BigEndian.PutUint16(p[2:], 44)
			return fixChecksums(p)
		}, ErrDataOffset},
		{"link padding after total length", func(p []byte) []byte { return append(p, 0, 0, 0, 0, 0, 0) }, nil},
		{"bad IP checksum", func(p []byte) []byte { p[10] ^= 0x80; return p }, ErrIPChecksum},
		{"IP header bit flip", func(p []byte) []byte { p[8] ^= 1; return p }, ErrIPChecksum},
		{"UDP", func(p []byte) []byte { p[9] = ProtoUDP; return fixChecksums(p) }, ErrNotTCP},
		{"ICMP", func(p []byte) []byte { p[9] = ProtoICMP; return fixChecksums(p) }, ErrNotTCP},
		{"MF set", func(p []byte) []byte { p[6] |= 0x20; return fixChecksums(p) }, ErrFragment},
		{"fragment offset", func(p []byte) []byte { p[6], p[7] = 0, 1; return fixChecksums(p) }, ErrFragment},
		{"data offset 4", func(p []byte) []byte { p[tcpOff+12] = 4 << 4; return fixChecksums(p) }, ErrDataOffset},
		{"data offset 0", func(p []byte) []byte { p[tcpOff+12] = 0; return fixChecksums(p) }, ErrDataOffset},
		{"data offset past packet", func(p []byte) []byte { p[tcpOff+12] = 15 << 4; return fixChecksums(p) }, ErrDataOffset},
		{"bad TCP checksum", func(p []byte) []byte { p[tcpOff+16] ^= 1; return p }, ErrTCPChecksum},
		{"payload bit flip", func(p []byte) []byte { p[len(p)-1] ^= 0x40; return p }, ErrTCPChecksum},
		{"address changed", func(p []byte) []byte {
			p[19]++
			p[10], p[11] = 0, 0
			binary.BigEndian.PutUint16(p[10:], ^Checksum(p[:20], 0))
			return p
		}, ErrTCPChecksum},
		// Options area is p[40:52]: 01 01 08 0a + TS.
		{"option length 0", func(p []byte) []byte { p[40], p[41] = 0x1e, 0; return fixChecksums(p) }, ErrOptionLen},
		{"option length 1", func(p []byte) []byte { p[40], p[41] = 0x1e, 1; return fixChecksums(p) }, ErrOptionLen},
		{"option overlong", func(p []byte) []byte { p[42], p[43] = 0x1e, 11; return fixChecksums(p) }, ErrOptionLen},
		{"TS length 9", func(p []byte) []byte { p[43] = 9; return fixChecksums(p) }, ErrOptionLen},
		{"option kind without length", func(p []byte) []byte {
			p[40] = OptNOP
			copy(p[41:52], []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0x1e})
			return fixChecksums(p)
		}, ErrOptionLen},
		{"IP options skipped", func(p []byte) []byte {
			q := make([]byte, 0, len(p)+4)
			q = append(q, p[:20]...)
			q = append(q, 1, 1, 1, 0) // NOP NOP NOP EOL
			q = append(q, p[20:]...)
			q[0] = 0x46
			binary.BigEndian.PutUint16(q[2:], uint16(len(q)))
			return fixChecksums(q)
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.mod(basePacket())
			var s Segment
			err := s.Parse(p)
			if err != tc.want {
				t.Fatalf("Parse = %v, want %v", err, tc.want)
			}
			if err == nil && (string(s.Payload) != "hello, world" || !s.Opts.HasTS || s.Seq != 1000) {
				t.Errorf("parsed %v", &s)
			}
		})
	}
}

// TestTruncatedEveryLength cuts valid packets at every length, both
// plainly (total length then exceeds the buffer) and with the IPv4 header
// rewritten to claim the shorter length (so the TCP parser sees the cut).
func TestTruncatedEveryLength(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	pkts := [][]byte{basePacket()}
	for _, g := range loadGolden(t) {
		pkts = append(pkts, g.data)
	}
	for range 20 {
		s := randSeg(r, 100)
		pkts = append(pkts, s.AppendTo(nil))
	}
	for _, full := range pkts {
		for n := range len(full) {
			cut := append([]byte(nil), full[:n]...)
			var s Segment
			if err := s.Parse(cut); err == nil || !isNamed(err) {
				t.Fatalf("cut at %d/%d: Parse = %v", n, len(full), err)
			}
			if n < 20 {
				continue
			}
			binary.BigEndian.PutUint16(cut[2:], uint16(n))
			fixIPChecksumOnly(cut)
			err := s.Parse(cut)
			if err == nil || !isNamed(err) {
				t.Fatalf("length rewritten to %d/%d: Parse = %v", n, len(full), err)
			}
			if n == 20 && full[9] == ProtoTCP && err != ErrTooShort {
				t.Errorf("empty TCP: %v, want ErrTooShort", err)
			}
		}
	}
}

func fixIPChecksumOnly(p []byte) {
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:], ^Checksum(p[:20], 0))
}

func TestViewValidate(t *testing.T) {
	if err := TCP(make([]byte, 19)).Validate(); err != ErrTooShort {
		t.Errorf("short TCP: %v", err)
	}
	h := make([]byte, 24)
	h[12] = 6 << 4
	h[20], h[21] = 0x1e, 0
	if err := TCP(h).Validate(); err != ErrOptionLen {
		t.Errorf("TCP bad option: %v", err)
	}
	h[12] = 7 << 4
	if err := TCP(h).Validate(); err != ErrDataOffset {
		t.Errorf("TCP offset past end: %v", err)
	}
	h[12] = 6 << 4
	h[20], h[21] = OptNOP, OptEOL
	if err := TCP(h).Validate(); err != nil {
		t.Errorf("TCP valid: %v", err)
	}
	if err := ICMPv4(make([]byte, 7)).Validate(); err != ErrTooShort {
		t.Errorf("short ICMP: %v", err)
	}
	if err := ICMPv4([]byte{8, 0, 0, 0, 0, 0, 0, 0}).Validate(); err != ErrICMPChecksum {
		t.Errorf("ICMP bad checksum: %v", err)
	}
	if err := ICMPv4([]byte{8, 0, 0xf7, 0xff, 0, 0, 0, 0}).Validate(); err != nil {
		t.Errorf("ICMP good checksum: %v", err)
	}
}
