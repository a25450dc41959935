package tuntest

// Link is the packet-batch interface every type in this package implements.
// The stack declares an identical interface; Go's structural typing connects
// the two without either package importing the other.
type Link interface {
	// ReadPackets blocks until at least one whole packet is available, then
	// copies up to len(bufs) packets into bufs[0..n) and their lengths into
	// sizes[0..n). After Close it returns os.ErrClosed.
	ReadPackets(bufs [][]byte, sizes []int) (n int, err error)
	// WritePackets sends each packet in bufs. It copies what it needs and
	// never keeps bufs after returning. Safe for concurrent use.
	WritePackets(bufs [][]byte) (int, error)
	// MTU is the largest packet, in bytes, the link carries.
	MTU() int
	// BatchSize is the number of packets worth passing per call.
	BatchSize() int
	// Close releases the link; later reads fail with os.ErrClosed.
	Close() error
}

// Compile-time checks that every link type satisfies Link.
var (
	_ Link = (*Endpoint)(nil)
	_ Link = (*Lossy)(nil)
	_ Link = (*Tap)(nil)
)
