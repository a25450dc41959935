package tuntest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// pkt returns a packet of size bytes (at least 4) whose first four bytes are
// the big-endian id and the rest a pattern derived from it.
func pkt(id, size int) []byte {
	p := make([]byte, size)
	binary.BigEndian.PutUint32(p, uint32(id))
	for i := 4; i < size; i++ {
		p[i] = byte(id*7 + i)
	}
	return p
}

func pktID(p []byte) int { return int(binary.BigEndian.Uint32(p)) }

// arrival is a packet delivered through a Lossy link and its (virtual) time
// since the run started.
type arrival struct {
	at  time.Duration
	pkt []byte
}

// runLossy must be called inside a synctest bubble. It connects a Lossy with
// faults f to a Pipe, calls send with the Lossy and the start time, lets
// virtual time run until every delay and reorder timeout has expired, and
// returns what arrived at the other end and the fault counters.
func runLossy(t *testing.T, f Faults, send func(l *Lossy)) ([]arrival, FaultStats) {
	t.Helper()
	if f.Logf == nil {
		f.Logf = t.Logf
	}
	a, b := NewPipe(1500, 1<<16)
	l := NewLossy(a, f)
	start := time.Now()
	var got []arrival
	done := make(chan struct{})
	go func() {
		defer close(done)
		bufs, sizes := readBufs(64, 1500)
		for {
			n, err := b.ReadPackets(bufs, sizes)
			if err != nil {
				return
			}
			now := time.Since(start)
			for i := range n {
				got = append(got, arrival{now, bytes.Clone(bufs[i][:sizes[i]])})
			}
		}
	}()
	send(l)
	time.Sleep(time.Hour) // far beyond any delay, rate backlog or reorder timeout
	synctest.Wait()       // the reader has drained the pipe and blocks again
	stats := l.Stats()
	if s := b.Stats(); s.Received != stats.Passed {
		t.Errorf("reader got %d packets, Lossy says it passed %d", s.Received, stats.Passed)
	}
	l.Close()
	b.Close()
	<-done
	return got, stats
}

// sendEach writes n packets of size bytes, one per WritePackets call.
func sendEach(n, size int) func(*Lossy) {
	return func(l *Lossy) {
		for i := range n {
			if _, err := l.WritePackets([][]byte{pkt(i, size)}); err != nil {
				panic(err)
			}
		}
	}
}

func ids(got []arrival) []int {
	var s []int
	for _, a := range got {
		s = append(s, pktID(a.pkt))
	}
	return s
}

// within5Sigma reports whether count is a plausible Binomial(n, p) draw: it
// is within five standard deviations of the mean. A correct implementation
// fails this with probability about 6e-7; with a fixed seed it is fully
// deterministic anyway, so the bound mainly rejects wrong rates.
func within5Sigma(count uint64, n int, p float64) (bool, string) {
	mean := float64(n) * p
	sigma := math.Sqrt(float64(n) * p * (1 - p))
	ok := math.Abs(float64(count)-mean) <= 5*sigma
	return ok, fmt.Sprintf("%d (want %.0f ± %.0f)", count, mean, 5*sigma)
}

func TestLossyRates(t *testing.T) {
	const n, p = 10000, 0.1
	tests := []struct {
		name  string
		f     Faults
		count func(FaultStats) uint64
		check func(t *testing.T, got []arrival, s FaultStats)
	}{
		{"Drop", Faults{Drop: p}, func(s FaultStats) uint64 { return s.Dropped },
			func(t *testing.T, got []arrival, s FaultStats) {
				if len(got) != n-int(s.Dropped) {
					t.Errorf("%d arrived, want %d - %d dropped", len(got), n, s.Dropped)
				}
			}},
		{"Duplicate", Faults{Duplicate: p}, func(s FaultStats) uint64 { return s.Duplicated },
			func(t *testing.T, got []arrival, s FaultStats) {
				if len(got) != n+int(s.Duplicated) {
					t.Errorf("%d arrived, want %d + %d duplicated", len(got), n, s.Duplicated)
				}
			}},
		{"Reorder", Faults{Reorder: p}, func(s FaultStats) uint64 { return s.Reordered },
			func(t *testing.T, got []arrival, s FaultStats) {
				// Every packet arrives exactly once, and each held packet
				// is overtaken: count the packets that arrive after a
				// higher-numbered one (a run of held packets counts once
				// per packet, and so does Reordered).
				if len(got) != n {
					t.Errorf("%d arrived, want %d", len(got), n)
				}
				// Packets still held when the writes stop are released by
				// the reorder timeout, in order, and are the only ones
				// arriving after time zero.
				late, maxSeen, timedOut := 0, -1, 0
				for _, a := range got {
					if id := pktID(a.pkt); id < maxSeen {
						late++
					} else {
						maxSeen = id
					}
					if a.at == DefaultReorderTimeout {
						timedOut++
					} else if a.at != 0 {
						t.Errorf("packet %d arrived at %v", pktID(a.pkt), a.at)
					}
				}
				if uint64(late+timedOut) != s.Reordered || late < 900 {
					t.Errorf("%d packets arrived late and %d after the timeout, Reordered = %d", late, timedOut, s.Reordered)
				}
			}},
		{"Corrupt", Faults{Corrupt: p}, func(s FaultStats) uint64 { return s.Corrupted },
			func(t *testing.T, got []arrival, s FaultStats) {
				changed := 0
				for i, a := range got {
					if !bytes.Equal(a.pkt, pkt(i, 64)) {
						changed++
					}
				}
				if len(got) != n || uint64(changed) != s.Corrupted {
					t.Errorf("%d arrived (want %d), %d changed, Corrupted = %d", len(got), n, changed, s.Corrupted)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tt.f.Seed = 12345
				got, s := runLossy(t, tt.f, sendEach(n, 64))
				if ok, msg := within5Sigma(tt.count(s), n, p); !ok {
					t.Errorf("%s count %s over %d packets", tt.name, msg, n)
				}
				tt.check(t, got, s)
			})
		})
	}
}

func TestLossyZeroFaultsIsTransparent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		got, s := runLossy(t, Faults{Seed: 1}, sendEach(1000, 100))
		for i, a := range got {
			if !bytes.Equal(a.pkt, pkt(i, 100)) || a.at != 0 {
				t.Fatalf("packet %d: id %d at %v, want id %d unchanged at 0", i, pktID(a.pkt), a.at, i)
			}
		}
		if len(got) != 1000 || s != (FaultStats{Passed: 1000}) {
			t.Errorf("%d arrived, stats %+v; want 1000 and only Passed", len(got), s)
		}
	})
}

// DropBatch discards the packets of one write together, or none of them:
// every batch of ten arrives whole or not at all, at about the rate asked.
func TestLossyDropBatchDropsWholeWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const batches, per = 1000, 10
		got, s := runLossy(t, Faults{Seed: 5, DropBatch: 0.2}, func(l *Lossy) {
			for b := range batches {
				bufs := make([][]byte, per)
				for i := range bufs {
					bufs[i] = pkt(b*per+i, 100)
				}
				if _, err := l.WritePackets(bufs); err != nil {
					panic(err)
				}
			}
		})
		count := map[int]int{}
		for _, a := range got {
			count[pktID(a.pkt)/per]++
		}
		for b, n := range count {
			if n != per {
				t.Fatalf("batch %d: %d of its %d packets arrived", b, n, per)
			}
		}
		dropped := uint64(batches - len(count))
		if ok, msg := within5Sigma(dropped, batches, 0.2); !ok {
			t.Errorf("batches dropped: %s", msg)
		}
		if s.Dropped != dropped*per {
			t.Errorf("Dropped %d, want %d", s.Dropped, dropped*per)
		}
	})
}

func TestLossyDuplicateArrivesTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		got, s := runLossy(t, Faults{Seed: 2, Duplicate: 1}, sendEach(100, 40))
		if len(got) != 200 || s.Duplicated != 100 {
			t.Fatalf("%d arrived, Duplicated %d; want 200, 100", len(got), s.Duplicated)
		}
		for i := range 100 {
			want := pkt(i, 40)
			if !bytes.Equal(got[2*i].pkt, want) || !bytes.Equal(got[2*i+1].pkt, want) {
				t.Fatalf("packets %d and %d are ids %d, %d; want %d twice", 2*i, 2*i+1, pktID(got[2*i].pkt), pktID(got[2*i+1].pkt), i)
			}
		}
	})
}

func TestLossyReorderOvertakes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Hold only packet 1: it must arrive right after packet 2.
		f := Faults{Seed: 3, Reorder: 1, Filter: func(p []byte) bool { return pktID(p) == 1 }}
		got, s := runLossy(t, f, sendEach(5, 20))
		if want := []int{0, 2, 1, 3, 4}; !slices.Equal(ids(got), want) || s.Reordered != 1 {
			t.Errorf("order %v, Reordered %d; want %v, 1", ids(got), s.Reordered, want)
		}
		for _, a := range got {
			if a.at != 0 {
				t.Errorf("packet %d arrived at %v; a held packet released by a later one waits no time", pktID(a.pkt), a.at)
			}
		}
	})
}

func TestLossyReorderTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The last packet is held and nothing follows: it is released after
		// ReorderTimeout rather than lost.
		f := Faults{Seed: 4, Reorder: 1, ReorderTimeout: 30 * time.Millisecond, Filter: func(p []byte) bool { return pktID(p) == 2 }}
		got, _ := runLossy(t, f, sendEach(3, 20))
		if !slices.Equal(ids(got), []int{0, 1, 2}) || got[2].at != 30*time.Millisecond {
			t.Errorf("arrivals %v, last at %v; want [0 1 2], last at 30ms", ids(got), got[len(got)-1].at)
		}
	})
}

func TestLossyCorruptFlipsOneBit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, size = 2000, 64
		got, s := runLossy(t, Faults{Seed: 5, Corrupt: 1}, sendEach(n, size))
		if len(got) != n || s.Corrupted != n {
			t.Fatalf("%d arrived, Corrupted %d; want %d each", len(got), s.Corrupted, n)
		}
		positions := make(map[int]bool)
		for i, a := range got {
			want := pkt(i, size)
			flipped := 0
			for j := range want {
				d := a.pkt[j] ^ want[j]
				flipped += bits.OnesCount8(d)
				if d != 0 {
					positions[j*8+bits.TrailingZeros8(d)] = true
				}
			}
			if flipped != 1 {
				t.Fatalf("packet %d: %d bits differ, want exactly 1", i, flipped)
			}
		}
		// The bit is drawn uniformly over the packet: 2000 draws over 512
		// bits leave a given bit unhit with probability (511/512)^2000 ≈ 2%,
		// so nearly all positions appear.
		if len(positions) < size*8*9/10 {
			t.Errorf("only %d of %d bit positions were ever flipped", len(positions), size*8)
		}
	})
}

func TestLossyDelayJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			delay  = 200 * time.Millisecond
			jitter = 50 * time.Millisecond
			gap    = 100 * time.Millisecond // > jitter, so FIFO never adds delay
			n      = 300
		)
		sent := make([]time.Duration, n)
		got, s := runLossy(t, Faults{Seed: 6, Delay: delay, Jitter: jitter}, func(l *Lossy) {
			start := time.Now()
			for i := range n {
				sent[i] = time.Since(start)
				l.WritePackets([][]byte{pkt(i, 50)})
				time.Sleep(gap)
			}
		})
		if len(got) != n || s.Delayed != n {
			t.Fatalf("%d arrived, Delayed %d; want %d", len(got), s.Delayed, n)
		}
		lo, hi := time.Duration(math.MaxInt64), time.Duration(0)
		for i, a := range got {
			d := a.at - sent[pktID(a.pkt)]
			if pktID(a.pkt) != i || d < delay || d >= delay+jitter {
				t.Fatalf("packet %d (id %d) took %v, want in [%v, %v)", i, pktID(a.pkt), d, delay, delay+jitter)
			}
			lo, hi = min(lo, d), max(hi, d)
		}
		// Uniform jitter: 300 draws come within 2.5 ms of both ends (each
		// miss has probability 0.95^300 ≈ 2e-7).
		if lo > delay+jitter/20 || hi < delay+jitter*19/20 {
			t.Errorf("delays span [%v, %v], want nearly all of [%v, %v)", lo, hi, delay, delay+jitter)
		}
	})
}

func TestLossyJitterKeepsOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Back-to-back packets with jitter far larger than their spacing
		// would swap if each drew its own arrival time independently.
		got, _ := runLossy(t, Faults{Seed: 7, Delay: time.Millisecond, Jitter: 100 * time.Millisecond}, sendEach(500, 30))
		if !slices.IsSorted(ids(got)) || len(got) != 500 {
			t.Errorf("jitter reordered packets: %v", ids(got)[:20])
		}
	})
}

func TestLossyRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rate = 1_000_000 // bytes per second: 1000 bytes take 1 ms
		sizes := []int{1000, 1000, 500, 250, 1500, 1000}
		got, s := runLossy(t, Faults{Seed: 8, RateBps: rate}, func(l *Lossy) {
			var burst [][]byte
			for i, n := range sizes {
				burst = append(burst, pkt(i, n))
			}
			l.WritePackets(burst)
			// After the link has gone idle, a packet waits only for its
			// own serialization.
			time.Sleep(time.Second)
			l.WritePackets([][]byte{pkt(len(sizes), 1400)})
		})
		var want []time.Duration
		var t0 time.Duration
		for _, n := range sizes {
			t0 += time.Duration(n) * time.Second / rate
			want = append(want, t0)
		}
		want = append(want, time.Second+1400*time.Microsecond)
		if len(got) != len(want) || s.Delayed != uint64(len(want)) {
			t.Fatalf("%d arrived, Delayed %d; want %d", len(got), s.Delayed, len(want))
		}
		for i, a := range got {
			if a.at != want[i] {
				t.Errorf("packet %d (%d bytes) arrived at %v, want %v", i, len(a.pkt), a.at, want[i])
			}
		}
	})
}

func TestLossyRateThenDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Serialization and propagation add up: 10 ms of link time, then
		// 50 ms of flight.
		got, _ := runLossy(t, Faults{Seed: 9, RateBps: 100_000, Delay: 50 * time.Millisecond}, sendEach(3, 1000))
		for i, a := range got {
			if want := time.Duration(i+1)*10*time.Millisecond + 50*time.Millisecond; a.at != want {
				t.Errorf("packet %d at %v, want %v", i, a.at, want)
			}
		}
	})
}

func TestLossyLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		got, s := runLossy(t, Faults{Seed: 10, RateBps: 1000, Limit: 5}, func(l *Lossy) {
			var burst [][]byte
			for i := range 20 {
				burst = append(burst, pkt(i, 100))
			}
			l.WritePackets(burst)
		})
		if !slices.Equal(ids(got), []int{0, 1, 2, 3, 4}) || s.Overflow != 15 {
			t.Errorf("arrived %v, Overflow %d; want [0 1 2 3 4], 15", ids(got), s.Overflow)
		}
	})
}

func TestLossyFilter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Drop and delay only odd packets; even ones pass at once, untouched.
		odd := func(p []byte) bool { return pktID(p)%2 == 1 }
		got, s := runLossy(t, Faults{Seed: 11, Drop: 1, Filter: odd}, sendEach(100, 30))
		for i, a := range got {
			if pktID(a.pkt) != 2*i {
				t.Fatalf("arrival %d is id %d, want %d", i, pktID(a.pkt), 2*i)
			}
		}
		if len(got) != 50 || s.Dropped != 50 {
			t.Errorf("%d arrived, Dropped %d; want 50, 50", len(got), s.Dropped)
		}

		got, s = runLossy(t, Faults{Seed: 11, Delay: time.Second, Filter: odd}, sendEach(10, 30))
		if want := []int{0, 2, 4, 6, 8, 1, 3, 5, 7, 9}; !slices.Equal(ids(got), want) {
			t.Errorf("order %v, want %v", ids(got), want)
		}
		for _, a := range got {
			if want := time.Duration(pktID(a.pkt)%2) * time.Second; a.at != want {
				t.Errorf("id %d at %v, want %v", pktID(a.pkt), a.at, want)
			}
		}
		if s.Delayed != 5 {
			t.Errorf("Delayed = %d, want 5", s.Delayed)
		}
	})
}

func TestLossyDeterministic(t *testing.T) {
	f := Faults{
		Drop: 0.05, Duplicate: 0.05, Reorder: 0.1, Corrupt: 0.05,
		Delay: 20 * time.Millisecond, Jitter: 10 * time.Millisecond, RateBps: 10_000_000,
	}
	run := func(seed int64) []arrival {
		var got []arrival
		synctest.Test(t, func(t *testing.T) {
			f := f
			f.Seed = seed
			got, _ = runLossy(t, f, func(l *Lossy) {
				for i := range 2000 {
					l.WritePackets([][]byte{pkt(i, 100+i%900)})
					if i%10 == 0 {
						time.Sleep(time.Millisecond)
					}
				}
			})
		})
		return got
	}
	same := func(x, y []arrival) bool {
		return slices.EqualFunc(x, y, func(a, b arrival) bool { return a.at == b.at && bytes.Equal(a.pkt, b.pkt) })
	}
	a, b, c := run(42), run(42), run(43)
	if len(a) < 1900 {
		t.Fatalf("only %d of 2000 packets arrived", len(a))
	}
	if !same(a, b) {
		t.Errorf("seed 42 twice gave different deliveries (%d vs %d packets)", len(a), len(b))
	}
	if same(a, c) {
		t.Errorf("seeds 42 and 43 gave identical deliveries")
	}
}

func TestLossyIndependentStreams(t *testing.T) {
	// Each packet consumes a fixed number of draws, so enabling other
	// faults leaves the Drop decisions for the same seed unchanged.
	dropped := func(f Faults) []int {
		var out []int
		synctest.Test(t, func(t *testing.T) {
			got, _ := runLossy(t, f, sendEach(1000, 20))
			seen := make(map[int]bool)
			for _, id := range ids(got) {
				seen[id] = true
			}
			for i := range 1000 {
				if !seen[i] {
					out = append(out, i)
				}
			}
		})
		return out
	}
	a := dropped(Faults{Seed: 77, Drop: 0.2})
	b := dropped(Faults{Seed: 77, Drop: 0.2, Duplicate: 0.5, Reorder: 0.3, Jitter: time.Second})
	if len(a) == 0 || !slices.Equal(a, b) {
		t.Errorf("dropped sets differ when other faults are enabled: %d vs %d packets", len(a), len(b))
	}
}

func TestLossyCloseStopsEverything(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := NewPipe(1500, 64)
		l := NewLossy(a, Faults{Seed: 12, Delay: time.Minute, Reorder: 0.5})
		for i := range 20 {
			l.WritePackets([][]byte{pkt(i, 30)})
		}
		if err := l.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
		if _, err := l.WritePackets([][]byte{pkt(0, 30)}); !errors.Is(err, os.ErrClosed) {
			t.Errorf("WritePackets after Close = %v, want os.ErrClosed", err)
		}
		bufs, sizes := readBufs(1, 1500)
		if _, err := l.ReadPackets(bufs, sizes); !errors.Is(err, os.ErrClosed) {
			t.Errorf("ReadPackets after Close = %v, want os.ErrClosed (inner closed)", err)
		}
		time.Sleep(2 * time.Minute) // a timer that survived Close would deliver now
		if s := b.Stats(); s.Received != 0 {
			t.Errorf("%d packets delivered after Close", s.Received)
		}
		if err := l.Close(); err != nil {
			t.Errorf("second Close = %v", err)
		}
		b.Close()
		// synctest.Test itself fails if a goroutine is left behind.
	})
}

func TestLossyLogsSeed(t *testing.T) {
	var logs []string
	logf := func(format string, args ...any) { logs = append(logs, fmt.Sprintf(format, args...)) }
	a, b := NewPipe(100, 1)
	defer b.Close()
	l := NewLossy(a, Faults{Seed: 987654321, Logf: logf})
	l.Close()
	if len(logs) != 1 || !strings.Contains(logs[0], "seed=987654321") {
		t.Errorf("logs %q, want one line with seed=987654321", logs)
	}

	// Seed 0 picks a seed, reports it and logs it.
	logs = nil
	l = NewLossy(a, Faults{Logf: logf})
	if l.Seed() == 0 || len(logs) != 1 || !strings.Contains(logs[0], fmt.Sprintf("seed=%d", l.Seed())) {
		t.Errorf("Seed() = %d, logs %q", l.Seed(), logs)
	}
}

func TestLossyRejectsBadConfig(t *testing.T) {
	for _, f := range []Faults{{Drop: -0.1}, {Corrupt: 1.5}, {Reorder: math.NaN()}, {Delay: -1}, {RateBps: -5}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewLossy(%+v) did not panic", f)
				}
			}()
			a, b := NewPipe(100, 1)
			defer a.Close()
			defer b.Close()
			NewLossy(a, f)
		}()
	}
}

func TestLossyRealTime(t *testing.T) {
	// Outside a bubble the same code runs on the real clock.
	const delay = 30 * time.Millisecond
	a, b := NewPipe(1500, 16)
	l := NewLossy(a, Faults{Seed: 13, Delay: delay})
	defer l.Close()
	defer b.Close()
	start := time.Now()
	l.WritePackets([][]byte{pkt(1, 40)})
	got := readN(t, b, 1)
	if el := time.Since(start); el < delay || pktID(got[0]) != 1 {
		t.Errorf("packet %d arrived after %v, want id 1 after >= %v", pktID(got[0]), el, delay)
	}
}

func TestLossyConcurrentWriters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const writers, per = 4, 500
		got, s := runLossy(t, Faults{Seed: 14, Drop: 0.1, Duplicate: 0.1, Reorder: 0.1, Delay: time.Millisecond, Jitter: time.Millisecond}, func(l *Lossy) {
			done := make(chan struct{})
			for w := range writers {
				go func() {
					defer func() { done <- struct{}{} }()
					for i := range per {
						l.WritePackets([][]byte{pkt(w*per+i, 60)})
						time.Sleep(100 * time.Microsecond)
					}
				}()
			}
			for range writers {
				<-done
			}
		})
		if want := writers*per - int(s.Dropped) + int(s.Duplicated); len(got) != want {
			t.Errorf("%d arrived, want %d", len(got), want)
		}
	})
}

func BenchmarkLossyNoFaults(b *testing.B) {
	benchLossy(b, Faults{Seed: 1})
}

func BenchmarkLossyAllFaults(b *testing.B) {
	benchLossy(b, Faults{Seed: 1, Drop: 0.01, Duplicate: 0.01, Reorder: 0.01, Corrupt: 0.01})
}

func benchLossy(b *testing.B, f Faults) {
	const batch, size = 64, 1400
	x, y := NewPipe(1500, 4096)
	l := NewLossy(x, f)
	defer l.Close()
	defer y.Close()
	pkts, _ := readBufs(batch, size)
	bufs, sizes := readBufs(batch, 1500)
	b.SetBytes(batch * size)
	b.ReportAllocs()
	for b.Loop() {
		l.WritePackets(pkts)
		for y.Stats().Received < l.Stats().Passed {
			if _, err := y.ReadPackets(bufs, sizes); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func TestLossyCopiesWhatItKeeps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The writer reuses one buffer, as a stack does. Packets that wait
		// (delayed, held back, duplicated) must still carry what was
		// written, not what the buffer holds later.
		f := Faults{Seed: 15, Reorder: 0.3, Duplicate: 0.3, Delay: time.Millisecond, Jitter: time.Millisecond}
		got, s := runLossy(t, f, func(l *Lossy) {
			buf := make([]byte, 64)
			for i := range 500 {
				copy(buf, pkt(i, 64))
				l.WritePackets([][]byte{buf, buf[:32]})
				clear(buf)
			}
		})
		if s.Reordered == 0 || s.Duplicated == 0 || len(got) != 1000+int(s.Duplicated) {
			t.Fatalf("stats %+v, %d arrived", s, len(got))
		}
		for _, a := range got {
			if want := pkt(pktID(a.pkt), 64)[:len(a.pkt)]; !bytes.Equal(a.pkt, want) {
				t.Fatalf("arrived %x, want %x", a.pkt, want)
			}
		}
	})
}

// A Lossy passes the inner link's busy-poll count through, as a Tap does,
// and reads 0 over a link that does not poll.
func TestLossyForwardsBusyPollCount(t *testing.T) {
	a, b := NewPipe(1500, 8)
	defer b.Close()
	l := NewLossy(busyLink{a}, Faults{Seed: 1})
	defer l.Close()
	if got := l.BusyPollRxPackets(); got != 7 {
		t.Errorf("Lossy over a polling link: BusyPollRxPackets = %d, want 7", got)
	}
	c, d := NewPipe(1500, 8)
	defer d.Close()
	m := NewLossy(c, Faults{Seed: 1})
	defer m.Close()
	if got := m.BusyPollRxPackets(); got != 0 {
		t.Errorf("Lossy over a pipe: BusyPollRxPackets = %d, want 0", got)
	}
}
