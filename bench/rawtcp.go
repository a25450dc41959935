package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"utcp/seg"
	"utcp/tun"
)

// The TCP write ceiling: how many TCP segments per second one process can
// write through a TUN into a kernel TCP socket, with no stack at all.
//
// The write ceiling in rawtun.go hands the kernel UDP datagrams without a
// checksum, for a socket that only counts them. Download asks the kernel
// for more per packet: a checksum to verify, TCP receive processing, a
// reader to wake and an ACK now and then. That work runs inside the
// writer's own system call, so it bounds any stack that writes TCP to this
// TUN, ours or anyone's, and the UDP figure cannot show it.
//
// So here the kernel client does exactly what the download figure does:
// it connects to port 19 and reads with 256 KiB reads. The process answers
// its SYN with a SYN-ACK and then writes in-order 1500-byte segments
// shaped like utcp's (timestamp option, 1448 bytes of payload, PSH only
// on the last of each batch) as fast as the kernel's window lets it. There is no retransmission,
// no congestion control and no timer. The one thing it reads back is the
// kernel's ACKs: they carry the right edge of the window and the timestamp
// to echo.

const (
	ceilPort     = 19      // the download figure's chargen port
	ceilTCPHdr   = 20 + 12 // TCP header with NOP, NOP, timestamps
	ceilSegLen   = 20 + ceilTCPHdr + rawTCPPayload
	ceilISS      = 0x10000000 // our initial sequence number
	ceilSynWS    = 7          // the window scale we offer (we receive nothing)
	ceilStallFor = 500 * time.Millisecond
)

type tcpCeilResult struct {
	pps       float64 // data segments written per second
	segs      int64   // data segments written
	delivered float64 // fraction of the written payload the kernel client read
	clientMBs float64 // what the kernel client measured, as in the download figure
}

func (r tcpCeilResult) String() string {
	return fmt.Sprintf("TCP write %.0f pps (%.0f%% read by the kernel client, %.0f MB/s)", r.pps, 100*r.delivered, r.clientMBs)
}

// ceilFlow is what the reader learns from the kernel's segments, published
// to the writer. Only the reader stores.
type ceilFlow struct {
	synSeen  atomic.Bool
	irs      atomic.Uint32 // the kernel's initial sequence number
	port     atomic.Uint32 // the kernel client's port
	edge     atomic.Uint32 // SND.UNA + SND.WND: the window's right edge
	una      atomic.Uint32 // highest acknowledgment seen
	tsRecent atomic.Uint32 // the kernel's latest TSval, which we echo
	tsOK     atomic.Bool   // the SYN carried timestamps and window scaling
	sndWS    uint8         // the kernel's window shift (from its SYN); reader only
}

// rawTCPWrite measures the TCP write ceiling for about d.
func rawTCPWrite(ctx context.Context, d time.Duration, o ceilOpts) (tcpCeilResult, error) {
	var r tcpCeilResult
	dev, err := tun.Open(o.config("btun1"))
	if err != nil {
		return r, err
	}
	defer dev.Close()

	var fl ceilFlow
	go fl.readLoop(dev) // ends when dev is closed

	type clientResult struct {
		mbs float64
		n   int64
		err error
	}
	client := make(chan clientResult, 1)
	go func() {
		mbs, n, err := download(ctx, d)
		client <- clientResult{mbs, n, err}
	}()

	// The SYN.
	for wait := time.Now().Add(5 * time.Second); !fl.synSeen.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(wait) || ctx.Err() != nil {
			return r, errors.New("tcp ceiling: no SYN from the kernel client within 5 s")
		}
	}
	if !fl.tsOK.Load() {
		return r, errors.New("tcp ceiling: the kernel's SYN has no timestamp or window scale option (net.ipv4.tcp_timestamps or tcp_window_scaling off?)")
	}
	start := time.Now()
	tsval := func() uint32 { return uint32(time.Since(start).Milliseconds()) + 1 }
	irs, dport := fl.irs.Load(), uint16(fl.port.Load())

	synack := make([]byte, 20+40)
	putIPv4(synack, len(synack))
	tcp := synack[20:]
	binary.BigEndian.PutUint16(tcp[0:], ceilPort)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], ceilISS)
	binary.BigEndian.PutUint32(tcp[8:], irs+1)
	tcp[12] = 10 << 4
	tcp[13] = byte(seg.SYN | seg.ACK)
	binary.BigEndian.PutUint16(tcp[14:], 0xffff)
	opt := tcp[20:]
	copy(opt, []byte{2, 4, 0, 0, 1, 1, 8, 10})
	binary.BigEndian.PutUint16(opt[2:], rawPktLen-40) // MSS: what the MTU allows
	binary.BigEndian.PutUint32(opt[8:], tsval())
	binary.BigEndian.PutUint32(opt[12:], fl.tsRecent.Load())
	copy(opt[16:], []byte{1, 3, 3, ceilSynWS})
	putTCPChecksum(tcp, 0)
	if _, err := dev.WritePackets([][]byte{synack}); err != nil {
		return r, fmt.Errorf("tcp ceiling: SYN-ACK: %w", err)
	}
	for wait := time.Now().Add(5 * time.Second); fl.una.Load() != ceilISS+1; time.Sleep(100 * time.Microsecond) {
		if time.Now().After(wait) || ctx.Err() != nil {
			return r, errors.New("tcp ceiling: the kernel did not acknowledge our SYN-ACK within 5 s")
		}
	}

	// Segments: one template, then per batch only sequence number,
	// timestamps and checksum change.
	payload := make([]byte, rawTCPPayload)
	for i := range payload {
		payload[i] = byte(' ' + i%95) // chargen's alphabet
	}
	// The payload's sum is the same in every segment: take it once.
	initial := seg.PseudoHeaderSum(stackAddr, hostAddr, 6, ceilTCPHdr+rawTCPPayload) + uint32(seg.Checksum(payload, 0))
	batch := make([][]byte, dev.BatchSize())
	for i := range batch {
		p := make([]byte, ceilSegLen)
		putIPv4(p, ceilSegLen)
		t := p[20:]
		binary.BigEndian.PutUint16(t[0:], ceilPort)
		binary.BigEndian.PutUint16(t[2:], dport)
		binary.BigEndian.PutUint32(t[8:], irs+1)
		t[12] = (ceilTCPHdr / 4) << 4
		t[13] = byte(seg.ACK)
		binary.BigEndian.PutUint16(t[14:], 0xffff)
		copy(t[20:], []byte{1, 1, 8, 10})
		copy(t[ceilTCPHdr:], payload)
		batch[i] = p
	}

	sndNxt := uint32(ceilISS + 1)
	var wrote int64
	lastUna, lastMove := fl.una.Load(), time.Now()
	start = time.Now()
	var res clientResult
	gotClient := false
	for !gotClient {
		select {
		case res = <-client:
			gotClient = true
			continue
		default:
		}
		room := int32(fl.edge.Load() - sndNxt)
		k := min(len(batch), int(room)/rawTCPPayload)
		if k <= 0 {
			if una := fl.una.Load(); una != lastUna {
				lastUna, lastMove = una, time.Now()
			} else if time.Since(lastMove) > ceilStallFor {
				return r, fmt.Errorf("tcp ceiling: the kernel acknowledged nothing for %v with the window full (a segment dropped?)", ceilStallFor)
			}
			runtime.Gosched()
			continue
		}
		ts, ecr := tsval(), fl.tsRecent.Load()
		for i := range k {
			t := batch[i][20:]
			// PSH on the batch's last segment only, as utcp sets it
			// (stack/push.go), so GRO delivers each batch at once.
			t[13] = byte(seg.ACK)
			if i == k-1 {
				t[13] |= byte(seg.PSH)
			}
			binary.BigEndian.PutUint32(t[4:], sndNxt)
			binary.BigEndian.PutUint32(t[24:], ts)
			binary.BigEndian.PutUint32(t[28:], ecr)
			binary.BigEndian.PutUint16(t[16:], 0)
			binary.BigEndian.PutUint16(t[16:], ^seg.Checksum(t[:ceilTCPHdr], initial))
			sndNxt += rawTCPPayload
		}
		n, err := dev.WritePackets(batch[:k])
		wrote += int64(n)
		if err != nil {
			return r, fmt.Errorf("tcp ceiling: write: %w", err)
		}
	}
	el := time.Since(start).Seconds()
	if res.err != nil {
		return r, fmt.Errorf("tcp ceiling: kernel client: %w", res.err)
	}
	r.pps, r.segs = float64(wrote)/el, wrote
	r.clientMBs = res.mbs
	if wrote > 0 {
		r.delivered = float64(res.n) / float64(wrote*rawTCPPayload)
	}
	return r, nil
}

// putIPv4 writes an IPv4 header from the stack's address to the host's,
// total length n, don't-fragment, protocol TCP, with its checksum.
func putIPv4(p []byte, n int) {
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(n))
	p[6] = 0x40 // DF
	p[8] = 64   // TTL
	p[9] = 6    // TCP
	s4, d4 := stackAddr.As4(), hostAddr.As4()
	copy(p[12:16], s4[:])
	copy(p[16:20], d4[:])
	binary.BigEndian.PutUint16(p[10:], ^seg.Checksum(p[:20], 0))
}

// putTCPChecksum fills in the checksum of the TCP segment t (header and
// payload), given the sum of any payload not in t.
func putTCPChecksum(t []byte, extra uint32) {
	binary.BigEndian.PutUint16(t[16:], 0)
	sum := seg.PseudoHeaderSum(stackAddr, hostAddr, 6, len(t)) + extra
	binary.BigEndian.PutUint16(t[16:], ^seg.Checksum(t, sum))
}

// readLoop reads what the kernel sends: its SYN, then its ACKs. It stops
// when the device is closed.
func (fl *ceilFlow) readLoop(dev *tun.Device) {
	bufs, sizes := readBufs(dev)
	for {
		n, err := dev.ReadPackets(bufs, sizes)
		if err != nil {
			return
		}
		for i := range n {
			fl.take(bufs[i][:sizes[i]])
		}
	}
}

// take handles one packet from the kernel; anything that is not TCP over
// IPv4 to our port (IPv6 chatter, say) is ignored.
func (fl *ceilFlow) take(p []byte) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != 6 {
		return
	}
	ihl := int(p[0]&0x0f) * 4
	if len(p) < ihl+20 {
		return
	}
	t := p[ihl:]
	doff := int(t[12]>>4) * 4
	if binary.BigEndian.Uint16(t[2:]) != ceilPort || doff < 20 || len(t) < doff {
		return
	}
	flags := seg.Flags(t[13])
	ws, tsval, hasWS, hasTS := parseCeilOptions(t[20:doff])
	if flags&seg.SYN != 0 && flags&seg.ACK == 0 {
		if fl.synSeen.Load() {
			return // a retransmitted SYN: we answer once
		}
		fl.irs.Store(binary.BigEndian.Uint32(t[4:]))
		fl.port.Store(uint32(binary.BigEndian.Uint16(t[0:])))
		fl.sndWS = ws
		fl.tsRecent.Store(tsval)
		fl.tsOK.Store(hasWS && hasTS)
		fl.synSeen.Store(true)
		return
	}
	if flags&seg.ACK == 0 || flags&(seg.SYN|seg.RST) != 0 || !fl.synSeen.Load() {
		return
	}
	if hasTS {
		fl.tsRecent.Store(tsval)
	}
	ack := binary.BigEndian.Uint32(t[8:])
	if int32(ack-fl.una.Load()) > 0 || fl.una.Load() == 0 {
		fl.una.Store(ack)
	}
	// RFC 9293 §3.10.7.4: the window is relative to this segment's ACK.
	edge := ack + uint32(binary.BigEndian.Uint16(t[14:]))<<fl.sndWS
	if int32(edge-fl.edge.Load()) > 0 || fl.edge.Load() == 0 {
		fl.edge.Store(edge)
	}
}

// parseCeilOptions returns the window scale and TSval options, if present.
func parseCeilOptions(o []byte) (ws uint8, tsval uint32, hasWS, hasTS bool) {
	for len(o) > 0 {
		switch o[0] {
		case 0:
			return
		case 1:
			o = o[1:]
			continue
		}
		if len(o) < 2 || int(o[1]) < 2 || int(o[1]) > len(o) {
			return
		}
		switch {
		case o[0] == 3 && o[1] == 3:
			ws, hasWS = min(o[2], 14), true
		case o[0] == 8 && o[1] == 10:
			tsval, hasTS = binary.BigEndian.Uint32(o[2:]), true
		}
		o = o[o[1]:]
	}
	return
}
