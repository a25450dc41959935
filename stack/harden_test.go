package stack

// Hardening tests (issue 7): malformed and hostile input against a stack
// with a live connection. Every case checks three things: nothing panics,
// the counter that names the rejection moves, and a transfer running on the
// attacked connection at the same time finishes byte-exact.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"utcp/seg"
	"utcp/seg/segtest"
	"utcp/timers"
	"utcp/tun/tuntest"
)

// raw is a hand-built IPv4 packet (segtest.Raw): every field may be
// wrong on purpose.
type raw = segtest.Raw

// optMSS etc. build raw option bytes.
func optMSS(v uint16) []byte { return []byte{2, 4, byte(v >> 8), byte(v)} }
func optWS(v uint8) []byte   { return []byte{1, 3, 3, v} }
func optTS(a, b uint32) []byte {
	o := []byte{1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(o[4:], a)
	binary.BigEndian.PutUint32(o[8:], b)
	return o
}
func optSACK(blocks ...uint32) []byte {
	o := []byte{1, 1, 5, byte(2 + 4*len(blocks))}
	for _, b := range blocks {
		o = binary.BigEndian.AppendUint32(o, b)
	}
	return o
}

// live is what a malformed case needs to know about the attacked
// connection: its 4-tuple and its sequence variables right now.
type live struct {
	peer, self   netip.AddrPort
	rcvNxt       uint32 // the next byte the attacked stack expects
	sndUna, sndN uint32 // what the attacked stack has sent
}

// base returns a valid in-window pure ACK for the connection; cases change it.
func (l live) base() raw {
	return raw{Src: l.peer.Addr(), Dst: l.self.Addr(), Sport: l.peer.Port(), Dport: l.self.Port(),
		Seq: l.rcvNxt, Ack: l.sndUna, Flags: seg.ACK, Window: 1024}
}

type malCase struct {
	name    string
	rfc     string
	counter string // must move by at least one
	pkts    func(l live) [][]byte
}

func one(f func(l live) raw) func(l live) [][]byte {
	return func(l live) [][]byte { return [][]byte{f(l).Bytes()} }
}

func malformedCases() []malCase {
	junk := make([]byte, 2000)
	for i := range junk {
		junk[i] = byte(i * 7)
	}
	return []malCase{
		// TCP options (RFC 9293 §3.1: option-length counts kind and length
		// and must stay inside the data offset; seg rejects the segment).
		{"opt len 0", "RFC 9293 §3.1", "InErrs", one(func(l live) raw { r := l.base(); r.TCPOpts = []byte{8, 0, 0, 0}; return r })},
		{"opt len 1", "RFC 9293 §3.1", "InErrs", one(func(l live) raw { r := l.base(); r.TCPOpts = []byte{8, 1, 0, 0}; return r })},
		{"opt past header", "RFC 9293 §3.1", "InErrs", one(func(l live) raw { r := l.base(); r.TCPOpts = []byte{1, 1, 8, 10}; return r })},
		{"opt missing length byte", "RFC 9293 §3.1", "InErrs", one(func(l live) raw { r := l.base(); r.TCPOpts = []byte{1, 1, 1, 8}; return r })},
		// Data offset (RFC 9293 §3.1: at least 5 words, within the segment).
		{"data offset 4", "RFC 9293 §3.1", "InErrs", one(func(l live) raw { r := l.base(); r.DataOff = 4; return r })},
		{"data offset 0", "RFC 9293 §3.1", "InErrs", one(func(l live) raw {
			r := l.base()
			r.DataOff = 0x0
			r.TCPOpts = nil
			r.DataOff = 16
			r.Payload = nil
			return r
		})},
		{"data offset past packet", "RFC 9293 §3.1", "InErrs", one(func(l live) raw { r := l.base(); r.DataOff = 15; return r })},
		// IPv4 header (RFC 791 §3.1, RFC 1122 §3.2.1: silently discard).
		{"ip total length > packet", "RFC 791 §3.1", "InHdrErrors", one(func(l live) raw { r := l.base(); r.TotalLen = 1400; return r })},
		{"ip total length < header", "RFC 791 §3.1", "InHdrErrors", one(func(l live) raw { r := l.base(); r.TotalLen = 12; return r })},
		{"ip total length cuts TCP", "RFC 791 §3.1", "InErrs", one(func(l live) raw { r := l.base(); r.TotalLen = -1; return r })},
		{"ihl 4", "RFC 791 §3.1", "InHdrErrors", one(func(l live) raw { r := l.base(); r.IHL = 4; return r })},
		{"ihl 0", "RFC 791 §3.1", "InHdrErrors", one(func(l live) raw { r := l.base(); r.IHL = 0xf0 >> 4 & 0; r.IHL = 16; return r })},
		{"ihl past packet", "RFC 791 §3.1", "InHdrErrors", func(l live) [][]byte {
			p := l.base().Bytes()[:20]
			p[0] = 0x4f
			binary.BigEndian.PutUint16(p[2:], 20)
			return [][]byte{p}
		}},
		{"ip options bad length", "RFC 791 §3.1", "InSegs", one(func(l live) raw { r := l.base(); r.IPOpts = []byte{0x83, 0xff, 0, 0}; return r })},
		{"ip options zero length", "RFC 791 §3.1", "InSegs", one(func(l live) raw { r := l.base(); r.IPOpts = []byte{0x44, 0, 1, 1}; return r })},
		{"bad ip checksum", "RFC 791 §3.1", "InHdrErrors", one(func(l live) raw { r := l.base(); r.BadIPCsum = true; return r })},
		{"bad tcp checksum", "RFC 9293 §3.1", "InCsumErrors", one(func(l live) raw { r := l.base(); r.Payload = []byte("evil"); r.BadTCPCsum = true; return r })},
		// MSS outside a SYN is ignored (RFC 9293 §3.7.1: only in SYNs);
		// the wrong length is an option error.
		{"mss 0", "RFC 9293 §3.7.1", "InSegs", one(func(l live) raw { r := l.base(); r.TCPOpts = optMSS(0); return r })},
		{"mss 1", "RFC 9293 §3.7.1", "InSegs", one(func(l live) raw { r := l.base(); r.TCPOpts = optMSS(1); return r })},
		{"mss 8", "RFC 9293 §3.7.1", "InSegs", one(func(l live) raw { r := l.base(); r.TCPOpts = optMSS(8); return r })},
		{"mss 40", "RFC 9293 §3.7.1", "InSegs", one(func(l live) raw { r := l.base(); r.TCPOpts = optMSS(40); return r })},
		{"mss 65535", "RFC 9293 §3.7.1", "InSegs", one(func(l live) raw { r := l.base(); r.TCPOpts = optMSS(65535); return r })},
		{"mss wrong length", "RFC 9293 §3.7.1", "InErrs", one(func(l live) raw { r := l.base(); r.TCPOpts = []byte{2, 3, 5, 1}; return r })},
		// Urgent pointer: accepted and ignored (RFC 6093 §4; data inline).
		{"urgent past segment", "RFC 6093 §4", "InSegs", one(func(l live) raw { r := l.base(); r.Flags |= seg.URG; r.Urgent = 65535; return r })},
		{"urgent 0 with URG", "RFC 6093 §4", "InSegs", one(func(l live) raw { r := l.base(); r.Flags |= seg.URG; return r })},
		// Window scale outside a SYN is ignored (RFC 7323 §2.2), any value.
		{"wscale 15", "RFC 7323 §2.3", "InSegs", one(func(l live) raw { r := l.base(); r.TCPOpts = optWS(15); return r })},
		{"wscale 255", "RFC 7323 §2.3", "InSegs", one(func(l live) raw { r := l.base(); r.TCPOpts = optWS(255); return r })},
		// SACK (RFC 2018 §3; RFC 6675 §5 uses only blocks above SND.UNA).
		{"sack wrong length", "RFC 2018 §3", "InErrs", one(func(l live) raw { r := l.base(); r.TCPOpts = []byte{1, 1, 5, 7, 0, 0, 0, 0, 0, 0, 0, 0}; return r })},
		{"sack reversed", "RFC 2018 §3", "InSegs", one(func(l live) raw { r := l.base(); r.TCPOpts = optSACK(l.sndUna+100, l.sndUna+50); return r })},
		{"sack wrapped", "RFC 2018 §3", "InSegs", one(func(l live) raw {
			r := l.base()
			r.TCPOpts = optSACK(l.sndUna+0x7fffffff, l.sndUna+0x80000010)
			return r
		})},
		{"sack outside window", "RFC 2018 §3", "InSegs", one(func(l live) raw {
			r := l.base()
			r.TCPOpts = optSACK(l.sndN+1000, l.sndN+2000, l.sndUna-5000, l.sndUna-4000)
			return r
		})},
		{"sack below una", "RFC 2018 §3", "InSegs", one(func(l live) raw { r := l.base(); r.TCPOpts = optSACK(l.sndUna-100, l.sndUna); return r })},
		// Timestamps (RFC 7323 §3: length 10).
		{"ts wrong length", "RFC 7323 §3", "InErrs", one(func(l live) raw { r := l.base(); r.TCPOpts = []byte{8, 8, 0, 0, 0, 0, 0, 0}; return r })},
		// Flag combinations (RFC 9293 §3.10.7.4; RFC 5961 §3.2, §4.2).
		{"SYN|FIN", "RFC 5961 §4.2", "TCPSYNChallenge", one(func(l live) raw { r := l.base(); r.Flags = seg.SYN | seg.FIN; return r })},
		{"SYN|RST", "RFC 5961 §3.2", "TCPChallengeACK", one(func(l live) raw { r := l.base(); r.Seq++; r.Flags = seg.SYN | seg.RST; return r })},
		{"no flags", "RFC 9293 §3.10.7.4", "InSegs", one(func(l live) raw { r := l.base(); r.Flags = 0; r.Payload = []byte("nope"); return r })},
		{"all flags", "RFC 5961 §3.2", "TCPChallengeACK", one(func(l live) raw { r := l.base(); r.Seq += 7; r.Flags = 0xff; return r })},
		{"RST with data", "RFC 5961 §3.2", "TCPChallengeACK", one(func(l live) raw {
			r := l.base()
			r.Seq += 3
			r.Flags = seg.RST | seg.ACK
			r.Payload = []byte("bye")
			return r
		})},
		{"SYN in window", "RFC 5961 §4.2", "TCPSYNChallenge", one(func(l live) raw { r := l.base(); r.Seq += 10; r.Flags = seg.SYN; return r })},
		{"SYN out of window", "RFC 5961 §4.2", "TCPSYNChallenge", one(func(l live) raw { r := l.base(); r.Seq += 1 << 31; r.Flags = seg.SYN; return r })},
		{"RST out of window", "RFC 5961 §3.2", "InSegs", one(func(l live) raw { r := l.base(); r.Seq -= 1 << 30; r.Flags = seg.RST; return r })},
		// Sequence numbers around 2^32 (RFC 9293 §3.4 modular arithmetic).
		{"seq rcvnxt-1 wrap", "RFC 9293 §3.4", "InSegs", one(func(l live) raw { r := l.base(); r.Seq = l.rcvNxt - 1 - 1<<31; r.Payload = []byte("x"); return r })},
		{"seq 0xffffffff", "RFC 9293 §3.4", "InSegs", one(func(l live) raw { r := l.base(); r.Seq = 0xffffffff; r.Payload = []byte("xy"); return r })},
		{"ack far ahead", "RFC 5961 §5.2", "InSegs", one(func(l live) raw { r := l.base(); r.Ack = l.sndN + 1<<30; r.Payload = []byte("z"); return r })},
		{"ack too old", "RFC 5961 §5.2", "TCPChallengeACK", one(func(l live) raw { r := l.base(); r.Ack = l.sndUna - 1<<30; r.Payload = []byte("old"); return r })},
		// Other protocols and addresses (RFC 1122 §3.2.1.3, §3.2.1.8).
		{"ipv6", "RFC 8200", "InIPv6", func(l live) [][]byte { p := make([]byte, 60); p[0] = 0x60; return [][]byte{p} }},
		{"unknown protocol", "RFC 1122 §3.2.1", "InUnknownProtos", one(func(l live) raw { r := l.base(); r.Proto = 253; r.L4 = []byte("hello"); return r })},
		{"version 5", "RFC 791 §3.1", "InHdrErrors", func(l live) [][]byte { p := l.base().Bytes(); p[0] = 0x55; return [][]byte{p} }},
		{"broadcast source", "RFC 1122 §3.2.1.3", "InAddrErrors", one(func(l live) raw { r := l.base(); r.Src = netip.MustParseAddr("255.255.255.255"); return r })},
		{"zero source", "RFC 1122 §3.2.1.3", "InAddrErrors", one(func(l live) raw { r := l.base(); r.Src = netip.MustParseAddr("0.0.0.0"); return r })},
		{"loopback source", "RFC 1122 §3.2.1.3", "InAddrErrors", one(func(l live) raw { r := l.base(); r.Src = netip.MustParseAddr("127.0.0.1"); return r })},
		{"multicast source", "RFC 1122 §3.2.1.3", "InAddrErrors", one(func(l live) raw { r := l.base(); r.Src = netip.MustParseAddr("224.0.0.1"); return r })},
		{"LAND src==dst", "RFC 1122 §3.2.1.3", "InAddrErrors", one(func(l live) raw {
			r := l.base()
			r.Src, r.Sport = l.self.Addr(), l.self.Port()
			r.Flags = seg.SYN
			return r
		})},
		{"broadcast destination", "RFC 1122 §3.2.1.3", "InAddrErrors", one(func(l live) raw { r := l.base(); r.Dst = netip.MustParseAddr("255.255.255.255"); return r })},
		{"zero length", "RFC 791 §3.1", "InHdrErrors", func(l live) [][]byte { return [][]byte{{}} }},
		{"one byte", "RFC 791 §3.1", "InHdrErrors", func(l live) [][]byte { return [][]byte{{0x45}} }},
		// A packet longer than 65535 bytes: the total-length field rules
		// and the rest is link padding (RFC 791 §3.1), so the segment in
		// it is processed normally and nothing reads past it.
		{"oversize packet", "RFC 791 §3.1", "InSegs", func(l live) [][]byte {
			p := make([]byte, 65535+100)
			copy(p, l.base().Bytes())
			return [][]byte{p}
		}},
		{"junk", "RFC 791 §3.1", "InHdrErrors", func(l live) [][]byte { return [][]byte{junk} }},
		{"port 0", "RFC 9293 §3.1", "InErrs", one(func(l live) raw { r := l.base(); r.Sport = 0; return r })},
		// Fragments (RFC 791 §3.2; RFC 5722-style overlap rejection as
		// Linux applies to IPv4 since FragmentSmack).
		{"fragment tiny", "RFC 791 §3.2", "ReasmFails", one(func(l live) raw { r := l.base(); r.L4 = []byte{1, 2, 3}; r.MF = true; r.ID = 1; return r })},
		{"fragment overlap", "RFC 791 §3.2", "ReasmFails", func(l live) [][]byte {
			a := l.base()
			a.L4, a.MF, a.ID = bytes.Repeat([]byte{1}, 16), true, 2
			b := a
			b.FragOff = 8
			return [][]byte{a.Bytes(), b.Bytes()}
		}},
		{"fragment past 65535", "RFC 791 §3.2", "ReasmFails", one(func(l live) raw { r := l.base(); r.L4 = make([]byte, 64); r.FragOff = 65528; r.ID = 3; return r })},
		{"fragment stray past last", "RFC 791 §3.2", "ReasmFails", func(l live) [][]byte {
			// A piece beyond the end the last fragment declares must not
			// be glued on: [200,208) then [0,8) then the last [8,16).
			a := l.base()
			a.ID, a.MF, a.L4, a.FragOff = 4, true, make([]byte, 8), 200
			b := a
			b.FragOff = 0
			c := a
			c.MF, c.FragOff = false, 8
			return [][]byte{a.Bytes(), b.Bytes(), c.Bytes()}
		}},
		{"fragment never completed", "RFC 791 §3.2", "ReasmReqds", one(func(l live) raw { r := l.base(); r.L4 = make([]byte, 64); r.MF = true; r.ID = 5; return r })},
	}
}

// counterDelta returns after-before for name, failing on an unknown name.
func counterDelta(t *testing.T, before, after Counters, name string) uint64 {
	t.Helper()
	b, ok1 := before.Get(name)
	a, ok2 := after.Get(name)
	if !ok1 || !ok2 {
		t.Fatalf("no counter %q", name)
	}
	return a - b
}

// streamByte is the transfer's deterministic content at offset i.
func streamByte(i int64) byte {
	// A mixing hash of the offset (splitmix64's finalizer): no period, so
	// a misplaced byte can be told from a right one.
	x := uint64(i) * 0x9e3779b97f4a7c15
	x ^= x >> 31
	x *= 0xbf58476d1ce4e5b9
	return byte(x >> 56)
}

// pacedTransfer writes a deterministic stream from w to r in small paced
// chunks until stop is closed, so the transfer really runs while a test
// injects; it returns a channel that reports an error or nil once every
// byte has arrived intact.
func pacedTransfer(w, r *Conn, stop <-chan struct{}) <-chan error {
	done := make(chan error, 2)
	var sent int64
	go func() {
		buf := make([]byte, 3000)
		for {
			select {
			case <-stop:
				done <- w.CloseWrite()
				return
			default:
			}
			for i := range buf {
				buf[i] = streamByte(sent + int64(i))
			}
			if _, err := w.Write(buf); err != nil {
				done <- err
				return
			}
			sent += int64(len(buf))
			time.Sleep(5 * time.Millisecond)
		}
	}()
	res := make(chan error, 1)
	go func() {
		var got int64
		buf := make([]byte, 4096)
		var err error
		for {
			var n int
			n, err = r.Read(buf)
			for i := 0; i < n; i++ {
				if buf[i] != streamByte(got+int64(i)) {
					res <- fmt.Errorf("byte %d corrupted", got+int64(i))
					return
				}
			}
			got += int64(n)
			if err != nil {
				break
			}
		}
		if err != io.EOF {
			res <- fmt.Errorf("read after %d bytes: %v", got, err)
			return
		}
		if werr := <-done; werr != nil {
			res <- werr
			return
		}
		if got != sent || got == 0 {
			res <- fmt.Errorf("received %d bytes, sent %d", got, sent)
			return
		}
		res <- nil
	}()
	return res
}

func liveOf(c *Conn) live {
	in := c.Info()
	return live{peer: in.Remote, self: in.Local, rcvNxt: in.RcvNxt, sndUna: in.SndUna, sndN: in.SndMax}
}

// TestHardenMalformed injects every malformed case into the server stack of
// a connection that is transferring both ways, 600 ms apart (longer than
// the challenge-ACK rate limit, so each case's ACK is observable).
func TestHardenMalformed(t *testing.T) {
	for _, c := range malformedCases() {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &tuntest.Faults{Seed: 7, Delay: time.Millisecond}
				p := newPair(t, pairOpts{faults: f})
				ln, err := p.b.Listen(80, 8)
				if err != nil {
					t.Fatal(err)
				}
				client, server := dialAccept(t, p, ln)
				stop := make(chan struct{})
				up := pacedTransfer(client, server, stop)
				down := pacedTransfer(server, client, stop)
				time.Sleep(300 * time.Millisecond) // data in flight both ways
				for round := 0; round < 3; round++ {
					l := liveOf(server)
					before := p.b.Counters()
					for _, pkt := range c.pkts(l) {
						p.b.Inject(pkt)
					}
					after := p.b.Counters()
					if d := counterDelta(t, before, after, c.counter); d == 0 {
						t.Errorf("%s (%s): counter %s did not move", c.name, c.rfc, c.counter)
					}
					if d := counterDelta(t, before, after, "InSegs"); d > 0 && c.counter != "InSegs" && c.counter != "TCPChallengeACK" && c.counter != "TCPSYNChallenge" && c.name != "port 0" {
						t.Errorf("%s: rejected packet counted as %d InSegs", c.name, d)
					}
					time.Sleep(600 * time.Millisecond)
				}
				close(stop)
				for _, ch := range []<-chan error{up, down} {
					if err := <-ch; err != nil {
						t.Fatalf("%s: transfer: %v", c.name, err)
					}
				}
				for _, s := range []*Stack{p.a, p.b} {
					if n := s.Counters().EstabResets; n != 0 {
						t.Fatalf("EstabResets %d", n)
					}
				}
				client.Close()
				server.Close()
			})
		})
	}
}

// RFC 5961 §4.2: a SYN outside the window draws the same rate-limited
// challenge ACK as one inside it, so a SYN flood at random sequence numbers
// gets at most two ACKs a second back.
func TestHardenSYNOutOfWindowChallenge(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	f.in(SYN, seq(1000+1<<31))
	f.out(ACK, seq(1), ack(1001))
	for i := uint32(0); i < 50; i++ {
		f.in(SYN, seq(i*0x01000193))
		f.in(SYN|ACK, seq(1000+1<<30+i), ack(i))
	}
	f.noOutput()
	f.counter("TCPSYNChallenge", 101)
	f.counter("TCPChallengeACK", 1)
	f.state(Established)
	f.advance(600 * time.Millisecond)
	f.in(SYN, seq(5))
	f.out(ACK, seq(1), ack(1001))
	f.counter("TCPChallengeACK", 2)
}

// RFC 5961 §5.2: data whose ACK field is older than SND.UNA - MAX.SND.WND
// is dropped (not delivered) and answered by a challenge ACK; data
// acknowledging what was never sent is dropped too (RFC 9293 §3.10.7.4).
func TestHardenACKValidity(t *testing.T) {
	f := newFixture(t)
	c := f.established(1000)
	f.in(ACK|PSH, seq(1001), ack(0xfff00001), data("blind"))
	f.out(ACK, seq(1), ack(1001))
	f.counter("TCPChallengeACK", 1)
	f.in(ACK|PSH, seq(1001), ack(1<<20), data("ahead"))
	f.out(ACK, seq(1), ack(1001))
	if got := f.available(); got != "" {
		t.Fatalf("delivered %q from segments with invalid ACK fields", got)
	}
	f.in(ACK|PSH, seq(1001), ack(1), data("ok"))
	if got := f.available(); got != "ok" {
		t.Fatalf("valid data: got %q", got)
	}
	_ = c
}

// ISNs (RFC 6528 §3): ISN = M + F(4-tuple, secret). Different secrets give
// unrelated ISNs for the same 4-tuple; one secret gives a later, larger ISN
// for the same 4-tuple; neighbouring 4-tuples' ISNs are unrelated.
func TestHardenISN(t *testing.T) {
	mk := func(seed uint64) *Stack {
		s, err := New(Config{Manual: true, Clock: &timers.ManualClock{}, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	s1, s2 := mk(11), mk(12)
	ra := [4]byte{198, 18, 0, 1}
	const n = 2000
	now := timers.Instant(0).Add(time.Second)
	same, diffs := 0, make(map[uint32]int)
	var prev seg.Seq
	for i := 0; i < n; i++ {
		k := connKey(ra, uint16(40000+i), 80)
		a, b := s1.isn(k, now), s2.isn(k, now)
		if a == b {
			same++
		}
		// Consecutive ports: the difference must not be constant.
		if i > 0 {
			diffs[uint32(a-prev)]++
		}
		prev = a
		// Same tuple, later: larger (modulo 2^32), by about 250 per ms.
		later := s1.isn(k, now.Add(time.Millisecond))
		if d := later.Sub(a); d != 250 {
			t.Fatalf("ISN of the same 4-tuple 1 ms later moved by %d, want 250 (4 µs clock)", d)
		}
	}
	if same > 1 {
		t.Fatalf("%d of %d 4-tuples got the same ISN under different secrets", same, n)
	}
	if len(diffs) < n-10 {
		t.Fatalf("ISN differences between neighbouring ports repeat: %d distinct of %d", len(diffs), n-1)
	}
	// Bits are balanced: each of the 32 bits is set in 40-60% of ISNs.
	var ones [32]int
	for i := 0; i < n; i++ {
		v := uint32(s1.isn(connKey(ra, uint16(i), 443), now))
		for b := 0; b < 32; b++ {
			ones[b] += int(v >> b & 1)
		}
	}
	for b, c := range ones {
		if c < n*4/10 || c > n*6/10 {
			t.Fatalf("ISN bit %d set in %d of %d", b, c, n)
		}
	}
	// Timestamp offsets (RFC 7323 §7.1) differ per 4-tuple.
	offs := make(map[uint32]bool)
	for i := 0; i < 1000; i++ {
		offs[s1.tsOffsetFor(connKey(ra, uint16(50000+i), 80))] = true
	}
	if len(offs) < 999 {
		t.Fatalf("only %d distinct timestamp offsets for 1000 4-tuples", len(offs))
	}
}

// Ephemeral ports are random (RFC 6056 §3.3.1): successive active opens
// to one destination do not use sequential ports, and a stack seeded
// differently picks different ones.
func TestHardenEphemeralPorts(t *testing.T) {
	ports := func(seed uint64) []uint16 {
		s, err := New(Config{Manual: true, Clock: &timers.ManualClock{}, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var out []uint16
		s.mu.Lock()
		defer s.mu.Unlock()
		for i := 0; i < 200; i++ {
			tc, err := s.connect(0, netip.MustParseAddrPort("198.18.0.1:80"))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, tc.local.Port())
		}
		return out
	}
	a, b := ports(21), ports(22)
	seqn, same := 0, 0
	for i := range a {
		if i > 0 && a[i] == a[i-1]+1 {
			seqn++
		}
		if a[i] == b[i] {
			same++
		}
	}
	if seqn > 20 || same > 5 {
		t.Fatalf("ephemeral ports predictable: %d sequential, %d equal across seeds (%v...)", seqn, same, a[:8])
	}
}

// blindInjector spoofs packets from the client's address and port into the
// server stack: RST, SYN and data with random sequence and ACK numbers, as
// an off-path attacker who knows the 4-tuple but not the sequence space
// (RFC 5961 §1). It returns how many of each kind it sent.
func blindInjector(s *Stack, peer, self netip.AddrPort, n int, seed uint64) (rsts, syns, datas int) {
	r := rand.New(rand.NewPCG(seed, 0x5961))
	payload := []byte("INJECTED")
	for i := 0; i < n; i++ {
		sg := seg.Segment{Src: peer.Addr(), Dst: self.Addr(), SrcPort: peer.Port(), DstPort: self.Port(),
			Seq: seg.Seq(r.Uint32()), Ack: seg.Seq(r.Uint32()), Window: uint16(r.Uint32())}
		switch i % 3 {
		case 0:
			sg.Flags = seg.RST
			if r.IntN(2) == 0 {
				sg.Flags |= seg.ACK
			}
			rsts++
		case 1:
			sg.Flags = seg.SYN
			syns++
		case 2:
			sg.Flags = seg.ACK | seg.PSH
			sg.Payload = payload
			datas++
		}
		s.Inject(sg.AppendTo(nil))
		if i%64 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	return
}

// 100,000 blind RST/SYN/data injections (random seq and ack, correct
// ports) against an established connection that is transferring: no reset
// (RFC 5961 §3, §4), no injected byte in the stream (§5), and challenge
// ACKs stay rate-limited.
func TestHardenBlindInjection(t *testing.T) {
	const n = 100_000
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, pairOpts{faults: &tuntest.Faults{Seed: 3, Delay: time.Millisecond}})
		ln, err := p.b.Listen(80, 8)
		if err != nil {
			t.Fatal(err)
		}
		client, server := dialAccept(t, p, ln)
		stop := make(chan struct{})
		up := pacedTransfer(client, server, stop)
		down := pacedTransfer(server, client, stop)
		time.Sleep(100 * time.Millisecond)
		before := p.b.Counters()
		start := time.Now()
		rsts, syns, datas := blindInjector(p.b, client.Info().Local, server.Info().Local, n, 99)
		elapsed := time.Since(start)
		after := p.b.Counters()
		if st := server.Info().State; st != Established {
			t.Fatalf("server state %v after injections", st)
		}
		close(stop)
		for _, ch := range []<-chan error{up, down} {
			if err := <-ch; err != nil {
				t.Fatalf("transfer: %v", err)
			}
		}
		if e := p.b.Counters().EstabResets + p.a.Counters().EstabResets; e != 0 {
			t.Fatalf("EstabResets %d", e)
		}
		chal := counterDelta(t, before, after, "TCPChallengeACK")
		synChal := counterDelta(t, before, after, "TCPSYNChallenge")
		out := counterDelta(t, before, after, "OutSegs")
		t.Logf("%d injections (%d RST, %d SYN, %d data) over %v virtual: TCPChallengeACK +%d, TCPSYNChallenge +%d, OutSegs +%d (incl. the transfer)",
			n, rsts, syns, datas, elapsed, chal, synChal, out)
		// Rate limit: at most one challenge ACK per 500 ms.
		if limit := uint64(elapsed/(500*time.Millisecond)) + 1; chal > limit {
			t.Fatalf("%d challenge ACKs in %v, limit %d", chal, elapsed, limit)
		}
		if synChal != uint64(syns) {
			t.Fatalf("TCPSYNChallenge +%d for %d SYNs", synChal, syns)
		}
		client.Close()
		server.Close()
	})
}

// --- Resource bounds under hostile peers (part 3): every queue a peer can
// fill has a cap, and hitting the cap moves a counter.

// A SYN flood from random spoofed sources (RFC 4987 §3.6): the SYN queue
// never holds more than the backlog, the overflow is answered with SYN
// cookies (SyncookiesSent), and no per-SYN state is kept past the queue.
func TestHardenSYNFloodInMemory(t *testing.T) {
	f := newFixture(t)
	const backlog = 64
	ln := f.listen(backlog)
	r := rand.New(rand.NewPCG(1, 4987))
	const n = 5000
	for i := 0; i < n; i++ {
		src := netip.AddrFrom4([4]byte{198, 18, 0, byte(3 + r.IntN(250))})
		sg := seg.Segment{Src: src, Dst: fxStackAddr, SrcPort: uint16(1024 + r.IntN(60000)), DstPort: fxListenPort,
			Seq: seg.Seq(r.Uint32()), Flags: seg.SYN, Window: 65535}
		sg.Opts.HasMSS, sg.Opts.MSS = true, 1460
		f.s.Inject(sg.AppendTo(nil))
		f.s.TakeOutput()
		f.s.mu.Lock()
		q, conns := ln.synQLen, len(f.s.conns)
		f.s.mu.Unlock()
		if q > backlog || conns > backlog {
			t.Fatalf("after %d SYNs: SYN queue %d, connections %d, backlog %d", i+1, q, conns, backlog)
		}
	}
	c := f.s.Counters()
	if c.SyncookiesSent < n-backlog-100 {
		t.Fatalf("SyncookiesSent %d for %d SYNs over a backlog of %d", c.SyncookiesSent, n, backlog)
	}
	t.Logf("%d SYNs: SyncookiesSent %d, TCPReqQFullDoCookies %d", n, c.SyncookiesSent, c.TCPReqQFullDoCookies)
	// The SYN-ACK timers give up and the queue drains.
	f.step(5*time.Minute, time.Second)
	f.s.mu.Lock()
	q := ln.synQLen
	f.s.mu.Unlock()
	if q != 0 {
		t.Fatalf("SYN queue %d after the SYN-ACK retries ran out", q)
	}
}

// Completed handshakes nobody accepts: the accept queue holds backlog+1
// (Linux's sk_acceptq_is_full), the rest count ListenOverflows.
func TestHardenAcceptQueueBound(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.SynCookies = -1 })
	const backlog = 4
	f.listen(backlog)
	for i := 0; i < 20; i++ {
		f.port(uint16(41000 + i))
		f.in(SYN, seq(5000), mss(1460))
		f.collect()
		f.pending = nil
		f.in(ACK, seq(5001), ack(1))
		f.pending = nil
		if q := f.acceptQueueLen(); q > backlog+1 {
			t.Fatalf("accept queue %d, backlog %d", q, backlog)
		}
	}
	if c := f.s.Counters(); c.ListenOverflows == 0 {
		t.Fatalf("no ListenOverflows")
	}
}

// A peer that fills the out-of-order queue with disjoint one-byte
// segments: it stays at MaxOOOSegs and the rest count TCPOFODrop (RFC 9293
// §3.10.7.4 lets a receiver drop out-of-order data; Linux counts it so).
func TestHardenOOOBound(t *testing.T) {
	const max = 32
	f := newFixture(t, func(c *Config) { c.MaxOOOSegs = max })
	c := f.established(1000)
	for i := uint32(0); i < 200; i++ {
		f.in(ACK, seq(1001+2+2*i), ack(1), data("x"))
	}
	f.pending = nil
	if n := c.Info().OOOSegs; n > max {
		t.Fatalf("OOO queue %d, max %d", n, max)
	}
	if d := f.s.Counters().TCPOFODrop; d != 200-max {
		t.Fatalf("TCPOFODrop %d, want %d", d, 200-max)
	}
	// Filling the hole delivers what was kept, in order.
	f.in(ACK, seq(1001), ack(1), data("y"))
	f.in(ACK, seq(1002), ack(1), data("z"))
	if got := f.available(); len(got) < 3 || got[:3] != "yzx" {
		t.Fatalf("after filling the hole: %q", got)
	}
}

// After one lost segment the rest of the window arrives in order behind
// the hole: those segments join one out-of-order entry instead of one
// each, so many more than MaxOOOSegs are kept (none dropped), and filling
// the hole delivers them all in order.
func TestOOOCoalescesBehindHole(t *testing.T) {
	const max = 8
	f := newFixture(t, func(c *Config) { c.MaxOOOSegs = max })
	c := f.established(1000)
	want := []byte("h")
	for i := uint32(0); i < 200; i++ {
		b := string(rune('a' + i%26))
		want = append(want, b...)
		f.in(ACK, seq(1002+i), ack(1), data(b))
	}
	f.pending = nil
	if n := c.Info().OOOSegs; n != 1 {
		t.Fatalf("OOO queue holds %d entries for one contiguous run behind one hole, want 1", n)
	}
	if d := f.s.Counters().TCPOFODrop; d != 0 {
		t.Fatalf("TCPOFODrop %d: contiguous out-of-order data was dropped", d)
	}
	if q := f.s.Counters().TCPOFOQueue; q != 200 {
		t.Fatalf("TCPOFOQueue %d, want 200 (one per segment, merged or not)", q)
	}
	f.in(ACK, seq(1001), ack(1), data("h"))
	if got := f.available(); got != string(want) {
		t.Fatalf("after filling the hole: %q, want %q", got, want)
	}
}

// TIME_WAIT records are capped at MaxTimeWait (tcp_max_tw_buckets); an
// active close past the cap skips TIME_WAIT and counts
// TCPTimeWaitOverflow.
func TestHardenTimeWaitBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxTW = 5
		p := newPair(t, pairOpts{cfgA: func(c *Config) { c.MaxTimeWait = maxTW }})
		ln, err := p.b.Listen(80, 64)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			client, server := dialAccept(t, p, ln)
			client.Close() // A closes first: A holds TIME_WAIT
			synctest.Wait()
			server.Close()
			synctest.Wait()
			if n := p.a.StateCounts()[TimeWait]; n > maxTW {
				t.Fatalf("%d TIME_WAIT entries, max %d", n, maxTW)
			}
		}
		if o := p.a.Counters().TCPTimeWaitOverflow; o != 20-maxTW {
			t.Fatalf("TCPTimeWaitOverflow %d, want %d", o, 20-maxTW)
		}
	})
}

// sackFixture makes an established connection with SACK negotiated and at
// least 8000 of n written bytes in flight; it returns the ISS.
func sackFixture(t *testing.T, n int) (*fixture, *Conn, seg.Seq) {
	f := newFixture(t, func(c *Config) { c.NoDelay = true })
	f.listen(4)
	syn := seg.Segment{Src: fxPeerAddr, Dst: fxStackAddr, SrcPort: fxPeerPort, DstPort: fxListenPort,
		Seq: 1000, Flags: seg.SYN, Window: 65535}
	syn.Opts.HasMSS, syn.Opts.MSS, syn.Opts.SACKPermitted = true, 1000, true
	syn.Opts.HasWScale, syn.Opts.WScale = true, 10
	f.s.Inject(syn.AppendTo(nil))
	f.collect()
	f.pending = nil
	iss := f.iss[fxPeerPort]
	f.in(ACK, seq(1001), ack(1), win(65535))
	c := f.accept()
	if !c.t.sackOK {
		t.Fatal("SACK not negotiated")
	}
	go c.Write(make([]byte, n))
	deadline := time.Now().Add(5 * time.Second)
	// The initial window (RFC 5681 §3.1, ten segments) is enough: a
	// hundred 50-byte islands fit in it.
	for c.Info().SndMax-uint32(iss) < 8000 {
		if time.Now().After(deadline) {
			t.Fatalf("stack sent only %d bytes", c.Info().SndMax-uint32(iss))
		}
		f.advance(10 * time.Millisecond)
		f.collect()
		f.pending = nil
	}
	return f, c, iss
}

// A peer SACKing hundreds of distinct ranges (RFC 2018 §3 allows at most
// 4 blocks per segment, but nothing stops many segments): the sender's
// scoreboard keeps at most maxSACKRanges ranges (RFC 6675 leaves memory
// to the implementation).
func TestHardenSACKScoreboardBound(t *testing.T) {
	f, c, iss := sackFixture(t, 2<<20)
	una := iss.Add(1)
	inFlight := c.Info().SndMax - uint32(una)
	r := rand.New(rand.NewPCG(2018, 6675))
	maxSeen := 0
	for i := 0; i < 500; i++ {
		sg := f.build(ACK, []field{seq(1001), ack(1), win(65535)})
		sg.Opts.NumSACK = 3
		for j := 0; j < 3; j++ {
			start := 1 + 100*r.Uint32N(inFlight/100-2)
			sg.Opts.SACK[j] = seg.SACKBlock{Start: una.Add(start), End: una.Add(start + 50)}
		}
		f.s.Inject(sg.AppendTo(nil))
		f.s.TakeOutput()
		f.s.mu.Lock()
		maxSeen = max(maxSeen, len(c.t.sb.r))
		f.s.mu.Unlock()
	}
	if maxSeen > maxSACKRanges || maxSeen < 4 {
		t.Fatalf("scoreboard held up to %d ranges, bound %d", maxSeen, maxSACKRanges)
	}
	t.Logf("scoreboard peak %d ranges (bound %d) over %d bytes in flight", maxSeen, maxSACKRanges, inFlight)
}

// Per-connection buffers: a peer that never reads cannot make the sender
// buffer more than SendBuf, and a peer that ignores our window cannot make
// us buffer more than RecvBuf (RFC 9293 §3.8.6: data beyond the window is
// trimmed).
func TestHardenBufferBounds(t *testing.T) {
	const rbuf = 16 << 10
	f := newFixture(t, func(c *Config) { c.RecvBuf, c.RecvBufMax, c.NoRcvAutoTune = rbuf, rbuf, true; c.SendBuf = 64 << 10 })
	c := f.established(1000)
	chunk := string(make([]byte, 1000))
	next := uint32(1001)
	for i := 0; i < 100; i++ { // 100 KB at a 16 KiB window, nobody reading
		f.in(ACK, seq(next), ack(1), data(chunk))
		next += 1000
	}
	f.pending = nil
	in := c.Info()
	if in.RecvQ > rbuf || in.OOOBytes > rbuf {
		t.Fatalf("receive queue %d, out-of-order %d bytes past RecvBuf %d", in.RecvQ, in.OOOBytes, rbuf)
	}
	done := make(chan int, 1)
	c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	go func() { n, _ := c.Write(make([]byte, 1<<20)); done <- n }()
	n := <-done
	if q := c.Info().SendQ; q > 64<<10 || n > 64<<10+65535 {
		t.Fatalf("send queue %d, Write accepted %d with SendBuf 64 KiB", q, n)
	}
}

// BenchmarkHardenOOOSegment measures the cost of one out-of-order segment
// arriving at a queue already fragmented into n one-byte islands (the
// worst case a peer can build): the queue's bound (MaxOOOSegs) bounds it.
func BenchmarkHardenOOOSegment(b *testing.B) {
	for _, n := range []int{16, 64, 256, 1024} {
		b.Run(fmt.Sprint("queue", n), func(b *testing.B) {
			clk := &timers.ManualClock{}
			s, err := New(Config{Manual: true, Clock: clk, Addr: fxStackAddr, Seed: 1, MaxOOOSegs: n + 1, RecvBuf: 4 << 20, NoRcvAutoTune: true})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ln, _ := s.Listen(80, 4)
			_ = ln
			mk := func(flags seg.Flags, sq, ak uint32, pl []byte) []byte {
				sg := seg.Segment{Src: fxPeerAddr, Dst: fxStackAddr, SrcPort: fxPeerPort, DstPort: 80, Seq: seg.Seq(sq), Ack: seg.Seq(ak), Flags: flags, Window: 65535, Payload: pl}
				return sg.AppendTo(nil)
			}
			s.Inject(mk(seg.SYN, 1000, 0, nil))
			var synack seg.Segment
			for _, p := range s.TakeOutput() {
				synack.Parse(p)
			}
			iss := uint32(synack.Seq)
			s.Inject(mk(seg.ACK, 1001, iss+1, nil))
			x := []byte("x")
			// n islands at odd offsets from the hole, then probes that
			// land in the middle of the queue (already covered: the
			// duplicate path) and at its end (insert and remove).
			for i := 0; i < n; i++ {
				s.Inject(mk(seg.ACK, 1001+2+uint32(4*i), iss+1, x))
			}
			s.TakeOutput()
			pkts := [][]byte{mk(seg.ACK, 1001+2+uint32(4*(n/2)), iss+1, x), mk(seg.ACK, 1001+2+uint32(4*n), iss+1, x)}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s.Inject(pkts[i&1])
				if i&63 == 63 {
					s.TakeOutput()
				}
			}
		})
	}
}
