package stack

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"utcp/tun/tuntest"
)

// TestRcvQueueModel drives a rcvQueue with random copies, adoptions,
// reads, discards and whole-chunk takes against a plain byte slice: the
// bytes and lengths always agree, nothing beyond the limit is accepted,
// and every array goes back to its own pool.
func TestRcvQueueModel(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewPCG(seed, 99))
		pool := &bufPool{maxBytes: 64 << 20}
		rx := &rxPool{size: rxBufSize, maxFree: 1 << 20}
		q := newRcvQueue(1<<20, pool, rx)
		var model []byte
		var next byte
		fill := func(b []byte) {
			for i := range b {
				b[i] = next
				next = next*7 + 3
			}
		}
		adopted, taken := 0, 0
		for step := range 3000 {
			switch op := r.IntN(6); {
			case op == 0 || op == 1: // copy a small or large segment
				p := make([]byte, r.IntN(1<<(8+8*op)))
				fill(p)
				n := q.Write(p)
				if want := min(len(p), q.limit-len(model)); n != want {
					t.Fatalf("seed %d step %d: Write(%d) = %d, want %d", seed, step, len(p), n, want)
				}
				model = append(model, p[:n]...)
			case op == 2: // adopt a link buffer
				size := adoptMin + r.IntN(rxBufSize-adoptMin-100)
				if !q.canAdopt(size, rxBufSize) {
					if size <= q.Free() && q.slack+rxBufSize-size <= q.limit/2 {
						t.Fatalf("canAdopt refused %d bytes with room and slack", size)
					}
					continue
				}
				buf := rx.get()
				off := r.IntN(rxBufSize - size)
				fill(buf[off : off+size])
				if !within(buf, buf[off:off+size]) || within(buf, model[:min(len(model), 1)]) {
					t.Fatalf("within misjudges")
				}
				q.adopt(buf, buf[off:off+size])
				model = append(model, buf[off:off+size]...)
				adopted++
			case op == 3: // read
				p := make([]byte, r.IntN(100000))
				n := q.Read(p)
				if want := min(len(p), len(model)); n != want || !bytes.Equal(p[:n], model[:n]) {
					t.Fatalf("seed %d step %d: Read(%d) = %d (want %d) or wrong bytes", seed, step, len(p), n, want)
				}
				model = model[n:]
			case op == 4: // discard
				n := r.IntN(50000)
				q.Discard(n)
				model = model[min(n, len(model)):]
			case op == 5: // take the head chunk whole (Conn.WriteTo)
				if q.Len() == 0 {
					q.release()
					continue
				}
				data, c := q.takeHead()
				if len(data) == 0 || !bytes.Equal(data, model[:len(data)]) {
					t.Fatalf("seed %d step %d: takeHead gave %d wrong bytes", seed, step, len(data))
				}
				model = model[len(data):]
				q.giveBack(c)
				taken++
			}
			if q.Len() != len(model) || q.Free() != q.limit-len(model) {
				t.Fatalf("seed %d step %d: Len %d, model %d", seed, step, q.Len(), len(model))
			}
			// The memory bound canAdopt keeps: slack is exactly what
			// the adopted chunks still held waste, and within half the
			// limit.
			slack := 0
			for _, c := range q.chunks[q.head:] {
				if c.owned {
					slack += int(c.slack)
				}
			}
			if slack != q.slack || q.slack > q.limit/2 {
				t.Fatalf("seed %d step %d: slack %d, chunks say %d, limit %d", seed, step, q.slack, slack, q.limit)
			}
		}
		q.Discard(q.Len())
		q.release()
		if len(q.chunks) != 0 {
			t.Fatalf("seed %d: %d chunks left after release", seed, len(q.chunks))
		}
		if adopted == 0 || taken == 0 {
			t.Fatalf("seed %d: adopted %d taken %d: model not exercised", seed, adopted, taken)
		}
		// Every adopted buffer came back to rx, every copy array to pool.
		if got := len(rx.free); got == 0 {
			t.Fatalf("seed %d: no link buffer returned to rxPool", seed)
		}
		for _, b := range rx.free {
			if len(b) != rxBufSize {
				t.Fatalf("seed %d: rxPool holds a %d-byte buffer", seed, len(b))
			}
		}
	}
}

// wholeLink is a segmenting link (GSOLink) that, like a TUN delivering TSO
// super-packets locally, passes packets longer than the MTU whole to the
// other side (with their checksum completed), so the receiving stack gets
// 64 KiB segments in its 64 KiB read buffers and adopts them.
type wholeLink struct {
	Link     // a Pipe with room for 64 KiB packets
	mtu  int // the MTU the stack is told
}

func (l *wholeLink) MTU() int        { return l.mtu }
func (l *wholeLink) GSOMaxSize() int { return 65535 }

func (l *wholeLink) WritePacketsSplit(bufs, pays [][]byte) (int, error) {
	return l.WritePackets(joinSplit(bufs, pays))
}

func (l *wholeLink) WritePackets(bufs [][]byte) (int, error) {
	out := make([][]byte, 0, len(bufs))
	for _, b := range bufs {
		if len(b) > l.mtu {
			if b = completePartial(b); b == nil {
				continue // broke the partial-checksum contract; the test sees loss
			}
		}
		out = append(out, b)
	}
	_, err := l.Link.WritePackets(out)
	return len(bufs), err
}

// Bulk transfer both ways with 64 KiB segments received whole, through
// loss, duplication and reordering: the receive queues adopt link buffers
// (zero-copy receive), one side reads with Read and the other with io.Copy
// (Conn.WriteTo, which lends queue chunks), and the bytes arrive exact.
func TestZeroCopyReceive(t *testing.T) {
	for seed := int64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				la, lb := tuntest.NewPipe(65535, 1024)
				f := tuntest.Faults{Seed: seed * 11, Drop: 0.02, Duplicate: 0.01, Reorder: 0.02, Delay: 2 * time.Millisecond, Jitter: time.Millisecond}
				fb := f
				fb.Seed++
				p := &pair{}
				var err error
				if p.a, err = New(Config{Link: &wholeLink{Link: tuntest.NewLossy(la, f), mtu: 1500}, Addr: addrA, Seed: 1}); err != nil {
					t.Fatal(err)
				}
				if p.b, err = New(Config{Link: &wholeLink{Link: tuntest.NewLossy(lb, fb), mtu: 1500}, Addr: addrB, Seed: 2}); err != nil {
					t.Fatal(err)
				}
				defer p.a.Close()
				defer p.b.Close()
				ln, _ := p.b.Listen(9, 4)
				client, server := dialAccept(t, p, ln)
				// The server's side reads through io.Copy, so Conn.WriteTo.
				exchangeExact(t, client, server, 8<<20, uint64(seed), func(r io.Reader) ([]byte, error) {
					var b bytes.Buffer
					_, err := io.Copy(&b, r)
					return b.Bytes(), err
				})
				p.a.mu.Lock()
				adoptedA, retxA := p.a.adopted, p.a.ctr.RetransSegs
				p.a.mu.Unlock()
				p.b.mu.Lock()
				adoptedB, retxB := p.b.adopted, p.b.ctr.RetransSegs
				p.b.mu.Unlock()
				t.Logf("adopted: a %d, b %d; retransmitted: a %d, b %d", adoptedA, adoptedB, retxA, retxB)
				if adoptedA == 0 || adoptedB == 0 {
					t.Fatalf("no segment adopted (a %d, b %d): zero-copy receive not exercised", adoptedA, adoptedB)
				}
				if retxA == 0 || retxB == 0 {
					t.Fatalf("no retransmissions under loss (a %d, b %d)", retxA, retxB)
				}
				client.Close()
				server.Close()
			})
		})
	}
}

// TestRcvQueueRefillAllocatesNothing fills a 6 MiB queue (the autotuning
// cap) past 64 arrays, drains it as a reader that keeps up does, and fills
// it again: the second fill reuses the chunk slice and the pooled arrays.
func TestRcvQueueRefillAllocatesNothing(t *testing.T) {
	pool := &bufPool{maxBytes: 64 << 20}
	rx := &rxPool{size: rxBufSize, maxFree: 1 << 20}
	q := newRcvQueue(6<<20, pool, rx)
	seg := make([]byte, 1448)
	out := make([]byte, 64<<10)
	cycle := func() {
		for q.Write(seg) == len(seg) {
		}
		for q.Len() > 0 {
			q.Read(out)
		}
		q.release()
	}
	cycle()
	if got := cap(q.chunks); got < 96 {
		t.Fatalf("chunk slice cap %d after a 6 MiB fill: the test no longer fills past 64 arrays", got)
	}
	if allocs := testing.AllocsPerRun(3, cycle); allocs != 0 {
		t.Errorf("refilling a drained 6 MiB queue: %.0f allocations per cycle, want 0", allocs)
	}
}
