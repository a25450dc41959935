package stack

import (
	"fmt"
	"os"
	"sync"

	"utcp/seg"
)

// logLink prints every packet written through it (debugging aid, enabled
// by UTCP_DEBUG_PACKETS=1).
type logLink struct {
	Link
	name string
	mu   sync.Mutex
}

func (l *logLink) WritePackets(bufs [][]byte) (int, error) {
	if os.Getenv("UTCP_DEBUG_PACKETS") != "" {
		l.mu.Lock()
		for _, b := range bufs {
			var s seg.Segment
			if err := s.Parse(b); err == nil {
				fmt.Println(l.name, s.String())
			}
		}
		l.mu.Unlock()
	}
	return l.Link.WritePackets(bufs)
}

// WritePacketsSplit keeps logLink a SplitLink when the link it wraps is
// one (tuntest's Pipe and Lossy are), so the whole-stack and transfer
// tests send new data from the send ring in place (zero-copy send); with
// packet logging on, the parts are joined and logged.
func (l *logLink) WritePacketsSplit(bufs, pays [][]byte) (int, error) {
	if sl, ok := l.Link.(SplitLink); ok && os.Getenv("UTCP_DEBUG_PACKETS") == "" {
		return sl.WritePacketsSplit(bufs, pays)
	}
	return l.WritePackets(joinSplit(bufs, pays))
}
