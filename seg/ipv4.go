package seg

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers (IANA "Assigned Internet Protocol Numbers").
const (
	ProtoICMP = 1
	ProtoTCP  = 6
	ProtoUDP  = 17
)

// IPv4MinHeaderLen is the length of an IPv4 header without options.
const IPv4MinHeaderLen = 20

// DefaultTTL is the TTL written when a caller passes 0 (Linux's default
// net.ipv4.ip_default_ttl).
const DefaultTTL = 64

// IPv4 is a byte view of an IPv4 packet (RFC 791 §3.1). Call Validate
// once; after it returns nil every accessor is safe and Payload is within
// bounds. Accessors on an unvalidated view may panic.
type IPv4 []byte

// Validate checks, in this order: at least 20 bytes (ErrTooShort), version
// 4 (ErrVersion), IHL >= 5 and the header within the buffer (ErrHeaderLen),
// total length >= the header and <= the buffer (ErrTotalLen; bytes past the
// total length are link padding and are ignored), and the header checksum
// (ErrIPChecksum). IP options are not interpreted; IHL skips them.
func (h IPv4) Validate() error {
	if len(h) < IPv4MinHeaderLen {
		return ErrTooShort
	}
	if h[0]>>4 != 4 {
		return ErrVersion
	}
	hl := int(h[0]&0x0f) * 4
	if hl < IPv4MinHeaderLen || hl > len(h) {
		return ErrHeaderLen
	}
	tl := int(binary.BigEndian.Uint16(h[2:4]))
	if tl < hl || tl > len(h) {
		return ErrTotalLen
	}
	// RFC 791 §3.1 / RFC 1071: the sum over the header including the
	// checksum field is all ones.
	if Checksum(h[:hl], 0) != 0xffff {
		return ErrIPChecksum
	}
	return nil
}

// HeaderLen returns IHL*4, the header length in bytes including options.
func (h IPv4) HeaderLen() int { return int(h[0]&0x0f) * 4 }

// TotalLen returns the total-length field: header plus payload in bytes.
func (h IPv4) TotalLen() int { return int(binary.BigEndian.Uint16(h[2:4])) }

// ID returns the identification field.
func (h IPv4) ID() uint16 { return binary.BigEndian.Uint16(h[4:6]) }

// DontFragment reports the DF flag.
func (h IPv4) DontFragment() bool { return h[6]&0x40 != 0 }

// MoreFragments reports the MF flag.
func (h IPv4) MoreFragments() bool { return h[6]&0x20 != 0 }

// FragmentOffset returns the fragment offset in bytes (the field counts
// 8-byte units).
func (h IPv4) FragmentOffset() int { return int(binary.BigEndian.Uint16(h[6:8])&0x1fff) * 8 }

// IsFragment reports whether the packet is one piece of a fragmented
// datagram: MF set or a non-zero offset (RFC 791 §3.2).
func (h IPv4) IsFragment() bool { return binary.BigEndian.Uint16(h[6:8])&0x3fff != 0 }

// TTL returns the time-to-live field.
func (h IPv4) TTL() uint8 { return h[8] }

// Protocol returns the protocol field (ProtoTCP, ProtoICMP, ...).
func (h IPv4) Protocol() uint8 { return h[9] }

// Checksum returns the header checksum field as stored.
func (h IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(h[10:12]) }

// Src returns the source address.
func (h IPv4) Src() netip.Addr { return netip.AddrFrom4([4]byte(h[12:16])) }

// Dst returns the destination address.
func (h IPv4) Dst() netip.Addr { return netip.AddrFrom4([4]byte(h[16:20])) }

// Payload returns the bytes from the end of the header to the total
// length; trailing link-layer padding is dropped. It aliases h.
func (h IPv4) Payload() []byte { return h[h.HeaderLen():h.TotalLen()] }

// AppendIPv4Header appends a 20-byte IPv4 header (no options) for a packet
// carrying payloadLen bytes of protocol proto, with the checksum filled in.
// DF is set: the stack does path-MTU discovery (RFC 1191) and never relies
// on fragmentation. A ttl of 0 means DefaultTTL. Addresses that are not
// IPv4 are written as 0.0.0.0. payloadLen+20 must not exceed 65535; larger
// values are truncated to 16 bits, as the field is.
func AppendIPv4Header(b []byte, src, dst netip.Addr, proto uint8, ttl uint8, id uint16, payloadLen int) []byte {
	return appendIPv4Header(b, src, dst, proto, ttl, id, payloadLen, true)
}

func appendIPv4Header(b []byte, src, dst netip.Addr, proto uint8, ttl uint8, id uint16, payloadLen int, df bool) []byte {
	var frag byte
	if df {
		frag = 0x40
	}
	if ttl == 0 {
		ttl = DefaultTTL
	}
	s, d := as4(src), as4(dst)
	tl := uint16(IPv4MinHeaderLen + payloadLen)
	start := len(b)
	b = append(b,
		0x45, 0, // version 4, IHL 5; DSCP/ECN 0
		byte(tl>>8), byte(tl),
		byte(id>>8), byte(id),
		frag, 0, // DF or nothing, offset 0
		ttl, proto,
		0, 0, // checksum, below
		s[0], s[1], s[2], s[3],
		d[0], d[1], d[2], d[3],
	)
	csum := ^Checksum(b[start:], 0)
	binary.BigEndian.PutUint16(b[start+10:], csum)
	return b
}
