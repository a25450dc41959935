package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const labSynopsis = `usage: utcp lab [--log FILE] [serve flags] [-- COMMAND [ARG...]]

A one-command sandbox. lab creates a throwaway network namespace (and a
private mount namespace, so /run/utcp there is its own), brings lo up,
starts "utcp serve" inside it with the serve flags given, waits until the
serve is ready, and then opens an interactive shell ($SHELL, else /bin/sh)
inside the namespace, or runs COMMAND there and exits with its status.

Inside, 198.18.0.1 is the kernel (host side of utcp0) and 198.18.0.2 is
utcp; the kernel's "ss -tan" and "nstat" see only the lab, and "utcp ss" and
"utcp nstat" find the serve without flags. The command's environment has
UTCP_LAB=1, UTCP_LAB_SERVE_PID (the serve's pid) and UTCP_LAB_LOG (the
serve's stdout and stderr, e.g. its --trace lines); the directory of this
utcp binary comes first in PATH.

On exit, on SIGINT, SIGTERM or SIGHUP, lab ends the command (SIGHUP to a
shell, the same signal to a COMMAND; SIGKILL after 3 s), stops the serve by
its pid (SIGTERM; SIGKILL after 3 s) and leaves nothing behind: the
namespace disappears with its last process and the log is removed unless
--log named it. Exit status: COMMAND's (128+N if signal N ended it), 130
after SIGINT, 1 if the sandbox could not be set up. Needs root
(CAP_SYS_ADMIN and CAP_NET_ADMIN).

  utcp lab --hold 5000 --stall 5001 --backlog 2
  utcp lab --delayed-ack 200ms -- sh -c 'curl -s 198.18.0.2/bytes/5; utcp nstat'

From another terminal: nsenter -t SERVE_PID -n -m (the pid is printed).

lab flags:
  --log FILE   keep the serve's output in FILE (default: a temporary file,
               removed on exit)

serve flags (everything before "--" except --log goes to utcp serve):
`

// labInnerEnv marks the re-executed lab process that runs inside the new
// namespaces; its value is the outer process's pid.
const labInnerEnv = "UTCP_LAB_INNER"

const (
	labReadyTimeout = 15 * time.Second // serve up and listening
	labGrace        = 3 * time.Second  // between the polite signal and SIGKILL
)

// labArgs is the command line split into its parts.
type labArgs struct {
	log   string   // --log FILE, or ""
	serve []string // flags for utcp serve
	cmd   []string // COMMAND ARGS, or nil for a shell
	help  bool
}

// parseLabArgs splits at the first "--" and takes --log out of the serve
// flags; the serve validates the rest itself.
func parseLabArgs(args []string) (labArgs, error) {
	var la labArgs
	head := args
	if i := indexOf(args, "--"); i >= 0 {
		head, la.cmd = args[:i], args[i+1:]
		if len(la.cmd) == 0 {
			return la, &exitError{code: 2, msg: `lab: "--" must be followed by a COMMAND (see utcp lab -h)`}
		}
	}
	for i := 0; i < len(head); i++ {
		a := head[i]
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case !strings.HasPrefix(a, "-"):
			la.serve = append(la.serve, a)
		case name == "h" || name == "help":
			la.help = true
		case name == "log":
			if !hasVal {
				if i+1 >= len(head) {
					return la, &exitError{code: 2, msg: "lab: flag needs an argument: -log (see utcp lab -h)"}
				}
				i++
				val = head[i]
			}
			la.log = val
		default:
			la.serve = append(la.serve, a)
		}
	}
	return la, nil
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func cmdLab(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	la, err := parseLabArgs(args)
	if err != nil {
		return err
	}
	if la.help {
		fmt.Fprint(stdout, labSynopsis)
		// The serve's own flag list, so lab -h is complete.
		var b bytes.Buffer
		cmdServe([]string{"-h"}, &b, io.Discard)
		if _, flags, ok := strings.Cut(b.String(), "\nflags:\n"); ok {
			fmt.Fprint(stdout, flags)
		}
		return &exitError{code: 0}
	}
	if os.Getenv(labInnerEnv) != "" {
		return labInner(la, stdin, stdout, stderr)
	}
	return labOuter(args, stdin, stdout, stderr)
}

// labOuter re-executes this binary in a new network and mount namespace
// and relays signals to it. The namespaces exist at clone time, so the
// whole inner process (every thread) is inside them; nothing here touches
// the caller's network.
func labOuter(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return failf("lab: finding this binary to re-execute: %v", err)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	cmd := exec.Command(exe, append([]string{"lab"}, args...)...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", labInnerEnv, os.Getpid()))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS,
		// If we are killed outright, the inner process still cleans up.
		Pdeathsig: syscall.SIGTERM,
	}
	// Pdeathsig fires when the forking thread exits: keep it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return failf("lab: creating a network namespace needs root (CAP_SYS_ADMIN)")
		}
		return failf("lab: starting the sandbox: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var got os.Signal
	for {
		select {
		case s := <-sigs:
			// A terminal's Ctrl-C reaches the inner process too; a
			// second copy is harmless, and a signal sent to this pid
			// alone must still end the lab.
			got = s
			cmd.Process.Signal(s)
		case err := <-done:
			code := exitCode(err)
			if code < 0 {
				return failf("lab: %v", err)
			}
			if got == syscall.SIGINT && code == 0 {
				code = 130
			}
			return &exitError{code: code}
		}
	}
}

// exitCode turns Wait's result into a shell-style status: the exit code,
// or 128+N for death by signal N; -1 if the process never ran.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return -1
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ee.ExitCode()
}

// labInner runs inside the fresh namespaces: lo up, private /run/utcp,
// serve, then the command; it stops everything it started, by pid.
func labInner(la labArgs, stdin io.Reader, stdout, stderr io.Writer) error {
	// Children get Pdeathsig; it fires when the thread that forked them
	// exits, so every fork happens on this locked thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	exe, err := os.Executable()
	if err != nil {
		return failf("lab: %v", err)
	}
	if err := linkUp("lo"); err != nil {
		return failf("lab: bringing lo up in the new namespace: %v", err)
	}
	if err := privateRunDir(); err != nil {
		// Not fatal: serve still works, but its default control socket
		// is shared with the host's /run/utcp.
		fmt.Fprintf(stderr, "utcp lab: warning: no private /run/utcp (%v); a serve outside the lab may hold the same control socket\n", err)
	}

	var logF *os.File
	if la.log != "" {
		logF, err = os.OpenFile(la.log, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	} else {
		logF, err = os.CreateTemp("", "utcp-lab-*.log")
	}
	if err != nil {
		return failf("lab: serve log: %v", err)
	}
	logPath := logF.Name()
	defer func() {
		logF.Close()
		if la.log == "" {
			os.Remove(logPath)
		}
	}()

	// serve, in its own process group so a terminal's Ctrl-C does not
	// reach it before the command has ended: we stop it last, by pid.
	ready := &readyWriter{w: logF, marker: []byte("utcp: serving as "), ready: make(chan struct{})}
	serve := exec.Command(exe, append([]string{"serve"}, la.serve...)...)
	serve.Stdout, serve.Stderr = ready, ready
	serve.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := serve.Start(); err != nil {
		return failf("lab: starting utcp serve: %v", err)
	}
	serveDone := make(chan error, 1)
	go func() { serveDone <- serve.Wait() }()
	stopServe := func() {
		serve.Process.Signal(syscall.SIGTERM)
		select {
		case <-serveDone:
		case <-time.After(labGrace):
			serve.Process.Kill()
			<-serveDone
		}
	}

	select {
	case <-ready.ready:
	case err := <-serveDone:
		// The serve's own one-line error says what was wrong.
		io.WriteString(stderr, ready.text())
		return &exitError{code: max(exitCode(err), 1)}
	case <-time.After(labReadyTimeout):
		stopServe()
		return failf("lab: utcp serve not ready after %v; its output: %s", labReadyTimeout, ready.text())
	case s := <-sigs:
		stopServe()
		return &exitError{code: 128 + int(s.(syscall.Signal))}
	}

	shell := len(la.cmd) == 0
	argv := la.cmd
	if shell {
		sh := os.Getenv("SHELL")
		if sh == "" {
			sh = "/bin/sh"
		}
		argv = []string{sh}
		fmt.Fprintf(stderr, "utcp lab: utcp serve (pid %d) is up as 198.18.0.2 (kernel side 198.18.0.1) in a new network namespace.\n"+
			"utcp lab: try curl 198.18.0.2/bytes/5, nc 198.18.0.2 7, ss -tan, utcp ss -a, utcp nstat; log %s\n"+
			"utcp lab: another terminal: nsenter -t %d -n -m; exit the shell to remove everything.\n",
			serve.Process.Pid, logPath, serve.Process.Pid)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		stopServe()
		return &exitError{code: 127, msg: fmt.Sprintf("lab: %v", err)}
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.Env = labEnv(exe, serve.Process.Pid, logPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGHUP}
	if err := cmd.Start(); err != nil {
		stopServe()
		return &exitError{code: 126, msg: fmt.Sprintf("lab: %v", err)}
	}
	cmdDone := make(chan error, 1)
	go func() { cmdDone <- cmd.Wait() }()

	var got os.Signal
	var kill <-chan time.Time
	var code int
wait:
	for {
		select {
		case s := <-sigs:
			if got == nil {
				got = s
				// An interactive shell ignores SIGINT and SIGTERM; a
				// hang-up is what ends it, as when a terminal closes.
				fwd := s
				if shell {
					fwd = syscall.SIGHUP
				}
				cmd.Process.Signal(fwd)
				kill = time.After(labGrace)
			}
		case <-kill:
			cmd.Process.Kill()
		case err := <-cmdDone:
			code = exitCode(err)
			break wait
		case err := <-serveDone:
			// Keep the command running (the user may be reading the
			// log), but say so once.
			fmt.Fprintf(stderr, "utcp lab: utcp serve exited (%v) while the command runs; see %s\n", err, logPath)
			serveDone = nil
		}
	}
	if serveDone != nil {
		stopServe()
	}
	if got == syscall.SIGINT {
		code = 130
	} else if got != nil && code == 0 {
		code = 128 + int(got.(syscall.Signal))
	}
	return &exitError{code: code}
}

// labEnv is the command's environment: the caller's, the lab variables,
// and PATH starting with this binary's directory so "utcp ss" just works.
func labEnv(exe string, servePID int, logPath string) []string {
	env := os.Environ()
	path := os.Getenv("PATH")
	if filepath.Base(exe) == "utcp" {
		path = filepath.Dir(exe) + string(os.PathListSeparator) + path
	}
	out := env[:0:0]
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == labInnerEnv || k == "PATH" {
			continue
		}
		out = append(out, kv)
	}
	return append(out, "PATH="+path, "UTCP_LAB=1",
		fmt.Sprintf("UTCP_LAB_SERVE_PID=%d", servePID), "UTCP_LAB_LOG="+logPath)
}

// readyWriter copies the serve's output to the log and closes ready when
// the marker line (printed once every listener is up) has gone by.
type readyWriter struct {
	w      io.Writer
	marker []byte
	ready  chan struct{}

	mu   sync.Mutex
	seen bytes.Buffer // output up to readiness, for error messages
	done bool
}

func (r *readyWriter) Write(p []byte) (int, error) {
	r.mu.Lock()
	if !r.done {
		r.seen.Write(p)
		if bytes.Contains(r.seen.Bytes(), r.marker) {
			r.done = true
			close(r.ready)
		}
	}
	r.mu.Unlock()
	return r.w.Write(p)
}

func (r *readyWriter) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen.String()
}

// linkUp sets IFF_UP on an interface: a new namespace starts with lo down.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("SIOCGIFFLAGS", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return os.NewSyscallError("SIOCSIFFLAGS", unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr))
}

// privateRunDir gives the lab its own empty /run/utcp, so the serve's
// default control socket never meets another serve's and "utcp ss" finds
// it without flags. Mounts are made private first so nothing propagates
// back to the host's mount namespace.
func privateRunDir() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	const dir = "/run/utcp"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=1m"); err != nil {
		return fmt.Errorf("mounting tmpfs on %s: %w", dir, err)
	}
	return nil
}
