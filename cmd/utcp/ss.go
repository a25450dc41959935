package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"utcp/stack"
)

const ssSynopsis = `usage: utcp ss [--tun NAME | --control PATH] [-t] [-l | -a] [-i] [-o] [-n] [state STATE]...

Lists the sockets of a running utcp serve like ss -tan: State, Recv-Q,
Send-Q, Local Address:Port, Peer Address:Port. On a listener Recv-Q is the
accept queue length and Send-Q the backlog, as on Linux. Without -l or -a,
listeners are left out. STATE is an ss name (established, syn-sent,
syn-recv, fin-wait-1, fin-wait-2, time-wait, close-wait, last-ack,
closing, closed, listening) or a group: all, connected, synchronized,
bucket, big. Short flags combine (-tan, -tlni).
`

// ssStateName is how ss(8) prints each state.
var ssStateName = map[stack.State]string{
	stack.Closed:      "UNCONN",
	stack.Listen:      "LISTEN",
	stack.SynSent:     "SYN-SENT",
	stack.SynReceived: "SYN-RECV",
	stack.Established: "ESTAB",
	stack.FinWait1:    "FIN-WAIT-1",
	stack.FinWait2:    "FIN-WAIT-2",
	stack.CloseWait:   "CLOSE-WAIT",
	stack.Closing:     "CLOSING",
	stack.LastAck:     "LAST-ACK",
	stack.TimeWait:    "TIME-WAIT",
}

// stateSet is a set of states, one bit each.
type stateSet uint32

func setOf(states ...stack.State) stateSet {
	var s stateSet
	for _, st := range states {
		s |= 1 << st
	}
	return s
}

func (s stateSet) has(st stack.State) bool { return s&(1<<st) != 0 }

var (
	allStates       = setOf(stack.Closed, stack.Listen, stack.SynSent, stack.SynReceived, stack.Established, stack.FinWait1, stack.FinWait2, stack.CloseWait, stack.Closing, stack.LastAck, stack.TimeWait)
	connectedStates = allStates &^ setOf(stack.Listen, stack.Closed)
)

// parseStateFilter reads ss's state names and groups (ss(8) STATE-FILTER).
func parseStateFilter(name string) (stateSet, bool) {
	switch strings.ToLower(name) {
	case "all":
		return allStates, true
	case "connected":
		return connectedStates, true
	case "synchronized":
		return connectedStates &^ setOf(stack.SynSent), true
	case "bucket":
		return setOf(stack.SynReceived, stack.TimeWait), true
	case "big":
		return allStates &^ setOf(stack.SynReceived, stack.TimeWait), true
	case "listening":
		return setOf(stack.Listen), true
	}
	st, ok := stack.ParseState(name)
	if !ok {
		return 0, false
	}
	return setOf(st), true
}

// expandShort turns combined short flags ("-tan") into separate ones, as
// ss users type them; anything else passes through.
func expandShort(args []string, letters string) []string {
	var out []string
	for _, a := range args {
		if len(a) > 2 && a[0] == '-' && a[1] != '-' && strings.Trim(a[1:], letters) == "" {
			for _, r := range a[1:] {
				out = append(out, "-"+string(r))
			}
			continue
		}
		out = append(out, a)
	}
	return out
}

// parseInterleaved parses flags that may appear between positional
// arguments (ss users write "state established -i").
func parseInterleaved(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args, stdout); err != nil {
			return nil, err
		}
		rest := fs.Args()
		i := 0
		for i < len(rest) && !strings.HasPrefix(rest[i], "-") {
			pos = append(pos, rest[i])
			i++
		}
		if i == len(rest) {
			return pos, nil
		}
		args = rest[i:]
	}
}

type ssOpts struct {
	listening, all, info, timers bool
	states                       stateSet
}

func cmdSS(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ss", flag.ContinueOnError)
	tunName := fs.String("tun", "utcp0", "TUN device name of the serve to inspect")
	control := fs.String("control", "", "control socket of the serve (default /run/utcp/NAME.sock)")
	var o ssOpts
	fs.Bool("t", true, "TCP sockets (the only kind utcp has)")
	fs.Bool("n", true, "numeric addresses (always)")
	fs.BoolVar(&o.listening, "l", false, "only listening sockets")
	fs.BoolVar(&o.all, "a", false, "listening and non-listening sockets")
	fs.BoolVar(&o.info, "i", false, "TCP_INFO-like details: rtt/rttvar, rto, cwnd, ssthresh, mss, windows, retransmits, bytes")
	fs.BoolVar(&o.timers, "o", false, "armed timers and the time left on each")
	setUsage(fs, ssSynopsis)
	pos, err := parseInterleaved(fs, expandShort(args, "tnlaio"), stdout)
	if err != nil {
		return err
	}
	for i := 0; i < len(pos); i++ {
		if pos[i] != "state" || i+1 >= len(pos) {
			return &exitError{code: 2, msg: fmt.Sprintf("ss: unexpected argument %q: filters are written \"state NAME\" (see utcp ss -h)", pos[i])}
		}
		i++
		set, ok := parseStateFilter(pos[i])
		if !ok {
			return &exitError{code: 2, msg: fmt.Sprintf("ss: unknown state %q (see utcp ss -h)", pos[i])}
		}
		o.states |= set
	}
	path := *control
	if path == "" {
		path = defaultControl(*tunName)
	}
	resp, err := controlCall(path, "ss")
	if err != nil {
		return err
	}
	conns := make([]stack.ConnInfo, len(resp.Conns))
	for i, wc := range resp.Conns {
		conns[i] = wc.Info
	}
	writeSS(stdout, conns, o)
	return nil
}

// selected says which states to print: explicit state filters win, else
// -a all, -l listeners only, else every non-listening socket.
func (o ssOpts) selected() stateSet {
	switch {
	case o.states != 0:
		return o.states
	case o.all:
		return allStates
	case o.listening:
		return setOf(stack.Listen)
	}
	return allStates &^ setOf(stack.Listen)
}

// writeSS prints the table with columns sized to their contents.
func writeSS(w io.Writer, conns []stack.ConnInfo, o ssOpts) {
	want := o.selected()
	rows := [][]string{{"State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port"}}
	var extra []string
	for _, ci := range conns {
		if !want.has(ci.State) {
			continue
		}
		peer := "0.0.0.0:*"
		if ci.State != stack.Listen {
			peer = ci.Remote.String()
		}
		rows = append(rows, []string{ssStateName[ci.State], fmt.Sprint(ci.RecvQ), fmt.Sprint(ci.SendQ), ci.Local.String(), peer})
		var x []string
		if o.timers && len(ci.Timers) > 0 {
			x = append(x, formatTimers(ci))
		}
		if o.info && ci.State != stack.Listen && ci.State != stack.TimeWait {
			x = append(x, formatInfo(ci))
		}
		extra = append(extra, strings.Join(x, " "))
	}
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	for i, r := range rows {
		var b strings.Builder
		for j, c := range r {
			if j > 0 {
				b.WriteString("  ")
			}
			switch j {
			case 1, 2: // counts right-aligned, as ss does
				fmt.Fprintf(&b, "%*s", width[j], c)
			case len(r) - 1:
				b.WriteString(c)
			default:
				fmt.Fprintf(&b, "%-*s", width[j], c)
			}
		}
		fmt.Fprintln(w, b.String())
		if i > 0 && extra[i-1] != "" {
			fmt.Fprintf(w, "\t %s\n", extra[i-1])
		}
	}
}

// formatTimers prints the armed timers like ss -o: timer:(name,left,retransmits).
func formatTimers(ci stack.ConnInfo) string {
	parts := make([]string, 0, len(ci.Timers))
	for _, t := range ci.Timers {
		parts = append(parts, fmt.Sprintf("timer:(%s,%s,%d)", t.Kind, ssDuration(t.In), ci.Retransmits))
	}
	return strings.Join(parts, " ")
}

// ssDuration formats time left the way ss does: minutes, seconds or
// milliseconds.
func ssDuration(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return fmt.Sprintf("%dmin", int(d/time.Minute))
	case d >= time.Second:
		return fmt.Sprintf("%dsec", int(d/time.Second))
	case d > 0:
		return fmt.Sprintf("%dms", int(d/time.Millisecond))
	}
	return "0ms"
}

// formatInfo is the ss -i detail line. As in Linux, cwnd and ssthresh
// are in segments, rtt/rttvar and rto in milliseconds, and ssthresh is
// left out while it is still "infinite".
func formatInfo(ci stack.ConnInfo) string {
	var b strings.Builder
	if ci.Timestamps {
		b.WriteString("ts ")
	}
	if ci.SndWScale != 0 || ci.RcvWScale != 0 {
		fmt.Fprintf(&b, "wscale:%d,%d ", ci.SndWScale, ci.RcvWScale)
	}
	ms := func(d time.Duration) string {
		return fmt.Sprintf("%.3g", float64(d)/float64(time.Millisecond))
	}
	fmt.Fprintf(&b, "rto:%s rtt:%s/%s mss:%d", ms(ci.RTO), ms(ci.SRTT), ms(ci.RTTVar), ci.MSS)
	mss := uint32(max(ci.MSS, 1))
	fmt.Fprintf(&b, " cwnd:%d", max(ci.Cwnd/mss, 1))
	if ci.Ssthresh < 1<<30 {
		fmt.Fprintf(&b, " ssthresh:%d", ci.Ssthresh/mss)
	}
	fmt.Fprintf(&b, " bytes_acked:%d bytes_received:%d", ci.BytesAcked, ci.BytesReceived)
	if ci.InFlight > 0 {
		fmt.Fprintf(&b, " unacked:%d", ci.InFlight)
	}
	fmt.Fprintf(&b, " retrans:%d/%d snd_wnd:%d rcv_wnd:%d", ci.Retransmits, ci.TotalRetrans, ci.SndWnd, ci.RcvWnd)
	if ci.OOOSegs > 0 {
		fmt.Fprintf(&b, " ofo:%d/%dB", ci.OOOSegs, ci.OOOBytes)
	}
	if ci.Orphan {
		b.WriteString(" orphan")
	}
	return b.String()
}
