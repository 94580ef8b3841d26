package controllers

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

// probeExecutor judges a probe step from its observer's attempts (labrun_observe.go), or, for a step that probes
// from every node, from every node's observer (labrun_fleet.go).
type probeExecutor struct{ *LabRunReconciler }

func (r probeExecutor) execute(ctx context.Context, in *stepInput) (outcome, error) {
	run, st, step := in.run, in.result, in.step
	if perNode(run, step) {
		return r.observeFleet(ctx, run, st, step)
	}
	pod, reason, err := r.ensureObserver(ctx, run, step)
	if err != nil {
		return outcome{}, err
	}
	if reason != "" {
		verdict := labsv1.VerdictError
		if !blocksWindow(step, reason) {
			verdict = labsv1.VerdictSkipped
		}
		return concluded(verdict, "", reason), nil
	}
	change := r.changeBefore(run, in.plan, step)
	w := window{from: countedFrom(change), settleBy: st.StartTime.Add(run.Spec.Probe.SettleTimeout.Duration)}
	if step.Observes != "" {
		w.change = change
	}
	if pod == nil {
		return outcome{}, r.waitObserver(run, "observer pod for "+step.ID()+" to be created", w)
	}
	if why := probe.Stuck(pod); why != "" {
		return errored("observer pod cannot start: " + why), nil
	}
	if pod.Status.Phase == corev1.PodPending {
		return outcome{}, r.waitObserver(run, "observer pod "+klog.KObj(pod).String()+" to start", w)
	}
	// From a minute before the counted range: enough to see whether the outcome began before the change.
	readFrom := time.Time{}
	if !w.from.IsZero() {
		readFrom = w.from.Add(-time.Minute)
	}
	raw, err := r.observerLog(ctx, pod, readFrom)
	if err != nil {
		return outcome{}, fmt.Errorf("reading observer log: %w", err)
	}
	j := judge(probe.ParseAttempts(raw), step.Expect, max(step.Count, 1), w)

	now := r.now()
	switch {
	case j.early:
		return observed(st, step, j, labsv1.VerdictFail, fmt.Sprintf(
			"Observed %s already since %s, before %s was applied at %s (clock tolerance %s): the mesh was not enforcing "+
				"what it should before the change", j.outcome(), stamp(j.segmentStart), step.Observes, stamp(w.change), ClockTolerance)), nil
	case !j.pass && now.After(w.settleBy):
		if j.last == nil {
			return errored(fmt.Sprintf("observer pod %s logged no attempt within %s",
				klog.KObj(pod), run.Spec.Probe.SettleTimeout.Duration)), nil
		}
		return observed(st, step, j, labsv1.VerdictFail, fmt.Sprintf("Expected %s, observed %s until settle ran out (%s); last error: %s",
			step.Expected(), j.outcome(), run.Spec.Probe.SettleTimeout.Duration, j.last.Error)), nil
	case !j.pass:
		if pod.Status.Phase != corev1.PodRunning {
			return errored(fmt.Sprintf("observer pod %s ended (%s) before the step saw its outcome",
				klog.KObj(pod), pod.Status.Phase)), nil
		}
		return outcome{}, r.waitObserver(run, "observer "+klog.KObj(pod).String()+" to see "+string(step.Expect), w)
	case step.Denier != "":
		return r.judgeDenier(ctx, run, st, step, pod, j, w)
	}
	return observed(st, step, j, labsv1.VerdictPass, fmt.Sprintf("Observed %s, %d attempt(s) counted, settled in %s, as expected",
		j.outcome(), j.counted, j.settle(st.StartTime.Time))), nil
}

// judgeDenier passes a denied step only when the destination ztunnel's newest line for the observer's attempts in
// the step's range names the expected denier; another denier is waited out until settle ends (the change this
// step waits for has not reached the data plane yet).
func (r probeExecutor) judgeDenier(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step, pod *corev1.Pod, j judgement, w window) (outcome, error) {
	var dst []string
	if !step.Bystander {
		_, targets, err := r.targetPods(ctx, run)
		if err != nil {
			return errored(err.Error()), nil
		}
		for _, p := range targets {
			dst = append(dst, p.Name)
		}
	}
	d, err := r.denial(ctx, run, j.first.Time.Add(-ClockTolerance), pod, dst)
	if err != nil {
		return errored("ztunnel logs unreachable: " + err.Error()), nil
	}
	st.EvidenceSources = d.sources
	now := r.now()
	if (d.line == nil && now.Before(j.last.Time.Add(r.EvidenceWait))) ||
		(d.line != nil && !r.deniedAsExpected(run, step.Denier, d.who) && now.Before(w.settleBy)) {
		return outcome{}, r.waitObserver(run, "the destination ztunnel's line naming "+string(step.Denier), w)
	}
	if d.line == nil {
		return observed(st, step, j, labsv1.VerdictFail, fmt.Sprintf(
			"Denied, but no destination ztunnel line for the observer's attempts says who denied them within %s: expected %s",
			r.EvidenceWait, step.Denier)), nil
	}
	st.Evidence = []string{evidenceLine(ztunnel.FormatText(*d.line))}
	var out outcome
	if !r.deniedAsExpected(run, step.Denier, d.who) {
		out = observed(st, step, j, labsv1.VerdictFail, fmt.Sprintf(
			"Denied, but by %s, not by %s, until settle ran out: the refusal is not the one the lab demonstrates", d.who, step.Denier))
	} else {
		out = observed(st, step, j, labsv1.VerdictPass, fmt.Sprintf("Denied by %s (%s), %d attempt(s) counted, settled in %s, as expected",
			step.Denier, d.who, j.counted, j.settle(st.StartTime.Time)))
	}
	out.observed += " by " + d.who
	return out, nil
}

// observed is the outcome of a step judged from an observer's attempts: the verdict, with the attempts counted,
// the newest attempt's codes and the settle time on the step's result.
func observed(st *labsv1.StepResult, step labs.Step, j judgement, v labsv1.Verdict, msg string) outcome {
	who := string(step.Caller)
	if step.Bystander {
		who += " → bystander"
	}
	if j.last != nil {
		st.HTTPCode, st.ExitCode = ptrInt32(j.last.HTTPCode), ptrInt32(j.last.ExitCode)
	}
	st.Attempts = int32(j.counted)
	st.Settle = &metav1.Duration{Duration: j.settle(st.StartTime.Time)}
	return concluded(v, who+" "+j.outcome(), msg)
}
