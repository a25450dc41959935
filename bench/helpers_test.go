package main

import (
	"encoding/binary"
	"io"
	"net/netip"
	"testing"

	"utcp/seg"
)

func TestQuantileNearestRank(t *testing.T) {
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(i + 1)
	}
	for _, c := range []struct{ q, want float64 }{{0.5, 50}, {0.99, 99}, {1, 100}, {0, 1}} {
		if got := quantile(xs, c.q); got != c.want {
			t.Errorf("quantile(1..100, %v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := quantile(nil, 0.5); got != 0 {
		t.Errorf("quantile(nil) = %v, want 0", got)
	}
}

func TestSummarize(t *testing.T) {
	s := summarize([]float64{3, 1, 2, 10})
	if s.Median != 2.5 || s.Min != 1 || s.Max != 10 {
		t.Fatalf("summarize = %+v, want median 2.5 min 1 max 10", s)
	}
	if s.Samples[0] != 3 {
		t.Fatalf("summarize reordered the caller's samples: %v", s.Samples)
	}
	if got := cell([]float64{5, 7, 6}); got != "6.00 [5.00–7.00]" {
		t.Fatalf("cell = %q", got)
	}
}

// The raw TUN writer's packets must be valid IPv4/UDP, or the kernel
// drops them and the write figure counts nothing real.
func TestUDPPacketValid(t *testing.T) {
	p := udpPacket(stackAddr, hostAddr, 9, 9000, rawPktLen)
	if len(p) != rawPktLen {
		t.Fatalf("len %d", len(p))
	}
	var ip seg.IPv4 = p
	if err := ip.Validate(); err != nil {
		t.Fatalf("IPv4 header invalid: %v", err)
	}
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	if sum != 0xffff {
		t.Fatalf("header checksum does not verify: %#x", sum)
	}
	if got := binary.BigEndian.Uint16(p[24:]); got != rawPktLen-20 {
		t.Fatalf("UDP length %d", got)
	}
	src, dst := netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
	if src != stackAddr || dst != hostAddr {
		t.Fatalf("addresses %v -> %v", src, dst)
	}
}

func TestParseOptions(t *testing.T) {
	o, err := parseOptions([]string{"--only", "utcp,tun", "--rounds", "5"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !o.only["utcp"] || !o.only["tun"] || o.only["gvisor"] || o.rounds != 5 {
		t.Fatalf("options %+v", o)
	}
	for _, bad := range [][]string{{"--only", "bsd"}, {"--rounds", "0"}, {"extra"}} {
		if _, err := parseOptions(bad, io.Discard); err == nil {
			t.Errorf("parseOptions(%q) accepted", bad)
		}
	}
}
