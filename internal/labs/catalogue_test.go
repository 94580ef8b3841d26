package labs

import (
	"slices"
	"strings"
	"testing"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/probe"
)

func TestPlanKeepsOrderAndNamesSteps(t *testing.T) {
	plan, err := Plan(labsv1.AllLabs)
	if err != nil {
		t.Fatal(err)
	}
	if plan[0].ID() != "mtls/client-allowed" || plan[0].Expect != probe.ExpectAllowed {
		t.Fatalf("the guide starts with the client being allowed, got %s", plan[0].ID())
	}
	seen := map[string]bool{}
	lab := labsv1.LabName("")
	for _, s := range plan {
		if seen[s.ID()] {
			t.Errorf("step %s planned twice", s.ID())
		}
		seen[s.ID()] = true
		if s.Lab != lab && seen[string(s.Lab)] {
			t.Errorf("lab %s is split in the plan", s.Lab)
		}
		seen[string(s.Lab)], lab = true, s.Lab
	}
}

func TestPlanRefusesUnknownLab(t *testing.T) {
	if _, err := Plan([]labsv1.LabName{"nope"}); err == nil {
		t.Fatal("an unknown lab must be refused")
	}
}

// TestEveryLabLeavesTheMeshAsFound checks the plan's own restore guarantee: within each lab, every weakened kind
// is restored by a later step, and every fixture created is removed.
func TestEveryLabLeavesTheMeshAsFound(t *testing.T) {
	for _, lab := range labsv1.AllLabs {
		plan, err := Plan([]labsv1.LabName{lab})
		if err != nil {
			t.Fatal(err)
		}
		weakened, fixtures := map[string]bool{}, map[Fixture]bool{}
		for _, s := range plan {
			switch s.Kind {
			case KindSetAside:
				weakened["AuthorizationPolicy"] = true
			case KindSetPermissive:
				weakened["PeerAuthentication"] = true
			case KindRestore:
				for _, k := range s.Restores {
					delete(weakened, k)
				}
			case KindCreateFixture:
				fixtures[s.Fixture] = true
			case KindRemoveFixture:
				delete(fixtures, s.Fixture)
			}
		}
		if len(weakened) > 0 || len(fixtures) > 0 {
			t.Errorf("lab %s ends with %v still weakened and %v not removed", lab, weakened, fixtures)
		}
	}
}

// TestEvidenceLooksAtAnEarlierProbe: an evidence window opens at a probe step of the same lab that runs before.
func TestEvidenceLooksAtAnEarlierProbe(t *testing.T) {
	plan, err := Plan(labsv1.AllLabs)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range plan {
		if s.Kind != KindEvidence {
			continue
		}
		found := false
		for _, prev := range plan[:i] {
			found = found || (prev.Lab == s.Lab && prev.Name == s.Evidence.Since && prev.Kind == KindProbe)
		}
		if !found {
			t.Errorf("%s looks at %q, which is not an earlier probe of its lab", s.ID(), s.Evidence.Since)
		}
	}
}

// TestObservedChangesComeEarlier: a probe that observes a change names a mesh change of its own lab that runs
// before it, with no other change between (the probe's outcome is that change's effect).
func TestObservedChangesComeEarlier(t *testing.T) {
	plan, _ := Plan(labsv1.AllLabs)
	observing := 0
	for i, s := range plan {
		if s.Kind != KindProbe || s.Observes == "" {
			continue
		}
		observing++
		var last *Step
		for j := range plan[:i] {
			if plan[j].Mutates() {
				last = &plan[j]
			}
		}
		if last == nil || last.Lab != s.Lab || last.Name != s.Observes {
			t.Errorf("%s observes %q, which is not the last mesh change before it", s.ID(), s.Observes)
		}
	}
	if observing == 0 {
		t.Error("no probe observes a change")
	}
}

// TestGuideExpectations pins the outcomes the lab guide states, step by step.
func TestGuideExpectations(t *testing.T) {
	want := map[string]probe.Expectation{
		"mtls/client-allowed":                                  probe.ExpectAllowed,
		"peer-authentication/client-allowed":                   probe.ExpectAllowed,
		"peer-authentication/non-mesh-denied":                  probe.ExpectDenied,
		"peer-authentication/non-mesh-allowed":                 probe.ExpectAllowed,
		"peer-authentication/non-mesh-denied-again":            probe.ExpectDenied,
		"authorization-policy/attacker-allowed-without-policy": probe.ExpectAllowed,
		"authorization-policy/client-allowed":                  probe.ExpectAllowed,
		"authorization-policy/attacker-denied":                 probe.ExpectDenied,
		"hbone/client-requests":                                probe.ExpectAllowed,
		// Not in the guide: with a narrow scope, another enrolled workload keeps refusing plaintext meanwhile.
		"peer-authentication/bystander-denied": probe.ExpectDenied,
	}
	plan, _ := Plan(labsv1.AllLabs)
	for _, s := range plan {
		if s.Kind != KindProbe {
			continue
		}
		if w, ok := want[s.ID()]; !ok || w != s.Expect {
			t.Errorf("%s expects %q, the guide says %q", s.ID(), s.Expect, w)
		}
		delete(want, s.ID())
	}
	if len(want) > 0 {
		t.Errorf("steps of the guide missing from the plan: %v", want)
	}
}

// TestRestoreExpectationNamesWhatItRestores: the authorization-policy lab's re-apply step restores only the
// AuthorizationPolicy, and its expectation says so.
func TestRestoreExpectationNamesWhatItRestores(t *testing.T) {
	plan, err := Plan(labsv1.AllLabs)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range plan {
		if s.Kind != KindRestore {
			continue
		}
		got := s.Expected()
		mentionsPA := strings.Contains(got, "PeerAuthentication")
		if restoresPA := slices.Contains(s.Restores, mesh.KindPeerAuthentication); mentionsPA != restoresPA {
			t.Errorf("%s expects %q, restores %v", s.ID(), got, s.Restores)
		}
	}
}
