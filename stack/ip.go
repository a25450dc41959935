package stack

import (
	"errors"
	"net/netip"

	"utcp/seg"
)

// TrustedLink is implemented by a Link that can vouch for checksums: a
// TUN with offloads knows which packets the kernel produced locally
// (partial checksum) or already verified, and reports it per packet in
// trusted, which has room for len(bufs) flags. The stack then skips its
// own TCP checksum verification for exactly those packets; every other
// packet (trusted[i] false) is verified as usual, so forged or corrupted
// input injected past the kernel's own stack is still counted in
// InCsumErrors. It is an optional interface so that links, and the
// wrappers around them (a capture tap, a lossy test link), need not know
// of it: a wrapper that does not forward it simply loses the shortcut.
type TrustedLink interface {
	ReadPacketsTrusted(bufs [][]byte, sizes []int, trusted []bool) (int, error)
}

// linkReader returns the function the read loop calls for a batch: the
// link's ReadPacketsTrusted when it has one, otherwise ReadPackets with
// every flag false. Decided once per loop, not per batch.
func (s *Stack) linkReader() func(bufs [][]byte, sizes []int, trusted []bool) (int, error) {
	if tl, ok := s.link.(TrustedLink); ok {
		return tl.ReadPacketsTrusted
	}
	return func(bufs [][]byte, sizes []int, trusted []bool) (int, error) {
		return s.link.ReadPackets(bufs, sizes)
	}
}

// rxBufSize is the size of a link read buffer: the largest IPv4 packet, as
// a TSO super-segment from an offloading TUN can be.
const rxBufSize = 65536

// inputOwned handles the packet in bufs[i][:size], a buffer the read loop
// owns. If a receive queue adopts the buffer (zero-copy receive, rcvq.go),
// the loop's slot gets a fresh one.
func (s *Stack) inputOwned(bufs [][]byte, i, size int, trusted bool) {
	s.rxCur = bufs[i]
	s.inputPacket(bufs[i][:size], trusted)
	s.rxCur = nil
	if s.rxTaken {
		s.rxTaken = false
		bufs[i] = s.rx.get()
	}
}

// input handles one packet read from the link.
func (s *Stack) input(pkt []byte) { s.inputPacket(pkt, false) }

// inputPacket handles one packet read from the link; trusted means the link
// vouched for its TCP checksum (see TrustedLink).
func (s *Stack) inputPacket(pkt []byte, trusted bool) {
	if len(pkt) == 0 {
		s.ctr.InHdrErrors++
		return
	}
	if pkt[0]>>4 == 6 {
		// The kernel sends router solicitations and the like into a TUN;
		// utcp speaks IPv4 only, so IPv6 is dropped and counted.
		s.ctr.InIPv6++
		return
	}
	s.ctr.InReceives++
	ip := seg.IPv4(pkt)
	if err := ip.Validate(); err != nil {
		s.ctr.InHdrErrors++
		return
	}
	if ip.Dst() != s.addr {
		s.ctr.InAddrErrors++
		return
	}
	src := ip.Src()
	if !usableSource(src, s.addr) {
		s.ctr.InAddrErrors++
		return
	}
	payload := ip.Payload()
	if ip.IsFragment() {
		var ok bool
		payload, ok = s.reasm.add(ip)
		if !ok {
			return
		}
		trusted = false // reassembled from pieces nobody vouched for as a whole
	}
	switch ip.Protocol() {
	case seg.ProtoTCP:
		s.ctr.InDelivers++
		s.tcpInput(src, payload, trusted)
	case seg.ProtoICMP:
		s.ctr.InDelivers++
		s.icmpInput(ip, payload)
	default:
		s.ctr.InUnknownProtos++
	}
}

// usableSource rejects sources no real peer can have: unspecified,
// broadcast, multicast, loopback, and our own address (a LAND attack).
func usableSource(src, self netip.Addr) bool {
	if !src.Is4() || src.IsUnspecified() || src.IsMulticast() || src.IsLoopback() || src == self {
		return false
	}
	return src != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

func (s *Stack) tcpInput(src netip.Addr, tcp []byte, trusted bool) {
	sg := &s.rxSeg
	var err error
	if trusted {
		err = sg.ParseTCPTrusted(src, s.addr, tcp)
	} else {
		err = sg.ParseTCP(src, s.addr, tcp)
	}
	if err != nil {
		s.ctr.InErrs++
		if errors.Is(err, seg.ErrTCPChecksum) {
			s.ctr.InCsumErrors++
		}
		return
	}
	s.ctr.InSegs++
	s.segmentArrives(sg)
	sg.Payload = nil
}

// icmpInput answers echo requests (so ping works); other ICMP is counted.
func (s *Stack) icmpInput(ip seg.IPv4, payload []byte) {
	m := seg.ICMPv4(payload)
	if err := m.Validate(); err != nil {
		s.ctr.IcmpInErrors++
		return
	}
	if m.Type() == seg.ICMPDestUnreachable {
		s.icmpUnreachable(m)
		return
	}
	if m.Type() != seg.ICMPEchoRequest || ip.IsFragment() {
		return
	}
	s.ctr.InEchos++
	if len(ip) > s.bufSize {
		return
	}
	b := seg.AppendEchoReply(s.packetBuf(), ip)
	s.emitRaw(b)
	s.ctr.OutEchoReps++
}
