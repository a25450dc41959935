package stack

import (
	"encoding/binary"
	"testing"

	"utcp/seg"
)

// icmpError builds an ICMP destination-unreachable (code) from 198.18.0.1
// quoting the IP header and first 8 TCP bytes of orig, with next-hop MTU.
func icmpError(code uint8, mtu uint16, orig []byte) []byte {
	quote := orig[:min(len(orig), 28)]
	m := make([]byte, 8+len(quote))
	m[0], m[1] = seg.ICMPDestUnreachable, code
	binary.BigEndian.PutUint16(m[6:8], mtu)
	copy(m[8:], quote)
	binary.BigEndian.PutUint16(m[2:4], ^seg.Checksum(m, 0))
	pkt := seg.AppendIPv4Header(nil, fxPeerAddr, fxStackAddr, seg.ProtoICMP, 64, 7, len(m))
	return append(pkt, m...)
}

// sentData writes n bytes on the fixture's connection and returns the
// packets the stack sent, raw and parsed.
func sentData(f *fixture, n int) ([][]byte, []seg.Segment) {
	f.t.Helper()
	if _, err := f.conn.Write(make([]byte, n)); err != nil {
		f.t.Fatal(err)
	}
	raw := f.s.TakeOutput()
	return raw, parseOut(f.t, raw)
}

// RFC 5927 §4.1 and RFC 1191: "fragmentation needed" quoting a segment in
// flight lowers the segment size and the data is resent in the smaller
// size; one quoting a sequence number outside SND.UNA..SND.NXT, or an
// insane MTU, changes nothing; no ICMP error resets a connection.
func TestICMPFragNeeded(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	raw, segs := sentData(f, 3000)
	if len(segs) < 2 || len(segs[0].Payload) != 1460 {
		t.Fatalf("want full-sized segments first, got %v", segs)
	}
	// Forged: the quoted sequence is not in flight.
	bad := append([]byte(nil), raw[0]...)
	binary.BigEndian.PutUint32(bad[20+4:20+8], uint32(segs[0].Seq)+1_000_000)
	f.s.Inject(icmpError(4, 1000, bad))
	if out := f.s.TakeOutput(); len(out) != 0 {
		t.Fatalf("forged frag-needed made the stack send %d packets", len(out))
	}
	if v := f.s.Counters().OutOfWindowIcmps; v != 1 {
		t.Fatalf("OutOfWindowIcmps %d", v)
	}
	// Insane MTU: ignored.
	f.s.Inject(icmpError(4, 100, raw[0]))
	if out := f.s.TakeOutput(); len(out) != 0 {
		t.Fatalf("MTU 100 believed")
	}
	// Genuine: resent in segments that fit 1000 bytes.
	f.s.Inject(icmpError(4, 1000, raw[0]))
	again := parseOut(t, f.s.TakeOutput())
	if len(again) == 0 {
		t.Fatal("nothing resent after frag-needed")
	}
	for _, s := range again {
		if s.HeaderLen()+len(s.Payload) > 1000 {
			t.Fatalf("resent segment of %d bytes exceeds the path MTU 1000: %v", s.HeaderLen()+len(s.Payload), s.String())
		}
	}
	if again[0].Seq != segs[0].Seq {
		t.Fatalf("resend starts at %v, want SND.UNA %v", again[0].Seq, segs[0].Seq)
	}
	if info := f.conn.Info(); info.MSS != 960 {
		t.Fatalf("MSS %d after frag-needed 1000, want 960", info.MSS)
	}
	// Hard errors (port/host unreachable) never reset (RFC 5927 §4.2,
	// RFC 1122 §4.2.3.9).
	for _, code := range []uint8{0, 1, 2, 3} {
		f.s.Inject(icmpError(code, 0, raw[0]))
	}
	f.s.TakeOutput()
	if st := f.conn.Info().State; st != Established {
		t.Fatalf("state %v after ICMP unreachables, want ESTABLISHED", st)
	}
	if v := f.s.Counters().InDestUnreachs; v != 7 {
		t.Fatalf("InDestUnreachs %d, want 7", v)
	}
}
