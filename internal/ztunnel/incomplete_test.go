package ztunnel

import (
	"fmt"
	"testing"
	"time"
)

// TestIncompleteHolds: a read not held in full still holds a window inside what every pod held, and only such a
// window: a line missing from it is a finding, one missing outside it is not.
func TestIncompleteHolds(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, tc := range []struct {
		inc      *Incomplete
		from, to time.Time
		want     bool
	}{
		{&Incomplete{ReadTo: at(10)}, at(0), at(9), true},
		{&Incomplete{ReadTo: at(10)}, at(0), at(10), true},
		{&Incomplete{ReadTo: at(10)}, at(0), at(11), false},
		{&Incomplete{Held: at(5)}, at(5), at(100), true},
		{&Incomplete{Held: at(5)}, at(4), at(100), false},
		{&Incomplete{Held: at(5), ReadTo: at(10)}, at(6), at(9), true},
		{&Incomplete{Held: at(5), ReadTo: at(10)}, at(6), at(12), false},
	} {
		if got := tc.inc.Holds(tc.from, tc.to); got != tc.want {
			t.Errorf("%+v holds %s..%s = %v, want %v", tc.inc, tc.from.Format(time.TimeOnly), tc.to.Format(time.TimeOnly), got, tc.want)
		}
		if got := HoldsWindow(fmt.Errorf("reading: %w", tc.inc), tc.from, tc.to); got != tc.want {
			t.Errorf("HoldsWindow of a wrapped %+v = %v, want %v", tc.inc, got, tc.want)
		}
	}
	if !HoldsWindow(nil, t0, t0) || HoldsWindow(fmt.Errorf("unreachable"), t0, t0) {
		t.Error("HoldsWindow: nil holds every window, another error none")
	}
}
