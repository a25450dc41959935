package seg

import "strconv"

// String prints the segment the way tcpdump -n -S prints it (without the
// leading timestamp and "IP "), so test failures read like a trace:
//
//	198.18.0.1.40000 > 198.18.0.2.80: Flags [S], seq 100, win 65535, options [mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0
//
// As in tcpdump, seq is shown for segments with data, SYN, FIN or RST
// (as "seq a:b" when there is data), ack only with ACK, and urg only with
// URG. Options are listed in the order and with the NOPs AppendTo would
// put on the wire.
func (s *Segment) String() string {
	b := make([]byte, 0, 160)
	b = s.Src.AppendTo(b)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(s.SrcPort), 10)
	b = append(b, " > "...)
	b = s.Dst.AppendTo(b)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(s.DstPort), 10)
	b = append(b, ": Flags ["...)
	b = s.Flags.appendTo(b)
	b = append(b, ']')
	n := len(s.Payload)
	if n > 0 || s.Flags&(SYN|FIN|RST) != 0 {
		b = append(b, ", seq "...)
		b = strconv.AppendUint(b, uint64(s.Seq), 10)
		if n > 0 {
			b = append(b, ':')
			b = strconv.AppendUint(b, uint64(s.Seq.Add(uint32(n))), 10)
		}
	}
	if s.Flags&ACK != 0 {
		b = append(b, ", ack "...)
		b = strconv.AppendUint(b, uint64(s.Ack), 10)
	}
	b = append(b, ", win "...)
	b = strconv.AppendUint(b, uint64(s.Window), 10)
	if s.Flags&URG != 0 {
		b = append(b, ", urg "...)
		b = strconv.AppendUint(b, uint64(s.Urgent), 10)
	}
	if s.Opts.Len() > 0 {
		b = append(b, ", options ["...)
		b = s.Opts.appendString(b)
		b = append(b, ']')
	}
	b = append(b, ", length "...)
	b = strconv.AppendUint(b, uint64(n), 10)
	return string(b)
}

// String prints the options as tcpdump would show what AppendTo emits,
// e.g. "mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7".
func (o Options) String() string {
	return string(o.appendString(nil))
}

func (o *Options) appendString(b []byte) []byte {
	start := len(b)
	sep := func(b []byte) []byte {
		if len(b) > start {
			b = append(b, ',')
		}
		return b
	}
	if o.HasMSS {
		b = append(b, "mss "...)
		b = strconv.AppendUint(b, uint64(o.MSS), 10)
	}
	switch {
	case o.HasTS && o.SACKPermitted:
		b = append(sep(b), "sackOK"...)
	case o.HasTS:
		b = append(sep(b), "nop,nop"...)
	case o.SACKPermitted:
		b = append(sep(b), "nop,nop,sackOK"...)
	}
	if o.HasTS {
		b = append(sep(b), "TS val "...)
		b = strconv.AppendUint(b, uint64(o.TSVal), 10)
		b = append(b, " ecr "...)
		b = strconv.AppendUint(b, uint64(o.TSEcr), 10)
	}
	if o.HasWScale {
		b = append(sep(b), "nop,wscale "...)
		b = strconv.AppendUint(b, uint64(o.WScale), 10)
	}
	if k := o.SACKBlocksFit(); k > 0 {
		b = append(sep(b), "nop,nop,sack "...)
		b = strconv.AppendInt(b, int64(k), 10)
		b = append(b, ' ')
		for _, blk := range o.SACK[:k] {
			b = append(b, '{')
			b = strconv.AppendUint(b, uint64(blk.Start), 10)
			b = append(b, ':')
			b = strconv.AppendUint(b, uint64(blk.End), 10)
			b = append(b, '}')
		}
	}
	return b
}
