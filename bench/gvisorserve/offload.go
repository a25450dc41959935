package main

// The offload link for gVisor: a TUN opened with IFF_VNET_HDR and
// TUNSETOFFLOAD (checksum, TSO4), driven by a small LinkEndpoint of our
// own, because gVisor's fdbased endpoint cannot do this on a TUN in the
// gVisor version this module uses:
//
//   - fdbased.New turns GSO on (gsoKind = HostGSOSupported) only for FDs
//     that are sockets (the `if isSocket` branch); a TUN is a character
//     device, so Options.GSOMaxSize is ignored, no virtio-net header is
//     written and none is skipped on read. With IFF_VNET_HDR set every
//     packet would then be misparsed.
//   - Even on a socket its vnet header has csum_start = 14 + L3HdrLen: it
//     assumes an Ethernet header in front (AF_PACKET/tap), which a TUN
//     packet does not have, so the kernel would checksum the wrong bytes.
//   - Its read path strips the vnet header and discards it, so
//     VIRTIO_NET_HDR_F_NEEDS_CSUM packets (partial checksums) would fail
//     gVisor's checksum check unless RX checksum offload is claimed for
//     every packet.
//
// The endpoint below keeps gVisor's own TCP in charge of segmentation:
// it advertises HostGSOSupported with a 64 KiB GSOMaxSize, so gVisor's TCP
// builds super-segments with a pseudo-header checksum (CHECKSUM_PARTIAL)
// and the link only translates pkt.GSOOptions into a virtio_net_hdr, as
// fdbased does for sockets, with csum_start relative to the IP header.

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// virtio_net_hdr (include/uapi/linux/virtio_net.h), little-endian, 10 bytes
// as set by TUNSETVNETHDRSZ.
const (
	vnetHdrLen        = 10
	vnetFNeedsCsum    = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	vnetFDataValid    = 2 // VIRTIO_NET_HDR_F_DATA_VALID
	vnetGSONone       = 0
	vnetGSOTCPv4      = 1
	gsoMaxSize        = 1 << 16
	maxReadPacket     = 1<<16 - 1 // largest IPv4 packet (total length is 16 bits)
	smallPacketCopyAt = 2048      // packets up to this size are copied out of the read buffer
)

// openOffloadTUN creates TUN device name with IFF_VNET_HDR and enables
// checksum and TSO4 offload (TUNSETOFFLOAD), so the kernel may hand us
// TCP super-packets with partial checksums and accepts ours.
func openOffloadTUN(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF IFF_VNET_HDR: %v", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, vnetHdrLen); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETVNETHDRSZ: %v", err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, unix.TUN_F_CSUM|unix.TUN_F_TSO4); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETOFFLOAD csum|tso4 refused: %v", err)
	}
	// Non-blocking, so reads and writes go through Go's poller.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun"), nil
}

// vnetEndpoint is a stack.LinkEndpoint (and GSOEndpoint) over an offload
// TUN. Inbound packets are delivered on the one reader goroutine (no
// hand-off per packet); outbound packets are written by the caller's
// goroutine, one writev each, as fdbased does on a TUN.
type vnetEndpoint struct {
	f  *os.File
	rc interface {
		Read(func(fd uintptr) bool) error
		Write(func(fd uintptr) bool) error
	}

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher
	mtu        uint32
	wg         sync.WaitGroup
}

var (
	_ stack.LinkEndpoint = (*vnetEndpoint)(nil)
	_ stack.GSOEndpoint  = (*vnetEndpoint)(nil)
)

func newVnetEndpoint(f *os.File, mtu uint32) (*vnetEndpoint, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &vnetEndpoint{f: f, rc: rc, mtu: mtu}, nil
}

func (e *vnetEndpoint) MTU() uint32 {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.mtu
}

func (e *vnetEndpoint) SetMTU(mtu uint32) {
	e.mu.Lock()
	e.mtu = mtu
	e.mu.Unlock()
}

func (*vnetEndpoint) MaxHeaderLength() uint16          { return 0 }
func (*vnetEndpoint) LinkAddress() tcpip.LinkAddress   { return "" }
func (*vnetEndpoint) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities claims RX checksum offload: gVisor's NIC sets
// RXChecksumValidated from this capability for every packet (a per-packet
// flag set by the link is overwritten), so readLoop itself verifies the
// packets the kernel did not vouch for.
func (*vnetEndpoint) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityRXChecksumOffload
}
func (*vnetEndpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }
func (*vnetEndpoint) AddHeader(*stack.PacketBuffer)           {}
func (*vnetEndpoint) ParseHeader(*stack.PacketBuffer) bool    { return true }
func (*vnetEndpoint) SetOnCloseAction(func())                 {}
func (e *vnetEndpoint) Wait()                                 { e.wg.Wait() }
func (e *vnetEndpoint) Close()                                { e.f.Close() }

// GSOMaxSize and SupportedGSO make gVisor's TCP hand us super-segments
// with a partial (pseudo-header) checksum: what Linux calls
// CHECKSUM_PARTIAL with GSO, finished by the kernel per segment.
func (*vnetEndpoint) GSOMaxSize() uint32               { return gsoMaxSize }
func (*vnetEndpoint) SupportedGSO() stack.SupportedGSO { return stack.HostGSOSupported }

func (e *vnetEndpoint) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

// Attach starts the reader on the first attachment.
func (e *vnetEndpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	first := e.dispatcher == nil && d != nil
	e.dispatcher = d
	e.mu.Unlock()
	if first {
		e.wg.Add(1)
		go e.readLoop()
	}
}

// readLoop reads one packet per read(2): a virtio_net_hdr and an IPv4
// packet, possibly a TCP super-packet up to 64 KiB.
func (e *vnetEndpoint) readLoop() {
	defer e.wg.Done()
	var hdr [vnetHdrLen]byte
	big := buffer.NewViewSize(maxReadPacket)
	iov := [][]byte{hdr[:], nil}
	for {
		iov[1] = big.AsSlice()[:maxReadPacket]
		var n int
		var rerr error
		err := e.rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Readv(int(fd), iov)
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			big.Release()
			return
		}
		n -= vnetHdrLen
		if n <= 0 || big.AsSlice()[0]>>4 != header.IPv4Version {
			continue // only IPv4 is configured; anything else is dropped
		}
		// A partial checksum (NEEDS_CSUM: the field holds only the
		// pseudo-header sum) or DATA_VALID comes from the local kernel,
		// which either has not computed the transport checksum or has
		// already checked it; a Linux virtio-net driver trusts both
		// (CHECKSUM_PARTIAL / CHECKSUM_UNNECESSARY), and so do we. GSO
		// super-packets always carry NEEDS_CSUM. Anything else carries a
		// complete but unverified checksum, which we verify here because
		// gVisor will not (see Capabilities).
		if hdr[0]&(vnetFNeedsCsum|vnetFDataValid) == 0 && !checksumsOK(big.AsSlice()[:n]) {
			continue
		}
		var payload buffer.Buffer
		if n <= smallPacketCopyAt {
			// Copy small packets (ACKs, requests) so the 64 KiB view
			// is not held by every queued ACK.
			payload = buffer.MakeWithData(big.AsSlice()[:n])
		} else {
			big.CapLength(n)
			payload = buffer.MakeWithView(big)
			big = buffer.NewViewSize(maxReadPacket)
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: payload})
		e.mu.RLock()
		d := e.dispatcher
		e.mu.RUnlock()
		if d != nil {
			d.DeliverNetworkPacket(header.IPv4ProtocolNumber, pkt)
		}
		pkt.DecRef()
	}
}

// checksumsOK verifies the IPv4 header checksum and, for TCP and UDP, the
// transport checksum over the pseudo-header (RFC 9293 §3.1, RFC 768).
func checksumsOK(b []byte) bool {
	ip := header.IPv4(b)
	if !ip.IsValid(len(b)) || !ip.IsChecksumValid() {
		return false
	}
	p := tcpip.TransportProtocolNumber(ip.Protocol())
	if p != header.TCPProtocolNumber && p != header.UDPProtocolNumber {
		return true
	}
	if ip.FragmentOffset() != 0 || ip.More() {
		return true // gVisor reassembles first and checks the whole datagram
	}
	payload := b[ip.HeaderLength():ip.TotalLength()]
	xsum := header.PseudoHeaderChecksum(p, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(payload)))
	if p == header.UDPProtocolNumber && len(payload) >= header.UDPMinimumSize && header.UDP(payload).Checksum() == 0 {
		return true // UDP over IPv4 may omit its checksum
	}
	return checksum.Checksum(payload, xsum) == 0xffff
}

// WritePacket writes one packet with its virtio_net_hdr. pkt.GSOOptions
// says what gVisor's TCP left to the kernel: NeedsCsum (the checksum field
// holds the pseudo-header sum; the kernel completes it from csum_start,
// here the start of the TCP header since a TUN packet begins with the IP
// header) and, when the payload exceeds the MSS, TSO (gso_size = MSS).
func (e *vnetEndpoint) WritePacket(pkt *stack.PacketBuffer) tcpip.Error {
	var hdr [vnetHdrLen]byte
	if g := pkt.GSOOptions; g.Type != stack.GSONone {
		binary.LittleEndian.PutUint16(hdr[2:], uint16(pkt.HeaderSize())) // hdr_len
		if g.NeedsCsum {
			hdr[0] = vnetFNeedsCsum
			binary.LittleEndian.PutUint16(hdr[6:], g.L3HdrLen)   // csum_start
			binary.LittleEndian.PutUint16(hdr[8:], g.CsumOffset) // csum_offset
		}
		if g.Type == stack.GSOTCPv4 && pkt.Data().Size() > int(g.MSS) {
			hdr[1] = vnetGSOTCPv4
			binary.LittleEndian.PutUint16(hdr[4:], g.MSS) // gso_size
		}
	}
	views := pkt.AsSlices()
	iov := make([][]byte, 0, 1+len(views))
	iov = append(iov, hdr[:])
	iov = append(iov, views...)
	var werr error
	err := e.rc.Write(func(fd uintptr) bool {
		_, werr = unix.Writev(int(fd), iov)
		return werr != unix.EAGAIN
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		if errno, ok := err.(unix.Errno); ok {
			return tcpip.TranslateErrno(errno)
		}
		return &tcpip.ErrClosedForSend{}
	}
	return nil
}

// WritePackets writes each packet alone: a TUN takes one packet per
// write(2), and a super-segment already carries up to 64 KiB.
func (e *vnetEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		if err := e.WritePacket(pkt); err != nil {
			if n == 0 {
				return 0, err
			}
			break
		}
		n++
	}
	return n, nil
}
