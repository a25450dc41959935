package stack

import (
	"encoding/binary"

	"utcp/seg"
)

// PSH at the end of every batch.
//
// The sender sets PSH when it empties its send buffer (output.go), as
// RFC 9293 §3.9.1 describes. Beyond that, each connection's last data
// segment in every batch written to the link carries PSH as well.
//
// The reason is the receiver's GRO. A Linux receiver whose device holds
// segments across polls (a TUN with IFF_NAPI and gro_flush_timeout, see
// tun/gro.go; a NIC with gro_flush_timeout) merges a flow's full-sized
// segments and delivers the merged skb when a segment with PSH, a short
// one, or one with SYN, FIN, RST or URG arrives, or when its timer runs
// out. A batch that ends mid-buffer (the window, not the data, stopped
// it) would otherwise wait out that timer, several milliseconds, with the
// ACK clock stopped. Linux's own sender has the same need and pushes at
// least every half window (forced_push in tcp_sendmsg). PSH asks nothing
// else of a receiver: Linux and gVisor deliver data the same way with or
// without it.
//
// Only segments whose checksum is complete are marked: a super-segment's
// pieces are cut by the link, which puts PSH on the last piece only if
// the super-segment has it, and GRO is for plain links anyway.

// pushCandidate records the data segment just queued (the last entry of
// s.outq): it is this connection's latest in the batch, and the one to
// mark unless it has PSH already.
func (t *tcb) pushCandidate(hasPSH bool) {
	if hasPSH {
		t.pushAt = 0
		return
	}
	if t.pushAt == 0 {
		t.s.pushCands = append(t.s.pushCands, t)
	}
	t.pushAt = len(t.s.outq)
}

// markPushes sets PSH on each connection's latest data segment in outq,
// just before outq is taken for writing.
func (s *Stack) markPushes() {
	for _, t := range s.pushCands {
		if t.pushAt > 0 {
			setPSH(s.outq[t.pushAt-1])
			t.pushAt = 0
		}
	}
	clear(s.pushCands)
	s.pushCands = s.pushCands[:0]
}

// setPSH sets PSH in the IPv4/TCP packet p (its headers at least) and
// updates the TCP checksum for the changed word (RFC 1624).
func setPSH(p []byte) {
	ihl := int(p[0]&0x0f) * 4
	if len(p) < ihl+seg.TCPMinHeaderLen {
		return
	}
	tcp := p[ihl:]
	old := binary.BigEndian.Uint16(tcp[12:14]) // data offset and flags
	word := old | uint16(seg.PSH)
	if word == old {
		return
	}
	binary.BigEndian.PutUint16(tcp[12:14], word)
	csum := binary.BigEndian.Uint16(tcp[16:18])
	binary.BigEndian.PutUint16(tcp[16:18], seg.UpdateChecksum(csum, old, word))
}
