package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The load: kernel sockets in the driver's namespace against 198.18.0.2.
// Every loop is bounded by a deadline and every I/O by a socket deadline.

func dialStack(port uint16, src netip.Addr, timeout time.Duration) (*net.TCPConn, error) {
	return dialFrom(port, src, 0, timeout)
}

// dialFrom dials from src:sport (0: the kernel picks).
func dialFrom(port uint16, src netip.Addr, sport uint16, timeout time.Duration) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: timeout, Control: ccControl}
	if src.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice(), Port: int(sport)}
	}
	c, err := d.Dial("tcp4", netip.AddrPortFrom(stackAddr, port).String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// upload writes to discard for d, half-closes and waits for the server's
// FIN, so every byte counted has been received by the stack under test.
// It returns MB/s (10^6 bytes) and the bytes moved.
func upload(ctx context.Context, d time.Duration) (float64, int64, error) {
	c, err := dialStack(9, netip.Addr{}, 5*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	buf := make([]byte, 256<<10)
	start := time.Now()
	end := start.Add(d)
	var n int64
	c.SetWriteDeadline(end)
	for time.Now().Before(end) && ctx.Err() == nil {
		k, err := c.Write(buf)
		n += int64(k)
		if err != nil {
			if errors.Is(err, syscall.ETIMEDOUT) || isTimeout(err) {
				break
			}
			return 0, n, err
		}
	}
	c.SetWriteDeadline(time.Time{})
	if err := c.CloseWrite(); err != nil {
		return 0, n, err
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		return 0, n, fmt.Errorf("waiting for discard's FIN: %v", err)
	}
	el := time.Since(start).Seconds()
	return float64(n) / el / 1e6, n, nil
}

// download reads chargen for d and returns MB/s and the bytes moved.
func download(ctx context.Context, d time.Duration) (float64, int64, error) {
	c, err := dialStack(19, netip.Addr{}, 5*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	buf := make([]byte, 256<<10)
	start := time.Now()
	c.SetReadDeadline(start.Add(d))
	var n int64
	for ctx.Err() == nil {
		k, err := c.Read(buf)
		n += int64(k)
		if err != nil {
			if isTimeout(err) {
				break
			}
			return 0, n, err
		}
	}
	el := time.Since(start).Seconds()
	c.SetLinger(0) // unread data would reset anyway; do not linger
	return float64(n) / el / 1e6, n, nil
}

// echoRTT does 1-byte round trips to echo for d (at most 100,000) and
// returns p50 and p99 in microseconds.
func echoRTT(ctx context.Context, d time.Duration) (p50, p99 float64, err error) {
	c, err := dialStack(7, netip.Addr{}, 5*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	c.SetNoDelay(true)
	b := []byte{'x'}
	var lat []float64
	end := time.Now().Add(d)
	c.SetDeadline(end.Add(5 * time.Second))
	for time.Now().Before(end) && len(lat) < 100000 && ctx.Err() == nil {
		t0 := time.Now()
		if _, err := c.Write(b); err != nil {
			return 0, 0, err
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return 0, 0, err
		}
		lat = append(lat, float64(time.Since(t0).Nanoseconds())/1e3)
	}
	if len(lat) == 0 {
		return 0, 0, errors.New("no round trips")
	}
	slices.Sort(lat)
	return quantile(lat, 0.50), quantile(lat, 0.99), nil
}

const httpClose = "GET / HTTP/1.1\r\nHost: 198.18.0.2\r\nConnection: close\r\n\r\n"

// httpOnce does one HTTP/1.1 request with Connection: close on a new
// connection and reads to EOF: the server closes first.
func httpOnce(src netip.Addr, sport uint16, buf []byte) error {
	c, err := dialFrom(80, src, sport, 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, httpClose); err != nil {
		return err
	}
	got := 0
	for {
		k, err := c.Read(buf)
		got += k
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if got < 12 || string(buf[:9]) != "HTTP/1.1 " {
		return fmt.Errorf("short or odd HTTP response (%d bytes)", got)
	}
	return nil
}

// httpCPS runs conc clients doing Connection: close requests for d and
// returns completed connections per second and the number of failures.
func httpCPS(ctx context.Context, d time.Duration, conc int) (float64, int64, error) {
	var ok, bad atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			buf := make([]byte, 4096)
			src := hostAddr
			if i > 0 {
				src = extraSrcs[i%len(extraSrcs)]
			}
			for time.Now().Before(end) && ctx.Err() == nil {
				if err := httpOnce(src, 0, buf); err != nil {
					bad.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				ok.Add(1)
			}
		}(i)
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	if ok.Load() == 0 {
		return 0, bad.Load(), fmt.Errorf("no request completed: %v", firstErr.Load())
	}
	return float64(ok.Load()) / el, bad.Load(), nil
}

// openIdle opens n connections to the hold service, spreading them over
// the source addresses, with a few dialers in parallel. The caller closes
// them with closeAll.
func openIdle(ctx context.Context, n int, limit time.Duration) ([]*net.TCPConn, error) {
	conns := make([]*net.TCPConn, n)
	var next atomic.Int64
	var firstErr atomic.Value
	end := time.Now().Add(limit)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(end) {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := dialStack(holdPort, extraSrcs[i%len(extraSrcs)], 5*time.Second)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	got := conns[:0]
	for _, c := range conns {
		if c != nil {
			got = append(got, c)
		}
	}
	if len(got) < n {
		return got, fmt.Errorf("opened %d of %d idle connections: %v", len(got), n, firstErr.Load())
	}
	return got, nil
}

// closeAll resets the connections (SO_LINGER 0), so their ports are free
// at once for the next round instead of waiting in FIN_WAIT2.
func closeAll(conns []*net.TCPConn) {
	for _, c := range conns {
		c.SetLinger(0)
		c.Close()
	}
}

// makeTimeWait has the server close first n times (HTTP Connection: close
// from 32 clients over 9 source addresses) within limit; it returns how
// many requests completed.
func makeTimeWait(ctx context.Context, n int, limit time.Duration) (int64, error) {
	if max := 9 * (32768 - 10000); n > max {
		n = max // distinct (source, port) pairs below the ephemeral range
	}
	var ok, bad, next atomic.Int64
	var firstErr atomic.Value
	end := time.Now().Add(limit)
	srcs := append([]netip.Addr{hostAddr}, extraSrcs...)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for ctx.Err() == nil && time.Now().Before(end) && bad.Load() < 1000 {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				// A distinct 4-tuple per request: were a port reused,
				// the new SYN would take over the server's TIME_WAIT
				// entry (RFC 6191) and the count would fall short.
				// Ports 10000-21111 lie below the ephemeral range.
				src, sport := srcs[i%int64(len(srcs))], uint16(10000+i/int64(len(srcs)))
				if err := httpOnce(src, sport, buf); err != nil {
					bad.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if bad.Load() > 0 {
		return ok.Load(), fmt.Errorf("%d requests failed (first: %v)", bad.Load(), firstErr.Load())
	}
	return ok.Load(), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// quantile of sorted xs (nearest rank).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	i := int(q*float64(len(xs))+0.5) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}
