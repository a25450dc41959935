package stack

import "testing"

// Nagle in Minshall's form (Linux's tcp_minshall_check): the runt that
// ends a bulk write goes out behind full-sized segments still in flight,
// because no earlier runt is unacknowledged; a second runt waits for the
// first to be acknowledged. Plain Nagle would hold the first runt too, and
// a receiver delaying its ACK of an odd last segment would stall both
// sides for the delayed-ACK time.
func TestScriptedNagleMinshall(t *testing.T) {
	f := newFixture(t)
	f.established(1000)
	f.write(payload(1460+100, 'x'))
	f.outData(1, 1460)
	f.outData(1461, 100) // not held although 1460 bytes are in flight
	f.write([]byte("yz"))
	f.noOutput() // the 100-byte runt is unacknowledged
	f.in(ACK, seq(1001), ack(1561))
	f.out(ACK|PSH, seq(1561), data("yz"))
}
