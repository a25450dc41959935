package stack

// Scripted tests of SACK (RFC 2018), D-SACK (RFC 2883), SACK-based loss
// recovery (RFC 6675) and, without SACK, NewReno (RFC 6582). Helpers are
// in scripted_options_test.go.

import (
	"testing"
	"time"

	"utcp/seg"
)

// sackList is the SACK blocks of a segment as absolute sequence pairs.
func sackList(sg seg.Segment) [][2]uint32 {
	var out [][2]uint32
	for i := 0; i < sg.Opts.NumSACK; i++ {
		out = append(out, [2]uint32{uint32(sg.Opts.SACK[i].Start), uint32(sg.Opts.SACK[i].End)})
	}
	return out
}

// wantSACK asserts the next segment is a pure ACK of ack carrying exactly
// the blocks given (absolute peer sequence numbers, in order).
func (f *fixture) wantSACK(ackN uint32, blocks ...[2]uint32) {
	f.t.Helper()
	sg := f.out(ACK, seq(1), ack(ackN))
	got := sackList(sg)
	if len(got) != len(blocks) {
		f.fail("SACK blocks %v, want %v", got, blocks)
	}
	for i := range got {
		if got[i] != blocks[i] {
			f.fail("SACK blocks %v, want %v", got, blocks)
		}
	}
}

// RFC 2018 §2: SACK-permitted is answered in kind, never offered to a
// peer that did not offer it, and not at all with Config.NoSACK
// (tcp_sack=0); SACK blocks are sent only when it was negotiated.
func TestScriptedSACKPermitted(t *testing.T) {
	f := newFixture(t)
	f.listen(16)
	f.inMod(SYN, sackPerm, seq(1000), mss(1460))
	if sa := f.out(SYN|ACK, seq(0), ack(1001)); !sa.Opts.SACKPermitted {
		t.Fatalf("SYN-ACK does not permit SACK: [%v]", sa.Opts)
	}
	f.port(40001)
	f.in(SYN, seq(1000), mss(1460))
	if sa := f.out(SYN|ACK, seq(0), ack(1001)); sa.Opts.SACKPermitted {
		t.Fatalf("SYN-ACK offers SACK unasked: [%v]", sa.Opts)
	}
	f.in(ACK, seq(1001), ack(1))
	f.in(ACK, seq(1101), ack(1), data("ooo"))
	if sg := f.out(ACK, seq(1), ack(1001)); sg.Opts.NumSACK != 0 {
		t.Fatalf("SACK blocks without SACK-permitted: %s", sg.String())
	}

	g := newFixture(t, func(c *Config) { c.NoSACK = true })
	g.listen(16)
	g.inMod(SYN, sackPerm, seq(1000), mss(1460))
	if sa := g.out(SYN|ACK, seq(0), ack(1001)); sa.Opts.SACKPermitted {
		t.Fatalf("NoSACK: SYN-ACK permits SACK: [%v]", sa.Opts)
	}
	h := newFixture(t, func(c *Config) { c.NoSACK = true })
	h.connect()
	if syn := h.out(SYN, seq(0)); syn.Opts.SACKPermitted {
		t.Fatalf("NoSACK: SYN offers SACK: [%v]", syn.Opts)
	}
}

// RFC 2018 §4: an ACK for out-of-order data carries SACK blocks, the
// block holding the most recently received segment first, then the other
// blocks, merged where they touch.
func TestScriptedSACKBlocksMostRecentFirst(t *testing.T) {
	f := newFixture(t)
	f.estabWith(1000, sackPerm)
	f.in(ACK, seq(1101), ack(1), data(string(payload(100, 'b'))))
	f.wantSACK(1001, [2]uint32{1101, 1201})
	f.in(ACK, seq(1301), ack(1), data(string(payload(100, 'd'))))
	f.wantSACK(1001, [2]uint32{1301, 1401}, [2]uint32{1101, 1201})
	f.in(ACK, seq(1501), ack(1), data(string(payload(100, 'f'))))
	f.wantSACK(1001, [2]uint32{1501, 1601}, [2]uint32{1301, 1401}, [2]uint32{1101, 1201})
	// Filling 1201-1301 joins two blocks; the merged one, holding the
	// latest arrival, goes first.
	f.in(ACK, seq(1201), ack(1), data(string(payload(100, 'c'))))
	f.wantSACK(1001, [2]uint32{1101, 1401}, [2]uint32{1501, 1601})
	// The hole at the left edge fills: cumulative ACK, still one block.
	f.in(ACK, seq(1001), ack(1), data(string(payload(100, 'a'))))
	f.wantSACK(1401, [2]uint32{1501, 1601})
	f.counter("TCPOFOQueue", 4)
}

// RFC 2018 §4: after the first block, an ACK repeats the most recently
// reported blocks, not the highest ones, so a block reported once survives
// the loss of that ACK. Five ranges arrive from the top down; the ACK for
// the last carries it and the three reported just before it, and leaves
// out the highest, reported longest ago.
func TestScriptedSACKRepeatsMostRecentBlocks(t *testing.T) {
	f := newFixture(t)
	f.estabWith(1000, sackPerm)
	for i, at := range []uint32{1901, 1701, 1501, 1301, 1101} {
		f.in(ACK, seq(at), ack(1), data(string(payload(100, byte('a'+i)))))
		if i < 4 {
			f.pop()
		}
	}
	f.wantSACK(1001, [2]uint32{1101, 1201}, [2]uint32{1301, 1401}, [2]uint32{1501, 1601}, [2]uint32{1701, 1801})
}

// RFC 2883 §4.1.1: a duplicate of data below RCV.NXT is reported in a
// D-SACK block (the first block, below the cumulative ACK); Linux counts
// the lost ACK it implies (DelayedACKLost). §4.1.2: a duplicate of
// out-of-order data is reported as a D-SACK block followed by the block
// that contains it. The D-SACK is reported once.
func TestScriptedSACKDSACK(t *testing.T) {
	f := newFixture(t)
	f.estabWith(1000, sackPerm)
	f.in(ACK, seq(1001), ack(1), data(string(payload(100, 'a'))))
	f.out(ACK, seq(1), ack(1101)) // quickack
	f.in(ACK, seq(1001), ack(1), data(string(payload(100, 'a'))))
	f.wantSACK(1101, [2]uint32{1001, 1101})
	f.counter("DelayedACKLost", 1)

	f.in(ACK, seq(1201), ack(1), data(string(payload(100, 'c'))))
	f.wantSACK(1101, [2]uint32{1201, 1301})
	f.in(ACK, seq(1201), ack(1), data(string(payload(100, 'c'))))
	f.wantSACK(1101, [2]uint32{1201, 1301}, [2]uint32{1201, 1301})
	f.in(ACK, seq(1401), ack(1), data(string(payload(100, 'e'))))
	f.wantSACK(1101, [2]uint32{1401, 1501}, [2]uint32{1201, 1301})
}

// sackSend sets up a SACK connection with ten full segments in flight
// (the initial window) and returns the fixture.
func sackSend(t *testing.T, mods ...func(*Config)) *fixture {
	t.Helper()
	f := newFixture(t, mods...)
	f.estabWith(1000, sackPerm)
	f.write(payload(10*1460, 's'))
	for i := 0; i < 10; i++ {
		f.outData(uint32(1+i*1460), 1460)
	}
	f.noOutput()
	return f
}

// sackRecovering is sackSend with segment 0 lost: the peer SACKs 1-3,
// more than DupThresh above the hole (RFC 6675 IsLost), so recovery starts
// and SND.UNA is resent alone.
func sackRecovering(t *testing.T) *fixture {
	t.Helper()
	f := sackSend(t)
	f.inMod(ACK, f.sacks(segEdge(1), segEdge(4)), seq(1001), ack(1))
	f.outData(segEdge(0), 1460)
	f.noOutput()
	f.counter("TCPSackRecovery", 1)
	return f
}

// segEdge is the relative sequence number where segment i starts.
func segEdge(i int) uint32 { return uint32(1 + i*1460) }

// RFC 6675: SACKs showing more than two segments received above a hole
// (IsLost, DupThresh 3) start recovery at once (TCPSackRecovery,
// TCPFastRetrans); NextSeg retransmits only the holes, never data the
// peer SACKed, and a full ACK ends recovery with nothing resent.
func TestScriptedSACKRecoveryRetransmitsHolesOnly(t *testing.T) {
	// Segments 0 and 5 are lost. The first ACK SACKs 1-3.
	f := sackRecovering(t)
	f.counter("TCPFastRetrans", 1)
	// Then 1-4 and 6-9: the second hole (segment 5) is lost too.
	f.inMod(ACK, f.sacks(segEdge(6), segEdge(10), segEdge(1), segEdge(5)), seq(1001), ack(1))
	f.outData(segEdge(5), 1460)
	f.noOutput()
	// The retransmission of 0 arrives: a partial ACK up to the hole at 5.
	f.inMod(ACK, f.sacks(segEdge(6), segEdge(10)), seq(1001), ack(segEdge(5)))
	f.noOutput()
	f.in(ACK, seq(1001), ack(segEdge(10)))
	f.noOutput()
	f.counter("RetransSegs", 2)
	f.counter("TCPSackRecovery", 1)
	if ci := f.info(); ci.InFlight != 0 || ci.Cwnd < ci.Ssthresh {
		t.Fatalf("after recovery: in flight %d, cwnd %d ssthresh %d", ci.InFlight, ci.Cwnd, ci.Ssthresh)
	}
}

// RFC 2883 §4 / RFC 6675: a first SACK block below the cumulative ACK is
// a D-SACK (TCPDSACKRecv) and SACKs nothing; blocks that are empty,
// reversed, beyond what we sent or below SND.UNA are ignored (RFC 2018
// §8 robustness), so none of them can trigger recovery; a believable
// block then does.
func TestScriptedSACKBogusBlocksIgnored(t *testing.T) {
	f := sackSend(t)
	// A genuine ACK of segment 0 first, so there is something below it.
	f.in(ACK, seq(1001), ack(segEdge(1)))
	f.noOutput()
	f.inMod(ACK, f.sacks(segEdge(0), segEdge(1)), seq(1001), ack(segEdge(1)))
	f.counter("TCPDSACKRecv", 1)
	f.inMod(ACK, f.sacks(
		segEdge(5), segEdge(2), // reversed
		segEdge(3), segEdge(3), // empty
		segEdge(6), segEdge(10)+50000, // beyond SND.MAX
		segEdge(0)-3000, segEdge(1), // below SND.UNA
	), seq(1001), ack(segEdge(1)))
	f.noOutput()
	f.counter("TCPSackRecovery", 0)
	f.counter("RetransSegs", 0)
	f.inMod(ACK, f.sacks(segEdge(5), segEdge(10)), seq(1001), ack(segEdge(1)))
	f.outData(segEdge(1), 1460)
	f.counter("TCPSackRecovery", 1)
}

// RFC 5681 §3.2 / RFC 6582 without SACK (Config.NoSACK): the third
// duplicate ACK retransmits the first unacknowledged segment
// (TCPFastRetrans, TCPRenoRecovery) and sets cwnd to ssthresh + 3 MSS; a
// partial ACK retransmits the next hole at once; the full ACK (covering
// recover) ends recovery with cwnd no larger than ssthresh.
func TestScriptedNewRenoRecovery(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.NoSACK = true; c.Congestion = "reno" })
	f.estabWith(1000, sackPerm)
	f.write(payload(10*1460, 'r'))
	for i := 0; i < 10; i++ {
		f.outData(segEdge(i), 1460)
	}
	// Segments 0 and 5 are lost; 1-4 and 6-9 each draw a duplicate ACK.
	f.in(ACK, seq(1001), ack(1))
	f.in(ACK, seq(1001), ack(1))
	f.noOutput()
	f.counter("TCPFastRetrans", 0)
	f.in(ACK, seq(1001), ack(1))
	f.outData(segEdge(0), 1460)
	f.counter("TCPFastRetrans", 1)
	f.counter("TCPRenoRecovery", 1)
	ci := f.info()
	if ci.Ssthresh != 5*1460 || ci.Cwnd != ci.Ssthresh+3*1460 {
		t.Fatalf("cwnd %d ssthresh %d, want ssthresh %d (half the flight) and cwnd ssthresh+3*MSS", ci.Cwnd, ci.Ssthresh, 5*1460)
	}
	for i := 0; i < 5; i++ {
		f.in(ACK, seq(1001), ack(1))
	}
	f.noOutput() // inflated cwnd, but no new data to send
	// Partial ACK: everything up to the second hole.
	f.in(ACK, seq(1001), ack(segEdge(5)))
	f.outData(segEdge(5), 1460)
	f.noOutput()
	f.counter("TCPFastRetrans", 1)
	// Full ACK: recovery ends.
	f.in(ACK, seq(1001), ack(segEdge(10)))
	f.noOutput()
	if ci := f.info(); ci.Cwnd > ci.Ssthresh {
		t.Fatalf("after the full ACK cwnd %d > ssthresh %d", ci.Cwnd, ci.Ssthresh)
	}
	f.counter("RetransSegs", 2)
	f.counter("TCPRenoRecovery", 1)
	// A later loss is a new recovery episode.
	f.write(payload(5*1460, 'n'))
	for _, sg := range f.popAll() {
		if f.rel(sg.Seq) < segEdge(10) {
			t.Fatalf("resent old data after recovery: %s", sg.String())
		}
	}
}

// firstWithin advances the clock a millisecond at a time until the stack
// sends something, and returns the first segment; it fails if nothing goes
// out within limit (what names what was awaited).
func (f *fixture) firstWithin(limit time.Duration, what string) seg.Segment {
	f.t.Helper()
	for waited := time.Duration(0); waited < limit; waited += time.Millisecond {
		f.advance(time.Millisecond)
		if len(f.pending) > 0 {
			return f.pop()
		}
	}
	f.fail("no %s within %v", what, limit)
	return seg.Segment{}
}

// RFC 8985 §7 and §6.2: when a flight's whole tail is lost, no ACK comes
// and the tail-loss probe goes out after about two round trips (here
// SRTT is the handshake's 10 ms), well before the 200 ms RTO. Its SACK
// shows one segment above the hole, below RFC 6675's DupThresh, but
// everything below the probe was sent a PTO earlier and has had its round
// trip: it is lost, and recovery starts on that ACK, resending the holes
// in order, never the probe, with no timeout.
func TestScriptedSACKProbeRevealsTailLoss(t *testing.T) {
	for _, newData := range []bool{false, true} {
		name := "probe resends the last segment"
		if newData {
			name = "probe sends new data"
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			f.estabWith(1000, sackPerm)
			f.write(payload(10*1460, 's'))
			for i := 0; i < 10; i++ {
				f.outData(segEdge(i), 1460)
			}
			f.noOutput()
			probeAt := segEdge(9)
			if newData {
				// The peer's window has room; cwnd does not, but a probe
				// may send one new segment regardless (RFC 8985 §7.3).
				f.write(payload(1460, 'n'))
				f.noOutput()
				probeAt = segEdge(10)
			}
			probe := f.firstWithin(100*time.Millisecond, "loss probe")
			if f.rel(probe.Seq) != probeAt || len(probe.Payload) != 1460 {
				f.fail("probe %s, want 1460 bytes at %d", probe.String(), probeAt)
			}
			f.counter("TCPLossProbes", 1)
			f.noOutput()

			f.inMod(ACK, f.sacks(probeAt, probeAt+1460), seq(1001), ack(1))
			got := f.popAll()
			if len(got) == 0 {
				f.fail("the probe's SACK started no retransmission")
			}
			for i, sg := range got {
				if f.rel(sg.Seq) != segEdge(i) || len(sg.Payload) != 1460 {
					f.fail("retransmission %d is %s, want the hole at %d", i, sg.String(), segEdge(i))
				}
			}
			f.counter("TCPSackRecovery", 1)
			f.counter("TCPTimeouts", 0)
			ci := f.info()
			if ci.Cwnd >= 10*1460 || ci.Ssthresh != ci.Cwnd {
				t.Fatalf("cwnd %d ssthresh %d: want a reduction to ssthresh on entering recovery", ci.Cwnd, ci.Ssthresh)
			}
			// The retransmissions arrive: one cumulative ACK ends recovery.
			end := segEdge(10)
			if newData {
				end = segEdge(11)
			}
			f.in(ACK, seq(1001), ack(end))
			f.noOutput()
			f.counter("TCPTimeouts", 0)
			if ci := f.info(); ci.InFlight != 0 {
				t.Fatalf("after the full ACK: %d bytes in flight", ci.InFlight)
			}
		})
	}
}

// RFC 8985 §6.2/§6.3: the flight's last segment arrives but the nine
// before it do not. One SACKed segment is below DupThresh, so no recovery
// starts on the ACK; when the probe timer fires, the holes have been
// outstanding far longer than the SACKed segment's round trip plus the
// reordering window, and are lost. Recovery starts then, resending the
// holes from SND.UNA, instead of a probe that would resend the segment
// the peer already SACKed and leave the holes to the RTO.
func TestScriptedSACKProbeTimerMarksHolesBelowSACKLost(t *testing.T) {
	f := sackSend(t)
	f.advance(time.Millisecond)
	f.inMod(ACK, f.sacks(segEdge(9), segEdge(10)), seq(1001), ack(1))
	f.noOutput()
	f.counter("TCPSackRecovery", 0)
	first := f.firstWithin(100*time.Millisecond, "segment after the SACK")
	if f.rel(first.Seq) != segEdge(0) || len(first.Payload) != 1460 {
		f.fail("first segment after the timer is %s, want the hole at %d", first.String(), segEdge(0))
	}
	for i, sg := range f.popAll() {
		if f.rel(sg.Seq) != segEdge(i+1) {
			f.fail("retransmission %d is %s, want the hole at %d", i+1, sg.String(), segEdge(i+1))
		}
	}
	f.counter("TCPSackRecovery", 1)
	f.counter("TCPLossProbes", 0)
	f.counter("TCPTimeouts", 0)
	f.in(ACK, seq(1001), ack(segEdge(10)))
	f.noOutput()
	if ci := f.info(); ci.InFlight != 0 {
		t.Fatalf("after the full ACK: %d bytes in flight", ci.InFlight)
	}
}

// The probe's ACK may also move SND.UNA: here the first segment arrived
// (its own ACK was lost) and the other nine of the tail did not. That ACK
// goes through newAck, not the duplicate-ACK path, and must start recovery
// all the same, resending the holes from the new SND.UNA.
func TestScriptedSACKProbeAckThatAdvancesStartsRecovery(t *testing.T) {
	f := sackSend(t)
	probe := f.firstWithin(100*time.Millisecond, "loss probe")
	if f.rel(probe.Seq) != segEdge(9) {
		f.fail("probe %s, want the last segment at %d", probe.String(), segEdge(9))
	}
	f.inMod(ACK, f.sacks(segEdge(9), segEdge(10)), seq(1001), ack(segEdge(1)))
	got := f.popAll()
	if len(got) == 0 || f.rel(got[0].Seq) != segEdge(1) {
		f.fail("after the probe's ACK sent %d segments, want the hole at %d first", len(got), segEdge(1))
	}
	f.counter("TCPSackRecovery", 1)
	f.counter("TCPTimeouts", 0)
}

// Entering recovery turns a timer armed as a loss probe back into the
// RTO: no probe goes out during recovery (RFC 8985 §7.2 schedules none
// there), where it would resend the flight's last segment for nothing.
func TestScriptedSACKNoProbeInRecovery(t *testing.T) {
	f := sackRecovering(t)
	// Past any probe timeout (about two SRTT, 20 ms here) but short of
	// the 200 ms RTO: nothing may be sent.
	f.step(150*time.Millisecond, time.Millisecond)
	f.noOutput()
	f.counter("TCPLossProbes", 0)
	f.counter("TCPTimeouts", 0)
}
