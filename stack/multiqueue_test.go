package stack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"

	"utcp/tun/tuntest"
)

// queuePipes is a fake multi-queue link: queue q is one in-memory pipe to
// the same queue of the peer. It records, per direction of each flow
// (source port, destination port), which queues delivered its packets.
type queuePipes struct {
	eps []*tuntest.Endpoint

	mu      sync.Mutex
	seen    map[[2]uint16]map[int]int
	perQ    []int
	written []int
}

func newQueuePipes(n int) (a, b *queuePipes) {
	a = &queuePipes{seen: make(map[[2]uint16]map[int]int), perQ: make([]int, n), written: make([]int, n)}
	b = &queuePipes{seen: make(map[[2]uint16]map[int]int), perQ: make([]int, n), written: make([]int, n)}
	for range n {
		x, y := tuntest.NewPipe(1500, 4096)
		a.eps = append(a.eps, x)
		b.eps = append(b.eps, y)
	}
	return a, b
}

var _ MultiQueueLink = (*queuePipes)(nil)

func (l *queuePipes) QueueCount() int { return len(l.eps) }

func (l *queuePipes) ReadQueue(q int, bufs [][]byte, sizes []int) (int, error) {
	n, err := l.eps[q].ReadPackets(bufs, sizes)
	l.mu.Lock()
	for i := range n {
		p := bufs[i][:sizes[i]]
		if len(p) >= 24 && p[9] == 6 {
			ihl := int(p[0]&0xf) * 4
			k := [2]uint16{binary.BigEndian.Uint16(p[ihl:]), binary.BigEndian.Uint16(p[ihl+2:])}
			if l.seen[k] == nil {
				l.seen[k] = make(map[int]int)
			}
			l.seen[k][q]++
		}
		l.perQ[q]++
	}
	l.mu.Unlock()
	return n, err
}

func (l *queuePipes) WriteQueue(q int, bufs [][]byte) (int, error) {
	l.mu.Lock()
	l.written[q] += len(bufs)
	l.mu.Unlock()
	return l.eps[q].WritePackets(bufs)
}

func (l *queuePipes) ReadPackets(bufs [][]byte, sizes []int) (int, error) {
	panic("a multi-queue stack must read with ReadQueue")
}

func (l *queuePipes) WritePackets(bufs [][]byte) (int, error) {
	panic("a multi-queue stack must write with WriteQueue")
}

func (l *queuePipes) MTU() int       { return 1500 }
func (l *queuePipes) BatchSize() int { return tuntest.DefaultBatchSize }
func (l *queuePipes) Close() error {
	for _, e := range l.eps {
		e.Close()
	}
	return nil
}

// Two stacks, each reading two queues with two goroutines, run 48
// concurrent echo connections byte-exact; every direction of every flow
// stays on one queue (so its packets are processed in order by one
// reader), both queues carry traffic, and Close stops all readers.
func TestMultiQueueEcho(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		la, lb := newQueuePipes(2)
		a, err := New(Config{Link: la, Addr: addrA, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(Config{Link: lb, Addr: addrB, Seed: 2})
		if err != nil {
			t.Fatal(err)
		}
		if a.Queues() != 2 || b.Queues() != 2 {
			t.Fatalf("Queues() = %d, %d; want 2", a.Queues(), b.Queues())
		}
		ln, err := b.Listen(7, 128)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.AcceptTCP()
				if err != nil {
					return
				}
				go func() {
					io.Copy(c, c)
					c.Close()
				}()
			}
		}()

		const conns, size = 48, 96 << 10
		var wg sync.WaitGroup
		for i := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				data := make([]byte, size)
				fillRandom(data, uint64(i+1))
				c, err := a.Dial(context.Background(), netip.AddrPortFrom(addrB, 7))
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				go func() {
					c.Write(data)
					c.CloseWrite()
				}()
				got, err := io.ReadAll(c)
				if err != nil {
					t.Errorf("conn %d: %v", i, err)
					return
				}
				if !bytes.Equal(got, data) {
					t.Errorf("conn %d: echoed %d bytes (sha %x), want %d (sha %x)", i, len(got), sha256.Sum256(got), size, sha256.Sum256(data))
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		for _, l := range []*queuePipes{la, lb} {
			l.mu.Lock()
			if l.perQ[0] == 0 || l.perQ[1] == 0 || l.written[0] == 0 || l.written[1] == 0 {
				t.Errorf("queues not all used: read %v, written %v", l.perQ, l.written)
			}
			for k, byQ := range l.seen {
				if len(byQ) != 1 {
					t.Errorf("flow %d→%d read on several queues: %v", k[0], k[1], byQ)
				}
			}
			t.Logf("read per queue %v, written per queue %v, %d flows", l.perQ, l.written, len(l.seen))
			l.mu.Unlock()
		}
		// Close stops both readers of each stack (synctest would report
		// a goroutine left blocked at the end of the bubble).
		a.Close()
		b.Close()
		ln.Close()
		synctest.Wait()
	})
}

// queueOf keeps a connection's packets on one queue and spreads
// connections over all queues.
func TestQueueOfSpreads(t *testing.T) {
	mk := func(sport, dport uint16) []byte {
		p := make([]byte, 40)
		p[0] = 0x45
		p[9] = 6
		copy(p[16:20], []byte{198, 18, 0, 1})
		binary.BigEndian.PutUint16(p[20:], sport)
		binary.BigEndian.PutUint16(p[22:], dport)
		return p
	}
	for _, n := range []int{2, 3, 4} {
		count := make([]int, n)
		for port := range uint16(1000) {
			q := queueOf(mk(80, 40000+port), n)
			if q2 := queueOf(mk(80, 40000+port), n); q2 != q {
				t.Fatalf("queueOf not stable: %d then %d", q, q2)
			}
			count[q]++
		}
		for q, c := range count {
			if c < 1000/n/2 {
				t.Errorf("%d queues: queue %d got %d of 1000 flows (%v)", n, q, c, count)
			}
		}
	}
	if q := queueOf([]byte{0x45}, 2); q != 0 {
		t.Fatalf("short packet went to queue %d", q)
	}
}
