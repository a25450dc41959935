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

// Minshall's check is SND.UNA < sndSmall <= SND.NXT. With sndSmall alone,
// a connection that had sent only full-sized segments (sndSmall still 0)
// and whose SND.UNA lies in the upper half of sequence space held its
// first runt with nothing in flight: 0 is "after" such a SND.UNA modulo
// 2^32. Half of all ISSs did this; a bulk transfer's last bytes then
// waited 200 ms for the persist timer.
func TestScriptedNagleNoRuntYet(t *testing.T) {
	f := newFixture(t)
	f.listen(16)
	// Find a peer port whose connection gets an ISS in the upper half
	// (the ISS is a keyed hash of the 4-tuple, deterministic with Seed 1).
	for p := uint16(40000); ; p++ {
		f.port(p)
		f.in(SYN, seq(1000), mss(1460))
		sa := f.out(SYN|ACK, seq(0), ack(1001))
		if uint32(sa.Seq) >= 1<<31 {
			break
		}
		f.in(RST, seq(1001))
		if p == 40200 {
			t.Fatal("no upper-half ISS in 200 ports")
		}
	}
	f.in(ACK, seq(1001), ack(1))
	f.state(Established)
	f.accept()
	f.write(payload(2*1460, 'x'))
	f.outData(1, 1460)
	f.outData(1461, 1460)
	f.in(ACK, seq(1001), ack(2921))
	f.noOutput()
	f.write(payload(100, 'y')) // nothing in flight, no runt ever sent
	f.outData(2921, 100)
}
