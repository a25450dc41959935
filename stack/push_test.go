package stack

import (
	"strings"
	"testing"
)

// A batch that the window, not the data, ends carries PSH on its last
// segment and on no other: a receiver whose GRO holds full-sized
// segments without PSH (tun/gro.go) would otherwise sit on the batch's
// tail until its flush timer, with the ACK clock stopped. The checksums
// stay valid after the flag is set (the fixture parses, and so verifies,
// every packet).
func TestScriptedPushEndsEachBatch(t *testing.T) {
	f := newFixture(t)
	c := f.established(1000)
	f.in(ACK, seq(1001), ack(1), win(3000))
	f.noOutput()
	payload := strings.Repeat("x", 10000)
	if _, err := c.Write([]byte(payload)); err != nil {
		t.Fatal(err)
	}
	f.out(ACK, seq(1), data(payload[:1460]))
	f.out(ACK|PSH, seq(1461), data(payload[1460:2920]))
	f.noOutput() // an 80-byte runt: silly-window avoidance holds it
	f.in(ACK, seq(1001), ack(2921), win(3000))
	f.out(ACK, seq(2921), data(payload[2920:4380]))
	f.out(ACK|PSH, seq(4381), data(payload[4380:5840]))
	f.noOutput()
}
