package tun

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Multi-queue TUN (IFF_MULTI_QUEUE, Documentation/networking/tuntap.rst
// "Multiqueue tuntap interface"): the same interface is attached N times,
// each attachment its own descriptor with its own packet queue. The kernel
// picks a queue for each packet it sends to us by flow: tun_automq_select_queue
// first looks the flow's symmetric hash up in a table that tun_get_user fills
// from our own writes (a flow goes to the queue we last wrote it on, entries
// expire after 3 s without a write), and otherwise scales the hash over the
// queues. So as long as we write every packet of one connection on the same
// queue, the kernel delivers that connection's packets on that queue too, and
// one reader per queue sees each connection's packets in order.

// MaxQueues bounds Config-independent queue counts: the kernel's limit is
// MAX_TAP_QUEUES (256); more than a few per core only costs descriptors.
const MaxQueues = 256

// MultiQueue is one TUN interface opened with n queues. Its methods are safe
// for concurrent use; distinct queues can be read and written in parallel.
//
// MultiQueue satisfies stack.Link, but its ReadPackets and WritePackets use
// queue 0 only: a user that does not know about queues must read every queue
// (ReadQueue) or it will miss the packets the kernel steers elsewhere. The
// stack detects QueueCount/ReadQueue/WriteQueue and runs one reader per queue.
type MultiQueue struct {
	queues []*Device
	closed atomic.Bool
}

// OpenMultiQueue creates the interface cfg.Name with IFF_MULTI_QUEUE and
// attaches n queues (1 ≤ n ≤ MaxQueues), then configures it like Open. With
// cfg.Offload every queue carries virtio-net headers; if the kernel refuses
// offloads the device opens without them, as Open does.
func OpenMultiQueue(cfg Config, n int) (*MultiQueue, error) {
	if n < 1 || n > MaxQueues {
		return nil, fmt.Errorf("tun: %d queues: want 1 to %d", n, MaxQueues)
	}
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(tunPath); errors.Is(err, os.ErrNotExist) {
		return nil, errNoTunDevice
	}
	files, name, offload, napi, napiErr, err := openQueues(cfg, n, true)
	if err != nil {
		return nil, openError(cfg.Name, err)
	}
	m := &MultiQueue{queues: make([]*Device, 0, n)}
	for i, f := range files {
		qcfg := cfg
		if i > 0 {
			// Address, MTU and UP are properties of the interface: set
			// them once, through queue 0.
			qcfg.HostAddr = netip.Prefix{}
		}
		d, err := openQueue(qcfg, f, name, offload, i == 0)
		if err != nil {
			for _, g := range files[i+1:] {
				g.Close()
			}
			m.Close()
			return nil, err
		}
		m.queues = append(m.queues, d)
	}
	// gro_flush_timeout is per interface; each queue has its own NAPI
	// context, and the write reaches every one of them.
	groFlush, groErr := setupGRO(name, napi, napiErr, cfg.GROFlushTimeout)
	for _, d := range m.queues {
		d.groFlush, d.groErr = groFlush, groErr
	}
	return m, nil
}

// openQueue wraps one attached descriptor in a Device. Only the first queue
// configures the interface (address, MTU, UP): those are per interface.
func openQueue(cfg Config, f *os.File, name string, offload, configureLink bool) (*Device, error) {
	if configureLink {
		return openFile(cfg, f, name, offload)
	}
	d := newDevice(cfg, f, name, offload)
	rc, err := f.SyscallConn()
	if err != nil {
		d.closeRings()
		f.Close()
		return nil, fmt.Errorf("tun: %s: raw descriptor: %w", name, err)
	}
	d.rc = rc
	return d, nil
}

// openQueues attaches n descriptors to the interface cfg.Name (mq: with
// IFF_MULTI_QUEUE; otherwise n is 1), asking for what cfg wants, and asks
// again without what the kernel refuses: offloads (errOffloadRefused),
// then IFF_NAPI (errNAPIRefused, returned as napiErr for Device.GRO). Open
// and OpenMultiQueue share it, so a single queue and many fall back alike.
func openQueues(cfg Config, n int, mq bool) (files []*os.File, name string, offload, napi bool, napiErr, err error) {
	offload, napi = cfg.Offload, cfg.GROFlushTimeout > 0 && !cfg.Offload
	for {
		files, name, err = attachQueues(cfg.Name, n, mq, offload, napi)
		switch err {
		case errOffloadRefused:
			offload = false
		case errNAPIRefused:
			napi, napiErr = false, err
		default:
			return files, name, offload, napi, napiErr, err
		}
	}
}

// attachQueues opens /dev/net/tun n times and attaches each descriptor to
// the interface with TUNSETIFF (and IFF_MULTI_QUEUE when mq). The first
// attachment creates the interface (and fixes its name if it holds "%d")
// and clears its persist flag, so the interface dies with its last
// descriptor even if it existed before; the others name it exactly. All
// must ask for the same flags, or the kernel refuses the attachment
// (tun_set_iff). EINVAL on the first attachment, when offloads or IFF_NAPI
// were asked for, comes back as errOffloadRefused or errNAPIRefused: a
// kernel without them, or a name taken by another kind of interface,
// which the attempt without them tells apart (openError words it).
func attachQueues(name string, n int, mq, offload, napi bool) (files []*os.File, got string, err error) {
	var fds []int
	defer func() {
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
	}()
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if mq {
		flags |= unix.IFF_MULTI_QUEUE
	}
	if offload {
		flags |= unix.IFF_VNET_HDR
	}
	if napi {
		flags |= unix.IFF_NAPI
	}
	got = name
	for i := range n {
		fd, err := unix.Open(tunPath, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, "", err
		}
		fds = append(fds, fd)
		ifr, err := unix.NewIfreq(got)
		if err != nil {
			return nil, "", err
		}
		ifr.SetUint16(flags)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			if err == unix.EINVAL && offload && i == 0 {
				return nil, "", errOffloadRefused
			}
			if err == unix.EINVAL && napi && i == 0 {
				return nil, "", errNAPIRefused
			}
			return nil, "", err
		}
		got = ifr.Name()
		if i == 0 {
			// As Open: the interface dies with its last descriptor even
			// if we attached to a persistent one.
			if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 0); err != nil {
				return nil, "", err
			}
		}
		if offload {
			// The header size is per queue (tun_file); the offloads are
			// per interface, but setting them on each queue is harmless.
			if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, vnetHdrLen); err != nil {
				return nil, "", errOffloadRefused
			}
			if err := setOffload(fd, offloadFlags); err != nil {
				return nil, "", errOffloadRefused
			}
		}
	}
	// Wrap only now: os.NewFile registers a non-blocking descriptor with
	// the runtime poller, and that registration fails ("not pollable") on
	// a TUN descriptor not yet attached to an interface.
	for _, fd := range fds {
		files = append(files, os.NewFile(uintptr(fd), tunPath))
	}
	return files, got, nil
}

// Name returns the interface name.
func (m *MultiQueue) Name() string { return m.queues[0].Name() }

// MTU returns the MTU the device was configured with.
func (m *MultiQueue) MTU() int { return m.queues[0].MTU() }

// BatchSize returns how many packets one read may return.
func (m *MultiQueue) BatchSize() int { return batchSize }

// Offload reports whether the queues run with offloads.
func (m *MultiQueue) Offload() bool { return m.queues[0].Offload() }

// GRO reports the interface's gro_flush_timeout, as Device.GRO.
func (m *MultiQueue) GRO() (time.Duration, error) { return m.queues[0].GRO() }

// IOURing reports whether every queue batches through io_uring.
func (m *MultiQueue) IOURing() bool {
	for _, d := range m.queues {
		if !d.IOURing() {
			return false
		}
	}
	return true
}

// Queues returns the queues, each a Device bound to one descriptor. The
// slice must not be modified; closing one queue detaches it only.
func (m *MultiQueue) Queues() []*Device { return m.queues }

// QueueCount returns the number of queues.
func (m *MultiQueue) QueueCount() int { return len(m.queues) }

// ReadQueue reads from queue q as Device.ReadPackets does.
func (m *MultiQueue) ReadQueue(q int, bufs [][]byte, sizes []int) (int, error) {
	return m.queues[q].ReadPackets(bufs, sizes)
}

// WriteQueue writes to queue q as Device.WritePackets does. Write every
// packet of one flow on the same queue: the kernel then steers the flow's
// incoming packets to that queue too (see the top of this file).
func (m *MultiQueue) WriteQueue(q int, bufs [][]byte) (int, error) {
	return m.queues[q].WritePackets(bufs)
}

// ReadPackets reads queue 0 only (see MultiQueue).
func (m *MultiQueue) ReadPackets(bufs [][]byte, sizes []int) (int, error) {
	return m.ReadQueue(0, bufs, sizes)
}

// WritePackets writes on queue 0.
func (m *MultiQueue) WritePackets(bufs [][]byte) (int, error) {
	return m.WriteQueue(0, bufs)
}

// Stats sums the per-queue counters (truncated, GSO, checksum, dropped).
func (m *MultiQueue) Stats() (truncated, gsoReads, gsoWrites, dropped uint64) {
	for _, d := range m.queues {
		truncated += d.TruncatedPackets()
		gsoReads += d.GSOReads()
		gsoWrites += d.GSOWrites()
		dropped += d.DroppedPackets()
	}
	return
}

// BusyPollRxPackets sums Device.BusyPollRxPackets over the queues.
func (m *MultiQueue) BusyPollRxPackets() (n uint64) {
	for _, d := range m.queues {
		n += d.BusyPollRxPackets()
	}
	return n
}

// Close closes every queue; the interface disappears with the last one.
// A second Close returns an error that errors.Is(err, os.ErrClosed).
func (m *MultiQueue) Close() error {
	if !m.closed.CompareAndSwap(false, true) {
		return fmt.Errorf("tun: close multi-queue device: %w", os.ErrClosed)
	}
	var first error
	for _, d := range m.queues {
		if err := d.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
