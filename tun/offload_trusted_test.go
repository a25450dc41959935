package tun

import (
	"bytes"
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// read on an offload device (vnet) with a trusted slice: kernel-vouched TCP (NEEDS_CSUM at TCP's
// offset, or DATA_VALID) is marked trusted and its checksum left alone
// (no software pass); a super-packet still gets its total length fixed;
// an unflagged TCP packet (as AF_PACKET injection arrives) is not
// trusted, so the stack verifies it; UDP with NEEDS_CSUM is completed as
// before and not marked.
func TestReadVnetTrusted(t *testing.T) {
	a, b := seqpacket(t)
	big := buildTCP4(tcpSpec{src: tDst, dst: tSrc, seq: 5, ack: 6, flags: tcpFlagACK, win: 100, payload: bytes.Repeat([]byte{0xa5, 0x5a, 3}, 20000)})
	small := buildTCP4(tcpSpec{src: tDst, dst: tSrc, seq: 9, ack: 6, flags: tcpFlagACK, win: 100, payload: []byte("hello")})
	udp := buildUDP4(tDst, tSrc, []byte("plain"))
	send := func(h vnetHdr, p []byte) {
		m := make([]byte, vnetHdrLen+len(p))
		h.encode(m)
		copy(m[vnetHdrLen:], p)
		if _, err := unix.Write(a, m); err != nil {
			t.Fatal(err)
		}
	}
	gso := vnetHdr{flags: unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: unix.VIRTIO_NET_HDR_GSO_TCPV4, gsoSize: 1448, hdrLen: 40, csumStart: 20, csumOffset: 16}
	sent0 := partial(bytes.Clone(big), tcpCsumOff)
	binary.BigEndian.PutUint16(sent0[2:], 1500) // a super-packet's total length is not to be trusted
	send(gso, sent0)
	send(vnetHdr{flags: unix.VIRTIO_NET_HDR_F_DATA_VALID}, small)
	corrupt := bytes.Clone(small)
	corrupt[len(corrupt)-1] ^= 0xff
	send(vnetHdr{}, corrupt)
	send(vnetHdr{flags: unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 20, csumOffset: udpCsumOff}, partial(bytes.Clone(udp), udpCsumOff))

	r := reader{vnet: true}
	bufs := [][]byte{make([]byte, 65536), make([]byte, 1500), make([]byte, 1500), make([]byte, 1500)}
	trusted := []bool{false, true, true, true} // stale values must be overwritten
	r.bufs, r.sizes, r.trusted = bufs, make([]int, len(bufs)), trusted
	if !r.read(uintptr(b)) || r.err != nil || r.n != 4 {
		t.Fatalf("read: %d packets, %v", r.n, r.err)
	}
	if want := []bool{true, true, false, false}; !bytes.Equal(boolBytes(trusted), boolBytes(want)) {
		t.Fatalf("trusted = %v, want %v", trusted, want)
	}
	p0 := bufs[0][:r.sizes[0]]
	if int(binary.BigEndian.Uint16(p0[2:])) != len(p0) || checksum(0, p0[:20]) != 0 {
		t.Fatalf("super-packet total length %d for %d bytes (header checksum ok %v)",
			binary.BigEndian.Uint16(p0[2:]), len(p0), checksum(0, p0[:20]) == 0)
	}
	// Not completed: the field still holds what the kernel left there.
	if !bytes.Equal(p0[20:], sent0[20:]) {
		t.Fatalf("trusted super-packet's TCP bytes were changed")
	}
	if !bytes.Equal(bufs[1][:r.sizes[1]], small) || !bytes.Equal(bufs[2][:r.sizes[2]], corrupt) || !bytes.Equal(bufs[3][:r.sizes[3]], udp) {
		t.Fatalf("packets 1..3 not delivered as expected")
	}
	if r.trustedN.Load() != 2 || r.csums.Load() != 1 {
		t.Fatalf("trusted %d, completed %d; want 2 and 1", r.trustedN.Load(), r.csums.Load())
	}
}

func boolBytes(b []bool) []byte {
	out := make([]byte, len(b))
	for i, v := range b {
		if v {
			out[i] = 1
		}
	}
	return out
}
