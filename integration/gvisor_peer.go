package integration

// The gVisor peer: a gVisor netstack host whose only NIC is a
// channel.Endpoint, bridged to utcp through a stack.Link.
//
// Invariants of this file:
//   - Packets cross the bridge as whole IPv4 datagrams, copied in both
//     directions: neither stack ever sees a buffer the other still owns
//     (the Link contract says WritePackets must not keep bufs; gVisor owns
//     the PacketBuffers it emits until we DecRef them).
//   - gVisor runs on real time (its own tcpip.Clock); it must not be used
//     inside a testing/synctest bubble.
//   - Close stops every goroutine this file starts before returning.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"utcp/tun/tuntest"
)

// GVisorAddr is the gVisor peer's default address (the "host side" of
// the test subnet 198.18.0.0/24; utcp takes 198.18.0.2).
var GVisorAddr = netip.MustParseAddr("198.18.0.1")

const gvisorNIC tcpip.NICID = 1

// GVisorConfig configures a GVisorPeer. Zero values pick the defaults
// beside each field.
type GVisorConfig struct {
	Addr     netip.Addr // default GVisorAddr
	MTU      int        // default 1500
	QueueLen int        // packets gVisor may queue towards utcp; default 4096
	SACK     bool       // enable gVisor's SACK (off by default, as in gVisor)

	// ToUTCP, if set, injects faults into the packets gVisor sends to
	// utcp. (Faults on the other direction come from wrapping Link() in
	// tuntest.NewLossy, which applies to the packets utcp writes.)
	ToUTCP *tuntest.Faults
}

// GVisorPeer is a gVisor TCP/IPv4 host. Its Link() is what a utcp stack
// uses as its stack.Link.
type GVisorPeer struct {
	Stack *gstack.Stack
	Addr  netip.Addr

	ep   *channel.Endpoint
	link *GVisorLink
}

// NewGVisorPeer starts a gVisor stack with one NIC (a channel endpoint)
// holding cfg.Addr and a default route through it.
func NewGVisorPeer(cfg GVisorConfig) (*GVisorPeer, error) {
	if !cfg.Addr.IsValid() {
		cfg.Addr = GVisorAddr
	}
	if !cfg.Addr.Is4() {
		return nil, fmt.Errorf("integration: gVisor peer address %v is not IPv4", cfg.Addr)
	}
	if cfg.MTU <= 0 {
		cfg.MTU = 1500
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 4096
	}
	s := gstack.New(gstack.Options{
		NetworkProtocols:   []gstack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []gstack.TransportProtocolFactory{tcp.NewProtocol},
	})
	sack := tcpip.TCPSACKEnabled(cfg.SACK)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("integration: gVisor SACK option: %s", err)
	}
	ep := channel.New(cfg.QueueLen, uint32(cfg.MTU), "")
	if err := s.CreateNIC(gvisorNIC, ep); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("integration: gVisor CreateNIC: %s", err)
	}
	pa := tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddrFrom4(cfg.Addr.As4()).WithPrefix(),
	}
	if err := s.AddProtocolAddress(gvisorNIC, pa, gstack.AddressProperties{}); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("integration: gVisor AddProtocolAddress: %s", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: gvisorNIC}})

	ctx, cancel := context.WithCancel(context.Background())
	l := &GVisorLink{ep: ep, mtu: cfg.MTU, ctx: ctx, cancel: cancel}
	if cfg.ToUTCP != nil {
		// gVisor -> pump -> Lossy(pipe a) -> pipe b -> utcp.
		a, b := tuntest.NewPipe(cfg.MTU, cfg.QueueLen)
		l.in = b
		l.lossy = tuntest.NewLossy(a, *cfg.ToUTCP)
		l.wg.Add(1)
		go l.pump()
	}
	return &GVisorPeer{Stack: s, Addr: cfg.Addr, ep: ep, link: l}, nil
}

// Link returns the utcp-facing side of the bridge.
func (p *GVisorPeer) Link() *GVisorLink { return p.link }

// Listen opens a gVisor listener on the peer's address.
func (p *GVisorPeer) Listen(port uint16) (*gonet.TCPListener, error) {
	return gonet.ListenTCP(p.Stack, tcpip.FullAddress{
		NIC: gvisorNIC, Addr: tcpip.AddrFrom4(p.Addr.As4()), Port: port,
	}, ipv4.ProtocolNumber)
}

// Dial connects from gVisor to raddr.
func (p *GVisorPeer) Dial(ctx context.Context, raddr netip.AddrPort) (*gonet.TCPConn, error) {
	return gonet.DialContextTCP(ctx, p.Stack, tcpip.FullAddress{
		NIC: gvisorNIC, Addr: tcpip.AddrFrom4(raddr.Addr().As4()), Port: raddr.Port(),
	}, ipv4.ProtocolNumber)
}

// Close aborts every gVisor endpoint, stops the bridge and waits for
// gVisor's goroutines.
func (p *GVisorPeer) Close() {
	p.link.Close()
	p.Stack.Close()
	p.Stack.Wait()
}

// GVisorLink moves packets between the gVisor channel endpoint and utcp.
// It satisfies stack.Link: what utcp writes is injected into gVisor as
// inbound IPv4, and what gVisor transmits is read by utcp.
type GVisorLink struct {
	ep     *channel.Endpoint
	mtu    int
	ctx    context.Context
	cancel context.CancelFunc

	// With faults towards utcp, a pump copies gVisor's output through
	// lossy into a pipe whose other end (in) utcp reads.
	in    *tuntest.Endpoint
	lossy *tuntest.Lossy
	wg    sync.WaitGroup

	mu     sync.RWMutex
	closed bool
}

// ReadPackets blocks for at least one packet gVisor sent, then takes as
// many more as are queued, up to len(bufs).
func (l *GVisorLink) ReadPackets(bufs [][]byte, sizes []int) (int, error) {
	if l.in != nil {
		return l.in.ReadPackets(bufs, sizes)
	}
	limit := min(len(bufs), len(sizes))
	if limit == 0 {
		return 0, nil
	}
	pkt := l.ep.ReadContext(l.ctx)
	if pkt == nil {
		return 0, os.ErrClosed
	}
	n := 0
	for {
		if k, ok := copyPacket(bufs[n], pkt); ok {
			sizes[n] = k
			n++
		}
		if n == limit {
			return n, nil
		}
		if pkt = l.ep.Read(); pkt == nil {
			if n == 0 {
				// Only oversized packets so far: block again.
				if pkt = l.ep.ReadContext(l.ctx); pkt == nil {
					return 0, os.ErrClosed
				}
				continue
			}
			return n, nil
		}
	}
}

// copyPacket flattens a gVisor packet into dst and releases it. A packet
// that does not fit is dropped (it cannot happen with gVisor's MTU below
// utcp's buffer size, and a real link would drop it too).
func copyPacket(dst []byte, pkt *gstack.PacketBuffer) (int, bool) {
	defer pkt.DecRef()
	if pkt.Size() > len(dst) {
		return 0, false
	}
	n := 0
	for _, s := range pkt.AsSlices() {
		n += copy(dst[n:], s)
	}
	return n, true
}

// pump forwards gVisor's output through the fault model (ToUTCP mode).
func (l *GVisorLink) pump() {
	defer l.wg.Done()
	buf := make([]byte, 65536)
	one := [][]byte{nil}
	for {
		pkt := l.ep.ReadContext(l.ctx)
		if pkt == nil {
			return
		}
		if n, ok := copyPacket(buf, pkt); ok {
			one[0] = buf[:n]
			l.lossy.WritePackets(one)
		}
	}
}

// WritePackets injects each packet into gVisor as an inbound IPv4 datagram.
// gVisor gets its own copy, so bufs is not kept.
func (l *GVisorLink) WritePackets(bufs [][]byte) (int, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return 0, os.ErrClosed
	}
	for _, b := range bufs {
		pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
		l.ep.InjectInbound(ipv4.ProtocolNumber, pkt)
		pkt.DecRef()
	}
	return len(bufs), nil
}

// MTU is the channel endpoint's MTU.
func (l *GVisorLink) MTU() int { return l.mtu }

// BatchSize is the most packets worth passing per call.
func (l *GVisorLink) BatchSize() int { return 64 }

// Close makes reads return os.ErrClosed and writes fail; idempotent.
func (l *GVisorLink) Close() error {
	l.mu.Lock()
	already := l.closed
	l.closed = true
	l.mu.Unlock()
	if already {
		return nil
	}
	l.cancel()
	if l.in != nil {
		l.wg.Wait()
		l.lossy.Close()
		l.in.Close()
	}
	return nil
}

// gonet reports tcpip errors as errors.New(err.String()), so their
// identity is lost; GVisorErrno recovers the errno from the message.
var gvisorErrnos = []struct {
	msg   string
	errno syscall.Errno
}{
	{(&tcpip.ErrConnectionRefused{}).String(), syscall.ECONNREFUSED},
	{(&tcpip.ErrConnectionReset{}).String(), syscall.ECONNRESET},
	{(&tcpip.ErrConnectionAborted{}).String(), syscall.ECONNABORTED},
	{(&tcpip.ErrTimeout{}).String(), syscall.ETIMEDOUT},
	{(&tcpip.ErrClosedForSend{}).String(), syscall.EPIPE},
}

// GVisorErrno maps an error returned by gonet to the errno the same
// failure gives on Linux.
func GVisorErrno(err error) (syscall.Errno, bool) {
	if err == nil {
		return 0, false
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno, true
	}
	msg := err.Error()
	for _, e := range gvisorErrnos {
		if strings.HasSuffix(msg, e.msg) {
			return e.errno, true
		}
	}
	return 0, false
}
