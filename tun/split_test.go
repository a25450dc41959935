package tun

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"utcp/tun/netns"
)

// TestWritePacketsSplit writes packets given in two parts (headers here,
// payload there), mixed with whole ones, on a plain and an offload device:
// the kernel socket receives every datagram whole and in order, and the
// split point may fall anywhere, even inside a header.
func TestWritePacketsSplit(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	for _, offload := range []bool{false, true} {
		t.Run(fmt.Sprintf("offload=%v", offload), func(t *testing.T) {
			d := openTest(t, Config{HostAddr: hostPrefix, Offload: offload})
			ln, dst := hostUDP(t)
			src := netip.AddrPortFrom(stackAddr, 4242)
			var bufs, pays [][]byte
			var want []string
			for i, cut := range []int{28, 0, 20, 5, 28 + 700, 0, 28} {
				msg := fmt.Sprintf("datagram %d %s", i, strings.Repeat("x", 1000))
				pkt := buildUDP4(src, dst, []byte(msg))
				want = append(want, msg)
				if cut == 0 {
					bufs, pays = append(bufs, pkt), append(pays, nil)
					continue
				}
				bufs, pays = append(bufs, pkt[:cut]), append(pays, pkt[cut:])
			}
			if n, err := d.WritePacketsSplit(bufs, pays); n != len(bufs) || err != nil {
				t.Fatalf("WritePacketsSplit = %d, %v", n, err)
			}
			buf := make([]byte, 2000)
			for i, w := range want {
				ln.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, _, err := ln.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				if string(buf[:n]) != w {
					t.Fatalf("datagram %d: got %q…, want %q…", i, buf[:min(n, 20)], w[:20])
				}
			}
			if _, err := d.WritePacketsSplit(bufs, pays[:1]); err == nil {
				t.Fatalf("mismatched payload count accepted")
			}
		})
	}
}
