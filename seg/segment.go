package seg

import (
	"encoding/binary"
	"net/netip"
)

// Segment is a parsed TCP/IPv4 segment, or one to be built. Payload
// aliases the packet buffer it was parsed from: copy it before reusing
// that buffer.
type Segment struct {
	Src, Dst         netip.Addr // IPv4
	SrcPort, DstPort uint16
	Seq, Ack         Seq
	Flags            Flags
	Window           uint16 // raw, unscaled (RFC 7323 §2.2)
	Urgent           uint16
	Opts             Options
	Payload          []byte
	TTL              uint8  // on Parse: the received TTL; on AppendTo: 0 means DefaultTTL
	ID               uint16 // IPv4 identification (AppendTo writes it)
}

// Len returns the sequence space the segment occupies (RFC 9293 §3.4,
// SEG.LEN): the payload length plus one for SYN and one for FIN.
func (s *Segment) Len() uint32 {
	n := uint32(len(s.Payload))
	if s.Flags&SYN != 0 {
		n++
	}
	if s.Flags&FIN != 0 {
		n++
	}
	return n
}

// Parse parses a whole IPv4 packet carrying TCP: IPv4 validation (see
// IPv4.Validate), protocol TCP (ErrNotTCP), not a fragment (ErrFragment),
// then ParseTCP on the IPv4 payload. On success every field of s is
// overwritten, TTL and ID included. It never panics and never allocates;
// on error s holds no meaningful value.
func (s *Segment) Parse(pkt []byte) error {
	ip := IPv4(pkt)
	if err := ip.Validate(); err != nil {
		return err
	}
	if ip.Protocol() != ProtoTCP {
		return ErrNotTCP
	}
	if ip.IsFragment() {
		return ErrFragment
	}
	if err := s.parseTCP([4]byte(ip[12:16]), [4]byte(ip[16:20]), ip.Payload()); err != nil {
		return err
	}
	s.TTL = ip.TTL()
	s.ID = ip.ID()
	return nil
}

// ParseTCP parses a TCP header and payload carried between the given IPv4
// addresses (for example after fragment reassembly) and verifies the TCP
// checksum. TTL and ID are set to zero. Addresses that are not IPv4 (or
// IPv4-mapped) give ErrVersion; a tcp slice longer than an IPv4 datagram
// can carry gives ErrTotalLen.
func (s *Segment) ParseTCP(src, dst netip.Addr, tcp []byte) error {
	src, dst = src.Unmap(), dst.Unmap()
	if !src.Is4() || !dst.Is4() {
		return ErrVersion
	}
	if len(tcp) > 0xffff-IPv4MinHeaderLen {
		return ErrTotalLen
	}
	return s.parseTCP(src.As4(), dst.As4(), tcp)
}

func (s *Segment) parseTCP(src, dst [4]byte, b []byte) error {
	t := TCP(b)
	if len(t) < TCPMinHeaderLen {
		return ErrTooShort
	}
	off := t.DataOffset()
	if off < TCPMinHeaderLen || off > len(t) {
		return ErrDataOffset
	}
	if !t.VerifyChecksum(src, dst) {
		return ErrTCPChecksum
	}
	*s = Segment{
		Src:     netip.AddrFrom4(src),
		Dst:     netip.AddrFrom4(dst),
		SrcPort: t.SrcPort(),
		DstPort: t.DstPort(),
		Seq:     t.Seq(),
		Ack:     t.Ack(),
		Flags:   t.Flags(),
		Window:  t.Window(),
		Urgent:  t.Urgent(),
		Payload: t[off:],
	}
	return parseOptions(t[TCPMinHeaderLen:off], &s.Opts)
}

// HeaderLen returns the IPv4 plus TCP header bytes (options included) that
// AppendTo writes before the payload.
func (s *Segment) HeaderLen() int {
	return IPv4MinHeaderLen + TCPMinHeaderLen + s.Opts.Len()
}

// AppendTo appends the segment as a complete IPv4 packet: a 20-byte IPv4
// header (DF set, TTL 0 meaning DefaultTTL, ID as given, checksum filled),
// the TCP header with options laid out as Linux does (see Options), the
// payload, and the TCP checksum. It does not allocate when cap(b) has room
// for HeaderLen()+len(Payload) more bytes. Src and Dst should be IPv4
// (anything else is written as 0.0.0.0, never a panic) and the packet must
// fit in 65535 bytes, which the stack's MSS guarantees.
func (s *Segment) AppendTo(b []byte) []byte { return s.appendTo(b, false, true) }

// AppendPartial is AppendTo for a link that completes transport checksums
// itself (a NIC's checksum offload; Linux's CHECKSUM_PARTIAL, virtio's
// NEEDS_CSUM): the TCP checksum field holds only the folded pseudo-header
// sum, which the link adds the header and payload to. It saves a pass over
// the payload; the packet is not valid on the wire until completed.
func (s *Segment) AppendPartial(b []byte) []byte { return s.appendTo(b, true, true) }

// AppendHeaders is AppendTo (or, with partial, AppendPartial) without the
// payload: it appends the IPv4 and TCP headers only, but with lengths and
// checksum covering s.Payload, for a caller that sends the payload from
// where it lies right after them (writev) instead of copying it.
func (s *Segment) AppendHeaders(b []byte, partial bool) []byte { return s.appendTo(b, partial, false) }

func (s *Segment) appendTo(b []byte, partial, withPayload bool) []byte {
	optLen := s.Opts.Len()
	tcpLen := TCPMinHeaderLen + optLen + len(s.Payload)
	b = AppendIPv4Header(b, s.Src, s.Dst, ProtoTCP, s.TTL, s.ID, tcpLen)
	start := len(b)
	dataOff := byte((TCPMinHeaderLen + optLen) / 4)
	b = append(b,
		byte(s.SrcPort>>8), byte(s.SrcPort),
		byte(s.DstPort>>8), byte(s.DstPort),
	)
	b = binary.BigEndian.AppendUint32(b, uint32(s.Seq))
	b = binary.BigEndian.AppendUint32(b, uint32(s.Ack))
	b = append(b,
		dataOff<<4, byte(s.Flags),
		byte(s.Window>>8), byte(s.Window),
		0, 0, // checksum, below
		byte(s.Urgent>>8), byte(s.Urgent),
	)
	b = s.Opts.appendOptions(b)
	sum := PseudoHeaderSum(s.Src, s.Dst, ProtoTCP, tcpLen)
	if !withPayload {
		// The TCP header is a multiple of four bytes long, so the
		// payload's sum continues the header's without realignment.
		if partial {
			binary.BigEndian.PutUint16(b[start+16:], fold32(sum))
		} else {
			hs := Checksum(b[start:], sum)
			binary.BigEndian.PutUint16(b[start+16:], ^Checksum(s.Payload, uint32(hs)))
		}
		return b
	}
	b = append(b, s.Payload...)
	if partial {
		binary.BigEndian.PutUint16(b[start+16:], fold32(sum))
	} else {
		binary.BigEndian.PutUint16(b[start+16:], ^Checksum(b[start:], sum))
	}
	return b
}
