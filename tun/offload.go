package tun

import (
	"encoding/binary"
	"errors"

	"golang.org/x/sys/unix"
)

// Offloads: with IFF_VNET_HDR every packet crossing the descriptor carries a
// struct virtio_net_hdr in front of it (include/uapi/linux/virtio_net.h;
// Documentation/networking/tuntap.rst), and TUNSETOFFLOAD tells the kernel
// which of those descriptions we understand. With TUN_F_CSUM the kernel may
// hand us packets whose transport checksum is left to us (NEEDS_CSUM), and
// with TUN_F_TSO4/6 TCP "super-packets" of up to 64 KiB that a NIC would have
// cut into MSS-sized segments (GSO). In the other direction we may write such
// super-packets ourselves, and the kernel's TCP takes them whole.

// vnetHdrLen is sizeof(struct virtio_net_hdr): the legacy header without
// num_buffers, which is what a TUN uses unless TUNSETVNETHDRSZ says
// otherwise. We set it explicitly so an earlier user of a persistent device
// cannot leave a larger size behind.
const vnetHdrLen = 10

// offloadFlags are the offloads we ask for. TSO needs CSUM (the kernel
// refuses TSO without it); TSO6 is requested too so the kernel's view of the
// device matches wireguard-go's and IPv6 super-packets, should they come,
// arrive whole and are passed through.
const offloadFlags = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6

// maxIPv4Packet is the largest packet an IPv4 total length can describe.
const maxIPv4Packet = 65535

// vnetHdr is struct virtio_net_hdr. Its 16-bit fields are in the device's
// virtio byte order, which for a TUN without TUNSETVNETBE/LE is the host's
// (virtio "legacy" devices use the guest's native order).
type vnetHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
}

func (h *vnetHdr) decode(b []byte) {
	h.flags = b[0]
	h.gsoType = b[1]
	h.hdrLen = binary.NativeEndian.Uint16(b[2:])
	h.gsoSize = binary.NativeEndian.Uint16(b[4:])
	h.csumStart = binary.NativeEndian.Uint16(b[6:])
	h.csumOffset = binary.NativeEndian.Uint16(b[8:])
}

func (h *vnetHdr) encode(b []byte) {
	b[0] = h.flags
	b[1] = h.gsoType
	binary.NativeEndian.PutUint16(b[2:], h.hdrLen)
	binary.NativeEndian.PutUint16(b[4:], h.gsoSize)
	binary.NativeEndian.PutUint16(b[6:], h.csumStart)
	binary.NativeEndian.PutUint16(b[8:], h.csumOffset)
}

// setOffload issues TUNSETOFFLOAD. A variable so a test can make the kernel
// "refuse" and exercise the fallback.
var setOffload = func(fd int, flags int) error {
	return unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, flags)
}

var errOffloadRefused = errors.New("tun: the kernel refused IFF_VNET_HDR offloads")

// Offload reports whether the device runs with offloads (Config.Offload was
// set and the kernel accepted IFF_VNET_HDR and TUNSETOFFLOAD).
func (d *Device) Offload() bool { return d.offload }

// GSOReads counts super-packets (gso_type other than NONE) ReadPackets
// delivered whole.
func (d *Device) GSOReads() uint64 { return d.r.gsoReads.Load() }

// ChecksumsCompleted counts packets ReadPackets received with a partial
// checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM) and completed in software.
func (d *Device) ChecksumsCompleted() uint64 { return d.r.csums.Load() }

// GSOWrites counts the super-packets WritePackets wrote, each standing for
// two or more of the caller's TCP segments.
func (d *Device) GSOWrites() uint64 { return d.w.gsoWrites.Load() }

// CoalescedSegments counts the caller's packets that went out inside GSO
// writes.
func (d *Device) CoalescedSegments() uint64 { return d.w.coalesced.Load() }

// DroppedPackets counts packets ReadPackets dropped because their virtio
// header could not be honoured (too short, a checksum position outside the
// packet, an IPv4 super-packet over 65535 bytes).
func (d *Device) DroppedPackets() uint64 { return d.r.dropped.Load() }

// GSOMaxSize reports the largest packet WritePackets takes (stack.GSOLink):
// 65535 with offloads, when a TCP/IPv4 segment longer than the MTU is
// written as one GSO super-packet with gso_size = MTU less its headers,
// and 0 without, when every packet must fit the MTU.
func (d *Device) GSOMaxSize() int {
	if d.offload {
		return maxIPv4Packet
	}
	return 0
}
