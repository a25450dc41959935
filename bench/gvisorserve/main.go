// Command gvisorserve is the benchmark's gVisor peer: gVisor's netstack
// (gvisor.dev/gvisor/pkg/tcpip) on a Linux TUN device through its fdbased
// link endpoint or, with --offload, through our own virtio-net link
// endpoint (offload.go: IFF_VNET_HDR, TUNSETOFFLOAD csum|tso4, gVisor's
// host GSO; fdbased does no GSO on a TUN), serving the same services as `utcp serve` (echo 7,
// discard 9, chargen 19, http 80 via net/http on a gonet listener, and
// hold on --hold) as --addr. `go run ./bench` builds it and runs it inside
// the benchmark's own network namespace; it is not meant to be run by
// hand in the root namespace.
//
// Invariants:
//   - It configures only the TUN device it creates (address and link up)
//     and exits, removing the device, on SIGINT/SIGTERM or when its
//     parent dies (the bench sets Pdeathsig).
//   - With --offload every packet on the TUN carries a 10-byte
//     virtio_net_hdr; a packet the kernel marks neither NEEDS_CSUM nor
//     DATA_VALID has its checksums verified by the link before gVisor sees
//     it (the endpoint claims RX checksum offload).
//   - The control socket answers one JSON line per connection with
//     gVisor's endpoint counts by state, so the bench can count TIME_WAIT
//     entries without going through the stack under test.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/link/tun"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"utcp/cmd/utcp/svc"
)

const nic tcpip.NICID = 1

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gvisorserve:", err)
		os.Exit(1)
	}
}

func run() error {
	name := flag.String("tun", "gvis0", "TUN device to create")
	host := flag.String("host-addr", "198.18.0.1/24", "host (kernel) side address of the TUN device")
	addr := flag.String("addr", "198.18.0.2", "address gVisor answers as")
	mtu := flag.Int("mtu", 1500, "MTU")
	hold := flag.Int("hold", 0, "hold service port (accept, never read/write/close); 0 is off")
	control := flag.String("control", "", "unix socket answering {\"states\":{...}} (gVisor endpoint counts by state)")
	twTimeout := flag.Duration("tw-timeout", 60*time.Second, "TIME_WAIT duration (gVisor's default is 60 s)")
	sack := flag.Bool("sack", true, "enable SACK (gVisor's default is off; Linux and utcp have it on)")
	txqlen := flag.Int("txqueuelen", 0, "TUN transmit queue length (ip link txqueuelen); 0 keeps the kernel's 500")
	offload := flag.Bool("offload", false, "open the TUN with IFF_VNET_HDR and TUNSETOFFLOAD csum|tso4 and let gVisor's TCP send 64 KiB GSO super-segments (our own link endpoint: fdbased does not do GSO on a TUN)")
	flag.Parse()

	hp, err := netip.ParsePrefix(*host)
	if err != nil {
		return err
	}
	a, err := netip.ParseAddr(*addr)
	if err != nil || !a.Is4() {
		return fmt.Errorf("--addr %q: want an IPv4 address", *addr)
	}

	var ep stack.LinkEndpoint
	if *offload {
		f, err := openOffloadTUN(*name)
		if err != nil {
			return fmt.Errorf("open TUN %s with offloads: %v", *name, err)
		}
		if ep, err = newVnetEndpoint(f, uint32(*mtu)); err != nil {
			return err
		}
	} else {
		fd, err := tun.Open(*name)
		if err != nil {
			return fmt.Errorf("open TUN %s: %v", *name, err)
		}
		ep, err = fdbased.New(&fdbased.Options{
			FDs:                []int{fd},
			MTU:                uint32(*mtu),
			PacketDispatchMode: fdbased.Readv,
		})
		if err != nil {
			return fmt.Errorf("fdbased: %v", err)
		}
	}
	link := []string{"link", "set", *name, "mtu", fmt.Sprint(*mtu)}
	if *txqlen > 0 {
		link = append(link, "txqueuelen", fmt.Sprint(*txqlen))
	}
	for _, args := range [][]string{
		{"addr", "add", hp.String(), "dev", *name},
		append(link, "up"),
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %v: %v: %s", args, err, out)
		}
	}

	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	// Settings close to Linux defaults (and utcp's), so the comparison is
	// of implementations rather than of tunables.
	opts := []tcpip.SettableTransportProtocolOption{
		ptr(tcpip.TCPSACKEnabled(*sack)),
		ptr(tcpip.TCPModerateReceiveBufferOption(true)),
		ptr(tcpip.TCPTimeWaitTimeoutOption(*twTimeout)),
		&tcpip.TCPReceiveBufferSizeRangeOption{Min: 4096, Default: 128 << 10, Max: 6 << 20},
		&tcpip.TCPSendBufferSizeRangeOption{Min: 4096, Default: 1 << 20, Max: 4 << 20},
	}
	for _, o := range opts {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, o); err != nil {
			return fmt.Errorf("tcp option %T: %s", o, err)
		}
	}
	if err := s.CreateNIC(nic, ep); err != nil {
		return fmt.Errorf("CreateNIC: %s", err)
	}
	if err := s.AddProtocolAddress(nic, tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddrFrom4(a.As4()).WithPrefix(),
	}, stack.AddressProperties{}); err != nil {
		return fmt.Errorf("AddProtocolAddress: %s", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: nic}})

	var srv svc.Server
	for _, p := range []struct {
		name string
		port int
	}{{"echo", 7}, {"discard", 9}, {"chargen", 19}, {"http", 80}, {"hold", *hold}} {
		if p.port == 0 {
			continue
		}
		ln, err := gonet.ListenTCP(s, tcpip.FullAddress{NIC: nic, Addr: tcpip.AddrFrom4(a.As4()), Port: uint16(p.port)}, ipv4.ProtocolNumber)
		if err != nil {
			return fmt.Errorf("listen %s %d: %v", p.name, p.port, err)
		}
		if err := srv.Serve(p.name, ln); err != nil {
			return err
		}
	}
	if *control != "" {
		cl, err := net.Listen("unix", *control)
		if err != nil {
			return err
		}
		defer os.Remove(*control)
		go serveControl(cl, s)
	}
	mode := "plain (fdbased, readv)"
	if *offload {
		mode = "with offloads (IFF_VNET_HDR, csum|tso4, GSO max 64 KiB)"
	}
	fmt.Fprintf(os.Stderr, "gvisorserve: serving as %v on %s, %s\n", a, *name, mode)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	srv.Close()
	s.Close()
	return nil
}

func ptr[T any](v T) *T { return &v }

// serveControl answers each connection with the endpoint counts by state
// (names as tcp.EndpointState prints them, e.g. "TIME-WAIT").
func serveControl(ln net.Listener, s *stack.Stack) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		states := map[string]int{}
		for _, ep := range s.RegisteredEndpoints() {
			if e, ok := ep.(interface{ State() uint32 }); ok {
				states[tcp.EndpointState(e.State()).String()]++
			}
		}
		json.NewEncoder(c).Encode(map[string]any{"states": states, "endpoints": len(s.RegisteredEndpoints())})
		c.Close()
	}
}
