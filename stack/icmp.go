package stack

import (
	"encoding/binary"

	"utcp/seg"
)

// ICMP errors for TCP follow RFC 5927 (and RFC 1122 §4.2.3.9): they are
// easy to forge, so none of them ever resets a connection. Only
// "fragmentation needed" (type 3 code 4) acts, lowering the path MTU of
// the connection it names, and only when the quoted segment is one we
// actually have in flight (RFC 5927 §4.1: SND.UNA <= SEG.SEQ < SND.NXT)
// and the MTU is sane. Source quench (type 4) is ignored (RFC 6633).

// minPathMTU is Linux's ip_rt_min_pmtu default: an ICMP claiming a
// smaller MTU is not believed.
const minPathMTU = 552

func (s *Stack) icmpUnreachable(m seg.ICMPv4) {
	s.ctr.InDestUnreachs++
	if m.Code() != 4 { // only "fragmentation needed and DF set"
		return
	}
	mtu := int(binary.BigEndian.Uint16(m[6:8]))
	quoted := seg.IPv4(m.Payload())
	// The quote is the original IP header plus at least 8 bytes of TCP:
	// ports and sequence number (RFC 792).
	if len(quoted) < 20 || quoted[0]>>4 != 4 {
		return
	}
	hl := quoted.HeaderLen()
	if hl < 20 || len(quoted) < hl+8 || quoted.Protocol() != seg.ProtoTCP || quoted.Src() != s.addr {
		return
	}
	th := quoted[hl:]
	lport := binary.BigEndian.Uint16(th[0:2])
	rport := binary.BigEndian.Uint16(th[2:4])
	seq := seg.Seq(binary.BigEndian.Uint32(th[4:8]))
	t := s.conns[connKey(quoted.Dst().As4(), rport, lport)]
	if t == nil || !t.state.synchronized() || !seq.GreaterEq(t.sndUna) || !seq.LessThan(t.sndMax) {
		s.ctr.OutOfWindowIcmps++
		return
	}
	if mtu < minPathMTU || mtu >= s.mtu {
		return
	}
	t.pathMTU(mtu)
}

// pathMTU lowers the connection's segment size to fit mtu and resends
// what is in flight in the smaller size (RFC 1191 §6.3; the packets were
// dropped, so waiting for the RTO would only stall).
func (t *tcb) pathMTU(mtu int) {
	m := mtu - 40
	if t.tsOK {
		m -= 12
	}
	m = max(m, 48)
	if m >= t.mss {
		return
	}
	t.mss = m
	t.s.ctr.TCPPMTUDUpdates++
	t.sndNxt = t.sndUna
	t.output()
}
