package stack

// FuzzStack: two whole stacks in manual mode exchange segments while the
// fuzzer, reading its input as a script, drops, duplicates, reorders and
// rewrites packets in flight (flags, sequence and acknowledgment numbers,
// windows, options) and moves time. After every step the invariants of RFC
// 9293 must hold on both sides:
//   - no panic;
//   - SND.UNA <= SND.NXT <= SND.MAX (§3.3.1, with SND.MAX as RFC 6298/
//     Linux keep it for retransmission);
//   - the advertised right edge RCV.NXT+RCV.WND never moves left
//     (§3.8.6.2.2: "the window should not be shrunk");
//   - queues stay bounded (out-of-order queue, SACK scoreboard, receive
//     and send buffers);
//   - the bytes the application reads are a prefix of the bytes written.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"utcp/seg"
	"utcp/timers"
)

// fuzzTrace logs every delivered packet (set it while minimizing a failure).
var fuzzTrace = os.Getenv("UTCP_FUZZ_TRACE") != ""

type fuzzNet struct {
	t        *testing.T
	clk      *timers.ManualClock
	a, b     *Stack
	ca, cb   *Conn // client (on a) and accepted server (on b) ends
	ln       *Listener
	ab, ba   [][]byte // packets in flight each way
	sentA    []byte   // what a's application wrote
	sentB    []byte
	gotA     []byte // what a's application read (from b)
	gotB     []byte
	lastAdv  map[*tcb]seg.Seq
	iss      [2]seg.Seq // the senders' ISS (a's, b's) once known
	issKnown [2]bool
	steps    int
}

func newFuzzNet(t *testing.T) *fuzzNet {
	n := &fuzzNet{t: t, clk: &timers.ManualClock{}, lastAdv: map[*tcb]seg.Seq{}}
	n.clk.Advance(time.Second)
	mk := func(addr netip.Addr, seed uint64) *Stack {
		s, err := New(Config{Manual: true, Clock: n.clk, Addr: addr, Seed: seed, MaxOOOSegs: 16,
			RecvBuf: 32 << 10, RecvBufMax: 64 << 10, SendBuf: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	n.a, n.b = mk(addrA, 1), mk(addrB, 2)
	ln, err := n.b.Listen(80, 4)
	if err != nil {
		t.Fatal(err)
	}
	n.ln = ln
	n.a.mu.Lock()
	tc, err := n.a.connect(0, netip.AddrPortFrom(addrB, 80))
	if err != nil {
		n.a.mu.Unlock()
		t.Fatal(err)
	}
	n.ca = newConn(tc)
	tc.conn = n.ca
	n.a.mu.Unlock()
	n.collect()
	return n
}

func (n *fuzzNet) collect() {
	n.ab = append(n.ab, n.a.TakeOutput()...)
	n.ba = append(n.ba, n.b.TakeOutput()...)
}

// pop removes the next packet of one direction.
func (n *fuzzNet) pop(toB bool) []byte {
	q := &n.ba
	if toB {
		q = &n.ab
	}
	if len(*q) == 0 {
		return nil
	}
	p := (*q)[0]
	*q = (*q)[1:]
	return p
}

func (n *fuzzNet) deliver(toB bool, p []byte) {
	if p == nil {
		return
	}
	if fuzzTrace {
		var sg seg.Segment
		sg.Parse(p)
		n.t.Logf("%v deliver %s", n.clk.Now(), sg.String())
	}
	if toB {
		n.b.Inject(p)
	} else {
		n.a.Inject(p)
	}
	n.collect()
}

// mutate parses p, lets f change it and rebuilds it with valid checksums,
// so the mutation reaches the TCP rules rather than the checksum check.
func mutate(p []byte, f func(*seg.Segment)) []byte {
	var sg seg.Segment
	if sg.Parse(p) != nil {
		return p
	}
	sg.Payload = bytes.Clone(sg.Payload)
	f(&sg)
	if sg.Opts.Len() > seg.MaxOptionsLen {
		return p
	}
	return sg.AppendTo(nil)
}

// senderISS is the ISS of the connection whose application writes toward
// b (toB) or a: the writer's own connection once there is one (its TCB
// outlives removal, so a reset does not lose it), else the passive side's
// current half-open connection, else the last one seen (packets stay in
// flight after a connection is gone).
func (n *fuzzNet) senderISS(toB bool) (seg.Seq, bool) {
	s, i, c := n.b, 1, n.cb
	if toB {
		s, i, c = n.a, 0, n.ca
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c != nil {
		n.iss[i], n.issKnown[i] = c.t.iss, true
		return n.iss[i], true
	}
	for _, t := range s.conns {
		n.iss[i], n.issKnown[i] = t.iss, true
	}
	return n.iss[i], n.issKnown[i]
}

func (n *fuzzNet) app() {
	if n.cb == nil {
		n.b.mu.Lock()
		ready := len(n.ln.acceptQ) > 0
		n.b.mu.Unlock()
		if ready {
			c, err := n.ln.AcceptTCP()
			if err != nil {
				n.t.Fatal(err)
			}
			n.cb = c
		}
	}
	read := func(s *Stack, c *Conn, got *[]byte) {
		if c == nil {
			return
		}
		s.mu.Lock()
		k := c.t.rcv.Len()
		s.mu.Unlock()
		if k == 0 {
			return
		}
		buf := make([]byte, k)
		m, err := c.Read(buf)
		if err != nil {
			return
		}
		*got = append(*got, buf[:m]...)
	}
	read(n.a, n.ca, &n.gotA)
	read(n.b, n.cb, &n.gotB)
	n.collect()
}

// write queues up to k bytes of the deterministic stream on c if the send
// buffer has room (so Write never blocks in manual mode).
func (n *fuzzNet) write(s *Stack, c *Conn, sent *[]byte, k int) {
	if c == nil {
		return
	}
	s.mu.Lock()
	room := c.t.snd.Free()
	st := c.t.state
	s.mu.Unlock()
	if st != Established && st != CloseWait {
		return
	}
	k = min(k, room)
	if k <= 0 {
		return
	}
	b := make([]byte, k)
	for i := range b {
		b[i] = streamByte(int64(len(*sent) + i))
	}
	c.SetWriteDeadline(time.Now().Add(time.Second))
	m, _ := c.Write(b)
	*sent = append(*sent, b[:m]...)
	n.collect()
}

func (n *fuzzNet) check() {
	n.steps++
	for _, s := range []*Stack{n.a, n.b} {
		if msg := n.checkStack(s); msg != "" {
			n.t.Fatalf("step %d: %s", n.steps, msg)
		}
	}
	// The applications write a prefix of one deterministic stream, so
	// "a prefix of what was sent" is checked byte by byte against it. (The
	// length is not compared with what was written: a seq-shifting
	// mutation may deliver stream bytes before their sender wrote them.)
	// A reader's first byte is the one after the initial sequence number
	// its connection synchronized on (IRS). That is normally the sender's
	// ISS, but a data segment whose flags were flipped into a SYN can, by
	// the rules, restart a half-open passive connection with a different
	// one (RFC 9293 §3.10.7.4: a SYN in SYN-RECEIVED returns it to LISTEN;
	// Linux resets the request), and the reader then starts at that
	// segment's place in the stream.
	for _, x := range []struct {
		who  string
		got  []byte
		c    *Conn
		s    *Stack
		toMe bool
	}{{"b", n.gotB, n.cb, n.b, true}, {"a", n.gotA, n.ca, n.a, false}} {
		var off int64
		if len(x.got) > 0 {
			iss, ok := n.senderISS(x.toMe)
			x.s.mu.Lock()
			irs := x.c.t.irs
			x.s.mu.Unlock()
			if ok {
				off = int64(irs.Sub(iss))
			}
		}
		for i, c := range x.got {
			if want := streamByte(off + int64(i)); c != want {
				n.t.Fatalf("step %d: %s read byte %d = %#x, stream (from offset %d) has %#x", n.steps, x.who, i, c, off, want)
			}
		}
	}
}

// checkStack returns the first broken invariant of s, or "". It holds the
// stack's lock, so it reports rather than failing (Fatal would run the
// cleanup that closes the stack while the lock is held).
func (n *fuzzNet) checkStack(s *Stack) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	{
		for _, t := range s.conns {
			if !(t.sndUna.LessEq(t.sndNxt) && t.sndNxt.LessEq(t.sndMax)) {
				return fmt.Sprintf("%v %v: SND.UNA %d SND.NXT %d SND.MAX %d out of order", t.local, t.state, t.sndUna, t.sndNxt, t.sndMax)
			}
			if t.state == SynSent {
				continue // RCV.NXT and the window start with the SYN-ACK
			}
			if prev, ok := n.lastAdv[t]; ok && t.rcvAdv.LessThan(prev) {
				return fmt.Sprintf("%v %v: advertised right edge moved left %d -> %d", t.local, t.state, prev, t.rcvAdv)
			}
			n.lastAdv[t] = t.rcvAdv
			if len(t.ooo) > s.cfg.MaxOOOSegs {
				return fmt.Sprintf("OOO queue %d > %d", len(t.ooo), s.cfg.MaxOOOSegs)
			}
			if len(t.sb.r) > maxSACKRanges {
				return fmt.Sprintf("scoreboard %d ranges", len(t.sb.r))
			}
			if t.rcv.Len() > s.cfg.RecvBufMax || t.snd.Len() > s.cfg.SendBuf {
				return fmt.Sprintf("buffers rcv %d snd %d", t.rcv.Len(), t.snd.Len())
			}
		}
	}
	return ""
}

// run interprets the script: each op is one byte, some take operands.
func (n *fuzzNet) run(script []byte) {
	r := script
	next := func() byte {
		if len(r) == 0 {
			return 0
		}
		c := r[0]
		r = r[1:]
		return c
	}
	next16 := func() uint16 { return uint16(next())<<8 | uint16(next()) }
	for steps := 0; len(r) > 0 && steps < 2000; steps++ {
		op := next()
		toB := op&0x80 != 0
		switch op & 0x0f {
		case 0, 1, 2: // deliver unchanged (the common case)
			n.deliver(toB, n.pop(toB))
		case 3: // drop
			n.pop(toB)
		case 4: // duplicate
			if p := n.pop(toB); p != nil {
				n.deliver(toB, p)
				n.deliver(toB, p)
			}
		case 5: // reorder: move the head to the back
			if p := n.pop(toB); p != nil {
				if toB {
					n.ab = append(n.ab, p)
				} else {
					n.ba = append(n.ba, p)
				}
			}
		case 6: // flip flags
			x := next()
			n.deliver(toB, mutate(n.pop(toB), func(sg *seg.Segment) { sg.Flags ^= seg.Flags(x) }))
		case 7: // shift seq
			d := int16(next16())
			iss, ok := n.senderISS(toB)
			n.deliver(toB, mutate(n.pop(toB), func(sg *seg.Segment) {
				sg.Seq += seg.Seq(int32(d))
				// Carry the stream's bytes for the new position, so the
				// segment stays a truthful (if misplaced) piece of the
				// stream: a rewriter that also rewrites payloads is
				// beyond what TCP can detect.
				if fuzzTrace {
					n.t.Logf("shift %d iss %d ok %v -> seq %d", d, iss, ok, sg.Seq)
				}
				if ok {
					pos := int64(sg.Seq.Sub(iss.Add(1)))
					for i := range sg.Payload {
						sg.Payload[i] = streamByte(pos + int64(i))
					}
				}
			}))
		case 8: // shift ack
			d := int16(next16())
			n.deliver(toB, mutate(n.pop(toB), func(sg *seg.Segment) { sg.Ack += seg.Seq(int32(d)) }))
		case 9: // window
			w := next16()
			n.deliver(toB, mutate(n.pop(toB), func(sg *seg.Segment) { sg.Window = w }))
		case 10: // options: SACK blocks relative to ack, timestamps, MSS/WS
			x, y, z := next(), next16(), next16()
			n.deliver(toB, mutate(n.pop(toB), func(sg *seg.Segment) {
				switch x % 4 {
				case 0:
					sg.Opts.NumSACK = 1 + int(x>>2)%3
					for i := 0; i < sg.Opts.NumSACK; i++ {
						s := sg.Ack.Add(uint32(y) * uint32(i+1))
						sg.Opts.SACK[i] = seg.SACKBlock{Start: s, End: s.Add(uint32(z))}
					}
				case 1:
					sg.Opts.HasTS, sg.Opts.TSVal, sg.Opts.TSEcr = true, sg.Opts.TSVal+uint32(int16(y)), sg.Opts.TSEcr+uint32(int16(z))
				case 2:
					sg.Opts.HasMSS, sg.Opts.MSS = true, y
					sg.Opts.HasWScale, sg.Opts.WScale = true, byte(z)
				case 3:
					sg.Opts = seg.Options{}
				}
			}))
		case 11: // truncate payload
			k := int(next())
			n.deliver(toB, mutate(n.pop(toB), func(sg *seg.Segment) { sg.Payload = sg.Payload[:min(k, len(sg.Payload))] }))
		case 12: // time passes
			n.clk.Advance(time.Duration(next()) * 5 * time.Millisecond)
			n.a.Advance()
			n.b.Advance()
			n.collect()
		case 13: // applications write
			k := int(next()) * 64
			if toB {
				n.write(n.a, n.ca, &n.sentA, k)
			} else {
				n.write(n.b, n.cb, &n.sentB, k)
			}
		case 14: // applications read
			n.app()
		case 15: // a half-close
			c := n.ca
			if toB {
				c = n.cb
			}
			if c != nil && next()&7 == 0 {
				c.CloseWrite()
				n.collect()
			}
		}
		n.app()
		n.check()
	}
}

func FuzzStack(f *testing.F) {
	// Seeds: a clean exchange; one with loss and time; one with mutations.
	clean := []byte{0x80, 0x00, 0x80, 0x0e, 0x8d, 0x40, 0x80, 0x80, 0x80, 0x00, 0x00, 0x0d, 0x20, 0x00, 0x00, 0x80, 0x0e}
	f.Add(clean)
	lossy := append(bytes.Clone(clean), 0x8d, 0x80, 0x83, 0x80, 0x80, 0x0c, 0x40, 0x80, 0x80, 0x00, 0x0c, 0xff, 0x80, 0x00)
	f.Add(lossy)
	mut := append(bytes.Clone(clean), 0x8d, 0x80, 0x86, 0x06, 0x87, 0x80, 0x00, 0x88, 0x7f, 0xff, 0x89, 0, 0, 0x8a, 0, 0, 10, 0, 40, 0x84, 0x85, 0x8b, 3, 0x0c, 0x50, 0x80, 0x00, 0x80, 0x00)
	f.Add(mut)
	var long []byte
	for i := 0; i < 300; i++ {
		long = binary.BigEndian.AppendUint16(long, uint16(i*0x9e37))
	}
	f.Add(append(bytes.Clone(clean), long...))
	f.Fuzz(func(t *testing.T, script []byte) {
		// A stuck step (a blocking call or a loop in the stack) fails
		// with every goroutine's stack instead of stalling the fuzzer.
		watchdog := time.AfterFunc(10*time.Second, func() {
			buf := make([]byte, 1<<20)
			panic(fmt.Sprintf("FuzzStack: one input ran for 10s\n%s", buf[:runtime.Stack(buf, true)]))
		})
		t.Cleanup(func() { watchdog.Stop() }) // after the stacks' Close
		n := newFuzzNet(t)
		n.run(script)
		t.Logf("%d steps; a wrote %d, b read %d; b wrote %d, a read %d", n.steps, len(n.sentA), len(n.gotB), len(n.sentB), len(n.gotA))
	})
}
