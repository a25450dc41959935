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
