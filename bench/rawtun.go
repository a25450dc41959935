package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"

	"utcp/tun"
)

// The raw TUN ceiling: what one process moves through a TUN with no stack
// at all, with 1500-byte IPv4/UDP packets, batched as the stacks batch.

const rawPktLen = 1500

type rawResult struct {
	readPPS, writePPS     float64
	writeDelivered        float64 // fraction of written packets the kernel socket received
	readSent, readCounted int64
}

// ceilOpts are the bench flags that shape the ceilings' devices.
type ceilOpts struct {
	txqlen           int
	noIOURing, noGRO bool
}

// config is the device a ceiling opens: set up as utcp serve sets up its
// own (busy poll, io_uring, GRO on a plain device), unless --no-io-uring
// or --no-gro turns a technique off for utcp and the ceiling alike, so
// the ceiling is never lower for want of something the stack uses.
func (o ceilOpts) config(name string) tun.Config {
	c := tun.Config{Name: name, HostAddr: netip.PrefixFrom(hostAddr, 24), MTU: rawPktLen, TxQueueLen: o.txqlen,
		BusyPoll: tun.DefaultBusyPoll, NoIOURing: o.noIOURing, GROFlushTimeout: tun.DefaultGROFlushTimeout}
	if o.noGRO {
		c.GROFlushTimeout = 0
	}
	return c
}

func rawTUN(ctx context.Context, d time.Duration, o ceilOpts) (rawResult, error) {
	var r rawResult
	dev, err := tun.Open(o.config("btun0"))
	if err != nil {
		return r, err
	}
	defer dev.Close()

	// Read direction: the host offers packets to 198.18.0.2 on the TUN's
	// transmit path (packetSender); the process reads and counts.
	var counted atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		bufs, sizes := readBufs(dev)
		for {
			n, err := dev.ReadPackets(bufs, sizes)
			if err != nil {
				return
			}
			for i := 0; i < n; i++ {
				if sizes[i] == rawPktLen {
					counted.Add(1)
				}
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	// The host side puts 1500-byte UDP packets to 198.18.0.2:9 on the
	// TUN's transmit path with a packet socket (rawsend.go).
	ps, err := newPacketSender(dev.Name(), udpPacket(hostAddr, stackAddr, 9000, 9, rawPktLen), 64)
	if err != nil {
		close(stop)
		return r, err
	}
	time.Sleep(50 * time.Millisecond) // let the reader park
	c0 := counted.Load()
	start := time.Now()
	end := start.Add(d)
	var sent int64
	for time.Now().Before(end) && ctx.Err() == nil {
		n, err := ps.send()
		sent += int64(n)
		if err != nil {
			time.Sleep(time.Millisecond) // ENOBUFS and the like: back off
		}
	}
	el := time.Since(start).Seconds()
	c1 := counted.Load()
	r.readPPS = float64(c1-c0) / el
	r.readSent, r.readCounted = sent, c1-c0
	ps.close()

	// Write direction: the process writes prebuilt packets
	// 198.18.0.2:9 -> 198.18.0.1:9000 into the TUN; a kernel UDP socket
	// reads them with recvmmsg.
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: hostAddr.AsSlice(), Port: 9000})
	if err != nil {
		close(stop)
		return r, err
	}
	rc.SetReadBuffer(8 << 20)
	var got atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		rp := ipv4.NewPacketConn(rc)
		ms := make([]ipv4.Message, 64)
		for i := range ms {
			ms[i].Buffers = [][]byte{make([]byte, 2048)}
		}
		for {
			n, err := rp.ReadBatch(ms, 0)
			if err != nil {
				return
			}
			got.Add(int64(n))
		}
	}()
	pkt := udpPacket(stackAddr, hostAddr, 9, 9000, rawPktLen)
	batch := make([][]byte, dev.BatchSize())
	for i := range batch {
		batch[i] = pkt
	}
	start = time.Now()
	end = start.Add(d)
	var wrote int64
	for time.Now().Before(end) && ctx.Err() == nil {
		n, err := dev.WritePackets(batch)
		wrote += int64(n)
		if err != nil {
			close(stop)
			rc.Close()
			return r, err
		}
	}
	el = time.Since(start).Seconds()
	time.Sleep(100 * time.Millisecond) // let the socket drain what is queued
	r.writePPS = float64(wrote) / el
	if wrote > 0 {
		r.writeDelivered = float64(got.Load()) / float64(wrote)
	}
	rc.Close()
	close(stop)
	dev.Close()
	wg.Wait()
	return r, nil
}

// udpPacket builds an IPv4/UDP packet of total length n with a valid
// header checksum and no UDP checksum (0 is allowed in IPv4, RFC 768).
func udpPacket(src, dst netip.Addr, sport, dport uint16, n int) []byte {
	p := make([]byte, n)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(n))
	p[8] = 64 // TTL
	p[9] = 17 // UDP
	s4, d4 := src.As4(), dst.As4()
	copy(p[12:16], s4[:])
	copy(p[16:20], d4[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(p[20:], sport)
	binary.BigEndian.PutUint16(p[22:], dport)
	binary.BigEndian.PutUint16(p[24:], uint16(n-20))
	return p
}

func (r rawResult) String() string {
	return fmt.Sprintf("read %.0f pps (%d of %d offered), write %.0f pps (%.0f%% delivered)", r.readPPS, r.readCounted, r.readSent, r.writePPS, 100*r.writeDelivered)
}

// ceil is what the bench's flags ask of the ceilings' devices.
func (o *options) ceil() ceilOpts {
	return ceilOpts{txqlen: o.txqlen, noIOURing: o.noIOURing, noGRO: o.noGRO}
}

// readBufs are a ceiling's read buffers: a batch of 64 KiB each, as the
// stack's own, so both read the same way (tun reads a buffer longer than
// any packet with read(2), a shorter one with a guard byte).
func readBufs(dev *tun.Device) ([][]byte, []int) {
	bufs := make([][]byte, dev.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, 64<<10)
	}
	return bufs, make([]int, len(bufs))
}
