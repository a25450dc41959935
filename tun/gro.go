package tun

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// GRO on a plain device (Config.GROFlushTimeout).
//
// Every packet written to a plain TUN reaches the kernel's IP and TCP
// receive code as one skb, inside the writer's system call: a checksum,
// a socket lookup, receive processing and a reader to wake, per 1500-byte
// packet. That work, not the copy, bounds what a stack can write into a
// plain TUN. With IFF_NAPI the TUN hands each written packet to a NAPI
// context instead, and NAPI runs generic receive offload: consecutive
// segments of one TCP flow are merged into one skb before TCP sees them,
// as a NIC driver's would be.
//
// Merging needs something to merge with. Each write schedules its own NAPI
// poll, and a poll that completes flushes what GRO holds, so on its own
// IFF_NAPI merges nothing. The device's gro_flush_timeout (Linux commit
// 3b47d30, "net: gro: add a per device gro flush timer") changes that:
// with it set, a completed poll keeps what GRO holds and arms a timer
// instead, and only packets older than a jiffy, or the timer, flush it.
// GRO never holds a segment with PSH, a segment shorter than the MSS, or
// one with SYN, FIN, RST or URG: those flush their flow at once. So a
// sender that sets PSH on the last segment of every batch it writes (the
// stack does, see stack/output.go) has every batch delivered as soon as
// it is written, in as few skbs as its flows allow, and the timer is only
// a bound on anything else.
//
// The timer is re-armed by every poll, that is by every write. Arming a
// timer that expires before the next scheduler tick reprograms the clock
// event device, which on a virtual machine traps to the hypervisor: on
// our test machine a 50 µs timerfd_settime costs 27 µs, a 5 ms one 2 µs.
// Hence DefaultGROFlushTimeout is longer than a tick (4 ms at HZ=250).
//
// gro_flush_timeout has no netlink attribute; it is written in sysfs
// (/sys/class/net/NAME/gro_flush_timeout). /sys shows the network
// namespace of whoever mounted it, which for a process started with
// `unshare --net` is not its own. So the write goes through a sysfs
// mounted for this purpose, in a mount namespace of a thread that is
// thrown away afterwards (setGROFlushTimeout).

// DefaultGROFlushTimeout is utcp serve's --gro-flush-timeout default.
const DefaultGROFlushTimeout = 5 * time.Millisecond

// MaxGROFlushTimeout bounds Config.GROFlushTimeout: how long a segment
// may wait in GRO for lack of PSH.
const MaxGROFlushTimeout = time.Second

var errNAPIRefused = errors.New("tun: the kernel refused IFF_NAPI")

// setupGRO sets gro_flush_timeout t on the interface when it was attached
// with IFF_NAPI (napi), and returns what Device.GRO reports: the timeout
// in force, or 0 and why not (refused, the kernel's refusal of IFF_NAPI).
func setupGRO(name string, napi bool, refused error, t time.Duration) (time.Duration, error) {
	if !napi {
		return 0, refused
	}
	if err := setGROFlushTimeout(name, t); err != nil {
		return 0, err
	}
	return t, nil
}

// GRO reports the gro_flush_timeout the device runs with: 0 when
// Config.GROFlushTimeout was 0, the device has offloads, or the kernel
// refused; err then says why, if it was a refusal.
func (d *Device) GRO() (time.Duration, error) { return d.groFlush, d.groErr }

// setGROFlushTimeout writes t to the interface's gro_flush_timeout through
// a sysfs of this process's network namespace (see the top of this file),
// and reads it back.
func setGROFlushTimeout(ifname string, t time.Duration) error {
	want := strconv.FormatInt(t.Nanoseconds(), 10)
	err := inOwnSysfs(ifname, func(dev string) error {
		p := filepath.Join(dev, "gro_flush_timeout")
		if err := os.WriteFile(p, []byte(want), 0); err != nil {
			return err
		}
		got, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(got)) != want {
			return fmt.Errorf("wrote %s, reads back %q", want, strings.TrimSpace(string(got)))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tun: %s: gro_flush_timeout: %w", ifname, err)
	}
	return nil
}

// inOwnSysfs calls f with the sysfs directory of the interface ifname
// (class/net/IFNAME) as this process's network namespace sees it. It
// mounts a sysfs for the purpose in a mount namespace of its own, on a
// thread that is thrown away afterwards, so the mount is never visible
// elsewhere and outlives nothing.
func inOwnSysfs(ifname string, f func(dev string) error) error {
	dir, err := os.MkdirTemp("", "utcp-sysfs-")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: when this goroutine returns, the runtime ends
		// the thread, and the mount namespace goes with it.
		runtime.LockOSThread()
		errc <- inOwnSysfsLocked(dir, ifname, f)
	}()
	return <-errc
}

// inOwnSysfsLocked runs on a locked thread that is never reused.
func inOwnSysfsLocked(dir, ifname string, f func(dev string) error) error {
	// CLONE_NEWNS implies CLONE_FS, which unshare grants one thread of a
	// process that shares its fs_struct with others.
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare(CLONE_NEWNS): %w", err)
	}
	// The new namespace's mounts are peers of the old ones where those are
	// shared; make them private so our mount does not show elsewhere.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if err := unix.Mount("sysfs", dir, "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting sysfs: %w", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	return f(filepath.Join(dir, "class", "net", ifname))
}
