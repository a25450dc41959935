package seg

import "encoding/binary"

// TCPMinHeaderLen is the length of a TCP header without options.
const TCPMinHeaderLen = 20

// MaxOptionsLen is the largest TCP options area: data offset 15 words
// minus the 5-word fixed header.
const MaxOptionsLen = 40

// TCP option kinds (IANA "TCP Option Kind Numbers").
const (
	OptEOL       = 0 // RFC 9293 §3.2
	OptNOP       = 1 // RFC 9293 §3.2
	OptMSS       = 2 // RFC 9293 §3.2, length 4
	OptWScale    = 3 // RFC 7323 §2.2, length 3
	OptSACKPerm  = 4 // RFC 2018 §2, length 2
	OptSACK      = 5 // RFC 2018 §3, length 2+8n
	OptTimestamp = 8 // RFC 7323 §3.2, length 10
)

// TCP is a byte view of a TCP header plus payload (RFC 9293 §3.1). Call
// Validate once; after it returns nil every accessor is safe. Accessors on
// an unvalidated view may panic. The checksum needs the IP addresses, so
// it is checked by Segment.ParseTCP or VerifyChecksum, not by Validate.
type TCP []byte

// Validate checks that the buffer holds the fixed header (ErrTooShort),
// that the data offset is >= 5 and within the buffer (ErrDataOffset), and
// that the options are well formed (ErrOptionLen, see parseOptions).
func (t TCP) Validate() error {
	if len(t) < TCPMinHeaderLen {
		return ErrTooShort
	}
	off := int(t[12]>>4) * 4
	if off < TCPMinHeaderLen || off > len(t) {
		return ErrDataOffset
	}
	var o Options
	return parseOptions(t[TCPMinHeaderLen:off], &o)
}

// SrcPort returns the source port.
func (t TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(t[0:2]) }

// DstPort returns the destination port.
func (t TCP) DstPort() uint16 { return binary.BigEndian.Uint16(t[2:4]) }

// Seq returns the sequence number.
func (t TCP) Seq() Seq { return Seq(binary.BigEndian.Uint32(t[4:8])) }

// Ack returns the acknowledgment number (meaningful only with ACK set).
func (t TCP) Ack() Seq { return Seq(binary.BigEndian.Uint32(t[8:12])) }

// DataOffset returns the header length in bytes (the data offset field
// times 4), i.e. where the payload begins.
func (t TCP) DataOffset() int { return int(t[12]>>4) * 4 }

// Flags returns the eight control bits of byte 13. The AE bit (RFC 9768)
// in byte 12 is not included.
func (t TCP) Flags() Flags { return Flags(t[13]) }

// Window returns the raw, unscaled window field.
func (t TCP) Window() uint16 { return binary.BigEndian.Uint16(t[14:16]) }

// Checksum returns the checksum field as stored.
func (t TCP) Checksum() uint16 { return binary.BigEndian.Uint16(t[16:18]) }

// Urgent returns the urgent pointer field.
func (t TCP) Urgent() uint16 { return binary.BigEndian.Uint16(t[18:20]) }

// Options returns the raw options area (between the fixed header and the
// data offset). It aliases t.
func (t TCP) Options() []byte { return t[TCPMinHeaderLen:t.DataOffset()] }

// Payload returns the data after the header. It aliases t.
func (t TCP) Payload() []byte { return t[t.DataOffset():] }

// VerifyChecksum reports whether the TCP checksum verifies for a segment
// carried from src to dst (RFC 9293 §3.1: the sum covers the pseudo-header,
// the header and the data).
func (t TCP) VerifyChecksum(src, dst [4]byte) bool {
	return Checksum(t, pseudoSum4(src, dst, ProtoTCP, len(t))) == 0xffff
}

// pseudoSum4 is PseudoHeaderSum for raw 4-byte addresses.
func pseudoSum4(s, d [4]byte, proto uint8, length int) uint32 {
	sum := uint32(s[0])<<8 | uint32(s[1])
	sum += uint32(s[2])<<8 | uint32(s[3])
	sum += uint32(d[0])<<8 | uint32(d[1])
	sum += uint32(d[2])<<8 | uint32(d[3])
	return sum + uint32(proto) + uint32(uint16(length))
}

// parseOptions decodes a TCP options area into o, which the caller has
// zeroed. The rules (RFC 9293 §3.2 and the option RFCs):
//   - EOL ends the list; NOP is a single byte.
//   - Every other kind has a length byte counting kind and length. A
//     length below 2 (which would not advance) or one running past the
//     area is ErrOptionLen; so is a missing length byte.
//   - A known kind with the wrong length for its kind is ErrOptionLen:
//     MSS 4, WS 3, SACK-permitted 2, SACK 2+8n with n in 1..4, TS 10.
//   - Unknown kinds are skipped by their length.
//   - A repeated option overwrites the earlier one.
//
// Each step advances by at least one byte and every read is bounds-checked
// against the area, so no input loops or reads out of range.
func parseOptions(b []byte, o *Options) error {
	for i := 0; i < len(b); {
		kind := b[i]
		switch kind {
		case OptEOL:
			return nil
		case OptNOP:
			i++
			continue
		}
		if i+1 >= len(b) {
			return ErrOptionLen
		}
		l := int(b[i+1])
		if l < 2 || i+l > len(b) {
			return ErrOptionLen
		}
		v := b[i+2 : i+l]
		switch kind {
		case OptMSS:
			if l != 4 {
				return ErrOptionLen
			}
			o.MSS = binary.BigEndian.Uint16(v)
			o.HasMSS = true
		case OptWScale:
			if l != 3 {
				return ErrOptionLen
			}
			o.WScale = v[0]
			o.HasWScale = true
		case OptSACKPerm:
			if l != 2 {
				return ErrOptionLen
			}
			o.SACKPermitted = true
		case OptSACK:
			n := (l - 2) / 8
			if (l-2)%8 != 0 || n < 1 || n > len(o.SACK) {
				return ErrOptionLen
			}
			o.NumSACK = n
			o.SACK = [4]SACKBlock{}
			for j := range n {
				o.SACK[j] = SACKBlock{
					Start: Seq(binary.BigEndian.Uint32(v[8*j:])),
					End:   Seq(binary.BigEndian.Uint32(v[8*j+4:])),
				}
			}
		case OptTimestamp:
			if l != 10 {
				return ErrOptionLen
			}
			o.TSVal = binary.BigEndian.Uint32(v[0:4])
			o.TSEcr = binary.BigEndian.Uint32(v[4:8])
			o.HasTS = true
		}
		i += l
	}
	return nil
}
