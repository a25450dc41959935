// Package svc holds the services of `utcp serve` over any net.Listener:
// echo (RFC 862), discard (RFC 863), chargen (RFC 864), an HTTP/1.1
// server (GET /, GET /bytes/N, POST /sha256) and the lab services hold and
// stall. The bench serves the same code on gVisor's netstack and on
// kernel sockets, so every target answers the load byte for byte alike.
//
// Behaviour the load relies on:
//   - discard and echo close after the peer's FIN (echo once everything
//     before it is sent back); chargen streams until the peer closes or
//     resets;
//   - http closes first after a "Connection: close" request (net/http);
//   - hold accepts, then never reads, writes or closes: the peer's FIN
//     leaves the connection in CLOSE_WAIT and unread data closes the
//     window. Its connections stay referenced, so nothing collects them,
//     until the process or the stack beneath ends them;
//   - stall listens and never accepts: the accept queue fills and then
//     overflows (ListenOverflows).
//
// Every accepted connection is served in a goroutine of its own; a
// handler ends when its peer closes or resets, or when the stack closes.
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

// Server runs services on the listeners it is given.
type Server struct {
	wg sync.WaitGroup // accept loops and http servers, not handlers

	mu     sync.Mutex
	closed bool
	lns    []net.Listener
	srvs   []*http.Server
	held   []net.Conn
}

// Serve starts service name on ln in a goroutine of its own.
func (s *Server) Serve(name string, ln net.Listener) error {
	var handle func(net.Conn)
	switch name {
	case "echo":
		handle = echo
	case "discard":
		handle = discard
	case "chargen":
		handle = chargen
	case "hold":
		handle = s.hold
	case "stall":
		// Only kept, so Close closes it.
		if !s.track(ln, nil) {
			return fmt.Errorf("svc: serve %s: server closed", name)
		}
		return nil
	case "http":
		srv := &http.Server{Handler: Handler(), ReadHeaderTimeout: 30 * time.Second}
		if !s.track(ln, srv) {
			return fmt.Errorf("svc: serve %s: server closed", name)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			srv.Serve(ln)
		}()
		return nil
	default:
		return fmt.Errorf("svc: unknown service %q", name)
	}
	if !s.track(ln, nil) {
		return fmt.Errorf("svc: serve %s: server closed", name)
	}
	// hold only files the connection away: done in the accept loop, it
	// costs no goroutine per connection (the idle-RSS figure holds 10,000).
	inline := name == "hold"
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.acceptLoop(ln, handle, inline)
	}()
	return nil
}

func (s *Server) track(ln net.Listener, srv *http.Server) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.lns = append(s.lns, ln)
	if srv != nil {
		s.srvs = append(s.srvs, srv)
	}
	return true
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// acceptLoop runs handle on every accepted connection, in its own
// goroutine unless inline, until the listener closes. Other errors (a
// deadline, or gVisor's own error for a closed listener) pause it briefly
// rather than spin.
func (s *Server) acceptLoop(ln net.Listener, handle func(net.Conn), inline bool) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.isClosed() {
				return
			}
			time.Sleep(10 * time.Millisecond)
			if s.isClosed() {
				return
			}
			continue
		}
		if inline {
			handle(c)
		} else {
			go handle(c)
		}
	}
}

// Held is how many connections hold keeps.
func (s *Server) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

// Close closes the listeners and the HTTP servers (and with them their
// connections); the other services' connections end with their peers or
// with the stack. Held connections are left as they are, still referenced.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	lns, srvs := s.lns, s.srvs
	s.lns, s.srvs = nil, nil
	s.mu.Unlock()
	for _, srv := range srvs {
		srv.Close()
	}
	for _, ln := range lns {
		ln.Close()
	}
}

// Wait waits up to d for the accept loops and HTTP servers to return after
// Close, and reports whether they did.
func (s *Server) Wait(d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// echo sends back everything it receives (RFC 862) and closes its side
// once the peer's FIN has arrived and everything before it is echoed.
// io.Copy uses the connection's own WriteTo when it has one (utcp's does).
func echo(c net.Conn) {
	defer c.Close()
	io.Copy(c, c)
}

// discard throws away everything it receives (RFC 863) and closes after
// the peer's FIN.
func discard(c net.Conn) {
	defer c.Close()
	io.Copy(io.Discard, c)
}

// chargenLine returns line i of the RFC 864 pattern: 72 of the 95
// printable ASCII characters (space to '~', cyclically), starting one
// further along each line, then CR LF. Line 0 starts with '!' as in the
// RFC's example ("!\"#$%&'()*+,-./0123456789:;<=>?@ABC...abcdefgh").
func chargenLine(i int) []byte {
	const first, n, width, offset = ' ', 95, 72, 1
	b := make([]byte, 0, width+2)
	for k := 0; k < width; k++ {
		b = append(b, byte(first+(offset+i+k)%n))
	}
	return append(b, '\r', '\n')
}

// chargenPattern is one full period (95 lines) of the pattern, so each
// Write hands the stack a large buffer.
var chargenPattern = func() []byte {
	var b []byte
	for i := 0; i < 95; i++ {
		b = append(b, chargenLine(i)...)
	}
	return b
}()

// chargen writes the RFC 864 pattern until the peer closes or resets.
// Input is read and discarded (RFC 864: "data received is thrown away");
// the peer's FIN ends the service, as the RFC's "until the user closes".
func chargen(c net.Conn) {
	defer c.Close()
	go func() {
		io.Copy(io.Discard, c)
		// Peer's FIN or a reset: stop writing. Close wakes a Write
		// blocked on a full send buffer.
		c.Close()
	}()
	for {
		if _, err := c.Write(chargenPattern); err != nil {
			return
		}
	}
}

// hold keeps c referenced and never touches it again.
func (s *Server) hold(c net.Conn) {
	s.mu.Lock()
	s.held = append(s.held, c)
	s.mu.Unlock()
}

// maxBytes bounds GET /bytes/N so one request cannot run for ever.
const maxBytes = 1 << 34

// Handler is the HTTP service: GET / (a small page), GET /bytes/N (N bytes
// of a-z) and POST /sha256 (the lowercase hex SHA-256 of the body).
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, indexPage)
	})
	mux.HandleFunc("GET /bytes/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.PathValue("n"), 10, 64)
		if err != nil || n < 0 || n > maxBytes {
			http.Error(w, fmt.Sprintf("bad length %q: want 0 to %d", r.PathValue("n"), int64(maxBytes)), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		buf := bytesChunk()
		for n > 0 {
			k := min(n, int64(len(buf)))
			if _, err := w.Write(buf[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	mux.HandleFunc("POST /sha256", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		if _, err := io.Copy(h, r.Body); err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, hex.EncodeToString(h.Sum(nil)))
	})
	return mux
}

var bytesChunk = sync.OnceValue(func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
})

const indexPage = `<!doctype html>
<html><head><title>utcp</title></head>
<body><h1>utcp</h1>
<p>Served by a userspace TCP/IPv4 stack over a TUN device.</p>
<ul>
<li><a href="/bytes/1000">GET /bytes/N</a>: N bytes</li>
<li>POST /sha256: the lowercase hex SHA-256 of the body</li>
</ul></body></html>
`
