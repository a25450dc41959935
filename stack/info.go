package stack

import (
	"net/netip"
	"sort"
	"time"

	"utcp/timers"
)

// ConnInfo is a copy of one connection's variables, in the spirit of
// Linux's TCP_INFO and `ss -ti`.
type ConnInfo struct {
	State         State
	Local, Remote netip.AddrPort

	ISS, IRS                       uint32
	SndUna, SndNxt, SndMax, RcvNxt uint32
	SndWnd, RcvWnd                 uint32 // bytes, scaled
	SndWScale, RcvWScale           uint8
	MSS                            int
	Timestamps                     bool
	Cwnd, Ssthresh                 uint32 // bytes
	InFlight                       uint32
	SRTT, RTTVar, RTO              time.Duration
	Retransmits                    int // consecutive timeouts now
	TotalRetrans                   int
	RecvQ, SendQ                   int // unread bytes; unacknowledged plus unsent bytes (on a listener: accept queue length and backlog)
	SynQ                           int // listeners: SYN_RECV entries
	OOOSegs, OOOBytes              int
	BytesAcked, BytesReceived      uint64
	Timers                         []TimerInfo
	Orphan                         bool
}

// TimerInfo is one armed timer and the time left on it.
type TimerInfo struct {
	Kind string
	In   time.Duration
}

func addrPort(a netip.Addr, p uint16) netip.AddrPort { return netip.AddrPortFrom(a, p) }

func (t *tcb) info(now timers.Instant) ConnInfo {
	ci := ConnInfo{
		State: t.state, Local: t.local, Remote: t.remote,
		ISS: uint32(t.iss), IRS: uint32(t.irs),
		SndUna: uint32(t.sndUna), SndNxt: uint32(t.sndNxt), SndMax: uint32(t.sndMax), RcvNxt: uint32(t.rcvNxt),
		SndWnd: t.sndWnd, RcvWnd: t.rcvWndNow(),
		SndWScale: t.sndShift, RcvWScale: t.rcvShift,
		MSS: t.mss, Timestamps: t.tsOK,
		Cwnd: t.cwnd, Ssthresh: t.ssthresh,
		InFlight: uint32(t.sndMax.Sub(t.sndUna)),
		SRTT:     t.rto.SRTT(), RTTVar: t.rto.RTTVar(), RTO: t.rto.Current(),
		Retransmits: t.retries, TotalRetrans: t.totalRetx,
		RecvQ: t.rcv.Len(), SendQ: t.snd.Len(),
		OOOSegs: len(t.ooo), OOOBytes: t.oooBytes,
		BytesAcked: t.bytesAcked, BytesReceived: t.bytesReceived,
		Orphan: t.orphan,
	}
	for k := timers.Kind(0); k < timers.NumKinds; k++ {
		if at, ok := t.timers.At(k); ok {
			ci.Timers = append(ci.Timers, TimerInfo{Kind: k.String(), In: at.Sub(now)})
		}
	}
	return ci
}

// Connections returns every listener, connection and TIME_WAIT entry,
// sorted by state then addresses (the data behind `utcp ss`).
func (s *Stack) Connections() []ConnInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := make([]ConnInfo, 0, len(s.listeners)+len(s.conns)+len(s.tw))
	for _, l := range s.listeners {
		out = append(out, ConnInfo{State: Listen, Local: addrPort(s.addr, l.port), RecvQ: len(l.acceptQ), SendQ: l.backlog, SynQ: l.synQLen})
	}
	for _, t := range s.conns {
		out = append(out, t.info(now))
	}
	for key, e := range s.tw {
		ra, rp, lp := keyParts(key)
		out = append(out, ConnInfo{
			State: TimeWait, Local: addrPort(s.addr, lp), Remote: addrPort(ra, rp),
			SndNxt: uint32(e.sndNxt), RcvNxt: uint32(e.rcvNxt), Timestamps: e.tsOK,
			Timers: []TimerInfo{{Kind: timers.TimeWait.String(), In: e.expires.Sub(now)}},
		})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.State != b.State {
			return a.State < b.State
		}
		if c := a.Local.Compare(b.Local); c != 0 {
			return c < 0
		}
		return a.Remote.Compare(b.Remote) < 0
	})
	return out
}
