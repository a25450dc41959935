package stack

// Scripted tests of what the options negotiate and of the per-segment
// rules of data transfer: MSS (RFC 9293 §3.7.1), window scaling (RFC 7323
// §2), the receive window and receiver SWS avoidance (RFC 9293
// §3.8.6.2.2), sender SWS avoidance and Nagle (RFC 9293 §3.7.4, RFC 896),
// timestamps and PAWS (RFC 7323 §3-5) and delayed ACKs (RFC 9293
// §3.8.6.3). The helpers at the top are shared by the other
// scripted_{sack,cc,keepalive,cookie}_test.go files.

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"utcp/seg"
)

// segMod adjusts a segment the fixture built, before it is injected: the
// fixture's fields cannot express SACK options.
type segMod func(*seg.Segment)

// inMod is f.in with a final adjustment of the segment.
func (f *fixture) inMod(flags seg.Flags, mod segMod, fields ...field) {
	f.t.Helper()
	sg := f.build(flags, fields)
	if mod != nil {
		mod(&sg)
	}
	f.log = append(f.log, fmt.Sprintf("%8v  in: %s", f.now(), sg.String()))
	f.s.Inject(sg.AppendTo(nil))
	f.collect()
}

// sackPerm offers SACK (RFC 2018 §2) in a SYN.
func sackPerm(sg *seg.Segment) { sg.Opts.SACKPermitted = true }

// sacks adds SACK blocks given as start/end pairs relative to our ISS for
// the current peer port (blocks for data the stack sent).
func (f *fixture) sacks(pairs ...uint32) segMod {
	iss := f.iss[f.pport]
	return func(sg *seg.Segment) {
		sg.Opts.NumSACK = len(pairs) / 2
		for i := 0; i+1 < len(pairs); i += 2 {
			sg.Opts.SACK[i/2] = seg.SACKBlock{Start: iss.Add(pairs[i]), End: iss.Add(pairs[i+1])}
		}
	}
}

// pop returns the next segment the stack sent, with no assertion but
// that there is one.
func (f *fixture) pop() seg.Segment {
	f.t.Helper()
	f.collect()
	if len(f.pending) == 0 {
		f.fail("want a segment, got nothing")
	}
	sg := f.pending[0]
	f.pending = f.pending[1:]
	return sg
}

// popAll returns every segment sent and not yet consumed.
func (f *fixture) popAll() []seg.Segment {
	f.collect()
	out := f.pending
	f.pending = nil
	return out
}

// rel is a sequence number of ours relative to the ISS.
func (f *fixture) rel(s seg.Seq) uint32 { return uint32(s.Sub(f.iss[f.pport])) }

// outData asserts the next segment is data at relative seq with n bytes.
func (f *fixture) outData(relSeq uint32, n int) seg.Segment {
	f.t.Helper()
	sg := f.pop()
	if !sg.Flags.Has(ACK) || sg.Flags.Has(SYN|FIN|RST) || f.rel(sg.Seq) != relSeq || len(sg.Payload) != n {
		f.fail("segment %s: want data at ISS+%d with %d bytes", sg.String(), relSeq, n)
	}
	return sg
}

// write hands the application's bytes to the connection and collects
// what it sends at once.
func (f *fixture) write(b []byte) {
	f.t.Helper()
	if _, err := f.conn.Write(b); err != nil {
		f.t.Fatal(err)
	}
	f.collect()
}

func (f *fixture) info() ConnInfo { return f.conn.Info() }

// estabWith is f.established with the SYN's options adjusted by mod (MSS
// 1460 unless mod changes it). With f.peerTS set, the SYN and the final
// ACK carry timestamps, and the ACK echoes our SYN-ACK's.
func (f *fixture) estabWith(irs uint32, mod segMod) *Conn {
	f.t.Helper()
	if f.ln == nil {
		f.listen(16)
	}
	f.inMod(SYN, mod, seq(irs), mss(1460))
	sa := f.out(SYN|ACK, seq(0), ack(irs+1))
	f.advance(10 * time.Millisecond)
	if f.peerTS != 0 && sa.Opts.HasTS {
		f.in(ACK, seq(irs+1), ack(1), ts(f.peerTS, sa.Opts.TSVal))
	} else {
		f.in(ACK, seq(irs+1), ack(1))
	}
	f.state(Established)
	f.noOutput()
	return f.accept()
}

func payload(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }

// --- MSS ----------------------------------------------------------------

// RFC 9293 §3.7.1: we send segments no larger than the MSS the peer
// announced; our SYN-ACK announces what our MTU allows (1500 - 40).
func TestScriptedOptMSSFromPeer(t *testing.T) {
	f := newFixture(t)
	f.listen(16)
	f.in(SYN, seq(1000), mss(1000))
	f.out(SYN|ACK, seq(0), ack(1001), mss(1460))
	f.in(ACK, seq(1001), ack(1))
	f.accept()
	if got := f.info().MSS; got != 1000 {
		t.Fatalf("MSS %d, want the peer's 1000", got)
	}
	f.write(payload(3000, 'a'))
	f.outData(1, 1000)
	f.outData(1001, 1000)
	f.outData(2001, 1000)
	f.noOutput()
}

// RFC 9293 §3.7.1 / RFC 1122 §4.2.2.6: the peer's MSS is clamped to what
// our MTU allows (a jumbo MSS must not make us exceed 1500-byte packets)
// and to a floor of 48 bytes (Linux's TCP_MIN_SND_MSS, against a peer
// that would make us send one byte per segment); a SYN without the option
// means 536.
func TestScriptedOptMSSClamps(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  segMod
		want int
	}{
		{"jumbo", func(sg *seg.Segment) { sg.Opts.MSS = 9000 }, 1460},
		{"tiny", func(sg *seg.Segment) { sg.Opts.MSS = 10 }, 48},
		{"absent", func(sg *seg.Segment) { sg.Opts.HasMSS = false }, 536},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.estabWith(1000, tc.mod)
			if got := f.info().MSS; got != tc.want {
				t.Fatalf("MSS %d, want %d", got, tc.want)
			}
			f.write(payload(3*tc.want, 'm'))
			for i := 0; i < 3; i++ {
				sg := f.outData(uint32(1+i*tc.want), tc.want)
				if l := sg.HeaderLen() + len(sg.Payload); l > 1500 {
					t.Fatalf("packet of %d bytes exceeds the MTU", l)
				}
			}
		})
	}
}

// RFC 7323 §3.2 with RFC 6691: the timestamp option's 12 bytes come out
// of the payload, so a full segment is 1448 bytes, not 1460.
func TestScriptedOptMSSLessTimestamps(t *testing.T) {
	f := newFixture(t)
	f.peerTS = 5000
	f.estabWith(1000, nil)
	if got := f.info().MSS; got != 1448 {
		t.Fatalf("MSS %d, want 1448", got)
	}
	f.write(payload(1500, 'x'))
	f.outData(1, 1448)
}

// Linux tcp_current_mss: when the receiver has out-of-order data, our
// data segments carry SACK blocks (RFC 2018 §4), and the payload shrinks
// so that the packet still fits the 1500-byte MTU.
func TestScriptedOptSACKBlocksShrinkPayload(t *testing.T) {
	f := newFixture(t)
	f.estabWith(1000, sackPerm)
	// The peer's data arrives with a hole: we hold out-of-order data.
	f.in(ACK, seq(1101), ack(1), data("later"))
	if sg := f.out(ACK, seq(1), ack(1001)); sg.Opts.NumSACK != 1 {
		t.Fatalf("dup ACK without SACK block: %v", sg.String())
	}
	f.write(payload(4000, 'y'))
	total := 0
	for total < 2*1448 {
		sg := f.pop()
		if sg.Opts.NumSACK == 0 {
			f.fail("data segment %s carries no SACK block", sg.String())
		}
		if l := sg.HeaderLen() + len(sg.Payload); l > 1500 {
			f.fail("packet of %d bytes exceeds the MTU: %s", l, sg.String())
		}
		if total == 0 && len(sg.Payload) != 1500-40-12 {
			f.fail("first segment has %d bytes, want 1448 (1460 less a 12-byte SACK option)", len(sg.Payload))
		}
		total += len(sg.Payload)
	}
	if total != 2*1448 {
		f.fail("sent %d bytes in two segments, want 2*1448", total)
	}
}

// --- window scaling -----------------------------------------------------

// RFC 7323 §2.2/§2.3: our shift is the smallest that lets the 16-bit field
// describe the largest receive buffer autotuning may reach (RecvBufMax).
func TestScriptedOptWScaleOurShift(t *testing.T) {
	for _, tc := range []struct {
		max  int
		want uint8
	}{
		{0, 7},           // default 6 MiB: 6 MiB >> 7 = 49152
		{1 << 20, 5},     // 1 MiB >> 4 = 65536 does not fit
		{65535, 0},       // fits unscaled
		{1 << 30, 14},    // capped at 14 (RFC 7323 §2.3)
		{200 << 10, 2},   // 204800 >> 2 = 51200
		{256<<10 - 4, 2}, // 262140 >> 2 = 65535
	} {
		t.Run(fmt.Sprint(tc.max), func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.RecvBuf = 32 << 10; c.RecvBufMax = tc.max })
			f.listen(16)
			f.in(SYN, seq(1000), mss(1460), wscale(0))
			sa := f.out(SYN|ACK, seq(0), ack(1001))
			if !sa.Opts.HasWScale || sa.Opts.WScale != tc.want {
				t.Fatalf("SYN-ACK options [%v], want wscale %d", sa.Opts, tc.want)
			}
		})
	}
}

// RFC 7323 §2.2/§2.3: the peer's shift applies to every window it sends
// after the handshake, never to the window in its SYN or SYN-ACK; a shift
// above 14 is used as 14.
func TestScriptedOptWScalePeerShift(t *testing.T) {
	// Active open: the SYN-ACK's window is taken unscaled.
	f := newFixture(t)
	f.connect()
	syn := f.out(SYN, seq(0))
	if !syn.Opts.HasWScale {
		t.Fatalf("our SYN offers no window scale: [%v]", syn.Opts)
	}
	f.in(SYN|ACK, seq(5000), ack(1), mss(1460), wscale(2), win(1000))
	f.out(ACK, seq(1), ack(5001))
	if ci := f.info(); ci.SndWnd != 1000 || ci.SndWScale != 2 {
		t.Fatalf("after SYN-ACK: SndWnd %d shift %d, want 1000 unscaled and shift 2", ci.SndWnd, ci.SndWScale)
	}
	// The SYN-ACK's 1000 bytes are all we may send.
	f.write(payload(5000, 'w'))
	f.outData(1, 1000)
	f.noOutput()
	// Later windows are scaled: 1000 << 2.
	f.in(ACK, seq(5001), ack(1001), win(1000))
	if got := f.info().SndWnd; got != 4000 {
		t.Fatalf("SndWnd %d after a window of 1000 with shift 2, want 4000", got)
	}
	f.outData(1001, 1460)
	f.outData(2461, 1460)
	// The 1080 bytes left of the 4000 go too: Nagle in Minshall's form
	// (Linux's) holds a runt only while an earlier runt is unacknowledged.
	f.outData(3921, 1080)
	f.noOutput()

	// Passive open with a shift of 15: treated as 14.
	g := newFixture(t)
	g.listen(16)
	g.in(SYN, seq(1000), mss(1460), wscale(15), win(2))
	g.out(SYN|ACK, seq(0), ack(1001))
	g.in(ACK, seq(1001), ack(1), win(2))
	g.accept()
	if ci := g.info(); ci.SndWScale != 14 || ci.SndWnd != 2<<14 {
		t.Fatalf("shift %d, SndWnd %d; want 14 and %d", ci.SndWScale, ci.SndWnd, 2<<14)
	}
}

// RFC 7323 §1.3/§2.2: scaling is used only when both SYNs carried the
// option. A peer that offers none gets no wscale in our SYN-ACK and
// unscaled windows (a 128 KiB buffer shows as 65535, not 1024 << 7);
// when the peer's SYN-ACK lacks it, our offer is void too.
func TestScriptedOptWScaleNeedsBoth(t *testing.T) {
	f := newFixture(t, noQuickAck)
	f.listen(16)
	f.in(SYN, seq(1000), mss(1460))
	sa := f.out(SYN|ACK, seq(0), ack(1001))
	if sa.Opts.HasWScale {
		t.Fatalf("SYN-ACK offers window scaling to a peer that did not: [%v]", sa.Opts)
	}
	f.in(ACK, seq(1001), ack(1), win(1000))
	f.accept()
	if ci := f.info(); ci.SndWScale != 0 || ci.RcvWScale != 0 || ci.SndWnd != 1000 {
		t.Fatalf("shifts %d/%d SndWnd %d, want 0/0 and 1000", ci.SndWScale, ci.RcvWScale, ci.SndWnd)
	}
	f.in(ACK|PSH, seq(1001), ack(1), data("a"))
	f.advance(40 * time.Millisecond)
	f.out(ACK, seq(1), ack(1002), win(65535))

	// Active open: the peer's SYN-ACK without the option.
	g := newFixture(t)
	g.connect()
	g.out(SYN, seq(0))
	g.in(SYN|ACK, seq(5000), ack(1), mss(1460), win(1000))
	g.out(ACK, seq(1), ack(5001), win(65535))
	if ci := g.info(); ci.RcvWScale != 0 || ci.SndWScale != 0 {
		t.Fatalf("shifts %d/%d, want none", ci.SndWScale, ci.RcvWScale)
	}
	// With scaling on both sides, the same buffer is advertised scaled.
	h := newFixture(t)
	h.connect()
	h.out(SYN, seq(0))
	h.in(SYN|ACK, seq(5000), ack(1), mss(1460), wscale(0), win(1000))
	h.out(ACK, seq(1), ack(5001), win((128<<10)>>7))
}

// --- the receive window ---------------------------------------------------

// RFC 9293 §3.8.6.2.2 receiver SWS avoidance: the window advertised is the
// free buffer space, but its right edge moves right only by at least
// min(buffer/2, MSS); smaller gains are held back. Reads that free less
// than that send no update (Linux tcp_cleanup_rbuf).
func TestScriptedOptRcvWindowSWS(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RecvBuf = 8192; c.NoRcvAutoTune = true }, noQuickAck)
	f.established(1000)
	f.in(ACK, seq(1001), ack(1), data(strings.Repeat("a", 1000)))
	f.advance(40 * time.Millisecond)
	f.out(ACK, seq(1), ack(2001), win(8192-1000))
	if got := f.available(); len(got) != 1000 {
		t.Fatalf("read %d bytes", len(got))
	}
	f.noOutput() // 8192 free is less than twice the 7192 the peer holds
	// 100 more bytes: free 8092, but the edge may move only 1000 < 1460.
	f.in(ACK, seq(2001), ack(1), data(strings.Repeat("b", 100)))
	f.advance(40 * time.Millisecond)
	f.out(ACK, seq(1), ack(2101), win(7092))
	f.available()
	f.noOutput()
	// Until the application reads, arriving data cannot widen the gap
	// between free space and the window the peer holds: still held.
	f.in(ACK, seq(2101), ack(1), data(strings.Repeat("c", 600)))
	f.advance(40 * time.Millisecond)
	f.out(ACK, seq(1), ack(2701), win(6492))
	f.available()
	f.noOutput() // 8192 free < 2 * 6492: no window update for the read
	// Now free space exceeds the window by 1700 >= MSS: all of it.
	f.in(ACK, seq(2701), ack(1), data(strings.Repeat("d", 100)))
	f.advance(40 * time.Millisecond)
	f.out(ACK, seq(1), ack(2801), win(8192-100))
}

// RFC 9293 §3.8.6.2.2 / RFC 7323 §2.4: the right edge never moves left,
// even when scaling would round the window down. With shift 5, a window
// of 4899 bytes rounds down to 153<<5 = 4896, an edge 3 bytes left of the
// one the peer holds; with buffer space for it, the stack rounds up to
// 154 instead.
func TestScriptedOptRcvWindowNeverShrinks(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RecvBuf = 5000; c.RecvBufMax = 1 << 20; c.NoRcvAutoTune = true }, noQuickAck)
	f.listen(16)
	f.in(SYN, seq(1000), mss(1460), wscale(0))
	f.out(SYN|ACK, seq(0), ack(1001), wscale(5), win(5000))
	f.in(ACK, seq(1001), ack(1))
	f.accept()
	f.in(ACK|PSH, seq(1001), ack(1), data(strings.Repeat("z", 100)))
	f.advance(40 * time.Millisecond)
	f.pop() // its ACK (with no free space beyond the window, see advertise)
	f.available()
	f.noOutput()
	// The peer holds the edge 6001 (from the SYN-ACK); 4999 bytes free.
	f.in(ACK|PSH, seq(1101), ack(1), data("y"))
	f.advance(40 * time.Millisecond)
	sg := f.out(ACK, seq(1), ack(1102), win(154))
	if edge := 1102 + uint32(sg.Window)<<5; edge < 6001 {
		t.Fatalf("right edge %d moved left of 6001", edge)
	}
}

// A full buffer advertises a zero window and Linux counts the transition
// (TCPToZeroWindowAdv); the read that opens it sends a window update and
// counts TCPFromZeroWindowAdv.
func TestScriptedOptZeroWindowCounters(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RecvBuf = 2000; c.NoRcvAutoTune = true })
	f.established(1000)
	f.in(ACK, seq(1001), ack(1), data(strings.Repeat("a", 1000)))
	f.out(ACK, seq(1), ack(2001), win(1000))
	f.counter("TCPToZeroWindowAdv", 0)
	f.in(ACK, seq(2001), ack(1), data(strings.Repeat("b", 1000)))
	f.out(ACK, seq(1), ack(3001), win(0))
	f.counter("TCPToZeroWindowAdv", 1)
	f.counter("TCPFromZeroWindowAdv", 0)
	f.available()
	f.out(ACK, seq(1), ack(3001), win(2000))
	f.counter("TCPFromZeroWindowAdv", 1)
	f.counter("TCPToZeroWindowAdv", 1)
}

// Receive-buffer autotuning (Linux tcp_rcv_space_adjust, tcp_moderate_rcvbuf):
// when the application reads more in a round trip than the buffer would
// allow twice over, the buffer grows and the advertised window with it;
// with NoRcvAutoTune it stays at RecvBuf.
func TestScriptedOptRcvAutoTune(t *testing.T) {
	run := func(t *testing.T, noTune bool) (maxWnd uint32) {
		f := newFixture(t, func(c *Config) {
			c.RecvBuf = 16 << 10
			c.RecvBufMax = 1 << 20
			c.NoRcvAutoTune = noTune
		})
		f.listen(16)
		f.in(SYN, seq(1000), mss(1460), wscale(0))
		f.out(SYN|ACK, seq(0), ack(1001), wscale(5))
		f.advance(10 * time.Millisecond)
		f.in(ACK, seq(1001), ack(1))
		f.accept()
		next := uint32(1001)
		for round := 0; round < 6; round++ {
			// Fill the window the peer holds, then read it all at once.
			wnd := f.info().RcvWnd
			for wnd >= 1460 {
				f.in(ACK, seq(next), ack(1), data(strings.Repeat("d", 1460)))
				next += 1460
				wnd -= 1460
			}
			f.advance(20 * time.Millisecond)
			f.available()
			for _, sg := range f.popAll() {
				maxWnd = max(maxWnd, uint32(sg.Window)<<5)
			}
		}
		return maxWnd
	}
	if got := run(t, false); got < 64<<10 {
		t.Fatalf("autotuning: largest window advertised %d, want it grown past 64 KiB", got)
	}
	if got := run(t, true); got > 16<<10 {
		t.Fatalf("NoRcvAutoTune: window %d exceeds the 16 KiB buffer", got)
	}
}

// --- sender SWS avoidance and Nagle ----------------------------------------

// RFC 896 / RFC 9293 §3.7.4: while data is unacknowledged, small writes
// are held and coalesced; the ACK releases them as one segment. With
// TCP_NODELAY (Conn.SetNoDelay) every write goes at once.
func TestScriptedOptNagle(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	f.write([]byte("a"))
	f.out(ACK|PSH, seq(1), data("a"))
	f.write([]byte("b"))
	f.write([]byte("c"))
	f.noOutput() // "a" is unacknowledged: small segments wait
	f.in(ACK, seq(1001), ack(2))
	f.out(ACK|PSH, seq(2), data("bc"))
	f.noOutput()
	// A full segment is not held by Nagle.
	f.write(payload(1460, 'F'))
	f.outData(4, 1460)

	g := newFixture(t)
	g.established(1000)
	if err := g.conn.SetNoDelay(true); err != nil {
		t.Fatal(err)
	}
	g.write([]byte("a"))
	g.out(ACK|PSH, seq(1), data("a"))
	g.write([]byte("b"))
	g.out(ACK|PSH, seq(2), data("b"))
	g.write([]byte("c"))
	g.out(ACK|PSH, seq(3), data("c"))
}

// RFC 9293 §3.8.6.2.1 sender SWS avoidance against a peer that shrinks
// its window: when the usable window falls to 1000 bytes (less than an
// MSS and less than half the largest window offered), nothing is sent
// until the override timer (RFC 1122 §4.2.3.4) sends what fits; then
// only that much, never beyond the peer's right edge.
func TestScriptedOptPeerShrinksWindow(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	f.write(payload(2920, 'p'))
	f.outData(1, 1460)
	f.outData(1461, 1460)
	// The peer acknowledges the first segment and shrinks its window to
	// 1000: the right edge moves from 1+65535 to 2461, left of SND.NXT.
	f.in(ACK, seq(1001), ack(1461), win(1000))
	f.write(payload(5000, 'q'))
	f.noOutput()
	f.in(ACK, seq(1001), ack(2921), win(1000))
	f.noOutput() // 1000 < MSS and < 65535/2: silly window, held
	f.advance(199 * time.Millisecond)
	f.noOutput()
	f.advance(time.Millisecond)
	f.outData(2921, 1000)
	f.noOutput()
}

// --- timestamps ----------------------------------------------------------

// RFC 7323 §3/§4.3: we echo the peer's TSval; TS.Recent is updated only
// by a segment that reaches the left edge of the window (SEG.SEQ <=
// Last.ACK.sent), so an out-of-order segment's newer TSval is not echoed.
func TestScriptedOptTimestampEcho(t *testing.T) {
	f := newFixture(t)
	f.listen(16)
	f.in(SYN, seq(1000), mss(1460), ts(100, 0))
	sa := f.out(SYN|ACK, seq(0), ack(1001), ts(0, 100))
	f.in(ACK, seq(1001), ack(1), ts(150, sa.Opts.TSVal))
	f.accept()
	f.in(ACK|PSH, seq(1001), ack(1), data("one"), ts(200, sa.Opts.TSVal))
	f.out(ACK, seq(1), ack(1004), ts(0, 200))
	f.in(ACK|PSH, seq(1010), ack(1), data("ooo"), ts(500, sa.Opts.TSVal))
	f.out(ACK, seq(1), ack(1004), ts(0, 200)) // not 500: out of order
	f.in(ACK|PSH, seq(1004), ack(1), data("abcdef"), ts(300, sa.Opts.TSVal))
	f.out(ACK, seq(1), ack(1013), ts(0, 300))
	if got := f.available(); got != "oneabcdefooo" {
		t.Fatalf("read %q", got)
	}
}

// RFC 7323 §5.3 PAWS: a segment whose TSval is older than TS.Recent is a
// duplicate from the past: it is dropped, answered with an ACK, and
// counted (PAWSEstab).
func TestScriptedOptPAWS(t *testing.T) {
	f := newFixture(t)
	f.peerTS = 1000
	f.estabWith(1000, nil)
	f.in(ACK|PSH, seq(1001), ack(1), data("new"), ts(2000, 0))
	f.out(ACK, seq(1), ack(1004), ts(0, 2000))
	f.in(ACK|PSH, seq(1004), ack(1), data("old"), ts(1500, 0))
	f.out(ACK, seq(1), ack(1004), ts(0, 2000))
	f.counter("PAWSEstab", 1)
	if got := f.available(); got != "new" {
		t.Fatalf("read %q: PAWS did not drop the old segment", got)
	}
	f.in(ACK|PSH, seq(1004), ack(1), data("ok"), ts(2001, 0))
	f.out(ACK, seq(1), ack(1006), ts(0, 2001))
	f.counter("PAWSEstab", 1)
}

// RFC 7323 §4.1 (RTTM): the round trip is timed from the echoed TSecr.
// The peer echoes a TSval 30 ms older than that of the segment it
// acknowledges (as a delaying receiver does), so the sample is 110 ms,
// not the 80 ms a send-time timer would measure: SRTT = 7/8*10 + 110/8.
func TestScriptedOptTimestampRTT(t *testing.T) {
	f := newFixture(t)
	f.peerTS = 1000
	f.estabWith(1000, nil)
	if got := f.info().SRTT; got != 10*time.Millisecond {
		t.Fatalf("SRTT after the handshake %v, want 10ms", got)
	}
	f.write([]byte("x"))
	sg := f.out(ACK|PSH, seq(1), data("x"))
	f.advance(80 * time.Millisecond)
	f.in(ACK, seq(1001), ack(2), ts(1001, sg.Opts.TSVal-30))
	if got, want := f.info().SRTT, 10*time.Millisecond*7/8+110*time.Millisecond/8; got != want {
		t.Fatalf("SRTT %v, want %v (a 110 ms sample from TSecr)", got, want)
	}
}

// --- delayed ACKs -----------------------------------------------------------

// RFC 9293 §3.8.6.3 as Linux: a lone segment is ACKed after 40 ms (and
// DelayedACKs counts it), every second segment at once, out-of-order data
// at once (RFC 5681 §4.2); data we had already ACKed arriving again means
// our ACK was lost (DelayedACKLost) and is ACKed at once.
func TestScriptedOptDelayedACK(t *testing.T) {
	f := newFixture(t, noQuickAck)
	f.established(1000)
	f.in(ACK, seq(1001), ack(1), data("aa"))
	f.advance(39 * time.Millisecond)
	f.noOutput()
	f.advance(1 * time.Millisecond)
	f.out(ACK, seq(1), ack(1003))
	f.counter("DelayedACKs", 1)

	f.in(ACK, seq(1003), ack(1), data("bb"))
	f.noOutput()
	f.in(ACK, seq(1005), ack(1), data("cc"))
	f.out(ACK, seq(1), ack(1007))

	f.in(ACK, seq(1100), ack(1), data("ooo"))
	f.out(ACK, seq(1), ack(1007))
	f.advance(time.Second)
	f.noOutput()
	f.counter("DelayedACKs", 1)

	f.in(ACK, seq(1005), ack(1), data("cc"))
	f.out(ACK, seq(1), ack(1007))
	f.counter("DelayedACKLost", 1)
}
