package seg

import "encoding/binary"

// SACKBlock is one SACK block (RFC 2018 §3): the receiver holds
// [Start, End).
type SACKBlock struct{ Start, End Seq }

// Options is the parsed form of the TCP options this stack understands.
// On Parse, fields for options not present are zero and their Has* flag
// is false. On AppendTo, an option is emitted iff its Has* flag (or
// SACKPermitted, or NumSACK > 0) is set.
type Options struct {
	MSS    uint16 // RFC 9293 §3.7.1
	HasMSS bool

	// WScale is the shift count exactly as received; RFC 7323 §2.3 says a
	// value above 14 is treated as 14, which is the caller's job so that
	// the raw value can still be logged.
	WScale    uint8
	HasWScale bool

	SACKPermitted bool // RFC 2018 §2

	HasTS bool // RFC 7323 §3
	TSVal uint32
	TSEcr uint32

	// NumSACK is how many of SACK are in use (0..4, RFC 2018 §3).
	NumSACK int
	SACK    [4]SACKBlock
}

// Sizes of the 32-bit-aligned option words AppendTo writes. The layout is
// Linux's (tcp_options_write): every option group starts on a 4-byte
// boundary so the receiver's fast path can read whole words.
const (
	lenMSSWord    = 4  // 02 04 mss
	lenTSWord     = 12 // 01 01 08 0a val ecr, or 04 02 08 0a val ecr
	lenSACKPWord  = 4  // 01 01 04 02
	lenWSWord     = 4  // 01 03 03 shift
	lenSACKHeader = 4  // 01 01 05 len
	lenSACKBlock  = 8
)

// fixedLen is the length of everything AppendTo emits except SACK blocks.
func (o Options) fixedLen() int {
	n := 0
	if o.HasMSS {
		n += lenMSSWord
	}
	if o.HasTS {
		n += lenTSWord // SACK-permitted rides in the TS word's NOPs
	} else if o.SACKPermitted {
		n += lenSACKPWord
	}
	if o.HasWScale {
		n += lenWSWord
	}
	return n
}

// SACKBlocksFit returns how many SACK blocks AppendTo will emit: NumSACK
// (clamped to 0..4), reduced until the options fit in 40 bytes. With
// timestamps that is at most 3 blocks, as in Linux (RFC 2018 §3 notes the
// same limit).
func (o Options) SACKBlocksFit() int {
	n := min(max(o.NumSACK, 0), len(o.SACK))
	if n == 0 {
		return 0
	}
	room := MaxOptionsLen - o.fixedLen() - lenSACKHeader
	if room < lenSACKBlock {
		return 0
	}
	return min(n, room/lenSACKBlock)
}

// Len returns the number of bytes AppendTo will emit for these options.
// It is always a multiple of 4 and at most 40.
func (o Options) Len() int {
	n := o.fixedLen()
	if k := o.SACKBlocksFit(); k > 0 {
		n += lenSACKHeader + lenSACKBlock*k
	}
	return n
}

// appendOptions writes the options in Linux's order and alignment: MSS;
// timestamps, with SACK-permitted in place of the two leading NOPs when
// both are present; SACK-permitted alone behind two NOPs; window scale
// behind one NOP; SACK blocks behind two NOPs. The result is exactly
// o.Len() bytes.
func (o *Options) appendOptions(b []byte) []byte {
	if o.HasMSS {
		b = append(b, OptMSS, 4, byte(o.MSS>>8), byte(o.MSS))
	}
	switch {
	case o.HasTS && o.SACKPermitted:
		b = append(b, OptSACKPerm, 2, OptTimestamp, 10)
	case o.HasTS:
		b = append(b, OptNOP, OptNOP, OptTimestamp, 10)
	case o.SACKPermitted:
		b = append(b, OptNOP, OptNOP, OptSACKPerm, 2)
	}
	if o.HasTS {
		b = binary.BigEndian.AppendUint32(b, o.TSVal)
		b = binary.BigEndian.AppendUint32(b, o.TSEcr)
	}
	if o.HasWScale {
		b = append(b, OptNOP, OptWScale, 3, o.WScale)
	}
	if k := o.SACKBlocksFit(); k > 0 {
		b = append(b, OptNOP, OptNOP, OptSACK, byte(2+lenSACKBlock*k))
		for _, blk := range o.SACK[:k] {
			b = binary.BigEndian.AppendUint32(b, uint32(blk.Start))
			b = binary.BigEndian.AppendUint32(b, uint32(blk.End))
		}
	}
	return b
}
