package stack

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"utcp/seg"
)

// BenchmarkReceivePath is the stack's own cost per in-order 1448-byte data
// segment received, as in a plain TUN upload: a scripted peer link hands
// the read loop batches of 64 full segments, as fast as the advertised
// window allows, and takes the ACKs; the application reads and drops the
// bytes. GOMAXPROCS is 1, as for utcp serve, so ns/op is CPU per segment
// of everything utcp does for it (parse, checksums, demultiplexing, the
// receive queue, ACKs, the application's read), plus one 1500-byte copy
// that stands in for the kernel's copy to user space. What a TUN read
// costs the kernel is not in it; compare upload against the raw TUN read
// ceiling for that.
func BenchmarkReceivePath(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	peer, got, stop := receivePathSetup(b)
	defer stop()
	// Warm up until the window has autotuned and rings have settled.
	if err := peer.run(10*time.Second, 20000); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(1448)
	b.ReportAllocs()
	b.ResetTimer()
	if err := peer.run(time.Minute, b.N); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	_ = got
}

// TestReceivePathAcksPerBatch checks what BenchmarkReceivePath relies on
// and what upload speed rests on: every byte of a long in-order stream
// reaches the application, and the read loop acknowledges a batch of
// segments with one ACK, not one per segment or per two (RFC 9293 §3.8.6.3
// allows delaying; RFC 5681 §4.2's "every second full segment" is a SHOULD
// that batching meets per batch, as Linux's GRO does).
func TestReceivePathAcksPerBatch(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	peer, got, stop := receivePathSetup(t)
	const segments = 50000
	if err := peer.run(30*time.Second, segments); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for got() < segments*1448 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	stop()
	if n := got(); n != segments*1448 {
		t.Fatalf("application read %d bytes, want %d", n, segments*1448)
	}
	peer.mu.Lock()
	acks := peer.acks
	peer.mu.Unlock()
	t.Logf("%d segments, %d ACKs", segments, acks)
	if acks == 0 || acks > segments/16 {
		t.Errorf("%d ACKs for %d segments in batches of 64: want at least one and at most one per 16", acks, segments)
	}
}

// receivePathSetup starts a stack on a sendingPeer with an application
// that reads and counts every byte; got reports the count, stop closes all.
func receivePathSetup(tb testing.TB) (peer *sendingPeer, got func() int64, stop func()) {
	peer = newSendingPeer(1448)
	s, err := New(Config{Link: peer, Addr: addrB, Seed: 2})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := s.Listen(5001, 1)
	if err != nil {
		tb.Fatal(err)
	}
	var n atomic.Int64
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			return
		}
		buf := make([]byte, 256<<10)
		for {
			k, err := c.Read(buf)
			n.Add(int64(k))
			if err != nil {
				return
			}
		}
	}()
	return peer, n.Load, func() { s.Close() }
}

// sendingPeer is a Link whose far end is a minimal TCP sender at addrA:
// it opens a connection to addrB:5001 and then sends full segments of
// mss bytes whenever the stack's window has room, reading the stack's
// ACKs for the window's right edge. It never retransmits: the link is
// lossless. Segments come from one template whose sequence number and
// checksum are patched per segment (RFC 1624), so the peer's own cost per
// segment is a copy and a few stores.
type sendingPeer struct {
	mss int

	mu     sync.Mutex
	wake   chan struct{} // an ACK moved the window, or a run began
	iss    seg.Seq       // the stack's ISS, from its SYN-ACK
	synAck bool
	sndNxt seg.Seq // next sequence number to send
	sndWnd seg.Seq // right edge of the stack's window: ack + window << scale
	wscale uint8
	state  int // 0: SYN to send; 1: SYN sent; 2: ACK of the SYN-ACK to send; 3: sending data
	budget int // data segments left in this run
	acks   int // pure ACKs the stack sent while data flowed
	closed bool

	template []byte // a whole data segment with seq 0
	sum0     uint16 // its TCP checksum field
	seqOff   int    // offset of the TCP sequence number in template
	sumOff   int    // offset of the TCP checksum in template
	scratch  seg.Segment
}

const peerISN = 1000

func newSendingPeer(mss int) *sendingPeer {
	p := &sendingPeer{mss: mss, wake: make(chan struct{}, 1)}
	return p
}

func (p *sendingPeer) MTU() int       { return 1500 }
func (p *sendingPeer) BatchSize() int { return 64 }

func (p *sendingPeer) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.signal()
	return nil
}

func (p *sendingPeer) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run lets n more data segments go and waits until all were sent, for at
// most limit.
func (p *sendingPeer) run(limit time.Duration, n int) error {
	p.mu.Lock()
	p.budget += n
	p.mu.Unlock()
	p.signal()
	deadline := time.Now().Add(limit)
	for {
		p.mu.Lock()
		left := p.budget
		p.mu.Unlock()
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d segments unsent after %v: the stack's window stayed closed", left, n, limit)
		}
		time.Sleep(time.Millisecond)
	}
}

func (p *sendingPeer) segment(flags seg.Flags, sq seg.Seq, payload []byte) seg.Segment {
	return seg.Segment{
		Src: addrA, Dst: addrB, SrcPort: 40000, DstPort: 5001,
		Seq: sq, Ack: p.iss + 1, Flags: flags, Window: 65535,
		Opts:    seg.Options{HasTS: true, TSVal: 1, TSEcr: 1},
		Payload: payload,
	}
}

func (p *sendingPeer) ReadPackets(bufs [][]byte, sizes []int) (int, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return 0, os.ErrClosed
		}
		switch p.state {
		case 0:
			syn := seg.Segment{
				Src: addrA, Dst: addrB, SrcPort: 40000, DstPort: 5001,
				Seq: peerISN, Flags: seg.SYN, Window: 65535,
				Opts: seg.Options{HasMSS: true, MSS: uint16(p.mss), HasWScale: true, WScale: 7,
					SACKPermitted: true, HasTS: true, TSVal: 1},
			}
			sizes[0] = len(syn.AppendTo(bufs[0][:0]))
			p.state = 1
			p.mu.Unlock()
			return 1, nil
		case 2:
			ack := p.segment(seg.ACK, peerISN+1, nil)
			sizes[0] = len(ack.AppendTo(bufs[0][:0]))
			p.sndNxt = peerISN + 1
			payload := make([]byte, p.mss)
			for i := range payload {
				payload[i] = byte(i * 7)
			}
			d := p.segment(seg.ACK|seg.PSH, 0, payload)
			p.template = d.AppendTo(nil)
			p.seqOff = 20 + 4
			p.sumOff = 20 + 16
			p.sum0 = binary.BigEndian.Uint16(p.template[p.sumOff:])
			p.state = 3
			p.mu.Unlock()
			return 1, nil
		case 3:
			n := 0
			for n < len(bufs) && p.budget > 0 && p.sndWnd.Sub(p.sndNxt) >= int32(p.mss) {
				buf := bufs[n][:copy(bufs[n][:cap(bufs[n])], p.template)]
				sq := uint32(p.sndNxt)
				binary.BigEndian.PutUint32(buf[p.seqOff:], sq)
				// RFC 1624: HC' = ~(~HC + m'), with m' the new 32-bit
				// sequence number in two 16-bit words (the old one is 0).
				sum := uint32(^p.sum0) + sq>>16 + sq&0xffff
				sum = sum>>16 + sum&0xffff
				sum = sum>>16 + sum&0xffff
				binary.BigEndian.PutUint16(buf[p.sumOff:], ^uint16(sum))
				sizes[n] = len(buf)
				p.sndNxt = p.sndNxt.Add(uint32(p.mss))
				p.budget--
				n++
			}
			p.mu.Unlock()
			if n > 0 {
				return n, nil
			}
		default:
			p.mu.Unlock()
		}
		<-p.wake
	}
}

func (p *sendingPeer) WritePackets(bufs [][]byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	moved := false
	for _, pkt := range bufs {
		sg := &p.scratch
		if err := sg.Parse(pkt); err != nil || sg.DstPort != 40000 {
			continue
		}
		switch {
		case sg.Flags.Has(seg.SYN) && sg.Flags.Has(seg.ACK) && p.state == 1:
			p.iss = sg.Seq
			if sg.Opts.HasWScale {
				p.wscale = sg.Opts.WScale
			}
			p.sndWnd = sg.Ack.Add(uint32(sg.Window))
			p.state = 2
			moved = true
		case sg.Flags.Has(seg.ACK) && p.state == 3:
			p.acks++
			if edge := sg.Ack.Add(uint32(sg.Window) << p.wscale); edge.GreaterThan(p.sndWnd) {
				p.sndWnd = edge
				moved = true
			}
		}
	}
	if moved {
		p.signal()
	}
	return len(bufs), nil
}

var _ io.Closer = (*sendingPeer)(nil)
