package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func signalNotify(c chan os.Signal) { signal.Notify(c, syscall.SIGINT, syscall.SIGTERM) }

// figure describes one measured quantity.
type figure struct {
	Key, Name, Unit string
	Higher          bool // higher is better
}

var figures = []figure{
	{"upload", "upload, 1 conn (kernel client -> discard)", "MB/s", true},
	{"download", "download, 1 conn (chargen -> kernel client)", "MB/s", true},
	{"cpu_up", "stack process CPU per GB uploaded", "CPU s/GB", false},
	{"cpu_down", "stack process CPU per GB downloaded", "CPU s/GB", false},
	{"echo_p50", "echo 1-byte round trip p50", "µs", false},
	{"echo_p99", "echo 1-byte round trip p99", "µs", false},
	{"cps1", "HTTP Connection: close, 1 client", "conn/s", true},
	{"cps32", "HTTP Connection: close, 32 clients", "conn/s", true},
	{"idle_rss", "RSS per idle connection (hold)", "B/conn", false},
	{"tw_count", "TIME_WAIT entries reached", "entries", true},
	{"tw_rss", "RSS per TIME_WAIT entry", "B/entry", false},
	{"tw_kslab", "kernel slab per TIME_WAIT entry (tw_sock_TCP)", "B/entry", false},
	{"tun_read_pps", "raw TUN read, 1500-byte packets", "pkt/s", true},
	{"tun_read_mbs", "raw TUN read, 1500-byte packets", "MB/s", true},
	{"tun_write_pps", "raw TUN write, 1500-byte packets", "pkt/s", true},
	{"tun_write_mbs", "raw TUN write, 1500-byte packets", "MB/s", true},
	{"tun_tcpwrite_pps", "raw TUN write as TCP, 1500-byte segments", "pkt/s", true},
	{"tun_tcpwrite_mbs", "raw TUN write as TCP, 1500-byte segments", "MB/s", true},
}

// results: figure key -> target -> samples (one per round).
type results map[string]map[string][]float64

func (r results) add(key, target string, v float64) {
	if r[key] == nil {
		r[key] = map[string][]float64{}
	}
	r[key][target] = append(r[key][target], v)
}

type driver struct {
	o       *options
	res     results
	notes   []string
	log     io.Writer
	profile bool   // utcp serve has --cpuprofile
	cc      string // the kernel's congestion control in the bench's namespaces
}

func (d *driver) logf(format string, args ...any) {
	fmt.Fprintf(d.log, "bench: "+format+"\n", args...)
}

// driverMain runs inside the fresh namespace made by parentMain.
func driverMain(args []string) error {
	o, err := parseOptions(args, os.Stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := ipCmd("link", "set", "lo", "up"); err != nil {
		return err
	}
	// Room for 10,000 idle client sockets plus the server side of the
	// kernel target (which inherits this limit).
	lim := unix.Rlimit{Cur: 1 << 20, Max: 1 << 20}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
		lim.Cur = lim.Max
		unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	cc, err := setKernelCC(o.cc)
	if err != nil {
		return err
	}
	d := &driver{o: o, res: results{}, log: os.Stderr, cc: cc}
	if o.cpuprofile != "" && (o.only["utcp"] || o.only["utcp+off"]) {
		out, _ := exec.Command(filepath.Join(os.Getenv(envTmp), "utcp"), "serve", "-h").CombinedOutput()
		d.profile = strings.Contains(string(out), "cpuprofile")
		if !d.profile {
			d.note("--cpuprofile ignored: this utcp serve has no --cpuprofile flag")
			d.logf("--cpuprofile ignored: utcp serve has no such flag")
		}
	}
	began := time.Now()
	var targets []string
	for _, t := range allTargets {
		if o.only[t] {
			targets = append(targets, t)
		}
	}
	for r := 1; r <= o.rounds && ctx.Err() == nil; r++ {
		for _, t := range targets {
			if ctx.Err() != nil {
				break
			}
			d.fastRound(ctx, r, t)
		}
	}
	for r := 1; r <= o.memRounds && ctx.Err() == nil; r++ {
		for _, t := range targets {
			if t == "tun" || ctx.Err() != nil {
				continue
			}
			d.memRound(ctx, r, t)
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted")
	}
	d.logf("done in %v", time.Since(began).Round(time.Second))
	if o.json {
		return d.writeJSON(os.Stdout, time.Since(began))
	}
	d.writeTable(os.Stdout)
	return nil
}

func (d *driver) note(s string) { d.notes = append(d.notes, s) }

func (d *driver) noteOnce(s string) {
	if !slices.Contains(d.notes, s) {
		d.note(s)
	}
}

// fastRound measures throughput, CPU, latency and connection rate of one
// target on a fresh server.
func (d *driver) fastRound(ctx context.Context, r int, t string) {
	dur := d.o.duration
	if t == "tun" {
		d.logf("round %d/%d tun: raw TUN ceiling ...", r, d.o.rounds)
		rr, err := rawTUN(ctx, dur, d.o.ceil())
		if err != nil {
			d.logf("round %d tun: %v", r, err)
			return
		}
		d.res.add("tun_read_pps", t, rr.readPPS)
		d.res.add("tun_read_mbs", t, rr.readPPS*rawPktLen/1e6)
		d.res.add("tun_write_pps", t, rr.writePPS)
		d.res.add("tun_write_mbs", t, rr.writePPS*rawPktLen/1e6)
		d.logf("round %d/%d tun: %v", r, d.o.rounds, rr)
		tr, err := rawTCPWrite(ctx, dur, d.o.ceil())
		if err != nil {
			d.logf("round %d tun: %v", r, err)
			return
		}
		d.res.add("tun_tcpwrite_pps", t, tr.pps)
		d.res.add("tun_tcpwrite_mbs", t, tr.pps*rawPktLen/1e6)
		d.logf("round %d/%d tun: %v", r, d.o.rounds, tr)
		return
	}
	so := d.serverOpts()
	if baseTarget(t) == "utcp" && d.profile {
		so.cpuprofile = fmt.Sprintf("%s.r%d", d.o.cpuprofile, r)
		if t == "utcp+off" {
			so.cpuprofile = fmt.Sprintf("%s.off.r%d", d.o.cpuprofile, r)
		}
	}
	s, err := startServer(ctx, t, so)
	if err != nil {
		d.logf("round %d %s: %v", r, t, err)
		return
	}
	defer d.stopServer(s)
	if s.offloadRefused() {
		d.noteOnce(t + ": the kernel refused TUN offloads; this target ran without them")
	}
	var line []string
	cpu := func() float64 { v, _ := cpuSeconds(s.pid()); return v }

	c0 := cpu()
	if mbs, n, err := upload(ctx, dur); err != nil {
		d.logf("round %d %s upload: %v", r, t, err)
	} else {
		c := cpu() - c0
		d.res.add("upload", t, mbs)
		d.res.add("cpu_up", t, c/(float64(n)/1e9))
		line = append(line, fmt.Sprintf("upload %.1f MB/s (%.2f CPU s/GB)", mbs, c/(float64(n)/1e9)))
	}
	c0 = cpu()
	if mbs, n, err := download(ctx, dur); err != nil {
		d.logf("round %d %s download: %v", r, t, err)
	} else {
		c := cpu() - c0
		d.res.add("download", t, mbs)
		d.res.add("cpu_down", t, c/(float64(n)/1e9))
		line = append(line, fmt.Sprintf("download %.1f MB/s (%.2f CPU s/GB)", mbs, c/(float64(n)/1e9)))
	}
	if p50, p99, err := echoRTT(ctx, dur); err != nil {
		d.logf("round %d %s echo: %v", r, t, err)
	} else {
		d.res.add("echo_p50", t, p50)
		d.res.add("echo_p99", t, p99)
		line = append(line, fmt.Sprintf("echo p50 %.0f µs p99 %.0f µs", p50, p99))
	}
	for _, conc := range []int{1, 32} {
		key := fmt.Sprintf("cps%d", conc)
		cps, bad, err := httpCPS(ctx, dur, conc)
		if err != nil {
			d.logf("round %d %s http x%d: %v", r, t, err)
			continue
		}
		if bad > 0 {
			d.logf("round %d %s http x%d: %d failed requests", r, t, conc, bad)
		}
		d.res.add(key, t, cps)
		line = append(line, fmt.Sprintf("http x%d %.0f conn/s", conc, cps))
	}
	d.logf("round %d/%d %s: %s", r, d.o.rounds, t, strings.Join(line, ", "))
}

func (d *driver) stopServer(s *server) {
	s.stop()
	if d.o.verbose {
		d.logf("%s output:\n%s", s.name, s.stderr.String())
	}
}

// serverOpts are the server options the run's flags set; each round adds
// its own (a profile file, long TIME_WAIT).
func (d *driver) serverOpts() serverOpts {
	return serverOpts{verbose: d.o.verbose, queues: d.o.queues, procs: d.o.procs, busyPoll: d.o.busyPoll,
		noIOURing: d.o.noIOURing, noGRO: d.o.noGRO, gvProcs: d.o.gvProcs, txqlen: d.o.txqlen, cc: d.cc}
}

// memRound measures RSS per idle connection and per TIME_WAIT entry, each
// on a fresh server process.
func (d *driver) memRound(ctx context.Context, r int, t string) {
	so := d.serverOpts()
	so.longTimeWait = true
	if d.o.idle > 0 {
		s, err := startServer(ctx, t, so)
		if err != nil {
			d.logf("mem %d %s: %v", r, t, err)
			return
		}
		time.Sleep(300 * time.Millisecond)
		rss0, _ := rssBytes(s.pid())
		t0 := time.Now()
		conns, err := openIdle(ctx, d.o.idle, 60*time.Second)
		if err != nil {
			d.logf("mem %d %s idle: %v", r, t, err)
		}
		time.Sleep(time.Second) // let the server accept the backlog
		rss1, _ := rssBytes(s.pid())
		if len(conns) > 0 && err == nil {
			per := float64(rss1-rss0) / float64(len(conns))
			d.res.add("idle_rss", t, per)
			d.logf("mem %d/%d %s: %d idle connections in %v, RSS %d -> %d KiB, %.0f B/conn",
				r, d.o.memRounds, t, len(conns), time.Since(t0).Round(time.Millisecond), rss0>>10, rss1>>10, per)
		}
		closeAll(conns)
		d.stopServer(s)
	}
	if d.o.tw > 0 && ctx.Err() == nil {
		s, err := startServer(ctx, t, so)
		if err != nil {
			d.logf("mem %d %s: %v", r, t, err)
			return
		}
		defer d.stopServer(s)
		time.Sleep(300 * time.Millisecond)
		rss0, _ := rssBytes(s.pid())
		k0, ksize, kerr := slab("tw_sock_TCP")
		t0 := time.Now()
		done, err := makeTimeWait(ctx, d.o.tw, d.o.twBudget)
		if err != nil {
			d.logf("mem %d %s time-wait: %v", r, t, err)
		}
		time.Sleep(time.Second)
		rss1, _ := rssBytes(s.pid())
		k1, _, _ := slab("tw_sock_TCP")
		tw, cerr := s.timeWaitCount()
		if cerr != nil {
			d.logf("mem %d %s: counting TIME_WAIT: %v", r, t, cerr)
			return
		}
		d.res.add("tw_count", t, float64(tw))
		msg := fmt.Sprintf("mem %d/%d %s: %d Connection: close requests in %v, %d TIME_WAIT entries, RSS %d -> %d KiB",
			r, d.o.memRounds, t, done, time.Since(t0).Round(time.Millisecond), tw, rss0>>10, rss1>>10)
		if tw > 0 {
			d.res.add("tw_rss", t, float64(rss1-rss0)/float64(tw))
			msg += fmt.Sprintf(", %.0f B/entry", float64(rss1-rss0)/float64(tw))
			if t == "kernel" && kerr == nil {
				d.res.add("tw_kslab", t, float64((k1-k0)*ksize)/float64(tw))
				msg += fmt.Sprintf(", kernel slab %.0f B/entry", float64((k1-k0)*ksize)/float64(tw))
			}
		}
		d.logf("%s", msg)
	}
}

// stat is median [min-max] of samples.
type stat struct {
	Samples          []float64 `json:"samples"`
	Median, Min, Max float64
}

func summarize(xs []float64) stat {
	s := slices.Clone(xs)
	slices.Sort(s)
	st := stat{Samples: xs, Min: s[0], Max: s[len(s)-1]}
	if n := len(s); n%2 == 1 {
		st.Median = s[n/2]
	} else {
		st.Median = (s[n/2-1] + s[n/2]) / 2
	}
	return st
}

func (d *driver) writeJSON(w io.Writer, took time.Duration) error {
	type fig struct {
		Key     string          `json:"key"`
		Name    string          `json:"name"`
		Unit    string          `json:"unit"`
		Higher  bool            `json:"higher_is_better"`
		Targets map[string]stat `json:"targets"`
		Ratio   *float64        `json:"ratio_utcp_gvisor,omitempty"`
		RatioO  *float64        `json:"ratio_utcpoff_gvisoroff,omitempty"`
		PctK    *float64        `json:"pct_utcpoff_of_kernel,omitempty"`
	}
	out := struct {
		Rounds    int                `json:"rounds"`
		MemRounds int                `json:"mem_rounds"`
		Duration  string             `json:"duration"`
		Idle      int                `json:"idle_connections"`
		TW        int                `json:"time_wait_target"`
		Took      time.Duration      `json:"took_ns"`
		CC        string             `json:"kernel_congestion_control"`
		Figures   []fig              `json:"figures"`
		Ceiling   map[string]float64 `json:"pct_utcp_of_tun_ceiling,omitempty"`
		Notes     []string           `json:"notes,omitempty"`
	}{d.o.rounds, d.o.memRounds, d.o.duration.String(), d.o.idle, d.o.tw, took, d.cc, nil, nil, d.notes}
	for _, f := range figures {
		byT := d.res[f.Key]
		if len(byT) == 0 {
			continue
		}
		g := fig{Key: f.Key, Name: f.Name, Unit: f.Unit, Higher: f.Higher, Targets: map[string]stat{}}
		for t, xs := range byT {
			g.Targets[t] = summarize(xs)
		}
		g.Ratio = d.ratio(f.Key, "utcp", "gvisor")
		g.RatioO = d.ratio(f.Key, "utcp+off", "gvisor+off")
		if kernelComparable(f.Key) {
			if r := d.ratio(f.Key, "utcp+off", "kernel"); r != nil {
				*r *= 100
				g.PctK = r
			}
		}
		out.Figures = append(out.Figures, g)
	}
	for _, c := range ceilings {
		if r := d.ceilingPct(c.fig, c.ppsKey); r != nil {
			if out.Ceiling == nil {
				out.Ceiling = map[string]float64{}
			}
			out.Ceiling[c.key] = *r
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func fmtNum(v float64) string {
	switch a := max(v, -v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func cell(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	s := summarize(xs)
	if len(xs) == 1 {
		return fmtNum(s.Median)
	}
	return fmt.Sprintf("%s [%s–%s]", fmtNum(s.Median), fmtNum(s.Min), fmtNum(s.Max))
}

// ratio is median(a)/median(b) of figure key, or nil if either is missing.
func (d *driver) ratio(key, a, b string) *float64 {
	x, y := d.res[key][a], d.res[key][b]
	if len(x) == 0 || len(y) == 0 {
		return nil
	}
	ym := summarize(y).Median
	if ym == 0 {
		return nil
	}
	r := summarize(x).Median / ym
	return &r
}

// kernelComparable says whether a figure of a TUN stack can be put beside
// the kernel's: RSS figures cannot (the kernel's sockets live in kernel
// memory, not in its server's RSS) and the TIME_WAIT count is a target.
func kernelComparable(key string) bool {
	switch key {
	case "idle_rss", "tw_rss", "tw_count", "tw_kslab":
		return false
	}
	return true
}

// ceilings pairs plain utcp's throughput with the raw TUN direction that
// bounds it: upload is the stack reading from the TUN, download is the
// stack writing to it. Download has two: UDP datagrams the kernel only
// counts, and TCP segments the kernel receives as it receives the stack's
// (rawtcp.go). key names the pair in --json.
var ceilings = []struct{ key, fig, ppsKey, mbsKey, row string }{
	{"upload", "upload", "tun_read_pps", "tun_read_mbs", "read (host packet socket -> TUN -> process)"},
	{"download", "download", "tun_write_pps", "tun_write_mbs", "write (process -> TUN -> kernel UDP socket)"},
	{"download_tcp", "download", "tun_tcpwrite_pps", "tun_tcpwrite_mbs", "write as TCP (process -> TUN -> kernel TCP socket)"},
}

// rawTCPPayload is the TCP payload one ceiling-sized packet carries: 1500
// bytes less the IPv4 and TCP headers and the 12 bytes of the timestamp
// option, which utcp and the kernel client negotiate (mss:1448 in ss -ti).
// The stacks' MB/s count payload, so the ceiling they are held against is
// its packet rate times this, not times the whole packet: comparing bytes
// of payload with bytes of packet would put a stack that matched the
// ceiling's packet rate at 96.5 % of it.
const rawTCPPayload = rawPktLen - 20 - 20 - 12

// ceilingMBs is the ceiling's median packet rate as TCP payload MB/s.
func (d *driver) ceilingMBs(ppsKey string) float64 {
	c := d.res[ppsKey]["tun"]
	if len(c) == 0 {
		return 0
	}
	return summarize(c).Median * rawTCPPayload / 1e6
}

// ceilingPct is plain utcp's median figure as a percentage of the raw TUN
// ceiling of the same run, both as TCP payload (rawTCPPayload).
func (d *driver) ceilingPct(fig, ppsKey string) *float64 {
	u := d.res[fig]["utcp"]
	cm := d.ceilingMBs(ppsKey)
	if len(u) == 0 || cm == 0 {
		return nil
	}
	p := 100 * summarize(u).Median / cm
	return &p
}

func fmtRatio(r *float64, pct bool) string {
	switch {
	case r == nil:
		return "-"
	case pct:
		return fmt.Sprintf("%.0f%%", *r*100)
	default:
		return fmt.Sprintf("%.2f", *r)
	}
}

func (d *driver) writeTable(w io.Writer) {
	fmt.Fprintf(w, "\nmedian [min–max] over %d round(s) of %v (memory figures: %d round(s)); MB = 10^6 bytes; every TUN at txqueuelen %d; kernel TCP congestion control %s\n\n",
		d.o.rounds, d.o.duration, d.o.memRounds, d.o.txqlen, d.cc)
	fmt.Fprintln(w, "| figure | unit | utcp | utcp+off | gVisor | gVisor+off | kernel (veth) | utcp/gVisor | utcp+off/gVisor+off | utcp+off % of kernel |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, f := range figures {
		byT := d.res[f.Key]
		if len(byT) == 0 || strings.HasPrefix(f.Key, "tun_") {
			continue
		}
		pctK := "-"
		if kernelComparable(f.Key) {
			pctK = fmtRatio(d.ratio(f.Key, "utcp+off", "kernel"), true)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", f.Name, f.Unit,
			cell(byT["utcp"]), cell(byT["utcp+off"]), cell(byT["gvisor"]), cell(byT["gvisor+off"]), cell(byT["kernel"]),
			fmtRatio(d.ratio(f.Key, "utcp", "gvisor"), false),
			fmtRatio(d.ratio(f.Key, "utcp+off", "gvisor+off"), false), pctK)
	}
	if len(d.res["tun_read_pps"]) > 0 {
		fmt.Fprintln(w, "\nraw TUN ceiling (no stack; one process, 1500-byte IPv4 packets: UDP, and for the TCP row in-window segments to a kernel TCP client)")
		fmt.Fprintf(w, "\n| direction | pkt/s | MB/s of packets | as TCP payload, MB/s (%d B per packet) | plain utcp as %% of it |\n", rawTCPPayload)
		fmt.Fprintln(w, "| --- | --- | --- | --- | --- |")
		for _, c := range ceilings {
			pct := "-"
			if p := d.ceilingPct(c.fig, c.ppsKey); p != nil {
				pct = fmt.Sprintf("%s %.0f%%", c.fig, *p)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %.0f | %s |\n", c.row,
				cell(d.res[c.ppsKey]["tun"]), cell(d.res[c.mbsKey]["tun"]), d.ceilingMBs(c.ppsKey), pct)
		}
	}
	for _, n := range d.notes {
		fmt.Fprintln(w, "\nnote:", n)
	}
}
