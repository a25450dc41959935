package integration

// The malformed-packet table of stack/harden_test.go, this time over the
// wire: every case is injected into utcp0's host side through AF_PACKET
// and reaches the stack through the TUN like any packet, while a kernel
// socket streams at least 32 MiB through utcp's echo service. Each case is
// aimed at an idle connection of its own (a "victim", so sequence-exact
// expectations hold and challenge-ACK rate limits do not carry over from
// one case to the next) and, unless it carries RST, also at the streaming
// connection. For each case: the packet arrived (or the kernel refused to
// pass it, which is logged, not failed), the counter that names its fate
// moved, no other error counter moved, and afterwards every victim still
// echoes exactly what it is sent and the stream is byte-exact.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"utcp/seg"
	"utcp/stack"
	"utcp/tun/netns"
)

// hdLive is what a case needs to know about its target connection, as the
// utcp side sees it.
type hdLive struct {
	peer, self             netip.AddrPort
	rcvNxt, sndUna, sndMax uint32
	window                 uint16 // the peer's last window, unscaled
}

func hdLiveOf(c *stack.Conn) hdLive {
	in := c.Info()
	return hdLive{peer: in.Remote, self: in.Local, rcvNxt: in.RcvNxt, sndUna: in.SndUna, sndMax: in.SndMax,
		window: uint16(min(in.SndWnd>>in.SndWScale, 0xffff))}
}

// ack is a valid pure ACK for the connection; cases change it.
func (l hdLive) ack() hdRaw {
	return hdRaw{Src: l.peer.Addr(), Dst: l.self.Addr(), Sport: l.peer.Port(), Dport: l.self.Port(),
		Seq: l.rcvNxt, Ack: l.sndUna, Flags: seg.ACK, Window: l.window}
}

// old carries one byte utcp has already received: a well-formed one is a
// duplicate that draws a D-SACK and counts DelayedACKLost, which shows the
// packet got through IP and TCP parsing to the connection. Injecting new
// in-window data instead would put bytes into the stream that the real
// peer never sent.
func (l hdLive) old() hdRaw {
	r := l.ack()
	r.Seq--
	r.Payload = []byte{'!'}
	return r
}

func hdOne(f func(l hdLive) hdRaw) func(l hdLive) [][]byte {
	return func(l hdLive) [][]byte { return [][]byte{f(l).Bytes()} }
}

func hdMSS(v uint16) []byte { return []byte{2, 4, byte(v >> 8), byte(v)} }
func hdWS(v uint8) []byte   { return []byte{1, 3, 3, v} }
func hdSACK(blocks ...uint32) []byte {
	o := []byte{1, 1, 5, byte(2 + 4*len(blocks))}
	for _, b := range blocks {
		o = binary.BigEndian.AppendUint32(o, b)
	}
	return o
}

type hdCase struct {
	name string
	rfc  string
	// want are the counters that must move. Empty: the segment is
	// accepted and ignored, which shows as arrival with no error counter
	// and an undisturbed stream.
	want []string
	// rst: the case carries RST and goes to its victim only. Aimed at
	// the streaming connection from a snapshot of RCV.NXT, it could land
	// exactly on RCV.NXT and reset it, as RFC 5961 §3.2 says it must.
	rst  bool
	pkts func(l hdLive) [][]byte
}

// hdErrorCounters are the counters that name a rejection; a case may move
// only those in its want list.
var hdErrorCounters = []string{"InHdrErrors", "InAddrErrors", "InUnknownProtos", "InErrs", "InCsumErrors",
	"ReasmFails", "InIPv6", "IcmpInErrors", "EstabResets"}

func hdCases() []hdCase {
	junk := make([]byte, 1200)
	for i := range junk {
		junk[i] = byte(i * 7)
	}
	var id uint16 = 0x4000
	nextID := func() uint16 { id++; return id }
	return []hdCase{
		// TCP options: option-length counts kind and length and must stay
		// inside the data offset (RFC 9293 §3.1).
		{"opt len 0", "RFC 9293 §3.1", []string{"InErrs"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.TCPOpts = []byte{8, 0, 0, 0}; return r })},
		{"opt len 1", "RFC 9293 §3.1", []string{"InErrs"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.TCPOpts = []byte{8, 1, 0, 0}; return r })},
		{"opt past header", "RFC 9293 §3.1", []string{"InErrs"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.TCPOpts = []byte{1, 1, 8, 10}; return r })},
		// Data offset: at least 5 words and inside the segment.
		{"data offset 4", "RFC 9293 §3.1", []string{"InErrs"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.DataOff = 4; return r })},
		{"data offset 0", "RFC 9293 §3.1", []string{"InErrs"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.DataOff = 16; return r })}, // 16<<4 wraps to 0
		{"data offset past packet", "RFC 9293 §3.1", []string{"InErrs"}, false, hdOne(func(l hdLive) hdRaw { r := l.ack(); r.DataOff = 15; return r })},
		// IPv4 header (RFC 791 §3.1; RFC 1122 §3.2.1 says discard silently).
		{"ip total length > packet", "RFC 791 §3.1", []string{"InHdrErrors"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.TotalLen = 1400; return r })},
		{"ip total length < header", "RFC 791 §3.1", []string{"InHdrErrors"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.TotalLen = 12; return r })},
		{"ip total length cuts TCP", "RFC 791 §3.1", []string{"InErrs"}, false, hdOne(func(l hdLive) hdRaw { r := l.ack(); r.TotalLen = -1; return r })},
		{"ip total length cuts data", "RFC 9293 §3.1", []string{"InErrs", "InCsumErrors"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.TotalLen = -1; return r })},
		{"ihl 4", "RFC 791 §3.1", []string{"InHdrErrors"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.IHL = 4; return r })},
		{"ihl 0", "RFC 791 §3.1", []string{"InHdrErrors"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.IHL = 16; return r })}, // 16&0xf
		{"ihl past packet", "RFC 791 §3.1", []string{"InHdrErrors"}, false, func(l hdLive) [][]byte {
			p := l.ack().Bytes()[:20]
			p[0] = 0x4f
			binary.BigEndian.PutUint16(p[2:], 20)
			return [][]byte{p}
		}},
		{"version 5", "RFC 791 §3.1", []string{"InHdrErrors"}, false, func(l hdLive) [][]byte { p := l.old().Bytes(); p[0] = 0x55; return [][]byte{p} }},
		{"bad ip checksum", "RFC 791 §3.1", []string{"InHdrErrors"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.BadIPCsum = true; return r })},
		{"bad tcp checksum", "RFC 9293 §3.1", []string{"InErrs", "InCsumErrors"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.BadTCPCsum = true; return r })},
		// IP options with bad lengths are not ours to interpret (a host
		// need not act on them, RFC 1122 §3.2.1.8): the segment goes on.
		{"ip option length 0xff", "RFC 791 §3.1", []string{"DelayedACKLost"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.IPOpts = []byte{0x83, 0xff, 0, 0}; return r })},
		{"ip option length 0", "RFC 791 §3.1", []string{"DelayedACKLost"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.IPOpts = []byte{0x44, 0, 1, 1}; return r })},
		// MSS outside a SYN is ignored (RFC 9293 §3.7.1), whatever its
		// value; the wrong length is a malformed option.
		{"mss 0", "RFC 9293 §3.7.1", []string{"DelayedACKLost"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.TCPOpts = hdMSS(0); return r })},
		{"mss 1", "RFC 9293 §3.7.1", []string{"DelayedACKLost"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.TCPOpts = hdMSS(1); return r })},
		{"mss 8", "RFC 9293 §3.7.1", []string{"DelayedACKLost"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.TCPOpts = hdMSS(8); return r })},
		{"mss 40", "RFC 9293 §3.7.1", []string{"DelayedACKLost"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.TCPOpts = hdMSS(40); return r })},
		{"mss 65535", "RFC 9293 §3.7.1", []string{"DelayedACKLost"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.TCPOpts = hdMSS(65535); return r })},
		{"mss wrong length", "RFC 9293 §3.1", []string{"InErrs"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.TCPOpts = []byte{2, 3, 5, 1}; return r })},
		// Urgent pointer: data is inline, the pointer is advisory (RFC
		// 6093 §4).
		{"urgent past segment", "RFC 6093 §4", []string{"DelayedACKLost"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.Flags |= seg.URG; r.Urgent = 65535; return r })},
		{"urgent 0 with URG", "RFC 6093 §4", []string{"DelayedACKLost"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.Flags |= seg.URG; return r })},
		// Window scale outside a SYN is ignored (RFC 7323 §2.2).
		{"wscale 15", "RFC 7323 §2.2", []string{"DelayedACKLost"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.TCPOpts = hdWS(15); return r })},
		{"wscale 255", "RFC 7323 §2.2", []string{"DelayedACKLost"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.TCPOpts = hdWS(255); return r })},
		// SACK (RFC 2018 §3: 8n+2 bytes; RFC 2883 §4: a first block below
		// the cumulative ACK is a D-SACK; others outside what was sent
		// are not believed).
		{"sack wrong length", "RFC 2018 §3", []string{"InErrs"}, false, hdOne(func(l hdLive) hdRaw {
			r := l.ack()
			r.TCPOpts = []byte{1, 1, 5, 7, 0, 0, 0, 0, 0, 0, 0, 0}
			return r
		})},
		{"sack reversed", "RFC 2018 §3", nil, false, hdOne(func(l hdLive) hdRaw { r := l.ack(); r.TCPOpts = hdSACK(l.sndUna+100, l.sndUna+50); return r })},
		{"sack wrapped", "RFC 2018 §3", nil, false, hdOne(func(l hdLive) hdRaw {
			r := l.ack()
			r.TCPOpts = hdSACK(l.sndUna+0x7fffffff, l.sndUna+0x80000010)
			return r
		})},
		{"sack outside window", "RFC 2018 §3", nil, false, hdOne(func(l hdLive) hdRaw {
			r := l.ack()
			r.TCPOpts = hdSACK(l.sndMax+1000, l.sndMax+2000, l.sndUna-5000, l.sndUna-4000)
			return r
		})},
		{"sack below una", "RFC 2883 §4", []string{"TCPDSACKRecv"}, false, hdOne(func(l hdLive) hdRaw { r := l.ack(); r.TCPOpts = hdSACK(l.sndUna-100, l.sndUna); return r })},
		// Timestamps are 10 bytes long (RFC 7323 §3).
		{"ts wrong length", "RFC 7323 §3", []string{"InErrs"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.TCPOpts = []byte{8, 8, 0, 0, 0, 0, 0, 0}; return r })},
		// Flags (RFC 9293 §3.10.7.4; RFC 5961 §3.2 RST, §4.2 SYN).
		{"SYN|FIN", "RFC 5961 §4.2", []string{"TCPSYNChallenge", "TCPChallengeACK"}, false, hdOne(func(l hdLive) hdRaw { r := l.ack(); r.Flags = seg.SYN | seg.FIN; return r })},
		{"SYN in window", "RFC 5961 §4.2", []string{"TCPSYNChallenge", "TCPChallengeACK"}, false, hdOne(func(l hdLive) hdRaw { r := l.ack(); r.Seq += 10; r.Flags = seg.SYN; return r })},
		{"SYN out of window", "RFC 5961 §4.2", []string{"TCPSYNChallenge", "TCPChallengeACK"}, false, hdOne(func(l hdLive) hdRaw { r := l.ack(); r.Seq += 1 << 31; r.Flags = seg.SYN; return r })},
		{"SYN|RST", "RFC 5961 §3.2", []string{"TCPChallengeACK"}, true, hdOne(func(l hdLive) hdRaw { r := l.ack(); r.Seq++; r.Flags = seg.SYN | seg.RST; return r })},
		{"all flags", "RFC 5961 §3.2", []string{"TCPChallengeACK"}, true, hdOne(func(l hdLive) hdRaw { r := l.ack(); r.Seq += 7; r.Flags = 0xff; return r })},
		{"RST with data", "RFC 5961 §3.2", []string{"TCPChallengeACK"}, true, hdOne(func(l hdLive) hdRaw {
			r := l.ack()
			r.Seq += 3
			r.Flags = seg.RST | seg.ACK
			r.Payload = []byte("bye")
			return r
		})},
		{"RST out of window", "RFC 5961 §3.2", nil, true, hdOne(func(l hdLive) hdRaw { r := l.ack(); r.Seq -= 1 << 30; r.Flags = seg.RST; return r })},
		{"no flags", "RFC 9293 §3.10.7.4", nil, false, hdOne(func(l hdLive) hdRaw { r := l.ack(); r.Flags = 0; r.Payload = []byte("nope"); return r })},
		// Sequence and acknowledgment numbers around the 2^32 wrap (RFC
		// 9293 §3.4: comparisons are modulo 2^32; RFC 5961 §5.2).
		{"seq half a space back", "RFC 9293 §3.4", nil, false, hdOne(func(l hdLive) hdRaw { r := l.ack(); r.Seq = l.rcvNxt - 1<<31; r.Payload = []byte("x"); return r })},
		{"seq half a space ahead", "RFC 9293 §3.4", nil, false, hdOne(func(l hdLive) hdRaw { r := l.ack(); r.Seq = l.rcvNxt + 1<<31 - 1; r.Payload = []byte("x"); return r })},
		{"seq 0xffffffff", "RFC 9293 §3.4", nil, false, hdOne(func(l hdLive) hdRaw {
			r := l.ack()
			r.Seq = 0xffffffff
			if d := r.Seq - l.rcvNxt; d < 1<<30 || d > 0xffffffff-1<<30 {
				r.Seq = l.rcvNxt + 0x80000000 // keep it far outside the window
			}
			r.Payload = []byte("xy")
			return r
		})},
		{"ack far ahead", "RFC 5961 §5.2", nil, false, hdOne(func(l hdLive) hdRaw { r := l.ack(); r.Ack = l.sndMax + 1<<30; r.Payload = []byte("z"); return r })},
		{"ack too old", "RFC 5961 §5.2", []string{"TCPChallengeACK"}, false, hdOne(func(l hdLive) hdRaw { r := l.ack(); r.Ack = l.sndUna - 1<<30; r.Payload = []byte("old"); return r })},
		// Other protocols and impossible addresses (RFC 1122 §3.2.1.3).
		{"ipv6", "RFC 8200", []string{"InIPv6"}, false, func(l hdLive) [][]byte { p := make([]byte, 60); p[0] = 0x60; return [][]byte{p} }},
		{"unknown protocol", "RFC 1122 §3.2.1", []string{"InUnknownProtos"}, false, hdOne(func(l hdLive) hdRaw { r := l.ack(); r.Proto = 253; r.L4 = []byte("hello"); return r })},
		{"broadcast source", "RFC 1122 §3.2.1.3", []string{"InAddrErrors"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.Src = netip.MustParseAddr("255.255.255.255"); return r })},
		{"zero source", "RFC 1122 §3.2.1.3", []string{"InAddrErrors"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.Src = netip.MustParseAddr("0.0.0.0"); return r })},
		{"loopback source", "RFC 1122 §3.2.1.3", []string{"InAddrErrors"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.Src = netip.MustParseAddr("127.0.0.1"); return r })},
		{"multicast source", "RFC 1122 §3.2.1.3", []string{"InAddrErrors"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.Src = netip.MustParseAddr("224.0.0.1"); return r })},
		{"LAND src==dst", "RFC 1122 §3.2.1.3", []string{"InAddrErrors"}, false, hdOne(func(l hdLive) hdRaw {
			r := l.ack()
			r.Src, r.Sport = l.self.Addr(), l.self.Port()
			r.Flags = seg.SYN
			return r
		})},
		{"broadcast destination", "RFC 1122 §3.2.1.3", []string{"InAddrErrors"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.Dst = netip.MustParseAddr("255.255.255.255"); return r })},
		{"port 0", "RFC 9293 §3.1", []string{"InErrs"}, false, hdOne(func(l hdLive) hdRaw { r := l.old(); r.Sport = 0; return r })},
		// Lengths.
		{"zero length", "RFC 791 §3.1", []string{"InHdrErrors"}, false, func(l hdLive) [][]byte { return [][]byte{{}} }},
		{"one byte", "RFC 791 §3.1", []string{"InHdrErrors"}, false, func(l hdLive) [][]byte { return [][]byte{{0x45}} }},
		{"junk", "RFC 791 §3.1", []string{"InHdrErrors"}, false, func(l hdLive) [][]byte { return [][]byte{junk} }},
		// Longer than the link MTU: packet_snd refuses it (EMSGSIZE), so
		// this one is expected to be "dropped by the kernel".
		{"oversize packet", "RFC 791 §3.1", []string{"DelayedACKLost"}, false, func(l hdLive) [][]byte {
			p := make([]byte, 9000)
			copy(p, l.old().Bytes())
			return [][]byte{p}
		}},
		// Fragments (RFC 791 §3.2; overlaps rejected as Linux does for
		// IPv4 since FragmentSmack, in the spirit of RFC 5722).
		{"fragments ok", "RFC 791 §3.2", []string{"DelayedACKLost", "ReasmOKs"}, false, func(l hdLive) [][]byte {
			full := l.old().Bytes()
			tcp := full[20:]
			id := nextID()
			a := hdRaw{Src: l.peer.Addr(), Dst: l.self.Addr(), L4: tcp[:16], MF: true, ID: id}
			b := hdRaw{Src: l.peer.Addr(), Dst: l.self.Addr(), L4: tcp[16:], FragOff: 16, ID: id}
			return [][]byte{b.Bytes(), a.Bytes()} // out of order on purpose
		}},
		{"fragment tiny", "RFC 791 §3.2", []string{"ReasmFails"}, false, func(l hdLive) [][]byte {
			r := l.ack()
			r.L4, r.MF, r.ID = []byte{1, 2, 3}, true, nextID()
			return [][]byte{r.Bytes()}
		}},
		{"fragment overlap", "RFC 791 §3.2", []string{"ReasmFails"}, false, func(l hdLive) [][]byte {
			a := l.ack()
			a.L4, a.MF, a.ID = bytes.Repeat([]byte{1}, 16), true, nextID()
			b := a
			b.FragOff = 8
			return [][]byte{a.Bytes(), b.Bytes()}
		}},
		{"fragment past 65535", "RFC 791 §3.2", []string{"ReasmFails"}, false, func(l hdLive) [][]byte {
			r := l.ack()
			r.L4, r.FragOff, r.ID = make([]byte, 64), 65528, nextID()
			return [][]byte{r.Bytes()}
		}},
		{"fragment stray past last", "RFC 791 §3.2", []string{"ReasmFails"}, false, func(l hdLive) [][]byte {
			a := l.ack()
			a.ID, a.MF, a.L4, a.FragOff = nextID(), true, make([]byte, 8), 200
			b := a
			b.FragOff = 0
			c := a
			c.MF, c.FragOff = false, 8
			return [][]byte{a.Bytes(), b.Bytes(), c.Bytes()}
		}},
		// Last: its reassembly times out 30 s later, which counts
		// ReasmFails; no case runs that long after it.
		{"fragment never completed", "RFC 791 §3.2", []string{"ReasmReqds"}, false, func(l hdLive) [][]byte {
			r := l.ack()
			r.L4, r.MF, r.ID = make([]byte, 64), true, nextID()
			return [][]byte{r.Bytes()}
		}},
	}
}

// hdStream is the streaming connection: a kernel socket sends seeded
// random data to utcp's echo service and checks what comes back.
type hdStream struct {
	c          *net.TCPConn
	stop       chan struct{} // closed when the table is done
	sent, recv int64
	sentSum    [32]byte
	recvSum    [32]byte
	err        error
	done       chan struct{}
}

func hdStartStream(t *testing.T, min int64, seed uint64) *hdStream {
	t.Helper()
	c, err := hdDial(7, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := &hdStream{c: c, stop: make(chan struct{}), done: make(chan struct{})}
	var wg sync.WaitGroup
	var werr, rerr error
	wg.Add(2)
	go func() { // writer: at least min bytes, and until the table is done
		defer wg.Done()
		h := sha256.New()
		r := rand.New(rand.NewPCG(seed, 0x5eed))
		buf := make([]byte, 64<<10)
		for {
			if s.sent >= min {
				select {
				case <-s.stop:
					copy(s.sentSum[:], h.Sum(nil))
					werr = c.CloseWrite()
					return
				default:
				}
			}
			for i := 0; i+8 <= len(buf); i += 8 {
				binary.LittleEndian.PutUint64(buf[i:], r.Uint64())
			}
			c.SetWriteDeadline(time.Now().Add(20 * time.Second))
			n, err := c.Write(buf)
			h.Write(buf[:n])
			s.sent += int64(n)
			if err != nil {
				werr = fmt.Errorf("write after %d bytes: %w", s.sent, err)
				c.CloseWrite()
				return
			}
		}
	}()
	go func() { // reader: everything echoed, to EOF
		defer wg.Done()
		h := sha256.New()
		c.SetReadDeadline(time.Now().Add(50 * time.Second))
		n, err := io.Copy(h, c)
		s.recv = n
		copy(s.recvSum[:], h.Sum(nil))
		if err != nil {
			rerr = fmt.Errorf("read after %d bytes: %w", n, err)
		}
	}()
	go func() {
		wg.Wait()
		s.err = werr
		if s.err == nil {
			s.err = rerr
		}
		close(s.done)
	}()
	return s
}

func TestHardenWireMalformed(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	env := hdStart(t, nil)
	echo := hdServeEcho(t, env.st, 7, 128, true)
	cases := hdCases()

	// One idle victim per case, each with one exchange behind it.
	victims := make([]*net.TCPConn, len(cases))
	for i := range victims {
		c, err := hdDial(7, 5*time.Second)
		if err != nil {
			t.Fatalf("victim %d: %v", i, err)
		}
		defer c.Close()
		hdRoundTrip(t, c, fmt.Sprintf("hello %d", i))
		victims[i] = c
	}

	seed := uint64(time.Now().UnixNano())
	t.Logf("stream seed %d", seed)
	stream := hdStartStream(t, 32<<20, seed)
	defer stream.c.Close()
	bulk := echo.conn(t, hdPort(stream.c))
	// Let the stream get going so cases hit a connection with data in
	// flight both ways.
	for deadline := time.Now().Add(5 * time.Second); bulk.Info().BytesReceived < 1<<20 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}

	var markerSeq uint16
	barrier := func() bool {
		// The marker is read after everything sent before it (one
		// socket, no qdisc, one TUN queue, one reader); once InEchos
		// counts it, the stack has processed the case.
		markerSeq++
		before := env.st.Counters().InEchos
		if err := env.inj.send(hdEchoRequest(0x7e57, markerSeq)); err != nil {
			t.Fatalf("marker: %v", err)
		}
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Microsecond) {
			if env.st.Counters().InEchos > before {
				return true
			}
		}
		return false
	}

	var kernelDropped []string
	for i, tc := range cases {
		vc := echo.conn(t, hdPort(victims[i]))
		pkts := tc.pkts(hdLiveOf(vc))
		var bulkPkts [][]byte
		if !tc.rst {
			bulkPkts = tc.pkts(hdLiveOf(bulk))
		}
		env.link.watch(pkts)
		before := env.st.Counters()
		var sendErrs []string
		for _, p := range pkts {
			if err := env.inj.send(p); err != nil {
				sendErrs = append(sendErrs, err.Error())
			}
		}
		for _, p := range bulkPkts {
			env.inj.send(p)
		}
		if !barrier() {
			t.Fatalf("%s: the marker after the case was not processed within 3 s", tc.name)
		}
		after := env.st.Counters()
		arrived := env.link.arrived(pkts)
		if arrived < len(pkts) {
			// The kernel refused (packet_snd) or dropped it before the
			// TUN: nothing reached utcp, so there is nothing to check.
			kernelDropped = append(kernelDropped, fmt.Sprintf("%s (%d of %d arrived; send errors: %s)", tc.name, arrived, len(pkts), strings.Join(sendErrs, ", ")))
			continue
		}
		delta := func(name string) uint64 {
			a, ok1 := after.Get(name)
			b, ok2 := before.Get(name)
			if !ok1 || !ok2 {
				t.Fatalf("no counter %q", name)
			}
			return a - b
		}
		var moved []string
		for _, name := range tc.want {
			if d := delta(name); d == 0 {
				t.Errorf("%s (%s): %s did not move", tc.name, tc.rfc, name)
			} else {
				moved = append(moved, fmt.Sprintf("%s+%d", name, d))
			}
		}
		for _, name := range hdErrorCounters {
			if d := delta(name); d != 0 && !hdContains(tc.want, name) {
				t.Errorf("%s (%s): %s moved by %d, want only %v", tc.name, tc.rfc, name, d, tc.want)
			}
		}
		if st := vc.Info().State; st != stack.Established {
			t.Errorf("%s: victim connection in %v", tc.name, st)
		}
		t.Logf("%-26s arrived; %v", tc.name, moved)
	}
	for _, d := range kernelDropped {
		t.Logf("dropped by the kernel: %s", d)
	}
	if len(kernelDropped) > 3 {
		t.Errorf("%d cases never reached utcp; the injector is not doing its job", len(kernelDropped))
	}

	// Every victim still echoes exactly what it is sent: no injected byte
	// got into a stream, no connection was reset.
	var wg sync.WaitGroup
	errs := make(chan error, len(victims))
	for i, c := range victims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hdCheckEcho(c, fmt.Sprintf("after %s", cases[i].name)); err != nil {
				errs <- fmt.Errorf("victim of %q: %w", cases[i].name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	close(stream.stop)
	select {
	case <-stream.done:
	case <-time.After(60 * time.Second):
		t.Fatal("stream did not finish within 60 s")
	}
	if stream.err != nil {
		t.Fatalf("stream: %v", stream.err)
	}
	if stream.recv != stream.sent || stream.recvSum != stream.sentSum {
		t.Fatalf("stream: sent %d bytes (sha256 %x), echoed %d (sha256 %x)", stream.sent, stream.sentSum[:8], stream.recv, stream.recvSum[:8])
	}
	c := env.st.Counters()
	if c.EstabResets != 0 {
		t.Fatalf("EstabResets %d", c.EstabResets)
	}
	t.Logf("stream: %d bytes each way intact; %d cases, %d dropped by the kernel", stream.sent, len(cases), len(kernelDropped))
}

func hdContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// hdRoundTrip writes msg and reads it back.
func hdRoundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if err := hdCheckEcho(c, msg); err != nil {
		t.Fatal(err)
	}
}

// hdCheckEcho writes msg and expects exactly msg back, then nothing more
// for a short while.
func hdCheckEcho(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read echo: %w (got %q)", err, got)
	}
	if string(got) != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	var extra [64]byte
	if n, err := c.Read(extra[:]); n > 0 || !hdIsTimeout(err) {
		return fmt.Errorf("after the echo: %d more bytes %q, err %v", n, extra[:n], err)
	}
	return nil
}
