package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// usage is the top-level help.
const usage = `usage: utcp <command> [flags] [args]

commands:
  serve   run the stack on a new TUN device with echo, discard, chargen and http services
  dial    active open from the stack to HOST:PORT, copying stdin and stdout like nc
  ss      list a running serve's sockets like ss -tan
  nstat   print a running serve's counters like nstat
  lab     sandbox: serve in a throwaway network namespace, then a shell or COMMAND there

Run "utcp <command> -h" for a command's flags.
`

// exitError carries an exit status; its message (if any) has already been
// shaped into one line for stderr.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// failf returns an error printed as one line, "utcp: ...", exit status 1.
func failf(format string, args ...any) error {
	return &exitError{code: 1, msg: fmt.Sprintf(format, args...)}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = cmdServe(rest, stdout, stderr)
	case "dial":
		err = cmdDial(rest, stdin, stdout, stderr)
	case "ss":
		err = cmdSS(rest, stdout)
	case "nstat":
		err = cmdNstat(rest, stdout)
	case "lab":
		err = cmdLab(rest, stdin, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "utcp: unknown command %q (commands: serve, dial, ss, nstat, lab; see utcp -h)\n", cmd)
		return 2
	}
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, oneLine("utcp: "+ee.msg))
		}
		return ee.code
	}
	fmt.Fprintln(stderr, oneLine("utcp: "+err.Error()))
	return 1
}

// oneLine keeps a message to a single line, as the contract promises.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// parseFlags parses a command's flags. -h prints the usage to stdout and
// ends with status 0; a bad flag gives one line and status 2, never the
// whole usage (the flag package's default) or a panic.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return &exitError{code: 0}
	default:
		return &exitError{code: 2, msg: fmt.Sprintf("%s: %v (see utcp %s -h)", fs.Name(), err, fs.Name())}
	}
}

// setUsage installs a usage function printing synopsis then the flags.
func setUsage(fs *flag.FlagSet, synopsis string) {
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprint(w, synopsis)
		fmt.Fprintln(w, "\nflags:")
		fs.PrintDefaults()
	}
}
