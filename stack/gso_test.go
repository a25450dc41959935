package stack

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"utcp/seg"
	"utcp/tun/tuntest"
)

// gsoLink is a fake segmenting link (GSOLink): packets longer than the MTU
// are cut at MTU minus their headers, as the contract says, before the
// inner (possibly lossy) link sees them, so loss hits single segments.
type gsoLink struct {
	Link
	supers, pieces atomic.Int64
	bad            atomic.Int64 // super-packets that broke the contract
}

func (l *gsoLink) GSOMaxSize() int { return 65535 }

// WritePacketsSplit makes gsoLink a SplitLink, so super-segments are sent
// from the send ring in place (headers with a partial checksum + payload).
func (l *gsoLink) WritePacketsSplit(bufs, pays [][]byte) (int, error) {
	return l.WritePackets(joinSplit(bufs, pays))
}

// joinSplit joins two-part packets (SplitLink) into fresh whole ones.
func joinSplit(bufs, pays [][]byte) [][]byte {
	out := make([][]byte, len(bufs))
	for i := range bufs {
		out[i] = append(append([]byte(nil), bufs[i]...), pays[i]...)
	}
	return out
}

func (l *gsoLink) WritePackets(bufs [][]byte) (int, error) {
	out := make([][]byte, 0, len(bufs))
	for _, b := range bufs {
		if len(b) <= l.MTU() {
			out = append(out, b)
			continue
		}
		// The contract: a super-packet carries only the pseudo-header sum
		// in its TCP checksum; complete it as the link would.
		b = completePartial(b)
		if b == nil {
			l.bad.Add(1)
			continue
		}
		var sg seg.Segment
		if err := sg.Parse(b); err != nil || sg.Flags&^seg.PSH != seg.ACK {
			l.bad.Add(1)
			continue
		}
		l.supers.Add(1)
		cut := l.MTU() - sg.HeaderLen()
		payload, psh := sg.Payload, sg.Flags&seg.PSH
		for off := 0; off < len(payload); off += cut {
			end := min(off+cut, len(payload))
			if end-off < cut && end != len(payload) {
				l.bad.Add(1)
			}
			p := sg
			p.Seq = sg.Seq.Add(uint32(off))
			p.Payload = payload[off:end]
			p.Flags = seg.ACK
			if end == len(payload) {
				p.Flags |= psh
			}
			out = append(out, p.AppendTo(nil))
			l.pieces.Add(1)
		}
	}
	_, err := l.Link.WritePackets(out)
	return len(bufs), err
}

// completePartial checks that the TCP/IPv4 packet b (20-byte IP header)
// holds the folded pseudo-header sum in its TCP checksum field, as
// seg.AppendPartial writes it, and returns a copy with the checksum
// completed; nil if the field is anything else.
func completePartial(b []byte) []byte {
	const ihl = seg.IPv4MinHeaderLen
	src, dst := netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
	want := seg.Checksum(nil, seg.PseudoHeaderSum(src, dst, seg.ProtoTCP, len(b)-ihl))
	if binary.BigEndian.Uint16(b[ihl+16:]) != want {
		return nil
	}
	c := append([]byte(nil), b...)
	binary.BigEndian.PutUint16(c[ihl+16:], ^seg.Checksum(c[ihl:], 0))
	return c
}

// exchangeExact sends size random bytes each way at once, each side
// half-closing after its data; the server's side is read with readUp (so a
// test can pick Read or WriteTo), the client's with io.ReadAll. It fails
// unless both directions arrive byte-exact.
func exchangeExact(t *testing.T, client, server *Conn, size int, seed uint64, readUp func(io.Reader) ([]byte, error)) {
	t.Helper()
	up, down := make([]byte, size), make([]byte, size)
	fillRandom(up, seed)
	fillRandom(down, seed+1000)
	errc := make(chan error, 4)
	var gotUp, gotDown []byte
	go func() { _, err := client.Write(up); client.CloseWrite(); errc <- err }()
	go func() { _, err := server.Write(down); server.CloseWrite(); errc <- err }()
	go func() { b, err := readUp(server); gotUp = b; errc <- err }()
	go func() { b, err := io.ReadAll(client); gotDown = b; errc <- err }()
	for range 4 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(gotUp, up) || !bytes.Equal(gotDown, down) {
		t.Fatalf("data corrupted: up %d equal=%v, down %d equal=%v", len(gotUp), bytes.Equal(gotUp, up), len(gotDown), bytes.Equal(gotDown, down))
	}
}

// Bulk transfer both ways with both stacks sending super-segments through
// a segmenting link, with loss, duplication and reordering after the cut:
// byte-exact, super-segments actually used, every piece MTU-sized, and
// retransmissions (of super-segments or single segments) recover.
func TestGSOTransferLossy(t *testing.T) {
	for seed := int64(1); seed <= 2; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				la, lb := tuntest.NewPipe(1500, 4096)
				f := tuntest.Faults{Seed: seed * 7, Drop: 0.02, Duplicate: 0.01, Reorder: 0.02, Delay: 5 * time.Millisecond, Jitter: 2 * time.Millisecond}
				fb := f
				fb.Seed++
				ga := &gsoLink{Link: tuntest.NewLossy(la, f)}
				gb := &gsoLink{Link: tuntest.NewLossy(lb, fb)}
				p := &pair{}
				var err error
				if p.a, err = New(Config{Link: ga, Addr: addrA, Seed: 1}); err != nil {
					t.Fatal(err)
				}
				if p.b, err = New(Config{Link: gb, Addr: addrB, Seed: 2}); err != nil {
					t.Fatal(err)
				}
				defer p.a.Close()
				defer p.b.Close()
				ln, _ := p.b.Listen(9, 4)
				client, server := dialAccept(t, p, ln)
				exchangeExact(t, client, server, 4<<20, uint64(seed), io.ReadAll)
				ca := p.a.Counters()
				t.Logf("a: supers %d pieces %d, OutSegs %d RetransSegs %d; b: supers %d pieces %d",
					ga.supers.Load(), ga.pieces.Load(), ca.OutSegs, ca.RetransSegs, gb.supers.Load(), gb.pieces.Load())
				if ga.supers.Load() == 0 || gb.supers.Load() == 0 {
					t.Fatalf("no super-segments sent (a %d, b %d)", ga.supers.Load(), gb.supers.Load())
				}
				if ga.bad.Load()+gb.bad.Load() != 0 {
					t.Fatalf("%d super-segments broke the GSOLink contract", ga.bad.Load()+gb.bad.Load())
				}
				if ca.RetransSegs == 0 {
					t.Fatalf("no retransmissions under loss: recovery not exercised")
				}
				client.Close()
				server.Close()
			})
		})
	}
}
