package tun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// configure gives the interface its host address, MTU and the UP flag with
// two rtnetlink requests (rtnetlink(7)): RTM_NEWADDR, then one RTM_NEWLINK
// carrying IFLA_MTU and IFF_UP. Address first, so that when the link comes up
// the kernel installs the prefix route at once.
func configure(name string, host netip.Prefix, mtu, txqlen int) error {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return fmt.Errorf("tun: looking up the new interface %s: %w", name, err)
	}
	nl, err := dialNetlink()
	if err != nil {
		return err
	}
	defer nl.close()

	if host.IsValid() {
		if err := nl.request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, newAddrMsg(ifc.Index, host)); err != nil {
			return netlinkError(name, fmt.Sprintf("setting address %v", host), err)
		}
	}
	if err := nl.request(unix.RTM_NEWLINK, 0, newLinkMsg(ifc.Index, mtu, txqlen)); err != nil {
		what := fmt.Sprintf("setting MTU %d and bringing the link up", mtu)
		if txqlen > 0 {
			what = fmt.Sprintf("setting MTU %d and txqueuelen %d and bringing the link up", mtu, txqlen)
		}
		return netlinkError(name, what, err)
	}
	return nil
}

func netlinkError(name, what string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("tun: %s on %s needs CAP_NET_ADMIN: run as root or grant the capability (setcap cap_net_admin+ep) (%w)", what, name, err)
	}
	return fmt.Errorf("tun: %s on %s: %w", what, name, err)
}

// newAddrMsg encodes struct ifaddrmsg plus IFA_LOCAL and IFA_ADDRESS for
// an IPv4 host address. On a
// point-to-point device such as a TUN, IFA_ADDRESS is the peer; giving it the
// local address (what `ip addr add A/N dev D` does) makes the kernel treat
// A/N as an ordinary subnet and route all of it to the device.
func newAddrMsg(index int, host netip.Prefix) []byte {
	b := make([]byte, unix.SizeofIfAddrmsg)
	b[0] = unix.AF_INET
	b[1] = byte(host.Bits())
	b[2] = 0                      // ifa_flags
	b[3] = unix.RT_SCOPE_UNIVERSE // ifa_scope
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	addr := host.Addr().AsSlice()
	b = appendAttr(b, unix.IFA_LOCAL, addr)
	b = appendAttr(b, unix.IFA_ADDRESS, addr)
	return b
}

// newLinkMsg encodes struct ifinfomsg with IFF_UP in both ifi_flags and
// ifi_change (change only that flag), plus IFLA_MTU and, unless txqlen is
// 0, IFLA_TXQLEN.
func newLinkMsg(index, mtu, txqlen int) []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	b[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	binary.NativeEndian.PutUint32(b[8:], unix.IFF_UP)  // ifi_flags
	binary.NativeEndian.PutUint32(b[12:], unix.IFF_UP) // ifi_change
	var m [4]byte
	binary.NativeEndian.PutUint32(m[:], uint32(mtu))
	b = appendAttr(b, unix.IFLA_MTU, m[:])
	if txqlen > 0 {
		binary.NativeEndian.PutUint32(m[:], uint32(txqlen))
		b = appendAttr(b, unix.IFLA_TXQLEN, m[:])
	}
	return b
}

func align4(n int) int { return (n + 3) &^ 3 }

// appendAttr appends one struct rtattr and its payload, padded to 4 bytes.
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	l := unix.SizeofRtAttr + len(data)
	var h [unix.SizeofRtAttr]byte
	binary.NativeEndian.PutUint16(h[0:], uint16(l))
	binary.NativeEndian.PutUint16(h[2:], typ)
	b = append(b, h[:]...)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

type netlinkConn struct {
	fd  int
	seq uint32
}

func dialNetlink() (*netlinkConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("tun: opening an rtnetlink socket: %w", os.NewSyscallError("socket", err))
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun: binding an rtnetlink socket: %w", os.NewSyscallError("bind", err))
	}
	// A reply that never comes must not hang Open forever.
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun: rtnetlink socket timeout: %w", os.NewSyscallError("setsockopt", err))
	}
	return &netlinkConn{fd: fd}, nil
}

func (c *netlinkConn) close() { unix.Close(c.fd) }

// request sends one message with NLM_F_REQUEST|NLM_F_ACK and waits for the
// kernel's NLMSG_ERROR reply to it, whose error field is 0 for success or a
// negative errno.
func (c *netlinkConn) request(typ uint16, flags uint16, body []byte) error {
	c.seq++
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(unix.SizeofNlMsghdr+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], c.seq)
	msg = append(msg, body...)
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return os.NewSyscallError("sendto", err)
	}
	buf := make([]byte, 8192)
	// Bounded: the kernel answers each request with exactly one ack; other
	// messages (none expected, we join no groups) are skipped.
	for range 16 {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("recvfrom", err)
		}
		for b := buf[:n]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(binary.NativeEndian.Uint32(b[0:]))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return fmt.Errorf("malformed rtnetlink reply (length %d of %d bytes)", l, len(b))
			}
			typ, seq, data := binary.NativeEndian.Uint16(b[4:]), binary.NativeEndian.Uint32(b[8:]), b[unix.SizeofNlMsghdr:l]
			b = b[min(align4(l), len(b)):]
			if seq != c.seq || typ != unix.NLMSG_ERROR {
				continue
			}
			if len(data) < 4 {
				return errors.New("short NLMSG_ERROR reply")
			}
			if e := int32(binary.NativeEndian.Uint32(data)); e != 0 {
				return unix.Errno(-e)
			}
			return nil
		}
	}
	return errors.New("no acknowledgement from rtnetlink")
}
