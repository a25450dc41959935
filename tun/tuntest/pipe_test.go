package tuntest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"sync"
	"testing"
	"testing/synctest"
)

// readBufs returns n buffers of size each, plus a sizes slice.
func readBufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n)
}

// readN reads exactly n packets from l, failing the test on error.
func readN(t *testing.T, l Link, n int) [][]byte {
	t.Helper()
	bufs, sizes := readBufs(l.BatchSize(), l.MTU())
	var got [][]byte
	for len(got) < n {
		k, err := l.ReadPackets(bufs[:min(len(bufs), n-len(got))], sizes)
		if err != nil {
			t.Fatalf("ReadPackets after %d packets: %v", len(got), err)
		}
		if k == 0 {
			t.Fatalf("ReadPackets returned 0 packets and no error")
		}
		for i := range k {
			got = append(got, bytes.Clone(bufs[i][:sizes[i]]))
		}
	}
	return got
}

func TestPipeOrderAndBoundaries(t *testing.T) {
	a, b := NewPipe(1500, 1024)
	defer a.Close()
	defer b.Close()
	// Packets of every length 1..300, each filled with its own index, written
	// in batches of uneven sizes: a reader must see the same sequence with
	// the same boundaries, never merged or split.
	var want [][]byte
	for i := range 300 {
		want = append(want, bytes.Repeat([]byte{byte(i)}, i+1))
	}
	for i := 0; i < len(want); {
		k := min(1+i%7, len(want)-i)
		n, err := a.WritePackets(want[i : i+k])
		if n != k || err != nil {
			t.Fatalf("WritePackets = %d, %v; want %d, nil", n, err, k)
		}
		i += k
	}
	got := readN(t, b, len(want))
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("packet %d: got %d bytes %x..., want %d bytes %x...", i, len(got[i]), got[i][:1], len(want[i]), want[i][:1])
		}
	}
	if s := a.Stats(); s.Sent != 300 || s.Dropped != 0 {
		t.Errorf("a.Stats() = %+v, want Sent 300, Dropped 0", s)
	}
	if s := b.Stats(); s.Received != 300 {
		t.Errorf("b.Stats().Received = %d, want 300", s.Received)
	}
}

func TestPipeBothDirections(t *testing.T) {
	a, b := NewPipe(100, 8)
	defer a.Close()
	defer b.Close()
	a.WritePackets([][]byte{[]byte("a to b")})
	b.WritePackets([][]byte{[]byte("b to a")})
	if got := readN(t, b, 1)[0]; string(got) != "a to b" {
		t.Errorf("b read %q, want %q", got, "a to b")
	}
	if got := readN(t, a, 1)[0]; string(got) != "b to a" {
		t.Errorf("a read %q, want %q", got, "b to a")
	}
}

func TestPipeCopies(t *testing.T) {
	a, b := NewPipe(100, 8)
	defer a.Close()
	defer b.Close()
	buf := []byte("original")
	a.WritePackets([][]byte{buf})
	copy(buf, "MUTATED!")
	if got := readN(t, b, 1)[0]; string(got) != "original" {
		t.Errorf("reader saw %q after the writer reused its buffer; want %q", got, "original")
	}
	// The reader's buffer is its own too: a second packet reusing the
	// queue slot must not change a packet already read.
	first := make([]byte, 100)
	sizes := make([]int, 1)
	a.WritePackets([][]byte{[]byte("one")})
	b.ReadPackets([][]byte{first}, sizes)
	a.WritePackets([][]byte{[]byte("two")})
	readN(t, b, 1)
	if string(first[:sizes[0]]) != "one" {
		t.Errorf("first read changed to %q", first[:sizes[0]])
	}
}

func TestPipeCloseUnblocksReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := NewPipe(100, 8)
		errc := make(chan error, 1)
		go func() {
			bufs, sizes := readBufs(4, 100)
			_, err := b.ReadPackets(bufs, sizes)
			errc <- err
		}()
		synctest.Wait() // the reader is now blocked in ReadPackets
		select {
		case err := <-errc:
			t.Fatalf("ReadPackets returned %v with nothing written", err)
		default:
		}
		b.Close()
		if err := <-errc; !errors.Is(err, os.ErrClosed) {
			t.Fatalf("blocked ReadPackets after Close = %v, want os.ErrClosed", err)
		}
		// Later reads fail at once, even with packets written after Close.
		a.WritePackets([][]byte{[]byte("late")})
		bufs, sizes := readBufs(1, 100)
		if _, err := b.ReadPackets(bufs, sizes); !errors.Is(err, os.ErrClosed) {
			t.Errorf("ReadPackets after Close = %v, want os.ErrClosed", err)
		}
		if _, err := b.WritePackets([][]byte{[]byte("x")}); !errors.Is(err, os.ErrClosed) {
			t.Errorf("WritePackets on a closed endpoint = %v, want os.ErrClosed", err)
		}
		if s := a.Stats(); s.Dropped != 1 || s.Sent != 0 {
			t.Errorf("peer's write to a closed endpoint: Stats = %+v, want Dropped 1, Sent 0", s)
		}
		if err := b.Close(); err != nil {
			t.Errorf("second Close = %v, want nil", err)
		}
		a.Close()
	})
}

func TestPipePeerCanDrainAfterClose(t *testing.T) {
	a, b := NewPipe(100, 8)
	a.WritePackets([][]byte{[]byte("queued before close")})
	a.Close()
	if got := readN(t, b, 1)[0]; string(got) != "queued before close" {
		t.Errorf("b read %q", got)
	}
	b.Close()
}

func TestPipeFullQueueDropsTail(t *testing.T) {
	a, b := NewPipe(100, 4)
	defer a.Close()
	defer b.Close()
	var pkts [][]byte
	for i := range 10 {
		pkts = append(pkts, []byte{byte(i)})
	}
	if n, err := a.WritePackets(pkts); n != 10 || err != nil {
		t.Fatalf("WritePackets = %d, %v; want 10, nil (drops still count as written)", n, err)
	}
	if s := a.Stats(); s.Sent != 4 || s.Dropped != 6 {
		t.Fatalf("Stats = %+v, want Sent 4, Dropped 6", s)
	}
	// Drop-tail: the oldest four were kept.
	for i, p := range readN(t, b, 4) {
		if p[0] != byte(i) {
			t.Errorf("packet %d = %d, want %d", i, p[0], i)
		}
	}
	// Room again after the reader drained the queue.
	a.WritePackets(pkts[:1])
	if s := a.Stats(); s.Sent != 5 {
		t.Errorf("Sent = %d after draining, want 5", s.Sent)
	}
}

func TestPipeSizeLimits(t *testing.T) {
	a, b := NewPipe(10, 8)
	defer a.Close()
	defer b.Close()
	n, err := a.WritePackets([][]byte{make([]byte, 10), make([]byte, 11), make([]byte, 1)})
	if n != 1 || !errors.Is(err, ErrTooBig) {
		t.Fatalf("WritePackets with an 11-byte packet on MTU 10 = %d, %v; want 1, ErrTooBig", n, err)
	}
	a.WritePackets([][]byte{make([]byte, 3), make([]byte, 8)})
	sizes := make([]int, 3)
	// First buffer too small: nothing is consumed.
	if n, err := b.ReadPackets([][]byte{make([]byte, 5)}, sizes); n != 0 || !errors.Is(err, io.ErrShortBuffer) {
		t.Fatalf("ReadPackets into a short buffer = %d, %v; want 0, io.ErrShortBuffer", n, err)
	}
	// A later short buffer ends the batch; the packet stays queued.
	n, err = b.ReadPackets([][]byte{make([]byte, 10), make([]byte, 10), make([]byte, 5)}, sizes)
	if n != 2 || err != nil || sizes[0] != 10 || sizes[1] != 3 {
		t.Fatalf("ReadPackets = %d, %v, sizes %v; want 2, nil, [10 3 ...]", n, err, sizes)
	}
	if got := readN(t, b, 1)[0]; len(got) != 8 {
		t.Errorf("last packet has %d bytes, want 8", len(got))
	}
}

func TestPipeConcurrent(t *testing.T) {
	const writers, perWriter = 4, 2000
	a, b := NewPipe(64, writers*perWriter)
	defer a.Close()
	defer b.Close()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			pkt := make([]byte, 8)
			for i := range perWriter {
				binary.BigEndian.PutUint32(pkt[0:], uint32(w))
				binary.BigEndian.PutUint32(pkt[4:], uint32(i))
				if _, err := a.WritePackets([][]byte{pkt}); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		})
	}
	got := readN(t, b, writers*perWriter)
	wg.Wait()
	// Each writer's packets arrive in its own order.
	next := make([]uint32, writers)
	for _, p := range got {
		w, i := binary.BigEndian.Uint32(p[0:]), binary.BigEndian.Uint32(p[4:])
		if i != next[w] {
			t.Fatalf("writer %d: got packet %d, want %d", w, i, next[w])
		}
		next[w]++
	}
}

func BenchmarkPipe(b *testing.B) {
	const batch, size = 64, 1400
	x, y := NewPipe(1500, 1024)
	defer x.Close()
	defer y.Close()
	pkts, _ := readBufs(batch, size)
	bufs, sizes := readBufs(batch, 1500)
	b.SetBytes(batch * size)
	b.ReportAllocs()
	for b.Loop() {
		x.WritePackets(pkts)
		for got := 0; got < batch; {
			n, err := y.ReadPackets(bufs, sizes)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
}
