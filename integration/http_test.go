package integration

// net/http over utcp on both ends: the server's net.Listener is a
// *stack.Listener and the client's Transport dials with Stack.DialContext.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"utcp/stack"
	"utcp/tun/tuntest"
)

// newUTCPPair joins two utcp stacks (198.18.0.1 and 198.18.0.2) with an
// in-memory pipe, on real time.
func newUTCPPair(t testing.TB) (client, server *stack.Stack) {
	t.Helper()
	la, lb := tuntest.NewPipe(1500, 4096)
	var err error
	client, err = stack.New(stack.Config{Link: la, Addr: GVisorAddr})
	if err != nil {
		t.Fatal(err)
	}
	server, err = stack.New(stack.Config{Link: lb, Addr: utcpAddr})
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

func TestHTTPOverUTCP(t *testing.T) {
	cs, ss := newUTCPPair(t)
	ln, err := ss.Listen(80, 64)
	if err != nil {
		t.Fatal(err)
	}
	big := randomBytes(1<<20, 9)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.RemoteAddr)
	})
	mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(big)
	})
	mux.HandleFunc("POST /sum", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	tr := &http.Transport{DialContext: cs.DialContext, MaxIdleConnsPerHost: 2}
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	defer tr.CloseIdleConnections()
	base := "http://" + utcpAddr.String() + ":80"

	get := func(path string) []byte {
		t.Helper()
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status %d, %v", path, resp.StatusCode, err)
		}
		return body
	}

	body := get("/hello")
	if !bytes.HasPrefix(body, []byte("hello 198.18.0.1:")) {
		t.Fatalf("GET /hello = %q: the server did not see the client's utcp address", body)
	}
	for i := 0; i < 3; i++ { // keep-alive reuses the connection
		if b := get("/big"); !bytes.Equal(b, big) {
			t.Fatalf("GET /big #%d: %d bytes, not the 1 MiB served", i, len(b))
		}
	}
	resp, err := client.Post(base+"/sum", "application/octet-stream", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(big)
	if want := fmt.Sprintf("%d %s", len(big), hex.EncodeToString(sum[:])); string(got) != want {
		t.Fatalf("POST /sum = %q, want %q", got, want)
	}
	if n := cs.Counters().ActiveOpens; n < 1 || n > 2 {
		t.Fatalf("client ActiveOpens %d: keep-alive should reuse one or two connections", n)
	}

	tr.CloseIdleConnections()
	srv.Close() // closes the utcp listener
	select {
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
}
