package stack

import (
	"errors"
	"net/netip"

	"utcp/seg"
)

// input handles one packet read from the link.
func (s *Stack) input(pkt []byte) {
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
	}
	switch ip.Protocol() {
	case seg.ProtoTCP:
		s.ctr.InDelivers++
		s.tcpInput(src, payload)
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

func (s *Stack) tcpInput(src netip.Addr, tcp []byte) {
	sg := &s.rxSeg
	if err := sg.ParseTCP(src, s.addr, tcp); err != nil {
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
