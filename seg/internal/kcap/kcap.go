// Scripted capture of Linux packets across two namespaces; see doc.go.

package kcap

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Packet is one IPv4 packet as it crossed the relay.
type Packet struct {
	FromA bool // sent by namespace A's kernel (198.18.0.1)
	Data  []byte
}

// Addresses used inside the namespaces (RFC 2544 benchmarking range).
var (
	AddrA = [4]byte{198, 18, 0, 1}
	AddrB = [4]byte{198, 18, 0, 2}
)

// Ports and payloads of the scripted exchange.
const (
	ServerPort  = 80
	ClosedPort  = 81
	ClientPort  = 40000 // first connection
	RefusedPort = 40001 // local port of the refused connection
	AbortPort   = 40002 // local port of the aborted connection
	Hello       = "hello\n"
	World       = "world\n"
	PingID      = 0x1234
	PingSeq     = 1
	PingData    = "utcp-ping"
)

// nsThread runs functions on one OS thread that lives in its own network
// namespace. Sockets created there belong to that namespace and may then be
// used from any goroutine.
type nsThread struct{ work chan func() }

func newNS() (*nsThread, error) {
	n := &nsThread{work: make(chan func())}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: when this goroutine returns the runtime
		// destroys the thread, and with it the namespace reference.
		runtime.LockOSThread()
		if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			return
		}
		errc <- nil
		for f := range n.work {
			f()
		}
	}()
	if err := <-errc; err != nil {
		return nil, err
	}
	return n, nil
}

func (n *nsThread) do(f func()) {
	done := make(chan struct{})
	n.work <- func() { f(); close(done) }
	<-done
}

func (n *nsThread) close() { close(n.work) }

type ifreqFlags struct {
	Name  [16]byte
	Flags uint16
	_     [22]byte
}

type ifreqAddr struct {
	Name   [16]byte
	Family uint16
	Port   uint16
	Addr   [4]byte
	_      [8]byte
	_      [8]byte
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), req, uintptr(arg)); e != 0 {
		return e
	}
	return nil
}

const tunSetIff = 0x400454ca // TUNSETIFF

// openTUN creates TUN name in the calling thread's namespace, gives it
// addr/24 and brings it up. Must run on an nsThread.
func openTUN(name string, addr [4]byte) (*os.File, error) {
	fd, err := syscall.Open("/dev/net/tun", syscall.O_RDWR|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var fr ifreqFlags
	copy(fr.Name[:], name)
	fr.Flags = syscall.IFF_TUN | syscall.IFF_NO_PI
	if err := ioctl(fd, tunSetIff, unsafe.Pointer(&fr)); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF: %w", err)
	}
	s, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	defer syscall.Close(s)
	var ar ifreqAddr
	copy(ar.Name[:], name)
	ar.Family = syscall.AF_INET
	ar.Addr = addr
	if err := ioctl(s, syscall.SIOCSIFADDR, unsafe.Pointer(&ar)); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("SIOCSIFADDR: %w", err)
	}
	ar.Addr = [4]byte{255, 255, 255, 0}
	if err := ioctl(s, syscall.SIOCSIFNETMASK, unsafe.Pointer(&ar)); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("SIOCSIFNETMASK: %w", err)
	}
	fr = ifreqFlags{}
	copy(fr.Name[:], name)
	fr.Flags = syscall.IFF_UP | syscall.IFF_RUNNING
	if err := ioctl(s, syscall.SIOCSIFFLAGS, unsafe.Pointer(&fr)); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("SIOCSIFFLAGS: %w", err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

type recorder struct {
	mu   sync.Mutex
	pkts []Packet
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pkts)
}

// relay copies IPv4 packets from src to dst until src is closed. Anything
// else (IPv6 router solicitations and the like) is dropped.
func (r *recorder) relay(src, dst *os.File, fromA bool, wg *sync.WaitGroup) {
	defer wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if n < 20 || buf[0]>>4 != 4 {
			continue
		}
		p := append([]byte(nil), buf[:n]...)
		r.mu.Lock()
		r.pkts = append(r.pkts, Packet{FromA: fromA, Data: p})
		r.mu.Unlock()
		if _, err := dst.Write(p); err != nil {
			return
		}
	}
}

// settle waits until no packet has crossed the relay for quiet, at most
// for limit.
func (r *recorder) settle(quiet, limit time.Duration) {
	end := time.Now().Add(limit)
	last, since := r.count(), time.Now()
	for time.Now().Before(end) {
		time.Sleep(10 * time.Millisecond)
		if c := r.count(); c != last {
			last, since = c, time.Now()
		} else if time.Since(since) >= quiet {
			return
		}
	}
}

// Capture runs the scripted exchange and returns every IPv4 packet that
// crossed the relay, in order:
//
//  1. A connects from ClientPort to B:ServerPort (SYN, SYN-ACK, ACK);
//     A sends Hello, B answers World, A closes, then B closes.
//  2. A connects from RefusedPort to B:ClosedPort and is refused (SYN, RST-ACK).
//  3. A connects from AbortPort and aborts with SO_LINGER 0 (RST).
//  4. A sends one ICMP echo request (PingID, PingSeq, PingData); B's
//     kernel replies.
func Capture() ([]Packet, error) {
	nsA, err := newNS()
	if err != nil {
		return nil, err
	}
	defer nsA.close()
	nsB, err := newNS()
	if err != nil {
		return nil, err
	}
	defer nsB.close()

	var tunA, tunB *os.File
	nsA.do(func() { tunA, err = openTUN("kcapA", AddrA) })
	if err != nil {
		return nil, err
	}
	nsB.do(func() { tunB, err = openTUN("kcapB", AddrB) })
	if err != nil {
		tunA.Close()
		return nil, err
	}
	rec := &recorder{}
	var wg sync.WaitGroup
	wg.Add(2)
	go rec.relay(tunA, tunB, true, &wg)
	go rec.relay(tunB, tunA, false, &wg)
	defer func() {
		tunA.Close()
		tunB.Close()
		wg.Wait()
	}()

	if err := script(nsA, nsB, rec); err != nil {
		return nil, err
	}
	rec.settle(300*time.Millisecond, 3*time.Second)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]Packet(nil), rec.pkts...), nil
}

func script(nsA, nsB *nsThread, rec *recorder) error {
	const step = 3 * time.Second
	ipA, ipB := net.IP(AddrA[:]), net.IP(AddrB[:])
	var ln *net.TCPListener
	var err error
	nsB.do(func() {
		ln, err = net.ListenTCP("tcp4", &net.TCPAddr{IP: ipB, Port: ServerPort})
	})
	if err != nil {
		return err
	}
	defer ln.Close()
	ln.SetDeadline(time.Now().Add(4 * step))

	dial := func(lport, rport int) (c *net.TCPConn, err error) {
		nsA.do(func() {
			d := net.Dialer{Timeout: step, LocalAddr: &net.TCPAddr{IP: ipA, Port: lport}}
			var nc net.Conn
			if nc, err = d.Dial("tcp4", (&net.TCPAddr{IP: ipB, Port: rport}).String()); err == nil {
				c = nc.(*net.TCPConn)
			}
		})
		return c, err
	}

	// 1. A full connection with data both ways and an orderly close.
	cli, err := dial(ClientPort, ServerPort)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer cli.Close()
	srv, err := ln.AcceptTCP()
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	defer srv.Close()
	cli.SetDeadline(time.Now().Add(step))
	srv.SetDeadline(time.Now().Add(step))
	buf := make([]byte, 64)
	if _, err := cli.Write([]byte(Hello)); err != nil {
		return err
	}
	if _, err := io.ReadFull(srv, buf[:len(Hello)]); err != nil {
		return err
	}
	if _, err := srv.Write([]byte(World)); err != nil {
		return err
	}
	if _, err := io.ReadFull(cli, buf[:len(World)]); err != nil {
		return err
	}
	rec.settle(100*time.Millisecond, step) // let delayed ACKs go out
	cli.Close()
	if _, err := srv.Read(buf); err != io.EOF {
		return fmt.Errorf("server read after client FIN: %v", err)
	}
	srv.Close()
	rec.settle(100*time.Millisecond, step)

	// 2. Connection refused: SYN answered by RST-ACK (RFC 9293 §3.10.7.1).
	if c, err := dial(RefusedPort, ClosedPort); err == nil {
		c.Close()
		return errors.New("dial to closed port succeeded")
	}
	rec.settle(100*time.Millisecond, step)

	// 3. Abortive close: SO_LINGER 0 makes close send RST.
	ab, err := dial(AbortPort, ServerPort)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	as, err := ln.AcceptTCP()
	if err != nil {
		ab.Close()
		return err
	}
	defer as.Close()
	rec.settle(100*time.Millisecond, step)
	ab.SetLinger(0)
	ab.Close()
	rec.settle(100*time.Millisecond, step)

	// 4. ICMP echo via a raw socket in A; B's kernel answers.
	var fd int
	nsA.do(func() {
		fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.IPPROTO_ICMP)
	})
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	defer syscall.Close(fd)
	msg := []byte{8, 0, 0, 0, PingID >> 8, PingID & 0xff, 0, PingSeq}
	msg = append(msg, PingData...)
	cs := icmpChecksum(msg)
	msg[2], msg[3] = byte(cs>>8), byte(cs)
	if err := syscall.Sendto(fd, msg, 0, &syscall.SockaddrInet4{Addr: AddrB}); err != nil {
		return fmt.Errorf("sendto: %w", err)
	}
	return nil
}

// icmpChecksum is a plain RFC 1071 checksum, written independently of
// package seg so the capture does not depend on the code under test.
func icmpChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}
