package stack

import "utcp/seg"

// SACK (RFC 2018) on both sides.
//
// Sender: the scoreboard keeps the SACKed ranges above SND.UNA, sorted and
// disjoint, at most maxSACKRanges of them (a peer cannot make it grow
// without bound; losing a range only costs an unneeded retransmission).
// Loss recovery follows RFC 6675: IsLost, SetPipe and NextSeg.
//
// Receiver: ACKs carry blocks describing the out-of-order queue, the
// block holding the most recent arrival first (RFC 2018 §4), preceded by a
// D-SACK block when a duplicate arrived (RFC 2883 §4).

const maxSACKRanges = 32

type seqRange struct{ start, end seg.Seq }

func (r seqRange) len() uint32 { return uint32(r.end.Sub(r.start)) }

type scoreboard struct {
	r       []seqRange
	sacked  uint32  // bytes in r
	highRxt seg.Seq // RFC 6675 HighRxt: highest sequence retransmitted in this recovery
	// rackLost marks every unSACKed byte below lostBelow lost, whatever
	// IsLost says: set when a tail-loss probe is SACKed above holes
	// (probeRevealsLoss) or the probe timer finds SACKed data above them
	// (probeTimerRevealsLoss); cleared once SND.UNA reaches lostBelow.
	rackLost  bool
	lostBelow seg.Seq
}

// markLostBelow makes every unSACKed byte below seq lost (RACK's verdict,
// probeRevealsLoss and probeTimerRevealsLoss).
func (sb *scoreboard) markLostBelow(seq seg.Seq) {
	sb.lostBelow, sb.rackLost = seq, true
}

func (sb *scoreboard) reset() {
	sb.r = sb.r[:0]
	sb.sacked = 0
	sb.rackLost = false
}

// add records [start, end) as SACKed, merging with neighbours. It reports
// how many bytes were newly SACKed.
func (sb *scoreboard) add(start, end seg.Seq) uint32 {
	if !start.LessThan(end) {
		return 0
	}
	before := sb.sacked
	// Find the first range that ends at or after start.
	i := 0
	for i < len(sb.r) && sb.r[i].end.LessThan(start) {
		i++
	}
	j := i
	for j < len(sb.r) && sb.r[j].start.LessEq(end) {
		start = seg.MinSeq(start, sb.r[j].start)
		end = seg.MaxSeq(end, sb.r[j].end)
		sb.sacked -= sb.r[j].len()
		j++
	}
	nr := seqRange{start, end}
	switch {
	case j > i:
		sb.r[i] = nr
		sb.r = append(sb.r[:i+1], sb.r[j:]...)
	default:
		if len(sb.r) >= maxSACKRanges {
			if i == len(sb.r) {
				return 0 // above everything we track: ignore
			}
			last := sb.r[len(sb.r)-1]
			sb.sacked -= last.len()
			sb.r = sb.r[:len(sb.r)-1]
		}
		sb.r = append(sb.r, seqRange{})
		copy(sb.r[i+1:], sb.r[i:])
		sb.r[i] = nr
	}
	sb.sacked += nr.len()
	if sb.sacked > before {
		return sb.sacked - before
	}
	return 0
}

// ackedTo drops what the cumulative ACK now covers.
func (sb *scoreboard) ackedTo(una seg.Seq) {
	n := 0
	for n < len(sb.r) && sb.r[n].end.LessEq(una) {
		sb.sacked -= sb.r[n].len()
		n++
	}
	if n > 0 {
		sb.r = append(sb.r[:0], sb.r[n:]...)
	}
	if len(sb.r) > 0 && sb.r[0].start.LessThan(una) {
		sb.sacked -= uint32(una.Sub(sb.r[0].start))
		sb.r[0].start = una
	}
	if sb.rackLost && sb.lostBelow.LessEq(una) {
		sb.rackLost = false
	}
}

// sackedAt returns the end of the SACKed range holding seq.
func (sb *scoreboard) sackedAt(seq seg.Seq) (seg.Seq, bool) {
	for _, r := range sb.r {
		if seq.LessThan(r.start) {
			return 0, false
		}
		if seq.LessThan(r.end) {
			return r.end, true
		}
	}
	return 0, false
}

// nextStart returns the start of the first SACKed range above seq.
func (sb *scoreboard) nextStart(seq seg.Seq) (seg.Seq, bool) {
	for _, r := range sb.r {
		if seq.LessThan(r.start) {
			return r.start, true
		}
	}
	return 0, false
}

// isLost is RFC 6675 §4 IsLost with DupThresh 3: more than two segments'
// worth of bytes, or three discontiguous ranges, SACKed above seq.
func (sb *scoreboard) isLost(seq seg.Seq, mss int) bool {
	if sb.rackLost && seq.LessThan(sb.lostBelow) {
		return true
	}
	var above uint32
	ranges := 0
	for k := len(sb.r) - 1; k >= 0; k-- {
		r := sb.r[k]
		if r.end.LessEq(seq) {
			break
		}
		ranges++
		if r.start.LessThan(seq) {
			above += uint32(r.end.Sub(seq))
		} else {
			above += r.len()
		}
	}
	return above > uint32(2*mss) || ranges >= 3
}

// pipe is RFC 6675 §4 SetPipe: bytes believed in the network, counting
// each unSACKed byte once unless lost, and once more if retransmitted.
func (t *tcb) pipe() int {
	sb := &t.sb
	pipe := 0
	s := t.sndUna
	above := sb.sacked
	rangesAbove := len(sb.r)
	for _, r := range sb.r {
		pipe += sb.holePipe(s, r.start, above, rangesAbove, t.mss)
		above -= r.len()
		rangesAbove--
		s = r.end
	}
	if s.LessThan(t.sndMax) {
		pipe += int(t.sndMax.Sub(s))
	}
	return pipe
}

func (sb *scoreboard) holePipe(a, b seg.Seq, above uint32, rangesAbove, mss int) int {
	if !a.LessThan(b) {
		return 0
	}
	lost := above > uint32(2*mss) || rangesAbove >= 3 || (sb.rackLost && a.LessThan(sb.lostBelow))
	if !lost {
		return int(b.Sub(a))
	}
	// Lost bytes count only if retransmitted already.
	if sb.highRxt.GreaterThan(a) {
		return int(seg.MinSeq(b, sb.highRxt).Sub(a))
	}
	return 0
}

// nextLost is RFC 6675 §4 NextSeg rule 1: the first unSACKed, not yet
// retransmitted sequence below the highest SACKed one that IsLost.
func (t *tcb) nextLost() (seq seg.Seq, n int, ok bool) {
	sb := &t.sb
	if len(sb.r) == 0 {
		return 0, 0, false
	}
	s := seg.MaxSeq(sb.highRxt, t.sndUna)
	for {
		if end, in := sb.sackedAt(s); in {
			s = end
			continue
		}
		break
	}
	next, has := sb.nextStart(s)
	if !has || !sb.isLost(s, t.mss) {
		return 0, 0, false
	}
	n = min(int(next.Sub(s)), t.mss)
	return s, n, true
}

// takeSACK folds the peer's SACK blocks into the scoreboard and reports
// how many bytes were newly SACKed. A first block below the cumulative
// ACK, or inside the second block, is a D-SACK (RFC 2883 §4).
func (t *tcb) takeSACK(sg *seg.Segment) uint32 {
	o := &sg.Opts
	var fresh uint32
	for i := 0; i < o.NumSACK && i < len(o.SACK); i++ {
		b := o.SACK[i]
		if !b.Start.LessThan(b.End) {
			continue
		}
		if i == 0 && (b.End.LessEq(sg.Ack) || (o.NumSACK > 1 && o.SACK[1].Start.LessEq(b.Start) && b.End.LessEq(o.SACK[1].End))) {
			t.s.ctr.TCPDSACKRecv++
			continue
		}
		// Only blocks inside what we sent are believable.
		if b.End.GreaterThan(t.sndMax) || b.End.LessEq(sg.Ack) || b.End.LessEq(t.sndUna) {
			continue
		}
		start := seg.MaxSeq(b.Start, seg.MaxSeq(sg.Ack, t.sndUna))
		fresh += t.sb.add(start, b.End)
	}
	return fresh
}

// --- receiver side ------------------------------------------------------

// appendSACK puts the D-SACK block (if any) and the out-of-order ranges
// into an outgoing ACK's options. RFC 2018 §4: the first block holds the
// most recent arrival, and the rest repeat the most recently reported
// blocks, so that a block survives the loss of the ACKs that first
// reported it; the highest ranges fill what room is left.
func (t *tcb) appendSACK(o *seg.Options) {
	n := 0
	if t.dsackPending {
		o.SACK[0] = seg.SACKBlock{Start: t.dsack.start, End: t.dsack.end}
		n = 1
	}
	if len(t.ooo) > 0 {
		ranges := t.oooRanges()
		var used [len(t.recentOOO)]int
		nused := 0
		add := func(k int) {
			for _, u := range used[:nused] {
				if u == k {
					return
				}
			}
			used[nused] = k
			nused++
			o.SACK[n] = seg.SACKBlock{Start: ranges[k].start, End: ranges[k].end}
			n++
		}
		for _, at := range t.recentOOO[:t.nRecentOOO] {
			if n >= len(o.SACK) || nused >= len(used) {
				break
			}
			for k, r := range ranges {
				if at.GreaterEq(r.start) && at.LessThan(r.end) {
					add(k)
					break
				}
			}
		}
		for k := len(ranges) - 1; k >= 0 && n < len(o.SACK) && nused < len(used); k-- {
			add(k)
		}
	}
	o.NumSACK = n
}

// noteOOO records an out-of-order arrival at seq as the most recent, for
// the order of SACK blocks.
func (t *tcb) noteOOO(seq seg.Seq) {
	copy(t.recentOOO[1:], t.recentOOO[:len(t.recentOOO)-1])
	t.recentOOO[0] = seq
	t.nRecentOOO = min(t.nRecentOOO+1, len(t.recentOOO))
}

// oooRanges merges the out-of-order queue into its disjoint ranges, in
// sequence order; appendSACK picks which of them fit in the option.
func (t *tcb) oooRanges() []seqRange {
	out := t.s.sackScratch[:0]
	for _, q := range t.ooo {
		end := q.seq.Add(uint32(len(q.data)))
		if len(out) > 0 && q.seq.LessEq(out[len(out)-1].end) {
			if end.GreaterThan(out[len(out)-1].end) {
				out[len(out)-1].end = end
			}
			continue
		}
		out = append(out, seqRange{q.seq, end})
	}
	t.s.sackScratch = out
	return out
}

// noteDuplicate records a duplicate arrival for the next ACK's D-SACK.
func (t *tcb) noteDuplicate(start, end seg.Seq) {
	if !t.sackOK || !start.LessThan(end) {
		return
	}
	t.dsack = seqRange{start, end}
	t.dsackPending = true
}
