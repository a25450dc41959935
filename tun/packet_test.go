package tun

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// Minimal IPv4/UDP building and parsing for the tests. The tun package
// itself never looks inside packets; these helpers stand in for seg, which
// tun must not import.

// checksum is the Internet checksum (RFC 1071): the ones' complement of the
// ones' complement sum of 16-bit words, an odd byte padded with zero.
func checksum(initial uint32, b []byte) uint16 {
	sum := initial
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// buildUDP4 returns an IPv4 packet (RFC 791, 20-byte header, DF set, TTL 64)
// carrying a UDP datagram (RFC 768) with both checksums filled in.
func buildUDP4(src, dst netip.AddrPort, payload []byte) []byte {
	const ihl, udpHdr = 20, 8
	total := ihl + udpHdr + len(payload)
	p := make([]byte, total)
	p[0] = 4<<4 | ihl/4
	binary.BigEndian.PutUint16(p[2:], uint16(total))
	binary.BigEndian.PutUint16(p[4:], 0x1234) // identification
	binary.BigEndian.PutUint16(p[6:], 0x4000) // DF, offset 0
	p[8] = 64                                 // TTL
	p[9] = 17                                 // UDP
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	binary.BigEndian.PutUint16(p[10:], checksum(0, p[:ihl]))

	u := p[ihl:]
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(udpHdr+len(payload)))
	copy(u[udpHdr:], payload)
	// RFC 768: the checksum covers a pseudo-header of source, destination,
	// zero, protocol and UDP length, then the datagram; 0 is sent as 0xffff.
	pseudo := uint32(binary.BigEndian.Uint16(s[0:])) + uint32(binary.BigEndian.Uint16(s[2:])) +
		uint32(binary.BigEndian.Uint16(d[0:])) + uint32(binary.BigEndian.Uint16(d[2:])) +
		17 + uint32(len(u))
	c := checksum(pseudo, u)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return p
}

// udp4 is what parseUDP4 reads from a packet.
type udp4 struct {
	src, dst netip.AddrPort
	payload  []byte
}

// parseUDP4 reads an IPv4/UDP packet; ok is false for anything else
// (IPv6 router solicitations, for instance) or a malformed packet.
func parseUDP4(p []byte) (u udp4, ok bool) {
	if len(p) < 20 || p[0]>>4 != 4 {
		return u, false
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:]))
	if ihl < 20 || total > len(p) || total < ihl+8 || p[9] != 17 {
		return u, false
	}
	if checksum(0, p[:ihl]) != 0 {
		return u, false
	}
	src := netip.AddrFrom4([4]byte(p[12:16]))
	dst := netip.AddrFrom4([4]byte(p[16:20]))
	d := p[ihl:total]
	ulen := int(binary.BigEndian.Uint16(d[4:]))
	if ulen < 8 || ulen > len(d) {
		return u, false
	}
	u.src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(d[0:]))
	u.dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(d[2:]))
	u.payload = d[8:ulen]
	return u, true
}

func TestBuildParseUDP4(t *testing.T) {
	src := netip.MustParseAddrPort("198.18.0.2:4242")
	dst := netip.MustParseAddrPort("198.18.0.1:9999")
	p := buildUDP4(src, dst, []byte("hello"))
	u, ok := parseUDP4(p)
	if !ok || u.src != src || u.dst != dst || string(u.payload) != "hello" {
		t.Fatalf("round trip: ok=%v %+v", ok, u)
	}
	// A known header: RFC 1071 §3 example words sum to 0xddf2, checksum 0x220d.
	if got := checksum(0, []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != 0x220d {
		t.Fatalf("checksum of RFC 1071 example = %#04x, want 0x220d", got)
	}
}
