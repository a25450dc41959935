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

// SplitLink is implemented by a Link that can write a packet given in two
// parts, gathering them itself (writev), so the stack can send payload
// straight from its send buffer instead of copying it behind the headers.
// WritePacketsSplit is WritePackets where pays[i], when not empty, follows
// bufs[i] in the same packet. Like WritePackets it must not keep either
// slice: once it returns, the stack may reuse the payload's memory.
type SplitLink interface {
	WritePacketsSplit(bufs, pays [][]byte) (int, error)
}
