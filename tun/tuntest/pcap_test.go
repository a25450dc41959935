package tuntest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// udpPacket builds an IPv4/UDP packet 198.18.0.2:sport → 198.18.0.1:5678 by
// hand, with a valid IPv4 header checksum (RFC 791 §3.1) and the UDP
// checksum left zero, which RFC 768 allows for IPv4.
func udpPacket(sport uint16, payload string) []byte {
	p := make([]byte, 20+8+len(payload))
	p[0] = 0x45 // version 4, IHL 5 words
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], 1) // identification
	p[8] = 64                            // TTL
	p[9] = 17                            // protocol UDP
	copy(p[12:], []byte{198, 18, 0, 2})
	copy(p[16:], []byte{198, 18, 0, 1})
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	u := p[20:]
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], 5678)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	copy(u[8:], payload)
	return p
}

type pcapRecord struct {
	sec, usec, incl, orig uint32
	data                  []byte
}

// parsePcap checks the global header and splits the records, failing the
// test on any malformed byte.
func parsePcap(t *testing.T, b []byte, wantSnaplen uint32) []pcapRecord {
	t.Helper()
	if len(b) < 24 {
		t.Fatalf("pcap file has %d bytes, shorter than the 24-byte global header", len(b))
	}
	le := binary.LittleEndian
	if m := le.Uint32(b[0:]); m != 0xa1b2c3d4 {
		t.Fatalf("magic %#x, want 0xa1b2c3d4", m)
	}
	if maj, min := le.Uint16(b[4:]), le.Uint16(b[6:]); maj != 2 || min != 4 {
		t.Errorf("version %d.%d, want 2.4", maj, min)
	}
	if z, s := le.Uint32(b[8:]), le.Uint32(b[12:]); z != 0 || s != 0 {
		t.Errorf("thiszone %d sigfigs %d, want 0 0", z, s)
	}
	if s := le.Uint32(b[16:]); s != wantSnaplen {
		t.Errorf("snaplen %d, want %d", s, wantSnaplen)
	}
	if lt := le.Uint32(b[20:]); lt != 101 {
		t.Errorf("linktype %d, want 101 (LINKTYPE_RAW)", lt)
	}
	var recs []pcapRecord
	for r := b[24:]; len(r) > 0; {
		if len(r) < 16 {
			t.Fatalf("record %d: %d bytes left, shorter than a record header", len(recs), len(r))
		}
		rec := pcapRecord{sec: le.Uint32(r[0:]), usec: le.Uint32(r[4:]), incl: le.Uint32(r[8:]), orig: le.Uint32(r[12:])}
		if rec.usec >= 1e6 || rec.incl > rec.orig || rec.incl > wantSnaplen || int(rec.incl) > len(r)-16 {
			t.Fatalf("record %d: bad header %+v with %d bytes left", len(recs), rec, len(r)-16)
		}
		rec.data = r[16 : 16+rec.incl]
		recs = append(recs, rec)
		r = r[16+rec.incl:]
	}
	return recs
}

func TestPcapLayout(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewPcapWriter(&buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 24 {
		t.Fatalf("NewPcapWriter wrote %d bytes, want the 24-byte global header", buf.Len())
	}
	ts := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	pkts := [][]byte{udpPacket(1000, "hello"), udpPacket(1001, ""), udpPacket(1002, strings.Repeat("x", 1000))}
	for i, p := range pkts {
		if err := w.WritePacket(ts.Add(time.Duration(i)*time.Second), p); err != nil {
			t.Fatal(err)
		}
	}
	recs := parsePcap(t, buf.Bytes(), DefaultSnaplen)
	if len(recs) != len(pkts) {
		t.Fatalf("%d records, want %d", len(recs), len(pkts))
	}
	for i, r := range recs {
		if want := uint32(ts.Unix()) + uint32(i); r.sec != want || r.usec != 123456 {
			t.Errorf("record %d: ts %d.%06d, want %d.123456", i, r.sec, r.usec, want)
		}
		if r.incl != uint32(len(pkts[i])) || r.orig != r.incl || !bytes.Equal(r.data, pkts[i]) {
			t.Errorf("record %d: incl %d orig %d, data mismatch %t; want %d bytes equal", i, r.incl, r.orig, !bytes.Equal(r.data, pkts[i]), len(pkts[i]))
		}
	}
	// The exact bytes of the first record header: a golden check
	// independent of parsePcap.
	hdr := buf.Bytes()[24:40]
	want := []byte{
		0xd9, 0x81, 0x38, 0x66, // 1714979289 = 0x663881d9 = 2024-05-06T07:08:09Z, little-endian
		0x40, 0xe2, 0x01, 0x00, // 123456 µs
		33, 0, 0, 0, // included length: 20 + 8 + 5
		33, 0, 0, 0, // original length
	}
	if !bytes.Equal(hdr, want) {
		t.Errorf("first record header % x, want % x", hdr, want)
	}
}

func TestPcapSnaplen(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewPcapWriter(&buf, 20)
	p := udpPacket(1, "hello")
	w.WritePacket(time.Unix(0, 0), p)
	recs := parsePcap(t, buf.Bytes(), 20)
	if len(recs) != 1 || recs[0].incl != 20 || recs[0].orig != uint32(len(p)) || !bytes.Equal(recs[0].data, p[:20]) {
		t.Errorf("records %+v; want one with incl 20, orig %d", recs, len(p))
	}
}

type failWriter struct{ after int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("disk full")
	}
	f.after--
	return len(p), nil
}

func TestPcapWriteErrors(t *testing.T) {
	if _, err := NewPcapWriter(&failWriter{0}, 0); err == nil {
		t.Error("NewPcapWriter on a failing writer returned no error")
	}
	w, err := NewPcapWriter(&failWriter{1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WritePacket(time.Now(), udpPacket(1, "x")); err == nil {
		t.Error("WritePacket on a failing writer returned no error")
	}
	// A Tap keeps the capture error but the link keeps working.
	a, b := NewPipe(1500, 8)
	defer b.Close()
	tap := NewTap(a, w)
	defer tap.Close()
	if n, err := tap.WritePackets([][]byte{udpPacket(1, "x")}); n != 1 || err != nil {
		t.Errorf("Tap.WritePackets with a failing capture = %d, %v; want 1, nil", n, err)
	}
	if tap.Err() == nil {
		t.Error("Tap.Err() = nil after a failed capture")
	}
	readN(t, b, 1)
}

func TestPcapConcurrent(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewPcapWriter(&buf, 0)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				w.WritePacket(time.Now(), udpPacket(uint16(g*1000+i), strings.Repeat("y", i)))
			}
		})
	}
	wg.Wait()
	// Records never interleave: every one parses and holds a whole packet.
	recs := parsePcap(t, buf.Bytes(), DefaultSnaplen)
	if len(recs) != 800 {
		t.Fatalf("%d records, want 800", len(recs))
	}
	for i, r := range recs {
		if int(binary.BigEndian.Uint16(r.data[2:])) != len(r.data) {
			t.Fatalf("record %d: IPv4 total length %d in a %d-byte record", i, binary.BigEndian.Uint16(r.data[2:]), len(r.data))
		}
	}
}

func TestTapRecordsBothDirections(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewPcapWriter(&buf, 0)
	a, b := NewPipe(1500, 8)
	tap := NewTap(a, w)
	out, in := udpPacket(1111, "outbound"), udpPacket(2222, "inbound")
	if _, err := tap.WritePackets([][]byte{out}); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, b, 1)[0]; !bytes.Equal(got, out) {
		t.Errorf("the Tap changed the written packet")
	}
	b.WritePackets([][]byte{in})
	if got := readN(t, tap, 1)[0]; !bytes.Equal(got, in) {
		t.Errorf("the Tap changed the read packet")
	}
	if tap.MTU() != 1500 || tap.BatchSize() != DefaultBatchSize {
		t.Errorf("Tap MTU %d BatchSize %d, want the inner link's", tap.MTU(), tap.BatchSize())
	}
	tap.Close()
	b.Close()
	recs := parsePcap(t, buf.Bytes(), DefaultSnaplen)
	if len(recs) != 2 || !bytes.Equal(recs[0].data, out) || !bytes.Equal(recs[1].data, in) {
		t.Errorf("capture has %d records; want the written then the read packet", len(recs))
	}
	// A closed link records nothing more.
	bufs, sizes := readBufs(1, 1500)
	if _, err := tap.ReadPackets(bufs, sizes); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Tap.ReadPackets after Close = %v, want os.ErrClosed", err)
	}
	if n := len(parsePcap(t, buf.Bytes(), DefaultSnaplen)); n != 2 {
		t.Errorf("%d records after a failed read, want 2", n)
	}
}

func TestPcapReadByTcpdump(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump not installed (apt-get install -y tcpdump)")
	}
	path := filepath.Join(t.TempDir(), "cap.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewPcapWriter(f, 0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	start := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range n {
		if err := w.WritePacket(start.Add(time.Duration(i)*time.Millisecond), udpPacket(uint16(4000+i), "hello")); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// -tt prints raw epoch seconds, independent of the local time zone.
	cmd := exec.CommandContext(ctx, tcpdump, "-n", "-tt", "-r", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tcpdump -r: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != n {
		t.Fatalf("tcpdump printed %d lines, want %d:\n%s", len(lines), n, stdout.String())
	}
	for i, line := range lines {
		for _, want := range []string{
			fmt.Sprintf("%d.%06d ", start.Unix(), i*1000),
			fmt.Sprintf("IP 198.18.0.2.%d > 198.18.0.1.5678: UDP, length 5", 4000+i),
		} {
			if !strings.Contains(line, want) {
				t.Errorf("tcpdump line %d = %q, want it to contain %q", i, line, want)
			}
		}
	}
	if strings.Contains(stdout.String()+stderr.String(), "bad") {
		t.Errorf("tcpdump complained:\n%s%s", stdout.String(), stderr.String())
	}
}

// busyLink is a Link that reports a busy-poll count, as a tun.Device does.
type busyLink struct{ *Endpoint }

func (busyLink) BusyPollRxPackets() uint64 { return 7 }

// A Tap passes the inner link's busy-poll count through, and reads 0 over
// a link that does not poll.
func TestTapForwardsBusyPollCount(t *testing.T) {
	a, b := NewPipe(1500, 8)
	defer b.Close()
	w, err := NewPcapWriter(io.Discard, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := NewTap(busyLink{a}, w).BusyPollRxPackets(); got != 7 {
		t.Errorf("Tap over a polling link: BusyPollRxPackets = %d, want 7", got)
	}
	if got := NewTap(a, w).BusyPollRxPackets(); got != 0 {
		t.Errorf("Tap over a pipe: BusyPollRxPackets = %d, want 0", got)
	}
}
