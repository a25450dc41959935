package timers

import (
	"testing"
)

func TestKindString(t *testing.T) {
	want := []string{"retransmit", "delack", "persist", "keepalive", "fin_wait2", "time_wait", "synack"}
	if len(want) != int(NumKinds) {
		t.Fatalf("NumKinds = %d, want %d", NumKinds, len(want))
	}
	for k := Kind(0); k < NumKinds; k++ {
		if k.String() != want[k] {
			t.Errorf("Kind(%d).String() = %q, want %q", k, k.String(), want[k])
		}
	}
	if got := Kind(200).String(); got != "kind(200)" {
		t.Errorf("Kind(200).String() = %q", got)
	}
}

func TestSetZeroValue(t *testing.T) {
	var s Set
	for k := Kind(0); k < NumKinds; k++ {
		if s.Armed(k) {
			t.Errorf("%v armed in zero Set", k)
		}
		if _, ok := s.At(k); ok {
			t.Errorf("At(%v) ok in zero Set", k)
		}
	}
	if _, ok := s.Earliest(); ok || s.Any() {
		t.Error("zero Set reports a deadline")
	}
	if _, ok := s.PopDue(MaxInstant); ok {
		t.Error("zero Set pops a kind")
	}
}

func TestSetArmStop(t *testing.T) {
	var s Set
	s.Arm(TimeWait, 0) // Instant 0 is a real deadline, not "unset"
	if at, ok := s.At(TimeWait); !ok || at != 0 {
		t.Fatalf("At(TimeWait) = %v, %v", at, ok)
	}
	s.Arm(Retransmit, 300)
	s.Arm(DelayedACK, 40)
	if at, ok := s.Earliest(); !ok || at != 0 {
		t.Fatalf("Earliest = %v, %v; want 0", at, ok)
	}
	s.Stop(TimeWait)
	s.Stop(TimeWait) // idempotent
	if s.Armed(TimeWait) {
		t.Fatal("TimeWait still armed after Stop")
	}
	if at, ok := s.Earliest(); !ok || at != 40 {
		t.Fatalf("Earliest = %v, %v; want 40", at, ok)
	}
	s.Arm(DelayedACK, 500) // re-arm replaces, may move later
	if at, _ := s.Earliest(); at != 300 {
		t.Fatalf("Earliest after re-arm = %v, want 300", at)
	}
	s.Clear()
	if s.Any() {
		t.Fatal("Clear left kinds armed")
	}
}

func TestSetPopDueOrder(t *testing.T) {
	var s Set
	s.Arm(Keepalive, 100)
	s.Arm(Retransmit, 50)
	s.Arm(DelayedACK, 20)
	s.Arm(SynAck, 50)   // tie with Retransmit: Kind order decides
	s.Arm(Persist, 50)  // tie too
	s.Arm(FinWait2, 60) // not due at 55

	if _, ok := s.PopDue(19); ok {
		t.Fatal("popped before any deadline")
	}
	var got []Kind
	for k, ok := s.PopDue(55); ok; k, ok = s.PopDue(55) {
		got = append(got, k)
	}
	want := []Kind{DelayedACK, Retransmit, Persist, SynAck}
	if len(got) != len(want) {
		t.Fatalf("PopDue(55) gave %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("PopDue(55) gave %v, want %v", got, want)
		}
		if s.Armed(want[i]) {
			t.Fatalf("%v still armed after PopDue", want[i])
		}
	}
	if !s.Armed(FinWait2) || !s.Armed(Keepalive) {
		t.Fatal("PopDue disarmed a kind that was not due")
	}
	if at, _ := s.Earliest(); at != 60 {
		t.Fatalf("Earliest = %v, want 60", at)
	}
	// Deadline equal to now is due.
	if k, ok := s.PopDue(60); !ok || k != FinWait2 {
		t.Fatalf("PopDue(60) = %v, %v", k, ok)
	}
}

func TestSetInvalidKindPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Arm(NumKinds) did not panic")
		}
	}()
	var s Set
	s.Arm(NumKinds, 1)
}
