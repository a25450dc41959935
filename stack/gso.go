package stack

// GSOLink is implemented by a Link that takes TCP/IPv4 packets longer than
// its MTU and cuts them itself, as a NIC with TCP segmentation offload
// does (a TUN with IFF_VNET_HDR writes them as one GSO super-packet and
// the kernel cuts them, or delivers them whole locally). The contract:
//
//   - GSOMaxSize is the largest packet the link accepts (at most 65535,
//     the IPv4 limit); 0 means no segmentation.
//   - A packet longer than MTU() is an unfragmented TCP/IPv4 segment with
//     flags ACK (PSH allowed) and no SYN, FIN, RST or URG; the link cuts its
//     payload into pieces of exactly MTU() minus its IP+TCP header length
//     (the last may be shorter), repeating the headers with the sequence
//     number advanced, PSH only on the last piece, and fresh lengths, IDs
//     and checksums. So each piece is what the stack would have sent as a
//     full-sized segment.
//   - Such a packet's TCP checksum field holds only the pseudo-header sum
//     for its whole length (seg.AppendPartial, CHECKSUM_PARTIAL): the link
//     computes every piece's checksum anyway, so the stack does not.
//
// The stack relies on the last rule to keep the wire unchanged: it sends
// a super-segment only while its own segment size equals the cut size,
// that is while the connection's MSS is not smaller than MTU minus the
// header (RFC 9293 §3.7.1: never exceed the peer's MSS).
type GSOLink interface {
	GSOMaxSize() int
}

// gsoMax returns the link's super-packet limit, 0 without one. It is read
// once, in New (linkGSOMax): sendQuantum asks for it for every segment.
func (s *Stack) gsoMax() int { return s.gsoSize }

// linkGSOMax is the super-packet limit a link offers, 0 without one.
func linkGSOMax(l Link) int {
	if g, ok := l.(GSOLink); ok {
		return min(g.GSOMaxSize(), 65535)
	}
	return 0
}

// sendQuantum is the most output asks sendDataAt for at once: one MSS, or
// as many as fit a super-packet when the link segments for us. sendDataAt
// trims it to whole segments for the actual header.
func (t *tcb) sendQuantum() int {
	if m := t.s.gsoMax(); m > t.s.mtu && t.mss >= t.s.mtu-40-t.hdrOptsMax() {
		return m - 40
	}
	return t.mss
}

// hdrOptsMax bounds the options on a data segment for sendQuantum's test:
// the timestamp option; SACK blocks are accounted exactly in gsoRoom.
func (t *tcb) hdrOptsMax() int {
	if t.tsOK {
		return 12
	}
	return 0
}

// gsoRoom returns how many payload bytes one packet with header length hl
// may carry: mtu-hl normally; with a segmenting link and an MSS at least
// the cut size, the largest multiple of mtu-hl that fits the link's
// limit, so that every piece the link cuts is a full segment (only the
// overall last may be short, and that case is the caller's n < room).
func (t *tcb) gsoRoom(hl int) (room, cut int) {
	s := t.s
	cut = s.mtu - hl
	if cut <= 0 || t.mss < cut {
		return cut, cut
	}
	m := s.gsoMax()
	if m <= s.mtu {
		return cut, cut
	}
	return (m - hl) / cut * cut, cut
}

// superBuf returns an empty buffer with room for a packet of n bytes,
// reusing a large one from the free list when there is one near the top.
func (s *Stack) superBuf(n int) []byte {
	for i := len(s.free) - 1; i >= 0 && i >= len(s.free)-8; i-- {
		if b := s.free[i]; cap(b) >= n {
			s.free[i] = s.free[len(s.free)-1]
			s.free = s.free[:len(s.free)-1]
			return b
		}
	}
	return make([]byte, 0, max(n, 65536))
}
