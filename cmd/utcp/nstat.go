package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

const nstatSynopsis = `usage: utcp nstat [--tun NAME | --control PATH] [-a] [-z] [-n] [-r] [-s] [--json] [PATTERN]...

Prints a running utcp serve's counters under their Linux names (MIB prefix
plus name: TcpActiveOpens, TcpExtListenOverflows, IpInReceives ...) like
nstat: by default the increments since the previous utcp nstat of this user
against this serve, kept in a history file in $TMPDIR (or /tmp; override
with $UTCP_NSTAT_HISTORY); -a prints absolute values. Zero values are left
out unless -z. PATTERNs are shell globs on the names (Tcp*, *Overflows).
TcpCurrEstab is a gauge and always shows its current value.
`

// nstatHistory is what the history file keeps: the server it was taken
// from (a restarted serve starts from zero, so old values do not apply)
// and the absolute counter values.
type nstatHistory struct {
	PID      int               `json:"pid"`
	Start    int64             `json:"start"`
	Counters map[string]uint64 `json:"counters"`
}

type nstatOpts struct {
	abs, zeros, noOutput, reset, noUpdate, json bool
	patterns                                    []string
}

func cmdNstat(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("nstat", flag.ContinueOnError)
	tunName := fs.String("tun", "utcp0", "TUN device name of the serve to inspect")
	control := fs.String("control", "", "control socket of the serve (default /run/utcp/NAME.sock)")
	var o nstatOpts
	fs.BoolVar(&o.abs, "a", false, "absolute values, not increments since the last call")
	fs.BoolVar(&o.zeros, "z", false, "also print counters that are zero")
	fs.BoolVar(&o.noOutput, "n", false, "print nothing, only update the history")
	fs.BoolVar(&o.reset, "r", false, "reset the history: increments count from zero")
	fs.BoolVar(&o.noUpdate, "s", false, "do not update the history")
	fs.BoolVar(&o.json, "json", false, `print JSON: {"utcp":{"TcpActiveOpens":1,...}}`)
	setUsage(fs, nstatSynopsis)
	pos, err := parseInterleaved(fs, expandShort(args, "azrns"), stdout)
	if err != nil {
		return err
	}
	for _, p := range pos {
		if _, err := path.Match(p, ""); err != nil {
			return &exitError{code: 2, msg: fmt.Sprintf("nstat: bad pattern %q: %v", p, err)}
		}
	}
	o.patterns = pos
	ctl := *control
	if ctl == "" {
		ctl = defaultControl(*tunName)
	}
	resp, err := controlCall(ctl, "nstat")
	if err != nil {
		return err
	}
	histPath := nstatHistoryPath(ctl)
	var hist *nstatHistory
	if !o.reset && !o.abs {
		hist = loadHistory(histPath, resp.Server)
	}
	cur := nstatHistory{PID: resp.Server.PID, Start: resp.Server.Start, Counters: map[string]uint64{}}
	type row struct {
		name string
		v    uint64
	}
	var rows []row
	for _, c := range resp.Counters {
		name := c.MIB + c.Name
		cur.Counters[name] = c.Value
		v := c.Value
		if hist != nil && name != "TcpCurrEstab" {
			// A value below the history means the counter was reset;
			// nstat then shows it from zero.
			if old := hist.Counters[name]; old <= v {
				v -= old
			}
		}
		if (v == 0 && !o.zeros) || !matchAny(o.patterns, name) {
			continue
		}
		rows = append(rows, row{name, v})
	}
	if !o.noUpdate {
		if err := saveHistory(histPath, &cur); err != nil {
			return failf("nstat: saving history: %v", err)
		}
	}
	if o.noOutput {
		return nil
	}
	if o.json {
		m := make(map[string]uint64, len(rows))
		for _, r := range rows {
			m[r.name] = r.v
		}
		b, _ := json.Marshal(map[string]map[string]uint64{"utcp": m})
		fmt.Fprintf(stdout, "%s\n", b)
		return nil
	}
	fmt.Fprintln(stdout, "#utcp")
	for _, r := range rows {
		fmt.Fprintf(stdout, "%-32s%d\n", r.name, r.v)
	}
	return nil
}

func matchAny(patterns []string, name string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// nstatHistoryPath is per user and per control socket, like nstat's
// /tmp/.nstat.u$UID.
func nstatHistoryPath(control string) string {
	if p := os.Getenv("UTCP_NSTAT_HISTORY"); p != "" {
		return p
	}
	key := strings.Trim(strings.Map(func(r rune) rune {
		if r == '/' || r == '.' {
			return '_'
		}
		return r
	}, control), "_")
	return filepath.Join(os.TempDir(), fmt.Sprintf(".utcp-nstat.u%d.%s", os.Getuid(), key))
}

// loadHistory returns the history if it belongs to this server process.
func loadHistory(p string, srv serverInfo) *nstatHistory {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	var h nstatHistory
	if json.Unmarshal(b, &h) != nil || h.PID != srv.PID || h.Start != srv.Start {
		return nil
	}
	return &h
}

// saveHistory replaces the file atomically (write, then rename), mode 0600.
func saveHistory(p string, h *nstatHistory) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), filepath.Base(p)+".tmp*")
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), p); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}
