package tun

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	protoTCP = 6
	protoUDP = 17

	tcpCsumOff = 16 // offsetof(struct tcphdr, check)
	udpCsumOff = 6  // offsetof(struct udphdr, check)
)

// acceptVnet finishes packet p, read behind the virtio header vhdr, and
// keeps it as packet r.n, or counts it dropped.
func (r *reader) acceptVnet(vhdr, p []byte) {
	var h vnetHdr
	h.decode(vhdr)
	trusted := false
	if r.trusted != nil {
		trusted = finishTrusted(&h, p)
	}
	if trusted {
		r.trustedN.Add(1)
	} else {
		switch finishPacket(&h, p) {
		case finishDrop:
			r.dropped.Add(1)
			return
		case finishCsum:
			r.csums.Add(1)
		}
	}
	if h.gsoType != unix.VIRTIO_NET_HDR_GSO_NONE {
		r.gsoReads.Add(1)
	}
	if r.trusted != nil {
		r.trusted[r.n] = trusted
	}
	r.sizes[r.n] = len(p)
	r.n++
}

// readv3 reads one virtio header into r.vhdr and the packet into buf, plus
// the spare byte that exposes a packet longer than buf.
func (r *reader) readv3(fd uintptr, buf []byte) (int, error) {
	iov := &r.iov3
	iov[0].Base = &r.vhdr[0]
	iov[0].SetLen(vnetHdrLen)
	iov[1] = unix.Iovec{}
	if len(buf) > 0 {
		iov[1].Base = &buf[0]
		iov[1].SetLen(len(buf))
	}
	iov[2].Base = &r.spare[0]
	iov[2].SetLen(len(r.spare))
	// Raw, as readv in tun.go: the descriptor is non-blocking.
	n, _, errno := unix.RawSyscall(unix.SYS_READV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	iov[1].Base = nil // do not keep the caller's buffer reachable
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

type finishResult int

const (
	finishOK   finishResult = iota // deliver as is
	finishCsum                     // deliver; a partial checksum was completed
	finishDrop                     // the header cannot be honoured
)

// finishPacket turns the packet p, read with virtio header h, into an
// ordinary packet in place: complete checksums, and for an IPv4
// super-packet a total length covering all of it. The caller then strips
// nothing more; the header was never in p.
//
// Rules (virtio 1.x §5.1.6.2 "Packet Transmission", seen from the device
// side, and include/linux/virtio_net.h):
//   - NEEDS_CSUM: the transport checksum at csum_start+csum_offset holds only
//     the pseudo-header sum; the one's complement of the sum from csum_start
//     to the end of the packet belongs there.
//   - gso_type TCPV4 with gso_size: the packet is one TCP segment of up to
//     64 KiB that a NIC would cut into gso_size pieces. We keep it whole —
//     the stack accepts segments larger than the MTU — so it needs only a
//     correct checksum over all of it and a total length saying how long it
//     is.
func finishPacket(h *vnetHdr, p []byte) finishResult {
	if len(p) == 0 {
		return finishDrop
	}
	ihl, v4 := ipv4HeaderLen(p)
	gso := h.gsoType&^unix.VIRTIO_NET_HDR_GSO_ECN != unix.VIRTIO_NET_HDR_GSO_NONE
	if v4 && gso {
		if len(p) > maxIPv4Packet {
			return finishDrop // cannot be described by an IPv4 total length
		}
		if int(binary.BigEndian.Uint16(p[2:4])) != len(p) {
			binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
			ipv4HeaderChecksum(p, ihl)
		}
	}
	partial := h.flags&unix.VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
	if v4 && (partial || gso) && binary.BigEndian.Uint16(p[6:8])&0x3fff == 0 {
		// The common case, and the robust one: recompute the whole
		// transport checksum ourselves, pseudo-header included, from the
		// packet's real length, in one pass.
		proto := p[9]
		off := -1
		switch {
		case proto == protoTCP && len(p) >= ihl+20:
			off = tcpCsumOff
		case proto == protoUDP && len(p) >= ihl+8:
			off = udpCsumOff
		}
		if off >= 0 && (!partial || (int(h.csumStart) == ihl && int(h.csumOffset) == off)) {
			l4 := p[ihl:]
			l4[off], l4[off+1] = 0, 0
			c := ^csumFold(csumAdd(l4, pseudoSum(p, proto, len(l4))))
			if c == 0 && proto == protoUDP {
				c = 0xffff // RFC 768: zero means "no checksum"
			}
			binary.BigEndian.PutUint16(l4[off:], c)
			if partial {
				return finishCsum
			}
			return finishOK
		}
	}
	if !partial {
		return finishOK
	}
	// Anything else (IPv6, other protocols): the generic virtio rule.
	start, at := int(h.csumStart), int(h.csumStart)+int(h.csumOffset)
	if at+2 > len(p) || start&1 != 0 {
		return finishDrop
	}
	c := ^csumFold(csumAdd(p[start:], 0))
	if c == 0 && h.csumOffset == udpCsumOff {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(p[at:], c)
	return finishCsum
}

// Trusted is the Device as a link that vouches for checksums: the Device's
// methods plus ReadPacketsTrusted (see there). Use d.Trusted() as the
// stack's link to skip verifying what the kernel produced.
type Trusted struct{ *Device }

// Trusted returns d as a checksum-vouching link.
func (d *Device) Trusted() Trusted { return Trusted{d} }

// ReadPacketsTrusted is ReadPackets that also reports, in trusted[i], that
// packet i is TCP/IPv4 whose checksum the kernel vouched for, so the caller
// need not verify it (utcp/stack looks for this method on its link).
//
// Such a packet's TCP checksum field is left as the kernel handed it: for
// VIRTIO_NET_HDR_F_NEEDS_CSUM the pseudo-header sum only, not a valid
// checksum. We do not complete it because nobody would read it: the
// kernel produced the bytes itself from a local socket and they never
// left memory (that is what NEEDS_CSUM means on a TUN; a virtio-net driver
// trusts it the same way, virtio 1.x §5.1.6.4), and the only reader of
// the field, the receiver's verification, is what the flag lets the
// caller skip. Completing and then not checking would be a whole pass
// over the payload spent for nothing. A caller that wants valid checksums
// in its buffers (a packet capture) calls ReadPackets, which completes
// them. DATA_VALID packets (the kernel verified them) keep their real
// checksum. Everything else — other protocols, fragments, packets injected
// through AF_PACKET with no flag — reads exactly as with ReadPackets and
// has trusted[i] false, so the caller still verifies it.
//
// It is a method of Trusted, not of Device, on purpose: a wrapper that
// embeds *Device and overrides ReadPackets (to count or capture) would
// otherwise have the promoted ReadPacketsTrusted chosen over its own
// ReadPackets by the stack, silently bypassing it.
func (d Trusted) ReadPacketsTrusted(bufs [][]byte, sizes []int, trusted []bool) (int, error) {
	if len(trusted) < len(bufs) {
		return 0, fmt.Errorf("tun: ReadPacketsTrusted: %d trusted flags for %d buffers", len(trusted), len(bufs))
	}
	clear(trusted[:len(bufs)])
	if !d.offload {
		// No virtio header, no flags: nothing is vouched for.
		return d.ReadPackets(bufs, sizes)
	}
	return d.readPackets(bufs, sizes, trusted)
}

// TrustedReads counts packets ReadPacketsTrusted delivered with trusted set
// (their checksum neither completed nor verified in software).
func (d *Device) TrustedReads() uint64 { return d.r.trustedN.Load() }

// finishTrusted handles a packet for ReadPacketsTrusted when it can be
// trusted: TCP over unfragmented IPv4 that the kernel marked NEEDS_CSUM
// (with the checksum where TCP's is, so the header is what we think) or
// DATA_VALID. For a super-packet it still fixes the IPv4 total length, as
// finishPacket does. It reports false, touching nothing, for anything
// else; the caller then runs finishPacket.
func finishTrusted(h *vnetHdr, p []byte) bool {
	ihl, v4 := ipv4HeaderLen(p)
	if !v4 || p[9] != protoTCP || len(p) < ihl+20 || binary.BigEndian.Uint16(p[6:8])&0x3fff != 0 {
		return false
	}
	partial := h.flags&unix.VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
	valid := h.flags&unix.VIRTIO_NET_HDR_F_DATA_VALID != 0
	switch {
	case partial && int(h.csumStart) == ihl && h.csumOffset == tcpCsumOff:
	case valid && !partial:
	default:
		return false
	}
	if h.gsoType&^unix.VIRTIO_NET_HDR_GSO_ECN != unix.VIRTIO_NET_HDR_GSO_NONE {
		if len(p) > maxIPv4Packet {
			return false // finishPacket drops it
		}
		if int(binary.BigEndian.Uint16(p[2:4])) != len(p) {
			binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
			ipv4HeaderChecksum(p, ihl)
		}
	}
	return true
}

// ipv4HeaderLen returns the header length of p if p starts with a plausible
// IPv4 header (version 4, IHL ≥ 5, header within p).
func ipv4HeaderLen(p []byte) (int, bool) {
	if len(p) < 20 || p[0]>>4 != 4 {
		return 0, false
	}
	ihl := int(p[0]&0x0f) * 4
	if ihl < 20 || ihl > len(p) {
		return 0, false
	}
	return ihl, true
}
