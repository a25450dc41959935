package seg

import "encoding/binary"

// ICMP message types used by the stack (RFC 792).
const (
	ICMPEchoReply       = 0
	ICMPDestUnreachable = 3
	ICMPEchoRequest     = 8
	ICMPTimeExceeded    = 11
)

// ICMPv4HeaderLen is the length of the ICMP header (type, code, checksum
// and the 4-byte rest-of-header, which for echo is identifier and
// sequence number).
const ICMPv4HeaderLen = 8

// ICMPv4 is a byte view of an ICMP message (the IPv4 payload). Call
// Validate once; afterwards every accessor is safe.
type ICMPv4 []byte

// Validate checks the length (>= 8, ErrTooShort) and the checksum, which
// covers the whole message (RFC 792, ErrICMPChecksum).
func (m ICMPv4) Validate() error {
	if len(m) < ICMPv4HeaderLen {
		return ErrTooShort
	}
	if Checksum(m, 0) != 0xffff {
		return ErrICMPChecksum
	}
	return nil
}

// Type returns the message type.
func (m ICMPv4) Type() uint8 { return m[0] }

// Code returns the message code.
func (m ICMPv4) Code() uint8 { return m[1] }

// Checksum returns the checksum field as stored.
func (m ICMPv4) Checksum() uint16 { return binary.BigEndian.Uint16(m[2:4]) }

// ID returns the echo identifier.
func (m ICMPv4) ID() uint16 { return binary.BigEndian.Uint16(m[4:6]) }

// SeqNum returns the echo sequence number.
func (m ICMPv4) SeqNum() uint16 { return binary.BigEndian.Uint16(m[6:8]) }

// Payload returns the data after the 8-byte header. It aliases m.
func (m ICMPv4) Payload() []byte { return m[ICMPv4HeaderLen:] }

// AppendEchoReply appends a whole IPv4 packet answering the echo request
// req: addresses swapped, TTL DefaultTTL, and an ICMP echo reply carrying the
// request's identifier, sequence number and data unchanged (RFC 792,
// "Echo or Echo Reply Message"). The ICMP checksum is recomputed rather
// than patched so a reply is correct even if the caller skipped
// ICMPv4.Validate.
//
// Unlike TCP segments the reply does not set DF, as Linux does not: the
// stack never fragments, and a router on a narrower path back may then
// fragment a large reply instead of dropping it. A datagram without DF
// needs an ID that is unique for its address pair (RFC 6864 §4.1); the
// request's own ID is reused, which the peer already chose unique.
//
// req must have passed IPv4.Validate and carry ICMP; the caller decides
// whether it is an echo request. If its payload is shorter than an ICMP
// header, b is returned unchanged.
func AppendEchoReply(b []byte, req IPv4) []byte {
	m := ICMPv4(req.Payload())
	if len(m) < ICMPv4HeaderLen {
		return b
	}
	b = appendIPv4Header(b, req.Dst(), req.Src(), ProtoICMP, DefaultTTL, req.ID(), len(m), false)
	start := len(b)
	b = append(b, ICMPEchoReply, 0, 0, 0)
	b = append(b, m[4:]...)
	binary.BigEndian.PutUint16(b[start+2:], ^Checksum(b[start:], 0))
	return b
}
