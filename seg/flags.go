package seg

// Flags holds the eight TCP control bits in wire order (RFC 9293 §3.1,
// RFC 3168 §23.2 for ECE and CWR): bit 0 is FIN, bit 7 is CWR, exactly as
// byte 13 of the TCP header.
type Flags uint8

// TCP control bits.
const (
	FIN Flags = 1 << iota
	SYN
	RST
	PSH
	ACK
	URG
	ECE
	CWR
)

// Has reports whether every bit of x is set in f.
func (f Flags) Has(x Flags) bool { return f&x == x }

// flagChars lists the tcpdump letter for each bit, in tcpdump's printing
// order (F S R P . U E W), which is also bit order.
var flagChars = [8]byte{'F', 'S', 'R', 'P', '.', 'U', 'E', 'W'}

// String prints the flags as tcpdump does: "S", "S.", "P.", "F.", "R",
// "R.", "." for a bare ACK and "none" when no bit is set.
func (f Flags) String() string {
	if f == 0 {
		return "none"
	}
	var buf [8]byte
	return string(f.appendTo(buf[:0]))
}

func (f Flags) appendTo(b []byte) []byte {
	if f == 0 {
		return append(b, "none"...)
	}
	for i, c := range flagChars {
		if f&(1<<i) != 0 {
			b = append(b, c)
		}
	}
	return b
}
