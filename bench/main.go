package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Environment variables that tell a re-executed bench which role it has.
const (
	envRole = "UTCP_BENCH_ROLE" // "driver" or "kernelserve"
	envTmp  = "UTCP_BENCH_TMP"  // the parent's temporary directory (binaries, sockets)
	envCC   = "UTCP_BENCH_CC"   // --cc, for the kernel reference server's namespace
)

const usage = `usage: go run ./bench [flags]

Runs the same load from kernel sockets against six targets, each in a
network namespace of its own making that vanishes when the run ends:

  utcp         the real utcp binary (go build ./cmd/utcp; utcp serve) on a TUN
  utcp+off     the same with --offload (IFF_VNET_HDR, TUNSETOFFLOAD csum/TSO)
  gvisor       gVisor's netstack on a TUN (bench/gvisorserve, fdbased link)
  gvisor+off   the same with --offload (IFF_VNET_HDR, TUNSETOFFLOAD csum/TSO4,
               gVisor's TCP sending 64 KiB GSO super-segments)
  kernel       the Linux stack against itself over a veth pair (upper reference)
  tun          raw TUN ceiling: packets a process reads from / writes to a TUN
               (UDP both ways, and TCP segments written to a kernel client)

Rounds are interleaved (utcp utcp+off gvisor gvisor+off kernel tun, utcp ...)
and each figure is reported as median [min-max] over the rounds. Memory
figures (10,000 idle connections, 100,000 TIME_WAIT entries) run
--mem-rounds times, after the fast rounds. Needs root and /dev/net/tun.
Only 198.18.0.0/24 is used (host side 198.18.0.1 plus 198.18.0.101-108 as
extra source addresses, stack 198.18.0.2); nothing touches the root
namespace.

flags:
`

type options struct {
	rounds     int
	memRounds  int
	duration   time.Duration
	only       map[string]bool
	json       bool
	cpuprofile string
	idle       int
	tw         int
	twBudget   time.Duration
	verbose    bool
	queues     int           // utcp serve --queues
	procs      int           // utcp serve --procs (GOMAXPROCS); 0 keeps serve's default, one per queue
	busyPoll   time.Duration // utcp serve --busy-poll; negative keeps serve's default
	noIOURing  bool          // utcp serve --io-uring=false, and the raw ceiling without io_uring
	noGRO      bool          // utcp serve --gro-flush-timeout 0, and the raw ceiling without GRO
	gvProcs    int           // GOMAXPROCS of the gVisor server; 0 leaves it to Go
	txqlen     int           // TUN txqueuelen of every TUN target (utcp, gVisor, raw)
	cc         string        // kernel TCP congestion control in the bench's namespaces; "" inherits
}

var allTargets = []string{"utcp", "utcp+off", "gvisor", "gvisor+off", "kernel", "tun"}

// baseTarget is the program a target runs: "utcp+off" is utcp serve
// --offload, "gvisor+off" is gvisorserve --offload.
func baseTarget(t string) string { return strings.TrimSuffix(t, "+off") }

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	o := &options{}
	only := fs.String("only", strings.Join(allTargets, ","), "comma-separated targets to run: "+strings.Join(allTargets, ","))
	fs.IntVar(&o.rounds, "rounds", 3, "interleaved rounds of the fast figures (throughput, latency, connection rate)")
	fs.IntVar(&o.memRounds, "mem-rounds", 1, "rounds of the memory figures (idle connections, TIME_WAIT); 0 skips them")
	fs.DurationVar(&o.duration, "duration", 2*time.Second, "length of each timed figure in a round")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON on stdout instead of a table")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "passed to utcp serve as --cpuprofile FILE.rN (FILE.off.rN for utcp+off), if the binary has that flag")
	fs.IntVar(&o.idle, "idle", 10000, "idle connections held open for the RSS-per-connection figure")
	fs.IntVar(&o.tw, "tw", 100000, "TIME_WAIT entries to create for the memory-per-TIME_WAIT figure")
	fs.DurationVar(&o.twBudget, "tw-budget", 50*time.Second, "most time spent creating TIME_WAIT entries per target (the kernel keeps them 60 s)")
	fs.IntVar(&o.queues, "utcp-queues", 1, "passed to utcp serve as --queues N (TUN queues, one reader goroutine each)")
	fs.IntVar(&o.procs, "utcp-procs", 0, "passed to utcp serve as --procs N (GOMAXPROCS, cores it may use at once); 0 keeps serve's default, one per TUN queue")
	fs.BoolVar(&o.noGRO, "no-gro", false, "no GRO on plain TUNs: passes --gro-flush-timeout 0 to utcp serve, and the raw TUN ceiling opens its devices the same way")
	fs.BoolVar(&o.noIOURing, "no-io-uring", false, "one system call per packet on the TUN: passes --io-uring=false to utcp serve, and the raw TUN ceiling reads and writes the same way, so the two stay comparable")
	fs.DurationVar(&o.busyPoll, "utcp-busy-poll", -1, "passed to utcp serve as --busy-poll D (0 turns busy polling off); negative keeps serve's default")
	fs.IntVar(&o.gvProcs, "gvisor-procs", 0, "GOMAXPROCS for the gVisor server; 0 leaves Go's default")
	fs.IntVar(&o.txqlen, "txqueuelen", 4096, "transmit queue length of every TUN (utcp, gVisor and the raw ceiling alike): utcp serve's default; 0 for the kernel's 500")
	fs.StringVar(&o.cc, "cc", "cubic", "congestion control of the kernel's TCP sockets (the load clients and the kernel reference), set on each socket (TCP_CONGESTION): Linux's default cubic; \"\" keeps the namespace default, which a new namespace inherits from the host")
	fs.BoolVar(&o.verbose, "v", false, "log server output and per-step details to stderr")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.queues < 1 || o.procs < 0 || o.gvProcs < 0 || o.txqlen < 0 {
		return nil, errors.New("--utcp-queues must be ≥1, --utcp-procs, --gvisor-procs and --txqueuelen ≥0")
	}
	if o.rounds < 1 || o.memRounds < 0 || o.duration <= 0 || o.idle < 0 || o.tw < 0 {
		return nil, errors.New("--rounds must be ≥1, --mem-rounds/--idle/--tw ≥0, --duration >0")
	}
	o.only = map[string]bool{}
	for _, t := range strings.Split(*only, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		ok := false
		for _, a := range allTargets {
			ok = ok || a == t
		}
		if !ok {
			return nil, fmt.Errorf("--only: unknown target %q (want %s)", t, strings.Join(allTargets, ","))
		}
		o.only[t] = true
	}
	return o, nil
}

func main() {
	var err error
	switch os.Getenv(envRole) {
	case "driver":
		err = driverMain(os.Args[1:])
	case "kernelserve":
		err = kernelServeMain(os.Args[1:])
	default:
		err = parentMain(os.Args[1:])
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// parentMain runs in the caller's namespace and never touches the network:
// it builds the binaries, then re-executes itself as the driver in a fresh
// network namespace (CLONE_NEWNET, what `unshare --net` does) and waits.
// The namespace, its TUN devices and veth pairs belong to the driver and
// its children and disappear with them, also on a crash or a kill.
func parentMain(args []string) error {
	o, err := parseOptions(args, os.Stderr)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, TUN devices)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("no /dev/net/tun: %v", err)
	}
	tmp, err := os.MkdirTemp("", "utcp-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	builds := map[string]string{"utcp": "./cmd/utcp", "gvisor": "./bench/gvisorserve"}
	for _, t := range []string{"utcp", "gvisor"} {
		if !o.only[t] && !o.only[t+"+off"] {
			continue
		}
		out := filepath.Join(tmp, t)
		fmt.Fprintf(os.Stderr, "bench: go build -o %s %s\n", out, builds[t])
		cmd := exec.Command("go", "build", "-o", out, builds[t])
		cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building %s: %v", builds[t], err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), envRole+"=driver", envTmp+"="+tmp)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the driver in a new network namespace: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// Ask the driver (our own child, by PID) to clean up, then insist.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			err = <-done
		}
	}
	if err != nil {
		return fmt.Errorf("driver: %v", err)
	}
	return nil
}

// moduleRoot is the directory of the utcp module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run from inside the utcp module (go run ./bench)")
	}
	return filepath.Dir(mod), nil
}
