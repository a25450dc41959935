package timers_test

import (
	"fmt"
	"time"

	"utcp/timers"
)

// conn stands in for a TCB: its own deadlines plus the one Item the driver
// queues for it at the earliest of them.
type conn struct {
	name   string
	timers timers.Set
	item   timers.Item[*conn]
}

// resync puts the connection in the driver's queue at its earliest deadline,
// or takes it out when nothing is armed.
func (c *conn) resync(q *timers.Queue[*conn]) {
	if at, ok := c.timers.Earliest(); ok {
		q.Schedule(&c.item, at)
	} else {
		q.Cancel(&c.item)
	}
}

// Example shows the driver's loop: one queue entry per connection, and each
// connection's Set telling which of its timers fired.
func Example() {
	var clock timers.ManualClock
	var q timers.Queue[*conn]

	a := &conn{name: "a"}
	b := &conn{name: "b"}
	a.item.Value, b.item.Value = a, b

	rto := timers.NewRTO(timers.DefaultRTOConfig())
	now := clock.Now()
	a.timers.Arm(timers.Retransmit, now.Add(rto.Current()))
	a.timers.Arm(timers.DelayedACK, now.Add(40*time.Millisecond))
	b.timers.Arm(timers.TimeWait, now.Add(60*time.Second))
	a.resync(&q)
	b.resync(&q)

	for _, step := range []time.Duration{50 * time.Millisecond, time.Second, time.Minute} {
		clock.Advance(step)
		now := clock.Now()
		for it, ok := q.PopDue(now); ok; it, ok = q.PopDue(now) {
			c := it.Value
			for k, ok := c.timers.PopDue(now); ok; k, ok = c.timers.PopDue(now) {
				fmt.Printf("%v %s %v\n", now, c.name, k)
			}
			c.resync(&q)
		}
	}
	// Output:
	// 50ms a delack
	// 1.05s a retransmit
	// 1m1.05s b time_wait
}
