package integration

// utcp as a receiver that stops reading, with gVisor sending: utcp must
// advertise a zero window, answer every zero-window probe, and deliver
// the data intact once reading resumes.

import (
	"bytes"
	"io"
	"sync"
	"testing"
	"time"

	"utcp/seg"
	"utcp/stack"
)

// zwObserver sits between utcp and the gVisor bridge. It sees gVisor's
// packets as utcp reads them, recognising zero-window probes (gVisor,
// like Linux, re-sends one already acknowledged byte at SND.UNA-1), and
// utcp's packets as it writes them, counting the ACKs that answer a probe
// with a zero window.
type zwObserver struct {
	stack.Link
	mu       sync.Mutex
	dataEnd  seg.Seq // end of the highest data gVisor sent
	seen     bool
	probes   []time.Time
	pending  int // probes not yet answered
	answered int // pure ACKs with a zero window sent while a probe was pending
}

func (o *zwObserver) ReadPackets(bufs [][]byte, sizes []int) (int, error) {
	n, err := o.Link.ReadPackets(bufs, sizes)
	o.mu.Lock()
	for i := 0; i < n; i++ {
		var s seg.Segment
		if s.Parse(bufs[i][:sizes[i]]) != nil || len(s.Payload) == 0 {
			continue
		}
		end := s.Seq.Add(uint32(len(s.Payload)))
		if len(s.Payload) == 1 && o.seen && end == o.dataEnd {
			// The byte just below RCV.NXT, once more: a probe.
			o.probes = append(o.probes, time.Now())
			o.pending++
			continue
		}
		if !o.seen || o.dataEnd.LessThan(end) {
			o.dataEnd, o.seen = end, true
		}
	}
	o.mu.Unlock()
	return n, err
}

func (o *zwObserver) WritePackets(bufs [][]byte) (int, error) {
	o.mu.Lock()
	for _, b := range bufs {
		var s seg.Segment
		if s.Parse(b) == nil && s.Flags == seg.ACK && len(s.Payload) == 0 && s.Window == 0 && o.pending > 0 {
			o.pending--
			o.answered++
		}
	}
	o.mu.Unlock()
	return o.Link.WritePackets(bufs)
}

func (o *zwObserver) snapshot() (probes []time.Time, answered int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]time.Time(nil), o.probes...), o.answered
}

func TestGVisorZeroWindow(t *testing.T) {
	obs := &zwObserver{}
	p := newGVPair(t, gvOpts{cfg: func(c *stack.Config) {
		obs.Link = c.Link
		c.Link = obs
		// A small fixed buffer so the window closes after 64 KiB.
		c.RecvBuf, c.NoRcvAutoTune = 64<<10, true
	}})
	uc, gc := p.connected(t, true, 5301)
	const size = 1 << 20
	data := randomBytes(size, 11)
	dl := time.Now().Add(60 * time.Second)
	uc.SetDeadline(dl)
	gc.SetDeadline(dl)
	werr := make(chan error, 1)
	go func() {
		_, err := gc.Write(data)
		if err == nil {
			err = gc.(halfCloser).CloseWrite()
		}
		werr <- err
	}()

	waitFor(t, 10*time.Second, "utcp to advertise a zero window", func() bool { return p.u.Counters().TCPToZeroWindowAdv > 0 })
	// gVisor probes on its retransmission timer, doubling it each time
	// (RFC 1122 §4.2.2.17, RFC 6298 §5.5): from its 200 ms floor, four
	// probes take about 3 s.
	waitFor(t, 20*time.Second, "4 zero-window probes from gVisor", func() bool {
		pr, _ := obs.snapshot()
		return len(pr) >= 4
	})
	time.Sleep(50 * time.Millisecond) // let utcp answer the last one
	probes, answered := obs.snapshot()
	t.Logf("gVisor probes at +%v", gaps(probes))
	if answered < len(probes) {
		t.Fatalf("utcp answered %d of %d zero-window probes with a zero-window ACK", answered, len(probes))
	}
	for i := 2; i < len(probes); i++ {
		prev, cur := probes[i-1].Sub(probes[i-2]), probes[i].Sub(probes[i-1])
		if cur < prev*3/2 {
			t.Fatalf("probe gaps %v then %v: gVisor did not back off, so utcp's answers were not taken as zero-window ACKs", prev, cur)
		}
	}
	// The buffer is full but for less than one unit of the window scale,
	// which utcp does not offer: the advertised (scaled) window is 0.
	if ci := uc.Info(); ci.RcvWnd>>ci.RcvWScale != 0 || ci.RecvQ+int(ci.RcvWnd) != 64<<10 {
		t.Fatalf("utcp RcvWnd %d (scale %d) RecvQ %d while not reading: want a full 64 KiB buffer and a zero advertised window", ci.RcvWnd, ci.RcvWScale, ci.RecvQ)
	}

	// Reading resumes: the window reopens and everything arrives intact.
	start := time.Now()
	got, err := io.ReadAll(uc)
	if err != nil {
		t.Fatalf("read after %d bytes: %v", len(got), err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, want %d; equal=%v", len(got), size, bytes.Equal(got, data))
	}
	t.Logf("rest of 1 MiB read in %v after reading resumed", time.Since(start).Round(time.Millisecond))
	if err := <-werr; err != nil {
		t.Fatalf("gVisor write: %v", err)
	}
	if c := p.u.Counters(); c.TCPFromZeroWindowAdv == 0 {
		t.Errorf("TCPFromZeroWindowAdv 0: the reopening was not counted")
	}
}

// gaps lists each probe's time after the first.
func gaps(ts []time.Time) []time.Duration {
	out := make([]time.Duration, len(ts))
	for i, x := range ts {
		out[i] = x.Sub(ts[0]).Round(time.Millisecond)
	}
	return out
}
