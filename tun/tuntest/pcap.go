package tuntest

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"
)

// Classic libpcap file format constants ("pcap-savefile(5)"; also
// draft-ietf-opsawg-pcap §4 and §5).
const (
	pcapMagic        = 0xa1b2c3d4 // microsecond timestamps
	pcapVersionMajor = 2
	pcapVersionMinor = 4
	// LinkTypeRaw is LINKTYPE_RAW: each record is a bare IPv4 or IPv6
	// packet, which is exactly what a TUN device without packet info carries.
	LinkTypeRaw = 101
	// DefaultSnaplen is used when NewPcapWriter is given a snaplen <= 0.
	DefaultSnaplen = 65535

	pcapGlobalHeaderLen = 24
	pcapRecordHeaderLen = 16
)

// PcapWriter writes packets to w in the classic libpcap format with
// LINKTYPE_RAW and microsecond timestamps, which tcpdump -r and Wireshark
// read. Fields are little-endian; readers detect the byte order from the
// magic number. It is safe for concurrent use: each record is written with a
// single Write call under a lock, so records never interleave.
type PcapWriter struct {
	mu      sync.Mutex
	w       io.Writer
	snaplen int
	buf     []byte
}

// NewPcapWriter writes the global header to w and returns a writer for the
// records. Packets longer than snaplen are truncated to it in the file (the
// record keeps the original length); snaplen <= 0 means DefaultSnaplen.
func NewPcapWriter(w io.Writer, snaplen int) (*PcapWriter, error) {
	if snaplen <= 0 {
		snaplen = DefaultSnaplen
	}
	var h [pcapGlobalHeaderLen]byte
	le := binary.LittleEndian
	le.PutUint32(h[0:], pcapMagic)
	le.PutUint16(h[4:], pcapVersionMajor)
	le.PutUint16(h[6:], pcapVersionMinor)
	// h[8:16]: thiszone and sigfigs, both zero (timestamps are UTC).
	le.PutUint32(h[16:], uint32(snaplen))
	le.PutUint32(h[20:], LinkTypeRaw)
	if _, err := w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("tuntest: writing pcap header: %w", err)
	}
	return &PcapWriter{w: w, snaplen: snaplen}, nil
}

// WritePacket appends one record with timestamp ts.
func (p *PcapWriter) WritePacket(ts time.Time, pkt []byte) error {
	incl := min(len(pkt), p.snaplen)
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.buf[:0]
	b = binary.LittleEndian.AppendUint32(b, uint32(ts.Unix()))
	b = binary.LittleEndian.AppendUint32(b, uint32(ts.Nanosecond()/1000))
	b = binary.LittleEndian.AppendUint32(b, uint32(incl))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(pkt)))
	b = append(b, pkt[:incl]...)
	p.buf = b
	if _, err := p.w.Write(b); err != nil {
		return fmt.Errorf("tuntest: writing pcap record: %w", err)
	}
	return nil
}

// Tap wraps a Link and records every packet read from and written to it
// into a PcapWriter, timestamped with time.Now (virtual inside synctest).
// A written packet is recorded when the inner link accepts it, even if that
// link then drops it (as a Lossy link may).
// It implements Link.
type Tap struct {
	inner Link
	w     *PcapWriter

	mu  sync.Mutex
	err error // first pcap write error
}

// NewTap returns a Tap recording inner's traffic to w. The caller owns w's
// underlying io.Writer and closes it after closing the Tap.
func NewTap(inner Link, w *PcapWriter) *Tap {
	return &Tap{inner: inner, w: w}
}

// ReadPackets reads from the inner link and records what it read.
func (t *Tap) ReadPackets(bufs [][]byte, sizes []int) (int, error) {
	n, err := t.inner.ReadPackets(bufs, sizes)
	now := time.Now()
	for i := range n {
		t.record(now, bufs[i][:sizes[i]])
	}
	return n, err
}

// WritePackets writes the packets to the inner link and records the ones it
// accepted.
func (t *Tap) WritePackets(bufs [][]byte) (int, error) {
	now := time.Now()
	n, err := t.inner.WritePackets(bufs)
	for _, b := range bufs[:max(0, min(n, len(bufs)))] {
		t.record(now, b)
	}
	return n, err
}

// record writes one packet to the pcap file. A capture failure must not
// break the link under test, so the error is kept for Err instead.
func (t *Tap) record(ts time.Time, pkt []byte) {
	if err := t.w.WritePacket(ts, pkt); err != nil {
		t.mu.Lock()
		if t.err == nil {
			t.err = err
		}
		t.mu.Unlock()
	}
}

// Err returns the first error writing the capture, if any.
func (t *Tap) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// BusyPollRxPackets is the inner link's busy-poll count, 0 if it does
// not poll (tun.Config.BusyPoll), so that a capture leaves the stack's
// TcpExtBusyPollRxPackets as it was.
func (t *Tap) BusyPollRxPackets() uint64 {
	if bp, ok := t.inner.(interface{ BusyPollRxPackets() uint64 }); ok {
		return bp.BusyPollRxPackets()
	}
	return 0
}

// MTU returns the inner link's MTU.
func (t *Tap) MTU() int { return t.inner.MTU() }

// BatchSize returns the inner link's batch size.
func (t *Tap) BatchSize() int { return t.inner.BatchSize() }

// Close closes the inner link. It does not close the capture's writer.
func (t *Tap) Close() error { return t.inner.Close() }
