package segtest

import (
	"net/netip"
	"testing"

	"utcp/seg"
)

func TestRawBuildsWhatItIsTold(t *testing.T) {
	base := Raw{
		Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"),
		Sport: 40000, Dport: 7, Seq: 1000, Ack: 2000, Flags: seg.ACK | seg.PSH,
		Window: 512, Payload: []byte("hello"),
	}
	var s seg.Segment
	if err := s.Parse(base.Bytes()); err != nil {
		t.Fatalf("a Raw with nothing set wrong does not parse: %v", err)
	}
	if s.Seq != 1000 || s.Ack != 2000 || s.Window != 512 || string(s.Payload) != "hello" || s.SrcPort != 40000 || s.DstPort != 7 {
		t.Fatalf("parsed %+v", s)
	}
	for name, r := range map[string]Raw{
		"bad TCP checksum": func() Raw { r := base; r.BadTCPCsum = true; return r }(),
		"bad IP checksum":  func() Raw { r := base; r.BadIPCsum = true; return r }(),
		"short total len":  func() Raw { r := base; r.TotalLen = -1; return r }(),
		"data offset 4":    func() Raw { r := base; r.DataOff = 4; return r }(),
	} {
		if err := s.Parse(r.Bytes()); err == nil {
			t.Errorf("%s: parsed without error", name)
		}
	}
}
