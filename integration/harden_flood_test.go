package integration

// A spoofed SYN flood over the wire (RFC 4987): SYNs from random sources
// in 198.18.0.0/24 (never .1, the host, or .2, the stack) and random ports
// are injected into utcp0 through AF_PACKET at 20,000 per second or more,
// aimed at an HTTP server on utcp port 80 (backlog 128), while the kernel
// keeps making real requests on fresh connections. The SYN queue fills at
// once and from then on the listener answers with SYN cookies, so real
// clients still get in: at least 99 % of the requests must succeed, the
// heap may not grow by 32 MiB or more, and SyncookiesSent must count.
//
// The stack's SYN-ACKs go to the spoofed addresses, which the kernel
// routes back out of utcp0's host side... to itself: hdStart turns
// forwarding off, so the kernel drops them on input (ip_error, no ICMP)
// and nothing answers them; nothing leaves the namespace, which has no
// other interface than lo.
//
// The flood lasts 5 s; UTCP_LONG=1 makes it 30 s.

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"utcp/seg"
	"utcp/stack"
	"utcp/tun/netns"
)

func TestHardenWireSYNFlood(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	const (
		rate    = 20_500 // SYNs per second aimed at; at least 20,000 must go out
		backlog = 128
	)
	dur := 5 * time.Second
	if os.Getenv("UTCP_LONG") == "1" {
		dur = 30 * time.Second
	}
	env := hdStart(t, nil)
	ln, err := env.st.Listen(80, backlog)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "ok "+r.URL.Path)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	srvDone := make(chan struct{})
	go func() { defer close(srvDone); srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-srvDone
	}()

	client := &http.Client{
		Transport: &http.Transport{
			DisableKeepAlives: true, // a new connection, and handshake, per request
			DialContext:       (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
		},
		Timeout: 4 * time.Second,
	}
	get := func(i int) error {
		resp, err := client.Get(fmt.Sprintf("http://%v/r%d", hdStackIP, i))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("ok /r%d", i); resp.StatusCode != 200 || string(b) != want {
			return fmt.Errorf("status %d body %q, want 200 %q", resp.StatusCode, b, want)
		}
		return nil
	}
	if err := get(0); err != nil {
		t.Fatalf("request before the flood: %v", err)
	}

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapInuse
	before := env.st.Counters()
	pawsBefore := hdKernelStat(t, "TcpExt", "PAWSEstab")

	// The flood.
	var sent, refused atomic.Int64
	stop := make(chan struct{})
	floodDone := make(chan time.Duration)
	go func() {
		r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 4987))
		buf := make([]byte, 0, 80)
		start := time.Now()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				floodDone <- time.Since(start)
				return
			case <-tick.C:
			}
			// Catch up to rate×elapsed: the ticker may fire late on a
			// busy machine, the rate should not suffer for it.
			for target := int64(time.Since(start).Seconds() * rate); sent.Load() < target; {
				sg := seg.Segment{
					Src:     netip.AddrFrom4([4]byte{198, 18, 0, byte(3 + r.IntN(252))}), // .3 to .254
					Dst:     hdStackIP,
					SrcPort: uint16(1024 + r.IntN(64512)),
					DstPort: 80,
					Seq:     seg.Seq(r.Uint32()),
					Flags:   seg.SYN,
					Window:  65535,
				}
				sg.Opts.HasMSS, sg.Opts.MSS = true, 1460
				sg.Opts.SACKPermitted = r.IntN(2) == 0
				sg.Opts.HasWScale, sg.Opts.WScale = true, 7
				sg.Opts.HasTS, sg.Opts.TSVal = r.IntN(2) == 0, r.Uint32()
				buf = sg.AppendTo(buf[:0])
				if err := env.inj.trySend(buf); err == unix.ENOBUFS {
					// The TUN's queue was full: dropped as a real SYN
					// would have been.
					refused.Add(1)
				} else if err != nil {
					t.Errorf("flood: %v", err)
					floodDone <- time.Since(start)
					return
				}
				sent.Add(1)
			}
		}
	}()

	// Real requests from two clients, each pausing 5 ms between requests
	// (a steady load, not a second flood: every connection leaves a
	// TIME_WAIT record in utcp, which closes first), until the flood ends.
	var ok, failed atomic.Int64
	var firstErrs sync.Map
	var wg sync.WaitGroup
	var latMu sync.Mutex
	var lat []time.Duration
	deadline := time.Now().Add(dur)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; time.Now().Before(deadline); i++ {
				t1 := time.Now()
				err := get(w*1_000_000 + i)
				d := time.Since(t1)
				if err != nil {
					if failed.Add(1) <= 5 {
						firstErrs.Store(err.Error(), true)
					}
				} else {
					ok.Add(1)
					latMu.Lock()
					lat = append(lat, d)
					latMu.Unlock()
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	close(stop)
	elapsed := <-floodDone
	after := env.st.Counters()
	paws := hdKernelStat(t, "TcpExt", "PAWSEstab") - pawsBefore

	n, bad := ok.Load()+failed.Load(), failed.Load()
	offered := float64(sent.Load()) / elapsed.Seconds()
	t.Logf("flood: %d SYNs in %v (%.0f/s offered, %d refused by the full TUN queue); utcp InSegs +%d, SyncookiesSent +%d, TCPReqQFullDoCookies +%d, ListenOverflows +%d, SYN queue %d",
		sent.Load(), elapsed.Round(time.Millisecond), offered, refused.Load(), after.InSegs-before.InSegs,
		after.SyncookiesSent-before.SyncookiesSent, after.TCPReqQFullDoCookies-before.TCPReqQFullDoCookies,
		after.ListenOverflows-before.ListenOverflows, hdSynQ(env, 80))
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	t.Logf("requests during the flood: %d, failed %d (%.2f%%); latency p50 %v p99 %v max %v; SyncookiesRecv +%d; kernel TcpExtPAWSEstab +%d",
		n, bad, 100*float64(bad)/float64(max(n, 1)), pct(0.5), pct(0.99), pct(1),
		after.SyncookiesRecv-before.SyncookiesRecv, paws)
	firstErrs.Range(func(k, _ any) bool { t.Logf("request error: %v", k); return true })

	if offered < 20_000 {
		t.Errorf("offered %.0f SYN/s, want at least 20,000", offered)
	}
	// Unhindered, each client manages a request every 5-6 ms; 50 ms each
	// would mean most requests waited on retransmissions.
	if n < int64(2*dur/(50*time.Millisecond)) {
		t.Errorf("only %d requests completed or failed in %v", n, dur)
	}
	if bad*100 > n {
		t.Errorf("%d of %d requests failed during the flood, want at most 1%%", bad, n)
	}
	if after.SyncookiesSent == before.SyncookiesSent {
		t.Errorf("SyncookiesSent did not move during the flood")
	}
	if after.SyncookiesRecv == before.SyncookiesRecv {
		t.Errorf("no real connection came in through a SYN cookie")
	}
	// A cookie SYN-ACK whose TSval runs ahead of the connection's later
	// segments makes the kernel drop those by PAWS (RFC 7323 §5.3) and
	// the request wait for a retransmission.
	if paws != 0 {
		t.Errorf("kernel TcpExtPAWSEstab +%d: utcp sent timestamps older than ones it had sent before", paws)
	}
	if q := hdSynQ(env, 80); q > backlog {
		t.Errorf("SYN queue %d, backlog %d", q, backlog)
	}

	runtime.GC()
	runtime.ReadMemStats(&ms)
	growth := int64(ms.HeapInuse) - int64(heapBefore)
	t.Logf("HeapInuse %d KiB before, %d KiB after the flood (after GC): %+d KiB; utcp holds %d TIME_WAIT records",
		heapBefore>>10, ms.HeapInuse>>10, growth>>10, env.st.StateCounts()[stack.TimeWait])
	if growth >= 32<<20 {
		t.Errorf("heap grew by %d MiB during the flood, want < 32 MiB", growth>>20)
	}
	if err := get(1); err != nil {
		t.Errorf("request after the flood: %v", err)
	}
}

// hdSynQ is the listener's SYN_RECV count as `utcp ss` shows it.
func hdSynQ(env *hdEnv, port uint16) int {
	for _, ci := range env.st.Connections() {
		if ci.Local.Port() == port && ci.State.String() == "LISTEN" {
			return ci.SynQ
		}
	}
	return -1
}

// hdKernelStat reads one counter of this namespace's kernel from
// /proc/net/netstat or /proc/net/snmp (table "TcpExt", "Tcp", "Ip" ...).
func hdKernelStat(t *testing.T, table, name string) uint64 {
	t.Helper()
	for _, f := range []string{"/proc/net/netstat", "/proc/net/snmp"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		for i := 0; i+1 < len(lines); i += 2 {
			names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			if len(names) == 0 || names[0] != table+":" || len(values) != len(names) {
				continue
			}
			for k, nm := range names {
				if nm == name {
					v, err := strconv.ParseUint(values[k], 10, 64)
					if err != nil {
						t.Fatalf("%s %s%s: %v", f, table, name, err)
					}
					return v
				}
			}
		}
	}
	t.Fatalf("no kernel counter %s%s", table, name)
	return 0
}
