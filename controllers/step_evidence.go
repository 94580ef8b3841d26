package controllers

import (
	"context"
	"fmt"
	"time"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// evidenceExecutor looks for the access-log lines the step needs in its time window: from the start of the step
// it refers to until now. ztunnel writes a line when a connection ends, so missing lines are re-read for a
// bounded time before the step fails. Unreachable logs are an Error, never a Pass.
type evidenceExecutor struct{ *LabRunReconciler }

func (r evidenceExecutor) execute(ctx context.Context, in *stepInput) (outcome, error) {
	run, st, step, ev := in.run, in.result, in.step, in.step.Evidence
	if stepStart(run, step.Lab, ev.Since).IsZero() {
		return errored(fmt.Sprintf("step %s/%s has not run", step.Lab, ev.Since)), nil
	}
	// The lines of the probe step's observer since its attempts started to count: the mesh state it judged.
	since := countedFrom(r.changeBefore(run, in.plan, planStep(run, step.Lab, ev.Since)))
	if since.IsZero() {
		since = run.Status.StartTime.Time
	}
	crit, err := r.criteria(ctx, run, step.Lab, ev, since)
	if err != nil {
		return errored(err.Error()), nil
	}
	entries, err := r.readZtunnel(ctx, run, st, since.Add(-clockSlack))
	if err != nil {
		return errored("ztunnel logs unreachable: " + err.Error()), nil
	}
	matched := ztunnel.Match(entries, crit)
	want := max(ev.MinLines, 1)
	if len(matched) >= want {
		st.Evidence = lines(matched, 5)
		return concluded(labsv1.VerdictPass, fmt.Sprintf("%d matching lines", len(matched)),
			fmt.Sprintf("Found %d matching access-log lines among %d read", len(matched), len(entries))), nil
	}
	if r.now().Sub(st.StartTime.Time) < r.EvidenceWait {
		return outcome{}, waitFor("ztunnel access logs", r.deadlineAfter(run, 250*time.Millisecond))
	}
	st.Evidence = lines(matched, 5)
	return concluded(labsv1.VerdictFail, fmt.Sprintf("%d matching lines", len(matched)),
		fmt.Sprintf("Found %d of %d matching access-log lines among %d read in %s", len(matched), want,
			len(entries), r.EvidenceWait)), nil
}
