package main

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"utcp/tun"
	"utcp/tun/netns"
)

// The read ceiling's sender puts its packets, byte for byte, into the
// queue the TUN's process reads, and says how many it offered.
func TestPacketSenderReachesTUN(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	dev, err := tun.Open(tun.Config{Name: "btunt0", HostAddr: netip.PrefixFrom(hostAddr, 24), MTU: rawPktLen})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	pkt := udpPacket(hostAddr, stackAddr, 9000, 9, rawPktLen)
	const batch = 8
	ps, err := newPacketSender(dev.Name(), pkt, batch)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.close()
	if n, err := ps.send(); n != batch || err != nil {
		t.Fatalf("send() = %d, %v; want %d offered", n, err, batch)
	}
	bufs, sizes := make([][]byte, dev.BatchSize()), make([]int, dev.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, 64<<10)
	}
	got := 0
	done := make(chan error, 1)
	go func() {
		for got < batch {
			n, err := dev.ReadPackets(bufs, sizes)
			if err != nil {
				done <- err
				return
			}
			for i := range n {
				// The kernel may queue IPv6 chatter of its own; count ours.
				if bytes.Equal(bufs[i][:sizes[i]], pkt) {
					got++
				}
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		dev.Close()
		<-done
		t.Fatalf("read %d of the %d packets sent within 5 s", got, batch)
	}
}
