package stack

import (
	"os"
	"testing"
	"time"

	"utcp/seg"
	"utcp/timers"
)

// manualGSOLink gives a manual-mode fixture a segmenting link. Manual mode
// queues output for TakeOutput, so only MTU and GSOMaxSize are used.
type manualGSOLink struct{}

func (manualGSOLink) ReadPackets([][]byte, []int) (int, error) { return 0, os.ErrClosed }
func (manualGSOLink) WritePackets(b [][]byte) (int, error)     { return len(b), nil }
func (manualGSOLink) MTU() int                                 { return 1500 }
func (manualGSOLink) BatchSize() int                           { return 1 }
func (manualGSOLink) Close() error                             { return nil }
func (manualGSOLink) GSOMaxSize() int                          { return 65535 }

// corkFixture is an established connection over a segmenting link with a
// peer window of 8 MB and a congestion window large enough that only the
// autocork rule decides what a Write sends.
func corkFixture(t *testing.T) *fixture {
	f := newFixture(t, func(c *Config) { c.Link = manualGSOLink{} })
	f.estabWith(1000, func(sg *seg.Segment) { sg.Opts.HasWScale, sg.Opts.WScale = true, 7 })
	f.conn.t.cwnd = 4 << 20
	f.conn.t.lastSend = f.clk.Now() // not idle: no restart from the initial window
	return f
}

// outBytes pops every pending segment, which must be consecutive data
// starting at relative sequence from, and returns how many bytes they held.
func (f *fixture) outBytes(from uint32) int {
	f.t.Helper()
	n := 0
	for len(f.pending) > 0 {
		sg := f.outData(from+uint32(n), len(f.pending[0].Payload))
		n += len(sg.Payload)
	}
	return n
}

// bulkInFlight writes burst bytes from idle (never held: all of it must
// leave at once) and has the peer acknowledge the first 64240, which
// starts the ACK clock.
func (f *fixture) bulkInFlight(burst int) {
	f.t.Helper()
	f.write(payload(burst, 'a'))
	if n := f.outBytes(1); n != burst {
		f.t.Fatalf("burst from idle sent %d of %d bytes", n, burst)
	}
	f.in(ACK, seq(1001), ack(1+64240), win(65535))
	f.noOutput()
}

// writeNotHeld writes 7300 bytes and expects all of them to leave at once.
func (f *fixture) writeNotHeld(from uint32) {
	f.t.Helper()
	f.write(payload(7300, 'b'))
	if n := f.outBytes(from); n != 7300 {
		f.t.Fatalf("write sent %d of 7300 bytes at once", n)
	}
}

// A bulk writer on a segmenting link: once ACKs are flowing and two quanta
// are in flight, a Write smaller than a super-segment waits for the next
// ACK, which sends everything written meanwhile as one super-segment
// (outputCorked). Without the rule each 7300-byte Write would leave as its
// own super-segment. Sizes are whole segments so that Nagle holds nothing.
func TestScriptedAutocorkHoldsForNextACK(t *testing.T) {
	f := corkFixture(t)
	f.bulkInFlight(204400)
	// 140160 bytes in flight, at least two quanta, and an ACK just came.
	f.write(payload(7300, 'b'))
	f.noOutput()
	f.write(payload(7300, 'c'))
	f.noOutput()
	f.in(ACK, seq(1001), ack(1+128480), win(65535))
	if n := f.outBytes(204401); n != 14600 {
		t.Fatalf("the ACK released %d bytes, want the 14600 held", n)
	}
}

// The hold needs the ACK clock running: when no ACK has acknowledged data
// for half a round trip (at least 1 ms), a Write goes out at once however
// much is in flight, so a response written in pieces after a pause never
// waits a whole round trip for an ACK.
func TestScriptedAutocorkNeedsRunningACKClock(t *testing.T) {
	f := corkFixture(t)
	f.bulkInFlight(204400)
	f.advance(max(f.conn.t.rto.SRTT()/2, time.Millisecond) + time.Millisecond)
	f.noOutput()
	f.writeNotHeld(204401)
}

// Too little in flight (under two quanta): the peer may be delaying its
// ACK, so nothing is held.
func TestScriptedAutocorkNeedsTwoQuantaInFlight(t *testing.T) {
	f := corkFixture(t)
	f.bulkInFlight(102200) // 37960 left in flight
	f.writeNotHeld(102201)
}

// TCP_NODELAY asks for every write to leave at once: never held.
func TestScriptedAutocorkNotWithNoDelay(t *testing.T) {
	f := corkFixture(t)
	if err := f.conn.SetNoDelay(true); err != nil {
		t.Fatal(err)
	}
	f.bulkInFlight(204400)
	f.writeNotHeld(204401)
}

// A FIN is never held behind the cork: CloseWrite sends the held data and
// the FIN.
func TestScriptedAutocorkReleasedByClose(t *testing.T) {
	f := corkFixture(t)
	f.bulkInFlight(204400)
	f.write(payload(7300, 'b'))
	f.noOutput()
	if err := f.conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	f.collect()
	segs := f.popAll()
	n := 0
	for _, sg := range segs {
		n += len(sg.Payload)
	}
	if n != 7300 || !segs[len(segs)-1].Flags.Has(FIN) {
		t.Fatalf("after CloseWrite %d segments with %d bytes, want the held 7300 bytes and FIN", len(segs), n)
	}
}

// busyPollLink is a link that reports busy-poll receptions, as a TUN
// device with tun.Config.BusyPoll does.
type busyPollLink struct{ manualGSOLink }

func (busyPollLink) BusyPollRxPackets() uint64 { return 42 }

// The stack shows the link's busy-poll count as TcpExtBusyPollRxPackets,
// and 0 for a link that does not poll.
func TestCountersShowLinkBusyPoll(t *testing.T) {
	for _, c := range []struct {
		link Link
		want uint64
	}{{busyPollLink{}, 42}, {manualGSOLink{}, 0}} {
		s, err := New(Config{Link: c.link, Manual: true, Clock: &timers.ManualClock{}})
		if err != nil {
			t.Fatal(err)
		}
		ctr := s.Counters()
		if got, ok := ctr.Get("TcpExtBusyPollRxPackets"); !ok || got != c.want {
			t.Errorf("%T: TcpExtBusyPollRxPackets = %d (found %v); want %d", c.link, got, ok, c.want)
		}
		s.Close()
	}
}
