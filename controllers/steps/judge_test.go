package steps

import (
	"testing"
	"time"

	"github.com/ambientlab/labrun-operator/internal/probe"
)

// TestJudge pins how a step reads an observer's attempts against the clock tolerance.
func TestJudge(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	at := func(ms int, outcome string) probe.Attempt {
		return probe.Attempt{Time: t0.Add(time.Duration(ms) * time.Millisecond), Observed: outcome}
	}
	change := t0.Add(time.Second)
	observing := Window{From: CountedFrom(change), Change: change}
	cases := []struct {
		name        string
		attempts    []probe.Attempt
		w           Window
		count       int
		pass, early bool
		counted     int
		settle      time.Duration
	}{
		{"no attempts yet", nil, observing, 1, false, false, 0, 0},
		{"denied, then allowed after the change", []probe.Attempt{at(800, "denied"), at(900, "denied"),
			at(1300, "allowed"), at(1400, "allowed")}, observing, 1, true, false, 2, 300 * time.Millisecond},
		{"allowed long before the change: the mesh did not enforce", []probe.Attempt{at(100, "allowed"),
			at(500, "allowed"), at(1200, "allowed")}, observing, 1, false, true, 0, 0},
		{"began within the tolerance before the change: counted as after it", []probe.Attempt{at(800, "denied"),
			at(950, "allowed"), at(1150, "allowed")}, observing, 1, true, false, 1, 0},
		{"only attempts inside the tolerance: not yet", []probe.Attempt{at(800, "denied"), at(1050, "allowed")},
			observing, 1, false, false, 0, 0},
		{"the newest attempt is not the expected one", []probe.Attempt{at(1300, "allowed"), at(1400, "denied")},
			observing, 1, false, false, 0, 0},
		{"no change: every attempt of the current outcome counts", []probe.Attempt{at(0, "allowed"),
			at(100, "allowed"), at(200, "allowed")}, Window{}, 3, true, false, 3, 0},
		{"no change, not enough attempts yet", []probe.Attempt{at(0, "denied"), at(100, "allowed"),
			at(200, "allowed")}, Window{}, 3, false, false, 2, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := Judge(tc.attempts, probe.ExpectAllowed, tc.count, tc.w)
			if j.Pass != tc.pass || j.Early != tc.early || j.Counted != tc.counted {
				t.Fatalf("pass=%v early=%v counted=%d, want pass=%v early=%v counted=%d", j.Pass, j.Early, j.Counted,
					tc.pass, tc.early, tc.counted)
			}
			if tc.pass {
				if got := j.Settle(t0); got != tc.settle {
					t.Errorf("settle %s, want %s", got, tc.settle)
				}
			}
		})
	}
}
