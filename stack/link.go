package stack

// Link carries whole IPv4 packets. A TUN device, an in-memory pipe and a
// fault-injecting simulated link all satisfy it.
type Link interface {
	// ReadPackets blocks until at least one packet is available, fills
	// bufs[0..n) and sizes[0..n), and returns os.ErrClosed after Close.
	ReadPackets(bufs [][]byte, sizes []int) (n int, err error)
	// WritePackets writes each buffer as one packet. It must not keep bufs.
	WritePackets(bufs [][]byte) (int, error)
	MTU() int
	BatchSize() int
	Close() error
}
