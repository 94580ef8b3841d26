package steps

import (
	"context"
	"fmt"
	"time"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// ClockSlack widens the evidence window for clock skew between the nodes and the manager.
const ClockSlack = time.Second

// evidenceExecutor looks for the access-log lines the step needs in its time window: from the start of the step
// it refers to until now. ztunnel writes a line when a connection ends, so missing lines are re-read for a
// bounded time before the step fails. Unreachable logs are an Error, never a Pass.
type evidenceExecutor struct{ env Evidence }

func (x evidenceExecutor) Execute(ctx context.Context, in *Input) (Outcome, error) {
	run, st, step, ev := in.Run, in.Result, in.Step, in.Step.Evidence
	if StepStart(run, step.Lab, ev.Since).IsZero() {
		return Errored(fmt.Sprintf("step %s/%s has not run", step.Lab, ev.Since)), nil
	}
	// The lines of the probe step's observer since its attempts started to count: the mesh state it judged.
	since := CountedFrom(ChangeBefore(run, in.Plan, PlanStep(in.Plan, step.Lab, ev.Since)))
	if since.IsZero() {
		since = run.Status.StartTime.Time
	}
	crit, err := x.env.Criteria(ctx, run, step.Lab, ev, since)
	if err != nil {
		return Errored(err.Error()), nil
	}
	want := max(ev.MinLines, 1)
	// A Pass needs want lines, wherever they were logged: the read stops once it holds them.
	enough := func(entries []ztunnel.Entry) bool { return len(ztunnel.Match(entries, crit)) >= want }
	entries, err := x.env.ReadZtunnel(ctx, run, st, since.Add(-ClockSlack), enough)
	if err != nil && !ztunnel.IsIncomplete(err) {
		return Errored(LogsUnread(err)), nil
	}
	matched := ztunnel.Match(entries, crit)
	if len(matched) >= want {
		// Lines held are real, whether or not the window is held in full.
		st.Evidence = Lines(matched, 5)
		return Concluded(labsv1.VerdictPass, fmt.Sprintf("%d matching lines", len(matched)),
			fmt.Sprintf("Found %d matching access-log lines among %d read", len(matched), len(entries))), nil
	}
	if x.env.Now().Sub(st.StartTime.Time) < x.env.EvidenceWait() {
		return Outcome{}, WaitFor("ztunnel access logs", x.env.DeadlineAfter(run, 250*time.Millisecond))
	}
	st.Evidence = Lines(matched, 5)
	// The lines the probe step's attempts wrote are stamped before it ended (ztunnel writes one when a connection
	// ends, within the request timeout): a read that holds up to then holds them, however far behind "now" it is.
	end := StepEnd(run, step.Lab, ev.Since)
	if end.IsZero() {
		end = x.env.Now()
	}
	end = end.Add(ClockSlack)
	if t := run.Spec.Probe.RequestTimeout; t != nil {
		end = end.Add(t.Duration)
	}
	if err != nil && !ztunnel.HoldsWindow(err, since.Add(-ClockSlack), end) {
		// The missing lines may be among those not held: no finding about the mesh.
		return Errored(fmt.Sprintf("Found %d of %d matching access-log lines among %d read; %s", len(matched), want,
			len(entries), LogsUnread(err))), nil
	}
	return Concluded(labsv1.VerdictFail, fmt.Sprintf("%d matching lines", len(matched)),
		fmt.Sprintf("Found %d of %d matching access-log lines among %d read in %s", len(matched), want,
			len(entries), x.env.EvidenceWait())), nil
}
