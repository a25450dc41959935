package timers

import (
	"math"
	"testing"
	"testing/synctest"
	"time"
)

func TestInstantArithmetic(t *testing.T) {
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"add", Instant(time.Second).Add(500 * time.Millisecond), Instant(1500 * time.Millisecond)},
		{"add negative", Instant(time.Second).Add(-2 * time.Second), Instant(-time.Second)},
		{"add saturates up", Instant(1).Add(math.MaxInt64), MaxInstant},
		{"add saturates down", Instant(-2).Add(math.MinInt64), MinInstant},
		{"add at max", MaxInstant.Add(time.Nanosecond), MaxInstant},
		{"sub", Instant(3 * time.Second).Sub(Instant(time.Second)), 2 * time.Second},
		{"sub negative", Instant(0).Sub(Instant(time.Second)), -time.Second},
		{"sub saturates up", MaxInstant.Sub(Instant(-1)), time.Duration(math.MaxInt64)},
		{"sub saturates down", MinInstant.Sub(Instant(1)), time.Duration(math.MinInt64)},
		{"sub min from zero", Instant(0).Sub(MinInstant), time.Duration(math.MaxInt64)},
		{"before", Instant(1).Before(2), true},
		{"not before equal", Instant(2).Before(2), false},
		{"after", Instant(3).After(2), true},
		{"not after equal", Instant(2).After(2), false},
		{"string", Instant(1500 * time.Millisecond).String(), "1.5s"},
		{"string zero", Instant(0).String(), "0s"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestManualClock(t *testing.T) {
	var c ManualClock
	if got := c.Now(); got != 0 {
		t.Fatalf("zero ManualClock reads %v, want 0", got)
	}
	c.Advance(250 * time.Millisecond)
	c.Advance(750 * time.Millisecond)
	if got := c.Now(); got != Instant(time.Second) {
		t.Fatalf("after advancing 1s: %v", got)
	}
	c.Set(42)
	if got := c.Now(); got != 42 {
		t.Fatalf("after Set(42): %v", got)
	}
	c.Set(MaxInstant - 1)
	c.Advance(time.Hour)
	if got := c.Now(); got != MaxInstant {
		t.Fatalf("Advance must saturate, got %v", got)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Advance(-1ns) did not panic")
		}
	}()
	c.Advance(-time.Nanosecond)
}

// TestRealClockSynctest shows RealClock follows virtual time inside a
// synctest bubble: a 60 s sleep costs nothing and reads exactly 60 s.
func TestRealClockSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := NewRealClock()
		if got := c.Now(); got != 0 {
			t.Fatalf("fresh clock reads %v, want 0", got)
		}
		time.Sleep(60 * time.Second)
		if got := c.Now(); got != Instant(60*time.Second) {
			t.Fatalf("after 60s virtual sleep: %v", got)
		}
		deadline := time.Now().Add(2 * time.Second)
		if got := c.Instant(deadline); got != Instant(62*time.Second) {
			t.Fatalf("Instant(deadline) = %v, want 62s", got)
		}
		if got := c.Time(Instant(62 * time.Second)); !got.Equal(deadline) {
			t.Fatalf("Time(62s) = %v, want %v", got, deadline)
		}
		if !c.Epoch().Add(60 * time.Second).Equal(time.Now()) {
			t.Fatalf("Epoch()+60s != now")
		}
	})
}

func TestRealClockMonotonic(t *testing.T) {
	c := NewRealClock()
	prev := c.Now()
	for range 1000 {
		now := c.Now()
		if now < prev {
			t.Fatalf("clock went back: %v after %v", now, prev)
		}
		prev = now
	}
}

func TestClockFunc(t *testing.T) {
	var c Clock = ClockFunc(func() Instant { return 7 })
	if c.Now() != 7 {
		t.Fatal("ClockFunc did not call its function")
	}
}
