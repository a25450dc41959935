package main

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

	"utcp/stack"
)

// acceptLoop runs handle on every accepted connection in its own
// goroutine until the listener closes. Handlers run outside s.wg: the
// stack's Close resets their connections, which ends them.
func acceptLoop(ln *stack.Listener, handle func(*stack.Conn)) {
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. a deadline; keep serving
			continue
		}
		go handle(c)
	}
}

// echo sends back everything it receives (RFC 862) and closes its side
// once the peer's FIN has arrived and everything before it is echoed.
func (s *services) echo(ln *stack.Listener) {
	acceptLoop(ln, func(c *stack.Conn) {
		defer c.Close()
		io.Copy(c, c)
	})
}

// discard throws away everything it receives (RFC 863) and closes after
// the peer's FIN.
func (s *services) discard(ln *stack.Listener) {
	acceptLoop(ln, func(c *stack.Conn) {
		defer c.Close()
		io.Copy(io.Discard, c)
	})
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

// chargenPattern is one full period (95 lines) of the pattern, so the
// writer can hand the stack large writes.
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
func (s *services) chargen(ln *stack.Listener) {
	acceptLoop(ln, func(c *stack.Conn) {
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
	})
}

// hold accepts and then never reads, writes or closes: a peer's FIN
// leaves the connection in CLOSE_WAIT and unread data closes the window.
// The connections stay referenced so nothing collects them.
func (s *services) hold(ln *stack.Listener) {
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		s.held = append(s.held, c)
		s.mu.Unlock()
	}
}

// maxBytes bounds GET /bytes/N so one request cannot run for ever.
const maxBytes = 1 << 34

// http serves HTTP/1.1 with net/http on the utcp listener. net/http
// already closes first after a "Connection: close" request.
func (s *services) http(ln *stack.Listener) {
	srv := &http.Server{
		Handler:           httpHandler(),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          nil,
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	srv.Serve(ln)
}

func httpHandler() http.Handler {
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
