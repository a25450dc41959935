// Package svc holds the benchmark's services (echo, discard, chargen, http,
// hold) over any net.Listener, so the kernel reference server and the
// gVisor server behave like `utcp serve` byte for byte where it matters to
// the load: discard and echo close after the peer's FIN, chargen streams
// until the peer goes away, http answers GET /, GET /bytes/N and
// POST /sha256 and closes first on "Connection: close", hold accepts and
// then never reads, writes or closes.
//
// Invariants:
//   - Every accepted connection is served in its own goroutine; handlers
//     end when the peer closes or resets, or when Close is called.
//   - hold keeps its connections referenced (so nothing collects them)
//     until Close.
package svc

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Server runs the services on the listeners it is given.
type Server struct {
	mu   sync.Mutex
	lns  []net.Listener
	held []net.Conn
	srvs []*http.Server
}

// Serve starts service name ("echo", "discard", "chargen", "http", "hold")
// on ln in a new goroutine.
func (s *Server) Serve(name string, ln net.Listener) error {
	var handle func(net.Conn)
	switch name {
	case "echo":
		handle = func(c net.Conn) { defer c.Close(); io.Copy(c, c) }
	case "discard":
		handle = func(c net.Conn) { defer c.Close(); io.Copy(io.Discard, c) }
	case "chargen":
		handle = chargen
	case "hold":
		handle = func(c net.Conn) {
			s.mu.Lock()
			s.held = append(s.held, c)
			s.mu.Unlock()
		}
	case "http":
		srv := &http.Server{Handler: Handler(), ReadHeaderTimeout: 30 * time.Second}
		s.mu.Lock()
		s.srvs = append(s.srvs, srv)
		s.lns = append(s.lns, ln)
		s.mu.Unlock()
		go srv.Serve(ln)
		return nil
	default:
		return fmt.Errorf("svc: unknown service %q", name)
	}
	s.mu.Lock()
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				// gonet reports a closed listener with its own error;
				// back off briefly rather than spin.
				time.Sleep(10 * time.Millisecond)
				s.mu.Lock()
				closed := s.lns == nil
				s.mu.Unlock()
				if closed {
					return
				}
				continue
			}
			go handle(c)
		}
	}()
	return nil
}

// Held is how many connections hold keeps.
func (s *Server) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

// Close closes the listeners, the http servers and the held connections.
func (s *Server) Close() {
	s.mu.Lock()
	lns, held, srvs := s.lns, s.held, s.srvs
	s.lns, s.held, s.srvs = nil, nil, nil
	s.mu.Unlock()
	for _, srv := range srvs {
		srv.Close()
	}
	for _, ln := range lns {
		ln.Close()
	}
	for _, c := range held {
		c.Close()
	}
}

// pattern is one period (95 lines) of the RFC 864 chargen pattern, so each
// Write hands the stack a large buffer, as utcp serve does.
var pattern = func() []byte {
	var b []byte
	for i := 0; i < 95; i++ {
		for k := 0; k < 72; k++ {
			b = append(b, byte(' '+(1+i+k)%95))
		}
		b = append(b, '\r', '\n')
	}
	return b
}()

// chargen writes the pattern until the peer closes or resets; input is
// discarded (RFC 864) and the peer's FIN ends the service.
func chargen(c net.Conn) {
	defer c.Close()
	go func() {
		io.Copy(io.Discard, c)
		c.Close()
	}()
	for {
		if _, err := c.Write(pattern); err != nil {
			return
		}
	}
}

// maxBytes bounds GET /bytes/N, as utcp serve does.
const maxBytes = 1 << 34

var chunk = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}()

// Handler is the HTTP service: GET / (a small page), GET /bytes/N, POST /sha256.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!doctype html><title>bench</title><p>benchmark peer</p>\n")
	})
	mux.HandleFunc("GET /bytes/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.PathValue("n"), 10, 64)
		if err != nil || n < 0 || n > maxBytes {
			http.Error(w, "bad length", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		for n > 0 {
			k := min(n, int64(len(chunk)))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	mux.HandleFunc("POST /sha256", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		if _, err := io.Copy(h, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		io.WriteString(w, hex.EncodeToString(h.Sum(nil)))
	})
	return mux
}
