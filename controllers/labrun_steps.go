package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/probe"
)

// reconcileSteps runs the steps in order, as far as it can without waiting.
func (r *LabRunReconciler) reconcileSteps(ctx context.Context, run *labsv1.LabRun) error {
	if run.Status.Phase != labsv1.PhaseRunning {
		return nil
	}
	plan, err := labs.Plan(run.Spec.Labs)
	if err != nil {
		return stalled(labsv1.ReasonPreflightFailed, "planning the run: %v", err)
	}
	for i, step := range plan {
		if i >= len(run.Status.Steps) || terminal(run.Status.Steps[i].Verdict) {
			continue
		}
		if err := r.runStep(ctx, run, &run.Status.Steps[i], step); err != nil {
			return err
		}
	}
	return nil
}

func (r *LabRunReconciler) runStep(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step) error {
	if st.StartTime == nil {
		now := metav1.NewTime(r.now())
		st.StartTime = &now
		st.Verdict = labsv1.VerdictRunning
	}
	switch step.Kind {
	case labs.KindProbe:
		return r.runProbe(ctx, run, st, step)
	default:
		return stalled(labsv1.ReasonPreflightFailed, "step %s has unknown kind %q", step.ID(), step.Kind)
	}
}

// runProbe creates the step's probe pod, and once the pod has terminated, records its result and deletes it.
// The pod's events resume the run; the requeue is only the deadline.
func (r *LabRunReconciler) runProbe(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step) error {
	log := ctrl.LoggerFrom(ctx).WithValues("step", step.ID())
	key := types.NamespacedName{Namespace: r.callerNamespace(run, step), Name: probePodName(run, step)}
	deadline := st.StartTime.Add(r.probeBudget(run))
	pod := &corev1.Pod{}
	err := r.Get(ctx, key, pod)
	if apierrors.IsNotFound(err) {
		pod = r.probePod(run, step, key)
		log.Info("Creating probe pod", "pod", klog.KObj(pod))
		if err := r.Create(ctx, pod); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating probe pod: %w", err)
		}
		return waitFor("probe pod "+key.String(), time.Until(deadline))
	}
	if err != nil {
		return fmt.Errorf("reading probe pod: %w", err)
	}
	res, done, perr := probe.Finished(pod)
	switch {
	case done && perr != nil:
		r.recordError(run, st, perr.Error())
	case done:
		r.recordProbe(run, st, step, res)
	case probe.Stuck(pod) != "":
		r.recordError(run, st, "probe pod cannot start: "+probe.Stuck(pod))
	case r.now().After(deadline):
		r.recordError(run, st, fmt.Sprintf("probe pod did not finish within %s (pod phase %s)",
			r.probeBudget(run), pod.Status.Phase))
	default:
		return waitFor("probe pod "+key.String(), time.Until(deadline))
	}
	log.Info("Deleting probe pod", "pod", klog.KObj(pod), "verdict", st.Verdict)
	if err := r.Delete(ctx, pod); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting probe pod: %w", err)
	}
	return nil
}

// probeBudget bounds a probe pod's life: settle, the last request, and time to start.
func (r *LabRunReconciler) probeBudget(run *labsv1.LabRun) time.Duration {
	return run.Spec.Probe.SettleTimeout.Duration + 2*run.Spec.Probe.RequestTimeout.Duration + r.PodStartGrace
}

func (r *LabRunReconciler) recordProbe(run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step, res probe.Result) {
	now := metav1.NewTime(r.now())
	st.CompletionTime = &now
	st.Observed = describe(res)
	st.HTTPCode = ptrInt32(res.HTTPCode)
	st.ExitCode = ptrInt32(res.ExitCode)
	st.Attempts = int32(res.Attempts)
	st.Settle = &metav1.Duration{Duration: time.Duration(res.SettleSeconds * float64(time.Second)).Round(time.Millisecond)}
	if res.Matched {
		st.Verdict = labsv1.VerdictPass
		st.Message = fmt.Sprintf("Observed %s after %d attempt(s), as expected", st.Observed, res.Attempts)
		r.event(run, corev1.EventTypeNormal, "StepPassed", "Probe", "%s/%s: %s", st.Lab, st.Name, st.Message)
		return
	}
	st.Verdict = labsv1.VerdictFail
	st.Message = fmt.Sprintf("Expected %s, observed %s after %d attempt(s) in %s; last error: %s",
		step.Expected(), st.Observed, res.Attempts, st.Settle.Duration, res.LastError)
	r.event(run, corev1.EventTypeWarning, "StepFailed", "Probe", "%s/%s: %s", st.Lab, st.Name, st.Message)
}

func (r *LabRunReconciler) recordError(run *labsv1.LabRun, st *labsv1.StepResult, msg string) {
	now := metav1.NewTime(r.now())
	st.CompletionTime = &now
	st.Verdict = labsv1.VerdictError
	st.Message = msg
	r.event(run, corev1.EventTypeWarning, "StepErrored", "Probe", "%s/%s: %s", st.Lab, st.Name, msg)
}

// describe puts a probe result in the words of the lab guide: "allowed (HTTP 200)",
// "denied (connection reset, curl 56)".
func describe(res probe.Result) string {
	if res.ExitCode == 0 {
		return fmt.Sprintf("%s (HTTP %d)", res.Observed, res.HTTPCode)
	}
	words := map[string]string{"reset": "connection reset", "refused": "connection refused", "timeout": "timeout",
		"dns": "DNS failure", "empty-reply": "empty reply"}
	w := words[res.Reason]
	if w == "" {
		w = res.Reason
	}
	return fmt.Sprintf("%s (%s, curl %d)", res.Observed, w, res.ExitCode)
}

func ptrInt32(v int) *int32 {
	i := int32(v)
	return &i
}

// callerNamespace is where a caller's probe pods run.
func (r *LabRunReconciler) callerNamespace(run *labsv1.LabRun, _ labs.Step) string {
	return run.TargetNamespace()
}

// probePodName is stable for a run and step, so a restarted manager finds the pod it created.
func probePodName(run *labsv1.LabRun, step labs.Step) string {
	sum := sha256.Sum256([]byte(string(run.UID) + "/" + step.ID()))
	name := run.Name
	if len(name) > 40 {
		name = name[:40]
	}
	return strings.TrimRight(name, "-.") + "-probe-" + hex.EncodeToString(sum[:])[:10]
}

func (r *LabRunReconciler) probePod(run *labsv1.LabRun, step labs.Step, key types.NamespacedName) *corev1.Pod {
	image := run.Spec.Probe.Image
	if image == "" {
		image = r.ProbeImage
	}
	sa := run.Spec.Client.ServiceAccount
	return probe.Pod(probe.PodRequest{
		Name: key.Name, Namespace: key.Namespace, ServiceAccount: sa, Image: image,
		Labels: map[string]string{
			labsv1.LabelProbe: "true", labsv1.LabelLabRun: string(run.UID),
			labsv1.LabelLab: string(step.Lab), labsv1.LabelStep: step.Name,
		},
		Annotations: map[string]string{labsv1.AnnotationOwner: run.Namespace + "/" + run.Name},
		Options: probe.Options{
			URL:     targetURL(run),
			Expect:  step.Expect,
			Timeout: run.Spec.Probe.RequestTimeout.Duration,
			Settle:  run.Spec.Probe.SettleTimeout.Duration,
			Count:   step.Count,
		},
	})
}

// targetURL is the in-cluster URL of the target, as the guide's curl calls it.
func targetURL(run *labsv1.LabRun) string {
	t := run.Spec.Target
	return fmt.Sprintf("http://%s.%s.svc:%d%s", t.Service, run.TargetNamespace(), t.Port, t.Path)
}

// cleanup deletes every probe pod of the run, wherever it runs.
func (r *LabRunReconciler) cleanup(ctx context.Context, run *labsv1.LabRun) error {
	pods := &corev1.PodList{}
	if err := r.List(ctx, pods, client.MatchingLabels{labsv1.LabelLabRun: string(run.UID)}); err != nil {
		return fmt.Errorf("listing probe pods: %w", err)
	}
	for i := range pods.Items {
		if err := r.Delete(ctx, &pods.Items[i]); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting probe pod %s: %w", klog.KObj(&pods.Items[i]), err)
		}
	}
	return nil
}

// event records one Event for users; logs are for operators.
func (r *LabRunReconciler) event(run *labsv1.LabRun, typ, reason, action, format string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(run, nil, typ, reason, action, format, args...)
	}
}

// isProbePod keeps the pod watch to the operator's own probe pods.
func isProbePod(obj client.Object) bool {
	return obj.GetLabels()[labsv1.LabelProbe] == "true"
}

// ownerOf maps a probe pod to its LabRun through the owner annotation (it may be in another namespace).
func ownerOf(_ context.Context, obj client.Object) []reconcile.Request {
	ns, name, ok := strings.Cut(obj.GetAnnotations()[labsv1.AnnotationOwner], "/")
	if !ok || ns == "" || name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}}
}
