package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
	"utcp/tun"

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

func TestParseOptionsOffloadTargets(t *testing.T) {
	o, err := parseOptions([]string{"--only", "utcp+off,gvisor+off"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !o.only["utcp+off"] || !o.only["gvisor+off"] || o.only["utcp"] || o.only["gvisor"] {
		t.Fatalf("only %v", o.only)
	}
	def, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range []string{"utcp", "utcp+off", "gvisor", "gvisor+off", "kernel", "tun"} {
		if !def.only[tg] {
			t.Errorf("default run lacks %s", tg)
		}
	}
	if baseTarget("gvisor+off") != "gvisor" || baseTarget("utcp") != "utcp" {
		t.Fatal("baseTarget")
	}
}

// TestTableRatios checks the pairings the issue asks for: plain pair,
// offload pair, utcp+off against the kernel, and plain utcp against the
// TUN ceiling of the matching direction (upload: read, download: write).
func TestTableRatios(t *testing.T) {
	d := &driver{o: &options{rounds: 3, duration: time.Second}, res: results{}}
	for _, v := range []struct {
		key, target string
		xs          []float64
	}{
		{"upload", "utcp", []float64{400, 300, 500}},
		{"upload", "gvisor", []float64{100, 100, 100}},
		{"upload", "utcp+off", []float64{2000, 2000, 2000}},
		{"upload", "gvisor+off", []float64{1000, 1000, 1000}},
		{"upload", "kernel", []float64{2500, 2500, 2500}},
		{"download", "utcp", []float64{270}},
		{"tun_read_mbs", "tun", []float64{750}},
		{"tun_read_pps", "tun", []float64{500000}},
		{"tun_write_mbs", "tun", []float64{375}},
		{"tun_write_pps", "tun", []float64{250000}},
		{"tun_tcpwrite_mbs", "tun", []float64{300}},
		{"tun_tcpwrite_pps", "tun", []float64{200000}},
		{"idle_rss", "utcp+off", []float64{1500}},
		{"idle_rss", "kernel", []float64{1000}},
	} {
		for _, x := range v.xs {
			d.res.add(v.key, v.target, x)
		}
	}
	if r := d.ratio("upload", "utcp", "gvisor"); r == nil || *r != 4 {
		t.Errorf("utcp/gvisor %v", r)
	}
	if r := d.ratio("upload", "utcp+off", "gvisor+off"); r == nil || *r != 2 {
		t.Errorf("utcp+off/gvisor+off %v", r)
	}
	// The ceiling counts as TCP payload: 500k packets/s carry 724 MB/s
	// of it (1448 B each), so 400 MB/s is 55 %, not 400/750.
	if p := d.ceilingPct("upload", "tun_read_pps"); p == nil || math.Abs(*p-100*400/724.0) > 1e-9 {
		t.Errorf("upload %% of read ceiling %v, want %v", p, 100*400/724.0)
	}
	if p := d.ceilingPct("download", "tun_write_pps"); p == nil || math.Abs(*p-100*270/362.0) > 1e-9 {
		t.Errorf("download %% of write ceiling %v, want %v", p, 100*270/362.0)
	}
	if p := d.ceilingPct("download", "tun_tcpwrite_pps"); p == nil || math.Abs(*p-100*270/289.6) > 1e-9 {
		t.Errorf("download %% of TCP write ceiling %v, want %v", p, 100*270/289.6)
	}
	// --json carries every ceiling pair under its own key: the two
	// download ceilings must not overwrite each other.
	var jb bytes.Buffer
	if err := d.writeJSON(&jb, time.Second); err != nil {
		t.Fatal(err)
	}
	var js struct {
		Ceiling map[string]float64 `json:"pct_utcp_of_tun_ceiling"`
	}
	if err := json.Unmarshal(jb.Bytes(), &js); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]float64{"upload": 100 * 400 / 724.0, "download": 100 * 270 / 362.0, "download_tcp": 100 * 270 / 289.6} {
		if got, ok := js.Ceiling[key]; !ok || math.Abs(got-want) > 1e-9 {
			t.Errorf("--json ceiling %q = %v (present %v), want %v", key, got, ok, want)
		}
	}
	var b strings.Builder
	d.writeTable(&b)
	out := b.String()
	for _, want := range []string{
		"| 400 [300–500] | 2000 [2000–2000] | 100 [100–100] | 1000 [1000–1000] | 2500 [2500–2500] | 4.00 | 2.00 | 80% |",
		"| RSS per idle connection (hold) | B/conn | - | 1500 | - | - | 1000 | - | - | - |",
		"| 500000 | 750 | 724 | upload 55% |",
		"| 250000 | 375 | 362 | download 75% |",
		"| write as TCP (process -> TUN -> kernel TCP socket) | 200000 | 300 | 290 | download 93% |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// fdConn is the part of syscall.RawConn that ccControl uses, over a bare
// descriptor.
type fdConn struct{ fd int }

func (c fdConn) Control(f func(fd uintptr)) error  { f(uintptr(c.fd)); return nil }
func (c fdConn) Read(func(fd uintptr) bool) error  { return nil }
func (c fdConn) Write(func(fd uintptr) bool) error { return nil }

func TestKernelCCAppliedPerSocket(t *testing.T) {
	defer func() { kernelCC = "" }()
	if _, err := setKernelCC("no-such-cc"); err == nil || !strings.Contains(err.Error(), "--cc no-such-cc") || !strings.Contains(err.Error(), "available:") {
		t.Fatalf("setKernelCC(no-such-cc) = %v, want an error naming it and the available ones", err)
	}
	// reno is built into every kernel and always allowed.
	got, err := setKernelCC("reno")
	if err != nil || got != "reno" {
		t.Fatalf("setKernelCC(reno) = %q, %v", got, err)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := ccControl("tcp4", "198.18.0.2:9", fdConn{fd}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, tcpCongestion,
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&[]uint32{16}[0])), 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	if name := strings.TrimRight(string(buf), "\x00"); name != "reno" {
		t.Fatalf("socket's congestion control %q after ccControl, want reno", name)
	}
}

// The bench's utcp options reach utcp serve as its flags, and only when
// set: --utcp-procs 0 and a negative --utcp-busy-poll keep serve's own
// defaults, --utcp-busy-poll 0 turns polling off, --no-io-uring reaches
// serve as --io-uring=false.
func TestUtcpServeFlags(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.procs != 0 || o.busyPoll >= 0 {
		t.Fatalf("defaults: procs %d, busyPoll %v; want 0 and negative (serve decides)", o.procs, o.busyPoll)
	}
	d := &driver{o: o}
	if got, want := strings.Join(d.serverOpts().utcpFlags(), " "), "--txqueuelen 4096"; got != want {
		t.Errorf("default flags %q, want %q", got, want)
	}
	o, err = parseOptions([]string{"--utcp-procs", "2", "--utcp-busy-poll", "0", "--utcp-queues", "2", "--no-io-uring", "--no-gro"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	d = &driver{o: o}
	if got, want := strings.Join(d.serverOpts().utcpFlags(), " "), "--queues 2 --procs 2 --busy-poll 0s --io-uring=false --gro-flush-timeout 0 --txqueuelen 4096"; got != want {
		t.Errorf("flags %q, want %q", got, want)
	}
	if c := o.ceil().config("x"); c.GROFlushTimeout != 0 || !c.NoIOURing {
		t.Errorf("--no-gro --no-io-uring: the ceiling opens %+v", c)
	}
	if c := (&options{}).ceil().config("x"); c.GROFlushTimeout != tun.DefaultGROFlushTimeout || c.NoIOURing || c.BusyPoll != tun.DefaultBusyPoll {
		t.Errorf("defaults: the ceiling opens %+v, not as utcp serve does", c)
	}
	// utcp serve parses durations with time.ParseDuration: "50µs" must
	// come back as itself.
	so := serverOpts{busyPoll: 50 * time.Microsecond}
	f := so.utcpFlags()
	if v, err := time.ParseDuration(f[1]); f[0] != "--busy-poll" || err != nil || v != so.busyPoll {
		t.Errorf("busy-poll flag %q does not parse back to %v: %v", f[:2], so.busyPoll, err)
	}
}
