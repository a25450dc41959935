package seg

import (
	"bytes"
	"testing"
)

// FuzzParse feeds arbitrary bytes to every parser. None may panic; a
// packet Parse accepts must survive AppendTo and parse back to the same
// fields (canonicalised: TTL 0 becomes DefaultTTL, SACK blocks that do not
// fit beside the other options are dropped).
func FuzzParse(f *testing.F) {
	addFuzzSeeds(f)
	f.Fuzz(fuzzOne)
}

// FuzzParseChecksummed repairs both checksums of the input before parsing,
// so mutations reach the header-length, fragment and option logic instead
// of stopping at the checksum.
func FuzzParseChecksummed(f *testing.F) {
	addFuzzSeeds(f)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		fuzzOne(t, fixChecksums(pkt))
	})
}

func addFuzzSeeds(f *testing.F) {
	for _, g := range loadGolden(f) {
		f.Add(g.data)
	}
	f.Add(basePacket())
	f.Add([]byte{})
	f.Add(make([]byte, 40))
}

func fuzzOne(t *testing.T, pkt []byte) {
	// The views must not panic after a successful Validate.
	ip := IPv4(pkt)
	if ip.Validate() == nil {
		_ = ip.ID() + uint16(ip.FragmentOffset()) + uint16(ip.TTL())
		_, _, _ = ip.Src(), ip.Dst(), ip.IsFragment()
		pl := ip.Payload()
		if tcp := TCP(pl); tcp.Validate() == nil {
			_, _ = tcp.Options(), tcp.Payload()
			_ = tcp.Seq().Add(uint32(tcp.Window()))
		}
		if m := ICMPv4(pl); m.Validate() == nil {
			_ = m.Payload()
			if m.Type() == ICMPEchoRequest {
				rep := IPv4(AppendEchoReply(nil, ip))
				if err := rep.Validate(); err != nil {
					t.Fatalf("echo reply invalid: %v", err)
				}
				if err := ICMPv4(rep.Payload()).Validate(); err != nil {
					t.Fatalf("echo reply ICMP invalid: %v", err)
				}
			}
		}
	}

	var s Segment
	if err := s.Parse(pkt); err != nil {
		if !isNamed(err) {
			t.Fatalf("unnamed error %v", err)
		}
		return
	}
	_ = s.String()
	// TCP.Validate agrees with Parse.
	if err := TCP(IPv4(pkt).Payload()).Validate(); err != nil {
		t.Fatalf("Parse ok but TCP.Validate: %v", err)
	}
	out := s.AppendTo(nil)
	if len(out) != s.HeaderLen()+len(s.Payload) {
		t.Fatalf("AppendTo wrote %d bytes, HeaderLen %d + %d", len(out), s.HeaderLen(), len(s.Payload))
	}
	var back Segment
	if err := back.Parse(out); err != nil {
		t.Fatalf("re-parse of %v: %v\n%x", &s, err, out)
	}
	want := canonical(s)
	if d := diffSeg(&back, &want); d != "" {
		t.Fatalf("round trip of %v:\n%s", &s, d)
	}
	if !bytes.Equal(back.Payload, s.Payload) {
		t.Fatal("payload changed")
	}
}
