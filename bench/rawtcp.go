package main

import (
	"bytes"
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

	synack := (&seg.Segment{Src: stackAddr, Dst: hostAddr, SrcPort: ceilPort, DstPort: dport,
		Seq: ceilISS, Ack: seg.Seq(irs + 1), Flags: seg.SYN | seg.ACK, Window: 0xffff,
		Opts: seg.Options{MSS: rawPktLen - 40, HasMSS: true, WScale: ceilSynWS, HasWScale: true,
			HasTS: true, TSVal: tsval(), TSEcr: fl.tsRecent.Load()}}).AppendTo(nil)
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
	// seg lays the timestamp option out as Linux does (NOP, NOP, TS), so
	// TSval and TSecr sit at fixed offsets of the TCP header.
	tmpl := (&seg.Segment{Src: stackAddr, Dst: hostAddr, SrcPort: ceilPort, DstPort: dport,
		Ack: seg.Seq(irs + 1), Flags: seg.ACK, Window: 0xffff, Opts: seg.Options{HasTS: true},
		Payload: payload}).AppendTo(nil)
	if len(tmpl) != ceilSegLen || !bytes.Equal(tmpl[40:44], []byte{1, 1, 8, 10}) {
		return r, fmt.Errorf("tcp ceiling: seg built a %d-byte segment with options % x, not NOP NOP TS in %d bytes", len(tmpl), tmpl[40:min(len(tmpl), 52)], ceilSegLen)
	}
	batch := make([][]byte, dev.BatchSize())
	for i := range batch {
		batch[i] = bytes.Clone(tmpl)
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

// take handles one packet from the kernel; anything that is not a valid
// TCP segment over IPv4 to our port (IPv6 chatter, say) is ignored.
func (fl *ceilFlow) take(p []byte) {
	var sg seg.Segment
	if sg.Parse(p) != nil || sg.DstPort != ceilPort {
		return
	}
	if sg.Flags.Has(seg.SYN) && !sg.Flags.Has(seg.ACK) {
		if fl.synSeen.Load() {
			return // a retransmitted SYN: we answer once
		}
		fl.irs.Store(uint32(sg.Seq))
		fl.port.Store(uint32(sg.SrcPort))
		fl.sndWS = min(sg.Opts.WScale, 14) // RFC 7323 §2.3
		fl.tsRecent.Store(sg.Opts.TSVal)
		fl.tsOK.Store(sg.Opts.HasWScale && sg.Opts.HasTS)
		fl.synSeen.Store(true)
		return
	}
	if !sg.Flags.Has(seg.ACK) || sg.Flags&(seg.SYN|seg.RST) != 0 || !fl.synSeen.Load() {
		return
	}
	if sg.Opts.HasTS {
		fl.tsRecent.Store(sg.Opts.TSVal)
	}
	ack := uint32(sg.Ack)
	if int32(ack-fl.una.Load()) > 0 || fl.una.Load() == 0 {
		fl.una.Store(ack)
	}
	// RFC 9293 §3.10.7.4: the window is relative to this segment's ACK.
	edge := ack + uint32(sg.Window)<<fl.sndWS
	if int32(edge-fl.edge.Load()) > 0 || fl.edge.Load() == 0 {
		fl.edge.Store(edge)
	}
}
