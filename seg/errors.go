package seg

import "errors"

// Named errors returned by the validators and parsers. They are plain
// values so the stack can count them by kind (errors.Is or ==) and so
// returning them never allocates.
var (
	// ErrTooShort: the buffer is shorter than the fixed header it must hold.
	ErrTooShort = errors.New("seg: packet too short")
	// ErrVersion: the IP version nibble is not 4 (or an address given to
	// ParseTCP is not IPv4).
	ErrVersion = errors.New("seg: not IPv4")
	// ErrHeaderLen: IHL below 5 or the IPv4 header runs past the buffer.
	ErrHeaderLen = errors.New("seg: bad IPv4 header length")
	// ErrTotalLen: IPv4 total length larger than the buffer or smaller than
	// the header.
	ErrTotalLen = errors.New("seg: bad IPv4 total length")
	// ErrIPChecksum: IPv4 header checksum does not verify.
	ErrIPChecksum = errors.New("seg: bad IPv4 header checksum")
	// ErrNotTCP: the IPv4 protocol field is not TCP.
	ErrNotTCP = errors.New("seg: not TCP")
	// ErrFragment: Parse was given an IPv4 fragment; reassemble first and
	// call ParseTCP.
	ErrFragment = errors.New("seg: IPv4 fragment")
	// ErrDataOffset: TCP data offset below 5 or past the end of the segment.
	ErrDataOffset = errors.New("seg: bad TCP data offset")
	// ErrOptionLen: a TCP option's length is below 2, runs past the options
	// area, or is wrong for its kind.
	ErrOptionLen = errors.New("seg: bad TCP option length")
	// ErrTCPChecksum: TCP checksum (over the pseudo-header) does not verify.
	ErrTCPChecksum = errors.New("seg: bad TCP checksum")
	// ErrICMPChecksum: ICMP checksum does not verify.
	ErrICMPChecksum = errors.New("seg: bad ICMP checksum")
)
