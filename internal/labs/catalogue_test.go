package labs

import (
	"testing"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/probe"
)

func TestPlanKeepsOrderAndNamesSteps(t *testing.T) {
	plan, err := Plan([]labsv1.LabName{labsv1.LabMTLS})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) == 0 || plan[0].ID() != "mtls/client-allowed" || plan[0].Expect != probe.ExpectAllowed {
		t.Fatalf("mtls plan should start with the client being allowed, got %+v", plan)
	}
	seen := map[string]bool{}
	for _, s := range plan {
		if seen[s.ID()] {
			t.Errorf("step %s planned twice", s.ID())
		}
		seen[s.ID()] = true
	}
}

func TestPlanRefusesUnknownLab(t *testing.T) {
	if _, err := Plan([]labsv1.LabName{"nope"}); err == nil {
		t.Fatal("an unknown lab must be refused")
	}
}
