package tun

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"utcp/tun/netns"
)

// mqReader reads every queue of m on its own goroutine and records, per UDP
// destination port seen, which queue delivered it.
type mqReader struct {
	mu    sync.Mutex
	queue map[uint16]map[int]int // UDP source port → queue → packets
	dstQ  map[uint16]int         // UDP destination port → last queue
	perQ  []int
	wg    sync.WaitGroup
}

func readQueues(t *testing.T, m *MultiQueue) *mqReader {
	t.Helper()
	r := &mqReader{queue: make(map[uint16]map[int]int), dstQ: make(map[uint16]int), perQ: make([]int, m.QueueCount())}
	for q := range m.QueueCount() {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			bufs, sizes := newBufs(m.BatchSize(), m.MTU())
			for {
				n, err := m.ReadQueue(q, bufs, sizes)
				if err != nil {
					if !errors.Is(err, os.ErrClosed) {
						t.Errorf("ReadQueue(%d): %v", q, err)
					}
					return
				}
				for i := range n {
					u, ok := parseUDP4(bufs[i][:sizes[i]])
					if !ok {
						continue
					}
					r.mu.Lock()
					byQ := r.queue[u.src.Port()]
					if byQ == nil {
						byQ = make(map[int]int)
						r.queue[u.src.Port()] = byQ
					}
					byQ[q]++
					r.dstQ[u.dst.Port()] = q
					r.perQ[q]++
					r.mu.Unlock()
				}
			}
		}()
	}
	t.Cleanup(func() { m.Close(); r.wg.Wait() })
	return r
}

// waitFor polls cond (under r.mu) until it holds or 5 s pass.
func (r *mqReader) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Fatalf("timed out waiting for %s: per queue %v, per flow %v", what, r.perQ, r.queue)
}

// TestMultiQueueSpreadsFlows: 32 kernel UDP flows to the stack address are
// spread by the kernel's flow hash over two queues, and every flow stays on
// one queue (so a reader per queue sees each flow in order).
func TestMultiQueueSpreadsFlows(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	m, err := OpenMultiQueue(Config{HostAddr: hostPrefix}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if m.QueueCount() != 2 || len(m.Queues()) != 2 || m.Name() != DefaultName {
		t.Fatalf("QueueCount %d, Queues %d, Name %q", m.QueueCount(), len(m.Queues()), m.Name())
	}
	r := readQueues(t, m)
	const flows, perFlow = 32, 5
	for range flows {
		c := dialStack(t)
		for i := range perFlow {
			if _, err := fmt.Fprintf(c, "packet %d", i); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.waitFor(t, "all datagrams", func() bool { return r.perQ[0]+r.perQ[1] >= flows*perFlow })
	r.mu.Lock()
	defer r.mu.Unlock()
	// With a uniform hash the chance that 32 flows all land on one queue
	// is 2^-31: both queues must carry traffic.
	if r.perQ[0] == 0 || r.perQ[1] == 0 {
		t.Fatalf("flows not spread: per queue %v", r.perQ)
	}
	for port, byQ := range r.queue {
		if len(byQ) != 1 {
			t.Errorf("flow from port %d split over queues %v", port, byQ)
		}
	}
	t.Logf("per queue %v over %d flows", r.perQ, len(r.queue))
}

// TestMultiQueueWriteSteers: after we write a flow's packet on queue q, the
// kernel sends that flow's replies to queue q (tun_flow_update), whichever
// queue its hash would have picked. This is what lets the stack keep a
// connection on one queue by writing it on one queue.
func TestMultiQueueWriteSteers(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	m, err := OpenMultiQueue(Config{HostAddr: hostPrefix}, 2)
	if err != nil {
		t.Fatal(err)
	}
	r := readQueues(t, m)
	ln, dst := hostUDP(t)
	const flows = 16
	for i := range flows {
		src := netip.AddrPortFrom(stackAddr, uint16(5000+i))
		q := i % 2
		if n, err := m.WriteQueue(q, [][]byte{buildUDP4(src, dst, []byte("hello"))}); n != 1 || err != nil {
			t.Fatalf("WriteQueue(%d) = %d, %v", q, n, err)
		}
	}
	// Echo each datagram back to its sender: the reply is the same flow.
	ln.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	for range flows {
		_, from, err := ln.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("kernel socket: %v", err)
		}
		if _, err := ln.WriteToUDPAddrPort([]byte("reply"), from); err != nil {
			t.Fatal(err)
		}
	}
	r.waitFor(t, "all replies", func() bool { return r.perQ[0]+r.perQ[1] >= flows })
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.perQ[0] != flows/2 || r.perQ[1] != flows/2 {
		t.Fatalf("replies per queue %v; want %d each (the queue each flow was written on)", r.perQ, flows/2)
	}
	for i := range flows {
		if q, ok := r.dstQ[uint16(5000+i)]; !ok || q != i%2 {
			t.Errorf("reply to port %d came on queue %d (seen %v); it was written on queue %d", 5000+i, q, ok, i%2)
		}
	}
}

// TestMultiQueueClose: Close wakes readers on every queue, removes the
// interface, and a second Close reports os.ErrClosed.
func TestMultiQueueClose(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	m, err := OpenMultiQueue(Config{HostAddr: hostPrefix, Name: "utcpmq%d"}, 3)
	if err != nil {
		t.Fatal(err)
	}
	name := m.Name()
	done := make(chan error, 3)
	for q := range 3 {
		go func() {
			bufs, sizes := newBufs(1, m.MTU())
			for {
				if _, err := m.ReadQueue(q, bufs, sizes); err != nil {
					done <- err
					return
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		select {
		case err := <-done:
			if !errors.Is(err, os.ErrClosed) {
				t.Fatalf("read after Close: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a reader was not woken by Close")
		}
	}
	if _, err := net.InterfaceByName(name); err == nil {
		t.Fatalf("interface %s still exists after Close", name)
	}
	if err := m.Close(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := OpenMultiQueue(Config{}, 0); err == nil {
		t.Fatal("OpenMultiQueue with 0 queues succeeded")
	}
}

// TestMultiQueueOffload: queues opened with offloads all carry virtio
// headers, and a plain datagram still reads back whole on some queue.
func TestMultiQueueOffload(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	m, err := OpenMultiQueue(Config{HostAddr: hostPrefix, Offload: true}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Offload() {
		t.Fatal("offloads refused on a kernel that accepts them for a single queue")
	}
	r := readQueues(t, m)
	for range 8 {
		c := dialStack(t)
		if _, err := c.Write([]byte("offloaded")); err != nil {
			t.Fatal(err)
		}
	}
	r.waitFor(t, "8 datagrams", func() bool { return r.perQ[0]+r.perQ[1] >= 8 })
}
