package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"utcp/stack"
)

// The control protocol (see doc.go): one JSON object per line in each
// direction over a unix stream socket; every request gets exactly one
// response line, in order.

// request is one control request.
type request struct {
	Op string `json:"op"` // "ss", "nstat" or "hello"
}

// response is the answer to one request.
type response struct {
	OK       bool            `json:"ok"`
	Error    string          `json:"error,omitempty"`
	Server   serverInfo      `json:"server"`
	Conns    []wireConn      `json:"conns,omitempty"`
	Counters []stack.Counter `json:"counters,omitempty"`
}

// serverInfo identifies the serve process; nstat uses Start to notice a
// restarted server whose counters began again at zero.
type serverInfo struct {
	PID   int    `json:"pid"`
	Start int64  `json:"start"` // unix nanoseconds
	Tun   string `json:"tun"`
	Addr  string `json:"addr"`
}

// wireConn is one socket: State is the Linux name (ESTABLISHED, SYN_RECV,
// ...) for tools reading the JSON; Info is the stack's ConnInfo as is
// (durations in nanoseconds, addresses as "ip:port").
type wireConn struct {
	State string         `json:"state"`
	Info  stack.ConnInfo `json:"info"`
}

// maxLine bounds a request line; requests are tiny.
const maxLine = 64 << 10

// controlServer answers requests about one stack.
type controlServer struct {
	ln   *net.UnixListener
	st   *stack.Stack
	info serverInfo
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// listenControl creates the socket at path with mode 0600 (only root and
// the owner may inspect the stack). A stale socket left by a killed serve
// is replaced; a live one is an error.
func listenControl(path string, st *stack.Stack, info serverInfo) (*controlServer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %v", err)
	}
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s is in use by another utcp serve: stop it or pick another path with --control", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket: removing stale %s: %v", path, err)
		}
	}
	// The umask makes the socket 0600 from its creation, so there is no
	// moment when others could connect; Chmod repeats it for clarity.
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %v", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %v", err)
	}
	cs := &controlServer{ln: ln, st: st, info: info, conns: make(map[net.Conn]struct{})}
	cs.wg.Add(1)
	go cs.acceptLoop()
	return cs, nil
}

func (cs *controlServer) acceptLoop() {
	defer cs.wg.Done()
	for {
		c, err := cs.ln.Accept()
		if err != nil {
			return // closed
		}
		cs.mu.Lock()
		if cs.conns == nil {
			cs.mu.Unlock()
			c.Close()
			return
		}
		cs.conns[c] = struct{}{}
		cs.mu.Unlock()
		cs.wg.Add(1)
		go cs.serveConn(c)
	}
}

func (cs *controlServer) serveConn(c net.Conn) {
	defer cs.wg.Done()
	defer func() {
		cs.mu.Lock()
		delete(cs.conns, c)
		cs.mu.Unlock()
		c.Close()
	}()
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 4096), maxLine)
	enc := json.NewEncoder(c)
	for {
		// An idle client may not hold a goroutine forever.
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if !sc.Scan() {
			return
		}
		var req request
		resp := response{Server: cs.info}
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			resp.Error = "bad request: " + err.Error()
		} else {
			cs.answer(req, &resp)
		}
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := enc.Encode(&resp); err != nil {
			return
		}
	}
}

func (cs *controlServer) answer(req request, resp *response) {
	switch req.Op {
	case "hello":
		resp.OK = true
	case "ss":
		for _, ci := range cs.st.Connections() {
			resp.Conns = append(resp.Conns, wireConn{State: ci.State.String(), Info: ci})
		}
		resp.OK = true
	case "nstat":
		c := cs.st.Counters()
		resp.Counters = c.List()
		resp.OK = true
	default:
		resp.Error = fmt.Sprintf("unknown op %q (want hello, ss or nstat)", req.Op)
	}
}

// close stops accepting, ends open sessions and removes the socket file.
func (cs *controlServer) close() {
	cs.ln.Close() // unlinks the socket file
	cs.mu.Lock()
	for c := range cs.conns {
		c.Close()
	}
	cs.conns = nil
	cs.mu.Unlock()
	cs.wg.Wait()
}

// controlCall sends one request to the serve at path and returns its
// response, turning the usual failures into one line that says what to do.
func controlCall(path string, op string) (*response, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
			return nil, failf("no utcp serve answers on %s: is it running? (pick it with --tun NAME or --control PATH)", path)
		case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
			return nil, failf("permission denied on %s: the control socket is mode 0600, run as its owner or root", path)
		}
		return nil, failf("control socket %s: %v", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := json.NewEncoder(c).Encode(request{Op: op}); err != nil {
		return nil, failf("control socket %s: %v", path, err)
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, failf("control socket %s: %v", path, err)
		}
		return nil, failf("control socket %s: closed without an answer", path)
	}
	var resp response
	if err := json.Unmarshal(sc.Bytes(), &resp); err != nil {
		return nil, failf("control socket %s: bad answer: %v", path, err)
	}
	if !resp.OK {
		return nil, failf("control socket %s: %s", path, resp.Error)
	}
	return &resp, nil
}
