package stack

// State is a TCP connection state (RFC 9293 §3.3.2).
type State uint8

const (
	Closed State = iota
	Listen
	SynSent
	SynReceived
	Established
	FinWait1
	FinWait2
	CloseWait
	Closing
	LastAck
	TimeWait
	numStates
)

var stateNames = [numStates]string{
	Closed:      "CLOSED",
	Listen:      "LISTEN",
	SynSent:     "SYN_SENT",
	SynReceived: "SYN_RECV",
	Established: "ESTABLISHED",
	FinWait1:    "FIN_WAIT1",
	FinWait2:    "FIN_WAIT2",
	CloseWait:   "CLOSE_WAIT",
	Closing:     "CLOSING",
	LastAck:     "LAST_ACK",
	TimeWait:    "TIME_WAIT",
}

// String returns the name Linux's ss(8) uses for the state.
func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return "UNKNOWN"
}

// ParseState accepts ss-style names ("time-wait", "TIME_WAIT", "syn-recv").
func ParseState(name string) (State, bool) {
	norm := make([]byte, 0, len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '-':
			c = '_'
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		}
		norm = append(norm, c)
	}
	n := string(norm)
	switch n {
	case "SYN_RECEIVED":
		n = "SYN_RECV"
	case "FIN_WAIT_1":
		n = "FIN_WAIT1"
	case "FIN_WAIT_2":
		n = "FIN_WAIT2"
	}
	for i, sn := range stateNames {
		if sn == n {
			return State(i), true
		}
	}
	return 0, false
}

// synchronized reports whether the state is past the handshake (RFC 9293
// §3.10.7.4 calls these the synchronized states).
func (s State) synchronized() bool {
	return s >= Established
}
