package steps

import (
	"testing"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
)

// TestEveryCatalogueKindHasAnExecutor: a step kind the catalogue uses without an executor would end every run
// that plans it in Error ("unknown step kind").
func TestEveryCatalogueKindHasAnExecutor(t *testing.T) {
	for _, mode := range []labsv1.Mode{labsv1.ModeLab, labsv1.ModeVerify} {
		plan, err := labs.PlanMode(labsv1.AllLabs, mode)
		if err != nil {
			t.Fatal(err)
		}
		for _, step := range plan {
			x, ok := For(step.Kind, nil)
			if !ok || x == nil {
				t.Errorf("%s mode: step %s is of kind %s, which has no executor", mode, step.ID(), step.Kind)
			}
		}
	}
}

// TestAnUnknownKindHasNoExecutor: the step loop ends such a step in Error rather than running something else.
func TestAnUnknownKindHasNoExecutor(t *testing.T) {
	if x, ok := For("NoSuchKind", nil); ok || x != nil {
		t.Fatalf("For(NoSuchKind) = %v, %v; want none", x, ok)
	}
}
