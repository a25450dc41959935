package tun

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"unicode"

	"golang.org/x/sys/unix"
)

// tunPath is the TUN/TAP control device. A variable so a test can point the
// existence check at a missing path.
var tunPath = "/dev/net/tun"

var errNoTunDevice = errors.New("tun: /dev/net/tun not found: load the tun module (modprobe tun) or run where it exists")

// validateName applies the kernel's dev_valid_name rules (net/core/dev.c)
// before anything is opened, so a bad name gets a precise message instead of
// an EINVAL from TUNSETIFF.
func validateName(name string) error {
	const maxLen = unix.IFNAMSIZ - 1 // the name and its NUL must fit IFNAMSIZ
	switch {
	case len(name) > maxLen:
		return fmt.Errorf("tun: device name %q is %d bytes: Linux allows at most %d (IFNAMSIZ-1); choose a shorter Config.Name", name, len(name), maxLen)
	case name == "." || name == "..":
		return fmt.Errorf("tun: device name %q is reserved: choose another Config.Name", name)
	}
	if i := strings.IndexFunc(name, func(r rune) bool {
		return r == '/' || r == ':' || r == 0 || unicode.IsSpace(r)
	}); i >= 0 {
		return fmt.Errorf("tun: device name %q contains %q at byte %d: Linux forbids '/', ':', NUL and whitespace in interface names", name, name[i], i)
	}
	if strings.Count(name, "%") > 1 || (strings.Contains(name, "%") && !strings.Contains(name, "%d")) {
		return fmt.Errorf("tun: device name %q: a '%%' is allowed only as a single %%d for the kernel to number", name)
	}
	return nil
}

// openError turns what attaching returns (the errno of open(2) or of the
// TUNSETIFF/TUNSETPERSIST ioctls) into a message that says what to do.
func openError(name string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		// ENODEV/ENXIO: the device node exists but no driver is behind it.
		return fmt.Errorf("%w (%v)", errNoTunDevice, err)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("tun: creating device %s needs CAP_NET_ADMIN: run as root or grant the capability (setcap cap_net_admin+ep) (%w)", name, err)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("tun: device name %s is in use by another TUN/TAP device that has a reader attached: choose another Config.Name or stop the process holding it (%w)", name, err)
	case errors.Is(err, unix.EINVAL):
		// TUNSETIFF says EINVAL when the name belongs to an interface of
		// another kind (or a TAP), and for malformed names, which
		// validateName has already excluded.
		if ifc, ierr := net.InterfaceByName(name); ierr == nil {
			return fmt.Errorf("tun: device name %s is taken by an existing interface (index %d) that is not a TUN device: choose another Config.Name or remove it (ip link del %s) (%w)", name, ifc.Index, name, err)
		}
		return fmt.Errorf("tun: creating device %s: the kernel rejected the request: %w", name, err)
	case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE):
		return fmt.Errorf("tun: opening %s for %s: out of file descriptors: raise the limit (ulimit -n) or close some (%w)", tunPath, name, err)
	}
	return fmt.Errorf("tun: creating device %s: %w", name, err)
}
