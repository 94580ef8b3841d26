package steps

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/probe"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// probeExecutor judges a probe step from its observer's attempts, or, for a step that probes from every node,
// from every node's observer (Observers.ObserveFleet). It reads; it cannot change the mesh.
type probeExecutor struct{ env Observers }

func (x probeExecutor) Execute(ctx context.Context, in *Input) (Outcome, error) {
	run, st, step := in.Run, in.Result, in.Step
	if PerNode(run, step) {
		return x.env.ObserveFleet(ctx, run, st, step)
	}
	pod, reason, err := x.env.EnsureObserver(ctx, run, step)
	if err != nil {
		return Outcome{}, err
	}
	if reason != "" {
		verdict := labsv1.VerdictError
		if !BlocksWindow(step, reason) {
			verdict = labsv1.VerdictSkipped
		}
		return Concluded(verdict, "", reason), nil
	}
	change := ChangeBefore(run, in.Plan, step)
	w := Window{From: CountedFrom(change), SettleBy: st.StartTime.Add(run.Spec.Probe.SettleTimeout.Duration)}
	if step.Observes != "" {
		w.Change = change
	}
	if pod == nil {
		return Outcome{}, x.env.WaitObserver(run, "observer pod for "+step.ID()+" to be created", w)
	}
	if why := probe.Stuck(pod); why != "" {
		return Errored("observer pod cannot start: " + why), nil
	}
	if pod.Status.Phase == corev1.PodPending {
		return Outcome{}, x.env.WaitObserver(run, "observer pod "+klog.KObj(pod).String()+" to start", w)
	}
	// From a minute before the counted range: enough to see whether the outcome began before the change.
	readFrom := time.Time{}
	if !w.From.IsZero() {
		readFrom = w.From.Add(-time.Minute)
	}
	raw, err := x.env.ObserverLog(ctx, pod, readFrom)
	if err != nil {
		return Outcome{}, fmt.Errorf("reading observer log: %w", err)
	}
	j := Judge(probe.ParseAttempts(raw), step.Expect, max(step.Count, 1), w)

	now := x.env.Now()
	switch {
	case j.Early:
		return observed(st, step, j, labsv1.VerdictFail, fmt.Sprintf(
			"Observed %s already since %s, before %s was applied at %s (clock tolerance %s): the mesh was not enforcing "+
				"what it should before the change", j.Described(), Stamp(j.SegmentStart), step.Observes, Stamp(w.Change), ClockTolerance)), nil
	case !j.Pass && now.After(w.SettleBy):
		if j.Last == nil {
			return Errored(fmt.Sprintf("observer pod %s logged no attempt within %s",
				klog.KObj(pod), run.Spec.Probe.SettleTimeout.Duration)), nil
		}
		return observed(st, step, j, labsv1.VerdictFail, fmt.Sprintf("Expected %s, observed %s until settle ran out (%s); last error: %s",
			step.Expected(), j.Described(), run.Spec.Probe.SettleTimeout.Duration, j.Last.Error)), nil
	case !j.Pass:
		if pod.Status.Phase != corev1.PodRunning {
			return Errored(fmt.Sprintf("observer pod %s ended (%s) before the step saw its outcome",
				klog.KObj(pod), pod.Status.Phase)), nil
		}
		return Outcome{}, x.env.WaitObserver(run, "observer "+klog.KObj(pod).String()+" to see "+string(step.Expect), w)
	case step.Denier != "":
		return x.judgeDenier(ctx, run, st, step, pod, j, w)
	}
	return observed(st, step, j, labsv1.VerdictPass, fmt.Sprintf("Observed %s, %d attempt(s) counted, settled in %s, as expected",
		j.Described(), j.Counted, j.Settle(st.StartTime.Time))), nil
}

// judgeDenier passes a denied step only when the destination ztunnel's newest line for the observer's attempts in
// the step's range names the expected denier; another denier is waited out until settle ends (the change this
// step waits for has not reached the data plane yet).
func (x probeExecutor) judgeDenier(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step, pod *corev1.Pod, j Judgement, w Window) (Outcome, error) {
	var dst []corev1.Pod
	if !step.Bystander {
		_, targets, err := x.env.TargetPods(ctx, run)
		if err != nil {
			return Errored(err.Error()), nil
		}
		dst = targets
	}
	d, err := x.env.Denial(ctx, run, j.First.Time.Add(-ClockTolerance), pod, dst)
	if err != nil {
		if ztunnel.IsIncomplete(err) && x.env.Now().Before(j.Last.Time.Add(x.env.EvidenceWait())) {
			// A newer line, which would be held, may still come.
			return Outcome{}, x.env.WaitObserver(run, "the destination ztunnel's line naming "+string(step.Denier), w)
		}
		return Errored(LogsUnread(err)), nil
	}
	st.EvidenceSources = d.Sources
	now := x.env.Now()
	if (d.Line == nil && now.Before(j.Last.Time.Add(x.env.EvidenceWait()))) ||
		(d.Line != nil && !x.env.DeniedAsExpected(run, step.Denier, d.Who) && now.Before(w.SettleBy)) {
		return Outcome{}, x.env.WaitObserver(run, "the destination ztunnel's line naming "+string(step.Denier), w)
	}
	if d.Line == nil {
		return observed(st, step, j, labsv1.VerdictFail, fmt.Sprintf(
			"Denied, but no destination ztunnel line for the observer's attempts says who denied them within %s: expected %s",
			x.env.EvidenceWait(), step.Denier)), nil
	}
	st.Evidence = []string{EvidenceLine(ztunnel.FormatText(*d.Line))}
	var out Outcome
	if !x.env.DeniedAsExpected(run, step.Denier, d.Who) {
		out = observed(st, step, j, labsv1.VerdictFail, fmt.Sprintf(
			"Denied, but by %s, not by %s, until settle ran out: the refusal is not the one the lab demonstrates", d.Who, step.Denier))
	} else {
		out = observed(st, step, j, labsv1.VerdictPass, fmt.Sprintf("Denied by %s (%s), %d attempt(s) counted, settled in %s, as expected",
			step.Denier, d.Who, j.Counted, j.Settle(st.StartTime.Time)))
	}
	out.Observed += " by " + d.Who
	return out, nil
}

// observed is the outcome of a step judged from an observer's attempts: the verdict, with the attempts counted,
// the newest attempt's codes and the settle time on the step's result.
func observed(st *labsv1.StepResult, step labs.Step, j Judgement, v labsv1.Verdict, msg string) Outcome {
	who := string(step.Caller)
	if step.Bystander {
		who += " → bystander"
	}
	if j.Last != nil {
		st.HTTPCode, st.ExitCode = ptrInt32(j.Last.HTTPCode), ptrInt32(j.Last.ExitCode)
	}
	st.Attempts = int32(j.Counted)
	st.Settle = &metav1.Duration{Duration: j.Settle(st.StartTime.Time)}
	return Concluded(v, who+" "+j.Described(), msg)
}

func ptrInt32(v int) *int32 {
	i := int32(v)
	return &i
}
