package stack

import "reflect"

// Counters are the stack's MIB counters, named as Linux names them in
// /proc/net/snmp (Tcp, Ip, Icmp) and /proc/net/netstat (TcpExt, IpExt), so
// nstat habits carry over. Each field's tag says which table it lives in.
type Counters struct {
	// Tcp MIB (RFC 4022 names, as Linux prints them).
	ActiveOpens  uint64 `mib:"Tcp"`
	PassiveOpens uint64 `mib:"Tcp"`
	AttemptFails uint64 `mib:"Tcp"`
	EstabResets  uint64 `mib:"Tcp"`
	CurrEstab    uint64 `mib:"Tcp"` // a gauge, as in Linux
	InSegs       uint64 `mib:"Tcp"`
	OutSegs      uint64 `mib:"Tcp"`
	RetransSegs  uint64 `mib:"Tcp"`
	InErrs       uint64 `mib:"Tcp"`
	OutRsts      uint64 `mib:"Tcp"`
	InCsumErrors uint64 `mib:"Tcp"`

	// TcpExt.
	ListenOverflows      uint64 `mib:"TcpExt"`
	ListenDrops          uint64 `mib:"TcpExt"`
	TW                   uint64 `mib:"TcpExt"` // TIME_WAIT entries that ended on their timer
	TWRecycled           uint64 `mib:"TcpExt"`
	TCPTimeWaitOverflow  uint64 `mib:"TcpExt"`
	TCPAbortOnClose      uint64 `mib:"TcpExt"`
	TCPAbortOnData       uint64 `mib:"TcpExt"`
	TCPAbortOnTimeout    uint64 `mib:"TcpExt"`
	TCPAbortOnLinger     uint64 `mib:"TcpExt"`
	TCPTimeouts          uint64 `mib:"TcpExt"`
	TCPSynRetrans        uint64 `mib:"TcpExt"`
	TCPChallengeACK      uint64 `mib:"TcpExt"`
	TCPSYNChallenge      uint64 `mib:"TcpExt"`
	TCPOFOQueue          uint64 `mib:"TcpExt"`
	TCPOFODrop           uint64 `mib:"TcpExt"`
	TCPWinProbe          uint64 `mib:"TcpExt"`
	DelayedACKs          uint64 `mib:"TcpExt"`
	DelayedACKLost       uint64 `mib:"TcpExt"`
	TCPFastRetrans       uint64 `mib:"TcpExt"`
	TCPSlowStartRetrans  uint64 `mib:"TcpExt"`
	TCPLossProbes        uint64 `mib:"TcpExt"`
	OutOfWindowIcmps     uint64 `mib:"TcpExt"`
	TCPPMTUDUpdates      uint64 `mib:"TcpExt"`
	TCPLostRetransmit    uint64 `mib:"TcpExt"`
	TCPSpuriousRTOs      uint64 `mib:"TcpExt"`
	TCPSackRecovery      uint64 `mib:"TcpExt"`
	TCPRenoRecovery      uint64 `mib:"TcpExt"`
	TCPDSACKRecv         uint64 `mib:"TcpExt"`
	TCPDSACKOldSent      uint64 `mib:"TcpExt"`
	PAWSEstab            uint64 `mib:"TcpExt"`
	TCPToZeroWindowAdv   uint64 `mib:"TcpExt"`
	TCPFromZeroWindowAdv uint64 `mib:"TcpExt"`
	TCPKeepAlive         uint64 `mib:"TcpExt"`
	TCPFINWait2Timeout   uint64 `mib:"TcpExt"` // Linux calls it TCPTimeWaitOverflow's cousin: orphaned FIN_WAIT2 ended by tcp_fin_timeout
	TCPReqQFullDrop      uint64 `mib:"TcpExt"`
	TCPReqQFullDoCookies uint64 `mib:"TcpExt"`
	SyncookiesSent       uint64 `mib:"TcpExt"`
	SyncookiesRecv       uint64 `mib:"TcpExt"`
	SyncookiesFailed     uint64 `mib:"TcpExt"`
	EmbryonicRsts        uint64 `mib:"TcpExt"`
	// Packets a busy-polling link read found without parking (the link's
	// count, e.g. tun.Config.BusyPoll; 0 for a link that does not poll).
	BusyPollRxPackets uint64 `mib:"TcpExt"`

	// Ip and Icmp, the parts a TCP host needs.
	InReceives      uint64 `mib:"Ip"`
	InHdrErrors     uint64 `mib:"Ip"`
	InAddrErrors    uint64 `mib:"Ip"`
	InUnknownProtos uint64 `mib:"Ip"`
	InDelivers      uint64 `mib:"Ip"`
	ReasmReqds      uint64 `mib:"Ip"`
	ReasmOKs        uint64 `mib:"Ip"`
	ReasmFails      uint64 `mib:"Ip"`
	ReasmTimeout    uint64 `mib:"Ip"`
	InIPv6          uint64 `mib:"IpExt"` // IPv6 packets dropped: utcp speaks IPv4 only
	InEchos         uint64 `mib:"Icmp"`
	OutEchoReps     uint64 `mib:"Icmp"`
	IcmpInErrors    uint64 `mib:"Icmp"`
	InDestUnreachs  uint64 `mib:"Icmp"`
}

// Counter is one named counter value.
type Counter struct {
	MIB   string // "Tcp", "TcpExt", "Ip", "IpExt", "Icmp"
	Name  string
	Value uint64
}

// List returns every counter in a stable order, as nstat would print them.
func (c *Counters) List() []Counter {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	out := make([]Counter, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		out = append(out, Counter{MIB: f.Tag.Get("mib"), Name: f.Name, Value: v.Field(i).Uint()})
	}
	return out
}

// Get returns a counter by its Linux name (with or without the MIB prefix,
// e.g. "ListenOverflows" or "TcpExtListenOverflows").
func (c *Counters) Get(name string) (uint64, bool) {
	for _, x := range c.List() {
		if x.Name == name || x.MIB+x.Name == name {
			return x.Value, true
		}
	}
	return 0, false
}
