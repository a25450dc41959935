package main

import (
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	runtimepprof "runtime/pprof"
	"time"
)

// startProfiling honours --cpuprofile (a CPU profile of the whole run,
// written when the command stops) and --pprof (net/http/pprof served on a
// unix socket that only the owner may open), so anyone can see where the
// stack's time goes. The returned stop function is safe to call once.
func (n *netFlags) startProfiling() (stop func(), err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	if n.cpuprofile != "" {
		f, err := os.Create(n.cpuprofile)
		if err != nil {
			return stop, failf("--cpuprofile: %v", err)
		}
		if err := runtimepprof.StartCPUProfile(f); err != nil {
			f.Close()
			return stop, failf("--cpuprofile: %v", err)
		}
		stops = append(stops, func() {
			runtimepprof.StopCPUProfile()
			f.Close()
		})
	}
	if n.pprof != "" {
		os.Remove(n.pprof)
		l, err := net.Listen("unix", n.pprof)
		if err != nil {
			stop()
			return func() {}, failf("--pprof: %v", err)
		}
		if err := os.Chmod(n.pprof, 0o600); err != nil {
			l.Close()
			stop()
			return func() {}, failf("--pprof: %v", err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", httppprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(l)
		stops = append(stops, func() {
			srv.Close()
			os.Remove(n.pprof)
		})
	}
	return stop, nil
}
