package steps

import (
	"context"
	"errors"
	"fmt"
	"slices"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// restoreExecutor is a plan's restore step: it puts back the recorded objects of the step's kinds, closes the
// exposure window as soon as they are written back, then checks them by reading back. The other restores (every
// path that ends a run, the mesh guard's) are listed in controllers/restore.go.
type restoreExecutor struct{ env Mesh }

func (x restoreExecutor) Execute(ctx context.Context, in *Input) (Outcome, error) {
	run := in.Run
	rec, err := x.env.Records().Get(ctx, string(run.UID))
	if err != nil {
		return Outcome{}, err
	}
	var restored []string
	changedAt := x.env.Now()
	if rec != nil {
		var todo []*labsv1.JournalEntry
		for _, e := range rec.Pending() {
			if slices.Contains(in.Step.Restores, e.Kind) {
				todo = append(todo, e)
			}
		}
		for _, e := range todo {
			if err := mesh.Restore(ctx, x.env.Writer(), *e); err != nil {
				return Errored(err.Error()), nil
			}
		}
		back := x.env.Now()
		for _, e := range todo {
			if err := x.env.MarkRestored(ctx, run, rec, e); err != nil {
				if errors.Is(err, ErrAborted) {
					return Outcome{}, err // a manager dying here writes nothing: the next pass finds the object back
				}
				return Errored(err.Error()), nil
			}
			restored = append(restored, mesh.RefOf(*e).String())
		}
		mesh.Mirror(run, rec)
		x.env.CloseExposureAt(run, back)
	}
	x.env.CloseExposureAt(run, x.env.Now())
	out := Concluded(labsv1.VerdictPass, fmt.Sprintf("restored %v", restored), "Originals restored and read back")
	out.ChangedAt = changedAt
	return out, nil
}
