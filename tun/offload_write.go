package tun

import (
	"bytes"
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	tcpFlagPSH = 0x08
	tcpFlagACK = 0x10

	// maxHeaders is the longest IPv4 header plus the longest TCP header.
	maxHeaders = 60 + 60
)

// writeVnet is the poller callback for WritePackets on an offload device.
// Each write(2) is one packet behind a virtio header: either a run of the
// caller's TCP segments coalesced into one GSO super-packet (see
// coalesceRun), or a single packet behind an all-zero header (gso NONE, no
// checksum request: the packet goes in exactly as given). writev gathers
// header and payloads, so no payload byte is copied.
//
// With io_uring (w.ring), packets that go out alone behind the all-zero
// header are queued in the ring instead, and the queue is submitted in
// one io_uring_enter before anything else is written and at the end, so
// the order is the caller's. Only those: a GSO write's error decides how
// the next write is built (EINVAL: split the run), so it stays a call of
// its own, and on a bulk transfer such writes are few.
func (w *writer) writeVnet(fd uintptr) bool {
	for {
		i := w.n + w.queued
		if i == len(w.bufs) {
			if w.queued == 0 {
				return true
			}
			if stop, ret := w.flushWrites(); stop {
				return ret
			}
			continue
		}
		k := 1
		pay := w.pay(i)
		super := w.mtu > 0 && len(w.bufs[i])+len(pay) > w.mtu
		if i >= w.splitUntil && !super && pay == nil {
			k = coalesceRun(w.bufs[i:w.wholeUntil(i)])
		}
		if k == 1 && !super && w.queueable(i) && ringWritable(w.bufs[i], pay) {
			w.queueWrite(fd, w.hdrNone[:], w.bufs[i], pay)
			continue
		}
		if w.queued > 0 {
			if stop, ret := w.flushWrites(); stop {
				return ret
			}
			continue // w.n has moved; look again
		}
		var err error
		switch {
		case pay != nil && super:
			err = w.writeSuperSplit(fd, w.bufs[w.n], pay)
		case pay != nil:
			err = w.writeParts(fd, w.hdrNone[:], w.bufs[w.n], pay)
		case super:
			// The caller's own super-segment (GSOMaxSize): cut at
			// the MTU, as the stack.GSOLink contract says.
			err = w.writeSuper(fd, w.bufs[w.n])
		case k == 1:
			err = w.writeOne(fd, w.bufs[w.n])
		default:
			err = w.writeGSO(fd, w.bufs[w.n:w.n+k], 0)
		}
		switch {
		case err == nil:
			if k > 1 {
				w.gsoWrites.Add(1)
				w.coalesced.Add(uint64(k))
			}
			w.n += k
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			return false // wait until writable; the run is rebuilt then
		case err == unix.EINVAL && k > 1:
			// A kernel that rejects our super-packet must still get the
			// segments: send this run one by one.
			w.gsoRefused.Add(1)
			w.splitUntil = w.n + k
		default:
			w.err = err
			return true
		}
	}
}

// wholeUntil returns the end of the stretch of one-part packets starting at
// i: a coalesced run never takes in a two-part packet.
func (w *writer) wholeUntil(i int) int {
	if w.pays == nil {
		return len(w.bufs)
	}
	for j := i; j < len(w.bufs); j++ {
		if len(w.pays[j]) > 0 {
			return j
		}
	}
	return len(w.bufs)
}

func (w *writer) writeOne(fd uintptr, pkt []byte) error {
	w.iov = w.iov[:0]
	w.iov = appendIovec(w.iov, w.hdrNone[:])
	w.iov = appendIovec(w.iov, pkt)
	return w.writev(fd)
}

// writeGSO writes run (as accepted by coalesceRun) as one TCPV4 super-packet:
// one IPv4 header whose total length covers everything, the first segment's
// TCP header (with PSH if the last segment had it), and the payloads. The
// kernel takes the GSO description (include/linux/virtio_net.h,
// virtio_net_hdr_to_skb) as a TCP segment that a NIC would cut into
// gso_size pieces, copying the headers to each piece and fixing sequence
// numbers, IP IDs, lengths and checksums; for local delivery it need not
// cut at all.
//
// cut, when not 0, is the gso_size to use instead of the first segment's
// payload length (writeSuper).
func (w *writer) writeGSO(fd uintptr, run [][]byte, cut int) error {
	return w.writeGSOPay(fd, run, nil, cut)
}

// writeGSOPay is writeGSO with extra payload bytes after the run's (the
// second part of a WritePacketsSplit packet, whose first part is the run's
// only element, its headers).
func (w *writer) writeGSOPay(fd uintptr, run [][]byte, extra []byte, cut int) error {
	first := run[0]
	ihl := int(first[0]&0x0f) * 4
	hl := ihl + int(first[ihl+12]>>4)*4
	total := hl + len(extra)
	for _, p := range run {
		total += len(p) - hl
	}
	gsoSize := len(first) - hl
	if cut > 0 {
		gsoSize = cut
	}
	head := w.head[:hl]
	copy(head, first[:hl])
	binary.BigEndian.PutUint16(head[2:4], uint16(total))
	ipv4HeaderChecksum(head, ihl)
	if run[len(run)-1][ihl+13]&tcpFlagPSH != 0 {
		head[ihl+13] |= tcpFlagPSH
	}
	// NEEDS_CSUM with the pseudo-header sum (not complemented) in the
	// checksum field, for the whole TCP length: the kernel adds the rest
	// per segment, adjusting the length as it cuts.
	binary.BigEndian.PutUint16(head[ihl+tcpCsumOff:], csumFold(pseudoSum(head, protoTCP, total-ihl)))

	h := vnetHdr{
		flags:      unix.VIRTIO_NET_HDR_F_NEEDS_CSUM,
		gsoType:    unix.VIRTIO_NET_HDR_GSO_TCPV4,
		hdrLen:     uint16(hl),
		gsoSize:    uint16(gsoSize),
		csumStart:  uint16(ihl),
		csumOffset: tcpCsumOff,
	}
	h.encode(w.hdrGSO[:])

	w.iov = w.iov[:0]
	w.iov = appendIovec(w.iov, w.hdrGSO[:])
	w.iov = appendIovec(w.iov, head)
	for _, p := range run {
		if len(p) > hl {
			w.iov = appendIovec(w.iov, p[hl:])
		}
	}
	if len(extra) > 0 {
		w.iov = appendIovec(w.iov, extra)
	}
	return w.writev(fd)
}

// writeSuperSplit is writeSuper for a packet in two parts: head holds
// exactly its IPv4 and TCP headers, pay its payload. Anything else is
// gathered and written as is, for the kernel to judge.
func (w *writer) writeSuperSplit(fd uintptr, head, pay []byte) error {
	ihl, ok := ipv4HeaderLen(head)
	total := len(head) + len(pay)
	if !ok || head[9] != protoTCP || len(head) < ihl+20 || total > maxIPv4Packet ||
		binary.BigEndian.Uint16(head[6:8])&0x3fff != 0 ||
		head[ihl+13]&^tcpFlagPSH != tcpFlagACK ||
		ihl+int(head[ihl+12]>>4)*4 != len(head) || w.mtu-len(head) <= 0 {
		return w.writeParts(fd, w.hdrNone[:], head, pay)
	}
	cut := w.mtu - len(head)
	err := w.writeGSOPay(fd, [][]byte{head}, pay, cut)
	if err == nil {
		w.gsoWrites.Add(1)
		w.coalesced.Add(uint64((len(pay) + cut - 1) / cut))
	}
	return err
}

// writeSuper writes pkt, longer than the MTU, as one TCPV4 GSO packet cut
// into MTU-sized pieces: gso_size is the MTU less pkt's IPv4 and TCP
// headers. Anything that is not such a TCP segment (flags other than ACK
// and PSH) is written as is, and the kernel judges it.
func (w *writer) writeSuper(fd uintptr, pkt []byte) error {
	ihl, ok := ipv4HeaderLen(pkt)
	if !ok || pkt[9] != protoTCP || len(pkt) < ihl+20 || len(pkt) > maxIPv4Packet ||
		binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 ||
		pkt[ihl+13]&^tcpFlagPSH != tcpFlagACK {
		return w.writeOne(fd, pkt)
	}
	hl := ihl + int(pkt[ihl+12]>>4)*4
	if hl < ihl+20 || hl >= len(pkt) || w.mtu-hl <= 0 {
		return w.writeOne(fd, pkt)
	}
	err := w.writeGSO(fd, [][]byte{pkt}, w.mtu-hl)
	if err == nil {
		w.gsoWrites.Add(1)
		w.coalesced.Add(uint64((len(pkt) - hl + w.mtu - hl - 1) / (w.mtu - hl)))
	}
	return err
}

// writev writes w.iov as one packet, then forgets the caller's buffers.
// A TUN write never blocks, so the call is raw (rawIO in tun.go).
func (w *writer) writev(fd uintptr) error {
	_, _, errno := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.iov[0])), uintptr(len(w.iov)))
	for i := range w.iov {
		w.iov[i].Base = nil
	}
	if errno != 0 {
		return errno
	}
	return nil
}

func appendIovec(iov []unix.Iovec, b []byte) []unix.Iovec {
	v := unix.Iovec{Base: &b[0]}
	v.SetLen(len(b))
	return append(iov, v)
}

// coalesceRun returns how many packets at the start of bufs form one run
// that can be written as a single TCPV4 GSO super-packet; 1 means "write
// bufs[0] alone". A run is two or more TCP/IPv4 segments that a NIC
// segmenting the super-packet would reproduce exactly (up to IP ID and
// checksums), so that what the peer receives is what the stack sent:
//   - IPv4 without fragmentation, total length equal to the buffer length;
//   - byte-identical IP and TCP headers, options included, except total
//     length, IP ID, the checksums, the sequence number and PSH on the last;
//     so the same addresses, ports, ACK number, window and TTL;
//   - flags exactly ACK (the last may add PSH, and ends the run);
//   - contiguous sequence numbers (RFC 9293 §3.4: seq of each is the
//     previous seq plus its payload length);
//   - every payload the size of the first (gso_size), but the last, which
//     may be shorter (and ends the run), and never empty;
//   - at most 65535 bytes in all, the IPv4 limit.
func coalesceRun(bufs [][]byte) int {
	if len(bufs) < 2 {
		return 1
	}
	first := bufs[0]
	ihl, ok := ipv4HeaderLen(first)
	if !ok || first[9] != protoTCP || len(first) < ihl+20 ||
		binary.BigEndian.Uint16(first[6:8])&0x3fff != 0 ||
		int(binary.BigEndian.Uint16(first[2:4])) != len(first) ||
		first[ihl+13] != tcpFlagACK {
		return 1
	}
	hl := ihl + int(first[ihl+12]>>4)*4
	if hl < ihl+20 || hl > len(first) {
		return 1
	}
	size := len(first) - hl
	if size == 0 {
		return 1
	}
	total := len(first)
	nextSeq := binary.BigEndian.Uint32(first[ihl+4:]) + uint32(size)
	k := 1
	for _, p := range bufs[1:] {
		if len(p) <= hl || len(p)-hl > size || total+len(p)-hl > maxIPv4Packet ||
			int(binary.BigEndian.Uint16(p[2:4])) != len(p) ||
			binary.BigEndian.Uint32(p[ihl+4:]) != nextSeq ||
			!sameHeaders(first, p, ihl, hl) {
			break
		}
		fl := p[ihl+13]
		if fl != tcpFlagACK && fl != tcpFlagACK|tcpFlagPSH {
			break
		}
		k++
		total += len(p) - hl
		nextSeq += uint32(len(p) - hl)
		if fl&tcpFlagPSH != 0 || len(p)-hl < size {
			break // only the last segment may push or be short
		}
	}
	return k
}

// sameHeaders reports whether a and b have the same IPv4 and TCP headers
// (both hl bytes long, IPv4 header ihl) apart from the fields a segmenting
// NIC rewrites: total length [2:4], ID [4:6], header checksum [10:12],
// sequence number, TCP flags and TCP checksum. The flags are checked by
// the caller. The first byte of b also fixes b's IHL, and the TCP data
// offset sits in the compared range, so equal ranges mean equal lengths.
func sameHeaders(a, b []byte, ihl, hl int) bool {
	t := ihl
	return bytes.Equal(a[0:2], b[0:2]) &&
		bytes.Equal(a[6:10], b[6:10]) &&
		bytes.Equal(a[12:t+4], b[12:t+4]) && // addresses, IP options, ports
		bytes.Equal(a[t+8:t+13], b[t+8:t+13]) && // ACK number, data offset
		bytes.Equal(a[t+14:t+16], b[t+14:t+16]) && // window
		bytes.Equal(a[t+18:hl], b[t+18:hl]) // urgent pointer, options
}
