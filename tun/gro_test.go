package tun

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"utcp/tun/netns"
)

// tunFlags returns the flags the kernel holds for the descriptor's
// interface (TUNGETIFF).
func tunFlags(t *testing.T, d *Device) uint16 {
	t.Helper()
	var flags uint16
	var ierr error
	if err := d.rc.Control(func(fd uintptr) {
		ifr, err := unix.NewIfreq("")
		if err != nil {
			ierr = err
			return
		}
		if ierr = unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr); ierr == nil {
			flags = ifr.Uint16()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if ierr != nil {
		t.Fatal(ierr)
	}
	return flags
}

// readGROFlushTimeout reads the interface's gro_flush_timeout through a
// sysfs of the test's own namespace (inOwnSysfs): the test runs in a
// namespace made with unshare, where /sys shows another one's devices.
func readGROFlushTimeout(t *testing.T, ifname string) string {
	t.Helper()
	var got string
	if err := inOwnSysfs(ifname, func(dev string) error {
		b, err := os.ReadFile(filepath.Join(dev, "gro_flush_timeout"))
		got = strings.TrimSpace(string(b))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// A plain device asked for GRO carries IFF_NAPI and the timeout, set in
// the device's own namespace although /sys here shows another's.
func TestGROFlushTimeoutSet(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	d := openTest(t, Config{HostAddr: hostPrefix, GROFlushTimeout: 3 * time.Millisecond})
	if got, err := d.GRO(); got != 3*time.Millisecond || err != nil {
		t.Fatalf("GRO() = %v, %v; want 3ms", got, err)
	}
	if tunFlags(t, d)&unix.IFF_NAPI == 0 {
		t.Error("the interface lacks IFF_NAPI")
	}
	if got := readGROFlushTimeout(t, d.Name()); got != "3000000" {
		t.Errorf("gro_flush_timeout reads %q, want 3000000", got)
	}
	// Nothing of the private mount is left behind.
	if m, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(m), "utcp-sysfs-") {
		t.Errorf("a utcp-sysfs- mount is visible:\n%s", m)
	}
}

// Without it, and on an offload device, neither IFF_NAPI nor a timeout.
func TestGROOffByDefaultAndWithOffload(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	for _, cfg := range []Config{
		{HostAddr: hostPrefix},
		{HostAddr: hostPrefix, Offload: true, GROFlushTimeout: 3 * time.Millisecond},
	} {
		d := openTest(t, cfg)
		if got, err := d.GRO(); got != 0 || err != nil {
			t.Errorf("%+v: GRO() = %v, %v; want 0, nil", cfg, got, err)
		}
		if tunFlags(t, d)&unix.IFF_NAPI != 0 {
			t.Errorf("%+v: IFF_NAPI set", cfg)
		}
		if got := readGROFlushTimeout(t, d.Name()); got != "0" {
			t.Errorf("%+v: gro_flush_timeout reads %q, want 0", cfg, got)
		}
		d.Close()
	}
}

// Every queue of a multi-queue device gets IFF_NAPI (the kernel refuses
// queues whose flags differ) and the one interface its timeout.
func TestGROMultiQueue(t *testing.T) {
	if !netns.Run(t) {
		return
	}
	m, err := OpenMultiQueue(Config{HostAddr: hostPrefix, GROFlushTimeout: 4 * time.Millisecond}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got, err := m.GRO(); got != 4*time.Millisecond || err != nil {
		t.Fatalf("GRO() = %v, %v; want 4ms", got, err)
	}
	for i := range 2 {
		if tunFlags(t, m.Queues()[i])&unix.IFF_NAPI == 0 {
			t.Errorf("queue %d lacks IFF_NAPI", i)
		}
	}
	if got := readGROFlushTimeout(t, m.Name()); got != "4000000" {
		t.Errorf("gro_flush_timeout reads %q, want 4000000", got)
	}
}
