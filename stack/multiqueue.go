package stack

import (
	"encoding/binary"
	"errors"
	"os"
	"time"
)

// MultiQueueLink is a Link with several independent packet queues, such as
// a TUN device opened with IFF_MULTI_QUEUE (tun.MultiQueue). The stack
// detects it and runs one reader goroutine per queue, so read and write
// system calls proceed on several cores at once while TCP processing still
// happens under the one stack lock.
//
// The link must deliver all packets of one flow on one queue, in order, and
// may rely on the stack writing all packets of one connection on one queue
// (a TUN learns a flow's queue from the writes: tun_flow_update). ReadPackets
// and WritePackets of the embedded Link are not used when QueueCount > 1.
type MultiQueueLink interface {
	Link
	QueueCount() int
	ReadQueue(q int, bufs [][]byte, sizes []int) (int, error)
	WriteQueue(q int, bufs [][]byte) (int, error)
}

// multiQueue is the output side of a multi-queue driver: packets produced
// under Stack.mu are sorted by connection onto per-queue lists, and each
// list has at most one flusher at a time, so one connection's packets are
// written in the order they were produced while different queues are
// written in parallel.
type multiQueue struct {
	link MultiQueueLink
	q    []outQueue
}

type outQueue struct {
	pending, spare [][]byte
	flushing       bool
}

// startReaders starts the reader goroutines: one per queue of a
// MultiQueueLink with more than one queue, else the single readLoop.
func (s *Stack) startReaders() {
	if ml, ok := s.link.(MultiQueueLink); ok && ml.QueueCount() > 1 {
		s.mq = &multiQueue{link: ml, q: make([]outQueue, ml.QueueCount())}
		for q := range ml.QueueCount() {
			s.wg.Add(1)
			go s.queueReadLoop(ml, q)
		}
		return
	}
	// Two-part packets (SplitLink) go through the single-queue flusher
	// only; the multi-queue and manual paths hand out whole packets.
	s.split, _ = s.link.(SplitLink)
	if !s.cfg.InlineFlush {
		s.flushKick, s.flushStop = make(chan struct{}, 1), make(chan struct{})
		s.wg.Add(1)
		go s.flushLoop()
	}
	s.wg.Add(1)
	go s.readLoop()
}

// queueReadLoop is readLoop for one queue of a MultiQueueLink: a batch read
// without the lock (in parallel with the other queues' readers), then the
// whole batch processed under mu and ended with endBatch, so ACK coalescing
// is per batch as with one queue. A connection's packets all come from one
// queue, hence from one goroutine, in order.
func (s *Stack) queueReadLoop(ml MultiQueueLink, q int) {
	defer s.wg.Done()
	n := max(ml.BatchSize(), 1)
	bufs := make([][]byte, n)
	sizes := make([]int, n)
	for i := range bufs {
		bufs[i] = make([]byte, rxBufSize)
	}
	for {
		k, err := ml.ReadQueue(q, bufs, sizes)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			s.cfg.Logf("utcp: link read (queue %d): %v", q, err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		s.beginNow()
		for i := range k {
			s.inputOwned(bufs, i, sizes[i], false)
		}
		s.endBatch()
		s.unlockAndFlush()
	}
}

// Queues reports how many link queues the stack reads (1 unless the link is
// a MultiQueueLink with several).
func (s *Stack) Queues() int {
	if s.mq == nil {
		return 1
	}
	return len(s.mq.q)
}

// queueOf picks the output queue of one of our packets: a hash of the
// connection key the demultiplexer uses (remote address, remote port, local
// port), so every packet of a connection, in both directions once the TUN
// has learnt the flow, stays on one queue. Packets without ports (ICMP,
// non-first fragments) hash the remote address alone.
func queueOf(pkt []byte, n int) int {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return 0
	}
	key := uint64(binary.BigEndian.Uint32(pkt[16:20])) << 32
	ihl := int(pkt[0]&0x0f) * 4
	proto := pkt[9]
	fragOff := binary.BigEndian.Uint16(pkt[6:8]) & 0x1fff
	if (proto == 6 || proto == 17) && fragOff == 0 && len(pkt) >= ihl+4 {
		sport := binary.BigEndian.Uint16(pkt[ihl:])
		dport := binary.BigEndian.Uint16(pkt[ihl+2:])
		key = connKey([4]byte(pkt[16:20]), dport, sport)
	}
	// A 64-bit finalizer (splitmix64) so that ports differing in low bits
	// still spread evenly for any n.
	key ^= key >> 30
	key *= 0xbf58476d1ce4e5b9
	key ^= key >> 27
	key *= 0x94d049bb133111eb
	key ^= key >> 31
	return int(key % uint64(n))
}

// distributeLocked moves s.outq onto the per-queue lists, in order.
func (s *Stack) distributeLocked() {
	s.markPushes()
	n := len(s.mq.q)
	for i, b := range s.outq {
		q := &s.mq.q[queueOf(b, n)]
		q.pending = append(q.pending, b)
		s.outq[i] = nil
	}
	s.outq = s.outq[:0]
}

// unlockAndFlushQueues is unlockAndFlush for a multi-queue link: it takes
// every queue that has packets and no flusher, writes it with mu released,
// and repeats until there is nothing it may write. Another goroutine
// (reader of another queue, the timer, an application call) may be writing
// another queue at the same time; that is the point.
func (s *Stack) unlockAndFlushQueues() {
	s.distributeLocked()
	m := s.mq
	for {
		q := -1
		for i := range m.q {
			if !m.q[i].flushing && len(m.q[i].pending) > 0 {
				q = i
				break
			}
		}
		if q < 0 {
			break
		}
		oq := &m.q[q]
		oq.flushing = true
		batch := oq.pending
		oq.pending = oq.spare[:0]
		oq.spare = nil
		s.mu.Unlock()
		if _, err := m.link.WriteQueue(q, batch); err != nil && !errors.Is(err, os.ErrClosed) {
			s.cfg.Logf("utcp: link write (queue %d): %v", q, err)
		}
		s.mu.Lock()
		for i := range batch {
			if len(s.free) < 4096 {
				s.free = append(s.free, batch[i][:0])
			}
			batch[i] = nil
		}
		oq.spare = batch[:0]
		oq.flushing = false
		s.distributeLocked()
	}
	s.mu.Unlock()
}
