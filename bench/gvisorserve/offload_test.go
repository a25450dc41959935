package main

import (
	"encoding/binary"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TestWritePacketVnetHeader writes through a SOCK_SEQPACKET pair (one
// packet per read, like a TUN) and checks the virtio_net_hdr: TSO only
// above the MSS, NEEDS_CSUM with csum_start at the TCP header (no
// Ethernet header on a TUN, unlike fdbased's 14 + L3HdrLen), and a zero
// header for packets gVisor checksummed itself.
func TestWritePacketVnetHeader(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.SetNonblock(fds[0], true)
	f := os.NewFile(uintptr(fds[0]), "a")
	defer f.Close()
	defer unix.Close(fds[1])
	ep, err := newVnetEndpoint(f, 1500)
	if err != nil {
		t.Fatal(err)
	}
	gso := stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: header.TCPChecksumOffset, MSS: 1448, L3HdrLen: header.IPv4MinimumSize}
	for _, c := range []struct {
		name    string
		payload int
		gso     stack.GSO
		want    [vnetHdrLen]byte
	}{
		{"super-segment", 10 * 1448, gso, [vnetHdrLen]byte{1, 1, 40, 0, 0xa8, 0x05, 20, 0, 16, 0}},
		{"one segment", 100, gso, [vnetHdrLen]byte{1, 0, 40, 0, 0, 0, 20, 0, 16, 0}},
		{"no gso", 100, stack.GSO{}, [vnetHdrLen]byte{}},
	} {
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
			ReserveHeaderBytes: 40,
			Payload:            buffer.MakeWithData(make([]byte, c.payload)),
		})
		pkt.TransportHeader().Push(header.TCPMinimumSize)
		pkt.NetworkHeader().Push(header.IPv4MinimumSize)
		pkt.GSOOptions = c.gso
		if err := ep.WritePacket(pkt); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		pkt.DecRef()
		buf := make([]byte, 1<<16)
		n, err := unix.Read(fds[1], buf)
		if err != nil {
			t.Fatal(err)
		}
		if n != vnetHdrLen+40+c.payload {
			t.Errorf("%s: wrote %d bytes, want %d", c.name, n, vnetHdrLen+40+c.payload)
		}
		if got := [vnetHdrLen]byte(buf[:vnetHdrLen]); got != c.want {
			t.Errorf("%s: vnet header % x, want % x", c.name, got, c.want)
		}
	}
	if binary.LittleEndian.Uint16([]byte{0xa8, 0x05}) != 1448 {
		t.Fatal("gso_size bytes")
	}
}

func tcpPacket(t *testing.T, payload int) []byte {
	t.Helper()
	b := make([]byte, header.IPv4MinimumSize+header.TCPMinimumSize+payload)
	src, dst := tcpip.AddrFrom4([4]byte{198, 18, 0, 1}), tcpip.AddrFrom4([4]byte{198, 18, 0, 2})
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(b[header.IPv4MinimumSize:])
	tcp.Encode(&header.TCPFields{SrcPort: 40000, DstPort: 9, SeqNum: 1, AckNum: 1, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagAck, WindowSize: 1000})
	for i := range payload {
		b[40+i] = byte(i)
	}
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(tcp)))
	tcp.SetChecksum(^checksum.Checksum(tcp, xsum))
	return b
}

// TestChecksumsOK: packets the kernel did not vouch for are verified by
// the link, since the endpoint claims RX checksum offload.
func TestChecksumsOK(t *testing.T) {
	b := tcpPacket(t, 333)
	if !checksumsOK(b) {
		t.Fatal("valid packet rejected")
	}
	b[100] ^= 0x40
	if checksumsOK(b) {
		t.Fatal("corrupted payload accepted")
	}
	b[100] ^= 0x40
	b[8]-- // TTL: breaks the IP header checksum
	if checksumsOK(b) {
		t.Fatal("bad IP header checksum accepted")
	}
}
