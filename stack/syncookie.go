package stack

import (
	"crypto/sha256"
	"encoding/binary"
	"time"

	"utcp/seg"
	"utcp/timers"
)

// SYN cookies (RFC 4987 §3.6), in the manner of Linux: when a listener's
// SYN queue is full (SynCookies 1, the default) or always (2), a SYN gets
// a SYN-ACK whose ISS encodes what the connection needs, and no state is
// kept. The peer's ACK (ACK-1 = the cookie) proves the handshake and
// creates the connection directly in ESTABLISHED.
//
// Cookie layout (32 bits): hash1(4-tuple) + peer ISN + (minute << 24) +
// (hash2(4-tuple, minute) + mssIndex) mod 2^24. A cookie is accepted for
// two minutes. With timestamps, the low bits of our TSval carry the window
// scale and SACK permission, since the cookie has no room for them; the
// timestamp offset is a keyed hash of the 4-tuple (as Linux does) so it
// can be recomputed without state.

// cookieMSS is Linux's msstab: the MSS values a cookie can say.
var cookieMSS = [...]uint16{536, 1300, 1440, 1460}

const (
	cookieBits   = 24
	cookieMask   = 1<<cookieBits - 1
	cookieMaxAge = 2 // minutes
	cookieValid  = 2 * time.Minute
	tsOptBits    = 6 // low TSval bits: 4 for wscale (15 = none), 1 for SACK
)

func (s *Stack) cookieHash(key uint64, count uint32, c byte) uint32 {
	var in [45]byte
	copy(in[:32], s.isnKey[:])
	binary.BigEndian.PutUint64(in[32:], key)
	binary.BigEndian.PutUint32(in[40:], count)
	in[44] = c
	h := sha256.Sum256(in[:])
	return binary.BigEndian.Uint32(h[:4])
}

// tsOffsetFor is the timestamp offset of a 4-tuple (RFC 7323 §7.1: a
// per-connection offset; keyed so cookies can recompute it).
func (s *Stack) tsOffsetFor(key uint64) uint32 {
	return s.cookieHash(key, 0, 't')
}

func minuteCount(now timers.Instant) uint32 { return uint32(int64(now) / int64(time.Minute)) }

func (s *Stack) makeCookie(key uint64, peerISN seg.Seq, mssIdx int, now timers.Instant) seg.Seq {
	count := minuteCount(now)
	return seg.Seq(s.cookieHash(key, 0, 'a') + uint32(peerISN) + count<<cookieBits +
		((s.cookieHash(key, count, 'b') + uint32(mssIdx)) & cookieMask))
}

// checkCookie validates cookie (our ISS) for a peer whose ISN was peerISN
// and returns the MSS index it encodes.
func (s *Stack) checkCookie(key uint64, cookie, peerISN seg.Seq, now timers.Instant) (int, bool) {
	count := minuteCount(now)
	v := uint32(cookie) - s.cookieHash(key, 0, 'a') - uint32(peerISN)
	then := v >> cookieBits
	// The minute counter is only 8 bits in the cookie: compare modulo 256.
	if (uint8(count)-uint8(then))&0xff >= cookieMaxAge {
		return 0, false
	}
	then = count - uint32(uint8(count)-uint8(then))
	idx := (v - s.cookieHash(key, then, 'b')) & cookieMask
	if idx >= uint32(len(cookieMSS)) {
		return 0, false
	}
	return int(idx), true
}

// sendCookie answers a SYN with a stateless SYN-ACK.
func (l *Listener) sendCookie(sg *seg.Segment, key uint64) {
	s := l.s
	now := s.now()
	peerMSS := uint16(536)
	if sg.Opts.HasMSS {
		peerMSS = sg.Opts.MSS
	}
	idx := 0
	for i, m := range cookieMSS {
		if m <= peerMSS {
			idx = i
		}
	}
	iss := s.makeCookie(key, sg.Seq, idx, now)
	r := seg.Segment{Dst: sg.Src, SrcPort: sg.DstPort, DstPort: sg.SrcPort, Seq: iss, Ack: sg.Seq.Add(1), Flags: seg.SYN | seg.ACK}
	r.Window = uint16(min(s.cfg.RecvBuf, 0xffff))
	r.Opts.HasMSS, r.Opts.MSS = true, uint16(min(s.mtu-40, 0xffff))
	if sg.Opts.HasTS {
		// Options ride in the timestamp (Linux's cookie_init_timestamp).
		// The low bits keep the peer's window scale; ours is the same
		// function of the configuration each time, so needs no room.
		ws := uint32(0xf)
		if sg.Opts.HasWScale {
			ws = uint32(min(sg.Opts.WScale, 14))
			r.Opts.HasWScale, r.Opts.WScale = true, windowShift(s.cfg.RecvBufMax)
		}
		sack := uint32(0)
		if sg.Opts.SACKPermitted && !s.cfg.NoSACK {
			sack = 1
			r.Opts.SACKPermitted = true
		}
		clock := uint32(int64(now)/int64(time.Millisecond)) + s.tsOffsetFor(key)
		tsval := clock&^(1<<tsOptBits-1) | ws | sack<<4
		if int32(tsval-clock) > 0 {
			// The option bits put the value ahead of our clock. Our
			// next segments carry the clock itself, below what the peer
			// now holds as TS.Recent, and its PAWS check (RFC 7323
			// §5.3) would drop them until the clock caught up: the
			// first flight lost, recovered only by a 1 s RTO. Step back
			// one slot, keeping the low bits (Linux cookie_init_timestamp).
			tsval -= 1 << tsOptBits
		}
		r.Opts.HasTS, r.Opts.TSVal, r.Opts.TSEcr = true, tsval, sg.Opts.TSVal
	}
	s.emit(&r)
	s.ctr.SyncookiesSent++
	l.lastCookie = now
}

// acceptCookie turns a valid cookie ACK into an established connection.
// It reports false when the ACK is not a valid cookie.
func (l *Listener) acceptCookie(sg *seg.Segment, key uint64) bool {
	s := l.s
	now := s.now()
	if s.cfg.SynCookies != 2 && now.Sub(l.lastCookie) > cookieValid {
		return false
	}
	if sg.Flags.Has(seg.SYN) || sg.Flags.Has(seg.RST) {
		return false
	}
	iss, irs := sg.Ack-1, sg.Seq-1
	idx, ok := s.checkCookie(key, iss, irs, now)
	if !ok {
		s.ctr.SyncookiesFailed++
		return false
	}
	if l.acceptQueueFull() {
		s.ctr.ListenOverflows++
		s.ctr.ListenDrops++
		return true // dropped, as Linux does; the peer retransmits
	}
	s.ctr.SyncookiesRecv++
	t := s.newTCB(key, addrPort(sg.Src, sg.SrcPort), l.port, now)
	t.passive = true
	t.iss, t.irs = iss, irs
	t.sndUna, t.sndNxt, t.sndMax, t.sndStart = sg.Ack, sg.Ack, sg.Ack, sg.Ack
	t.rcvNxt = irs.Add(1)
	// The cookie SYN-ACK advertised min(RecvBuf, 65535), unscaled (RFC
	// 7323 §2.2): the peer may send that much with its ACK and after it,
	// so that is the right edge (left at RCV.NXT, the first data would
	// fall outside a zero window and be dropped).
	t.rcvAdv = t.rcvNxt.Add(uint32(min(s.cfg.RecvBuf, 0xffff)))
	t.peerMSS = int(cookieMSS[idx])
	t.wsOK, t.sndShift, t.rcvShift = false, 0, 0
	if sg.Opts.HasTS && sg.Opts.TSEcr != 0 {
		t.tsOK = true
		t.tsRecent = sg.Opts.TSVal
		if ws := sg.Opts.TSEcr & 0xf; ws != 0xf {
			t.wsOK = true
			t.sndShift = uint8(ws)
			t.rcvShift = windowShift(s.cfg.RecvBufMax)
		}
		t.sackOK = sg.Opts.TSEcr&(1<<4) != 0 && !s.cfg.NoSACK
	}
	t.setMSS()
	t.sndWnd = uint32(sg.Window) << t.sndShift
	t.maxSndWnd = t.sndWnd
	t.sndWl1, t.sndWl2 = sg.Seq, sg.Ack
	s.conns[key] = t
	t.listener = l
	l.synQLen++ // promote takes it out of the SYN queue count
	l.promote(t)
	s.ctr.PassiveOpens++
	t.initCongestion()
	t.established()
	t.setState(Established, "rcv ACK (SYN cookie)", sg)
	l.wake()
	if len(sg.Payload) > 0 || sg.Flags.Has(seg.FIN) {
		t.processText(sg)
	}
	return true
}
