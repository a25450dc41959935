package seg

import (
	"math/rand/v2"
	"testing"
)

// benchSegment is a typical bulk-data segment: timestamps and 1448 bytes.
func benchSegment() Segment {
	r := rand.New(rand.NewPCG(19, 20))
	s := Segment{Src: addrA, Dst: addrB, SrcPort: 40000, DstPort: 80, Seq: 1, Ack: 2, Flags: ACK,
		Window: 512, Opts: Options{HasTS: true, TSVal: 1, TSEcr: 2}, Payload: make([]byte, 1448)}
	for i := range s.Payload {
		s.Payload[i] = byte(r.Uint32())
	}
	return s
}

func BenchmarkParse(b *testing.B) {
	s := benchSegment()
	pkt := s.AppendTo(nil)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	var got Segment
	for b.Loop() {
		if err := got.Parse(pkt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendTo(b *testing.B) {
	s := benchSegment()
	buf := make([]byte, 0, 2048)
	b.SetBytes(int64(s.HeaderLen() + len(s.Payload)))
	b.ReportAllocs()
	for b.Loop() {
		buf = s.AppendTo(buf[:0])
	}
}

func benchChecksum(b *testing.B, n int) {
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	b.SetBytes(int64(n))
	b.ReportAllocs()
	var sink uint16
	for b.Loop() {
		sink += Checksum(buf, 0)
	}
	_ = sink
}

func BenchmarkChecksum(b *testing.B) {
	b.Run("64", func(b *testing.B) { benchChecksum(b, 64) })
	b.Run("1500", func(b *testing.B) { benchChecksum(b, 1500) })
	b.Run("64KiB", func(b *testing.B) { benchChecksum(b, 64<<10) })
}

// BenchmarkChecksumReference is the obvious 16-bit loop, for scale.
func BenchmarkChecksumReference(b *testing.B) {
	buf := make([]byte, 1500)
	b.SetBytes(int64(len(buf)))
	var sink uint16
	for b.Loop() {
		sink += refChecksum(buf, 0)
	}
	_ = sink
}
