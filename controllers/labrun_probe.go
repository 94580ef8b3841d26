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
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// runProbe creates the step's probe pod, and once the pod has terminated, records its result and deletes it.
// The pod's events resume the run; the requeue is only the deadline.
func (r *LabRunReconciler) runProbe(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step) error {
	log := ctrl.LoggerFrom(ctx).WithValues("step", step.ID())
	ns, sa := r.caller(run, step.Caller)
	key := types.NamespacedName{Namespace: ns, Name: probePodName(run, step)}
	deadline := st.StartTime.Add(r.probeBudget(run))
	pod := &corev1.Pod{}
	err := r.Get(ctx, key, pod)
	if apierrors.IsNotFound(err) {
		pod = r.probePod(run, step, key, sa)
		log.Info("Creating probe pod", "pod", klog.KObj(pod))
		if err := r.Create(ctx, pod); err != nil && !apierrors.IsAlreadyExists(err) {
			if awaitingServiceAccount(err) && r.now().Before(deadline) {
				// A ServiceAccount just created may not be admitted yet; retry until the step's deadline.
				return waitFor("probe pod admission: "+err.Error(), time.Second)
			}
			if permanent(err) {
				// Refused for good (RBAC, an admission webhook or policy): the step errors and the run restores.
				r.finishStep(run, st, labsv1.VerdictError, "", "probe pod refused: "+err.Error())
				return nil
			}
			return fmt.Errorf("creating probe pod: %w", err)
		}
		return waitFor("probe pod "+key.String(), r.deadlineAfter(run, time.Until(deadline)))
	}
	if err != nil {
		return fmt.Errorf("reading probe pod: %w", err)
	}
	res, done, perr := probe.Finished(pod)
	switch {
	case done && perr != nil:
		r.finishStep(run, st, labsv1.VerdictError, "", perr.Error())
	case done && res.Matched && step.Denier != "":
		d, err := r.denial(ctx, run, st, pod)
		if err != nil {
			r.finishStep(run, st, labsv1.VerdictError, "", "ztunnel logs unreachable: "+err.Error())
			break
		}
		if d.line == nil && r.now().Before(probe.FinishedAt(pod, st.StartTime.Time).Add(r.EvidenceWait)) {
			// ztunnel writes the line when the connection ends: read again, keeping the pod until then.
			return waitFor("the destination ztunnel's line for "+key.String(), r.deadlineAfter(run, 250*time.Millisecond))
		}
		settleBy := st.StartTime.Add(run.Spec.Probe.SettleTimeout.Duration)
		if d.line != nil && !deniedAsExpected(run, step.Denier, d.who) && r.now().Before(settleBy) {
			// Denied, but by another policy: the change this step waits for (a policy set aside, STRICT back)
			// has not reached the data plane yet. Probe again with a fresh pod until settle runs out, as the
			// prober retries with fresh connections.
			log.Info("Probing again: denied by another policy than expected", "pod", klog.KObj(pod), "deniedBy", d.who)
			if err := r.Delete(ctx, pod); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("deleting probe pod: %w", err)
			}
			// The deletion's own event may already be spent on a pass that still saw the pod in the cache:
			// come back soon rather than at the settle deadline.
			return waitFor("probe pod "+key.String(), r.deadlineAfter(run, 250*time.Millisecond))
		}
		r.recordDenial(run, st, step, res, d)
	case done:
		r.recordProbe(run, st, step, res)
	case probe.Stuck(pod) != "":
		r.finishStep(run, st, labsv1.VerdictError, "", "probe pod cannot start: "+probe.Stuck(pod))
	case r.now().After(deadline):
		r.finishStep(run, st, labsv1.VerdictError, "", fmt.Sprintf("step timed out: probe pod did not finish within %s (pod phase %s)",
			r.probeBudget(run), pod.Status.Phase))
	default:
		return waitFor("probe pod "+key.String(), r.deadlineAfter(run, time.Until(deadline)))
	}
	log.Info("Deleting probe pod", "pod", klog.KObj(pod), "verdict", st.Verdict)
	if err := r.Delete(ctx, pod); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting probe pod: %w", err)
	}
	return nil
}

// awaitingServiceAccount: the ServiceAccount admission plugin refuses a pod whose ServiceAccount it cannot find
// yet (the attacker's, created a moment ago); anything else forbidden is final.
func awaitingServiceAccount(err error) bool {
	msg := err.Error()
	return apierrors.IsForbidden(err) && strings.Contains(msg, "service account") && strings.Contains(msg, "not found")
}

// probeBudget bounds a probe pod's life: settle, the last requests, and time to start.
func (r *LabRunReconciler) probeBudget(run *labsv1.LabRun) time.Duration {
	return run.Spec.Probe.SettleTimeout.Duration + 2*run.Spec.Probe.RequestTimeout.Duration + r.PodStartGrace
}

// fillProbe records a probe's figures in the step and returns what it observed, in the guide's words.
func fillProbe(st *labsv1.StepResult, step labs.Step, res probe.Result) string {
	st.HTTPCode = ptrInt32(res.HTTPCode)
	st.ExitCode = ptrInt32(res.ExitCode)
	st.Attempts = int32(res.Attempts)
	st.Settle = &metav1.Duration{Duration: time.Duration(res.SettleSeconds * float64(time.Second)).Round(time.Millisecond)}
	return fmt.Sprintf("%s %s", step.Caller, describe(res))
}

func (r *LabRunReconciler) recordProbe(run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step, res probe.Result) {
	observed := fillProbe(st, step, res)
	if res.Matched {
		r.finishStep(run, st, labsv1.VerdictPass, observed,
			fmt.Sprintf("Observed %s after %d attempt(s) in %s, as expected", observed, res.Attempts, st.Settle.Duration))
		return
	}
	r.finishStep(run, st, labsv1.VerdictFail, observed,
		fmt.Sprintf("Expected %s, observed %s after %d attempt(s) in %s; last error: %s",
			step.Expected(), observed, res.Attempts, st.Settle.Duration, res.LastError))
}

// denial is what the destination ztunnel says about a denied probe: its last policy-rejection line for the
// probe's own pod, and who it names.
type denial struct {
	line *ztunnel.Entry
	who  string
}

// denial reads the destination ztunnel's inbound lines from the probe's pod (src.workload) since the step started.
func (r *LabRunReconciler) denial(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, pod *corev1.Pod) (denial, error) {
	z := run.Spec.Mesh.Ztunnel
	since := st.StartTime.Add(-clockSlack)
	entries, err := r.Logs.Read(ctx, z.Namespace, z.Labels(), since)
	if err != nil {
		return denial{}, err
	}
	rejected := true
	matched := ztunnel.Match(entries, ztunnel.Criteria{Since: since, Direction: "inbound", SrcWorkload: pod.Name,
		PolicyRejected: &rejected})
	if len(matched) == 0 {
		return denial{}, nil
	}
	last := matched[len(matched)-1]
	return denial{line: &last, who: deniedBy(last)}, nil
}

// deniedBy names what refused a connection, from ztunnel's line (ISTIO-FACTS.md).
func deniedBy(e ztunnel.Entry) string {
	if who := e.DeniedBy(); who != "" {
		return who
	}
	if strings.Contains(e.Error(), "allow policies exist, but none allowed") {
		return "no ALLOW policy (allow policies exist, but none allowed)"
	}
	return "an unnamed policy (" + e.Error() + ")"
}

// strictDenials are the names istiod gives STRICT's DENY policy (ISTIO-FACTS.md): the static one in the root
// namespace, or for a workload PeerAuthentication with portLevelMtls its own converted policy (a prefix).
func strictDenials(run *labsv1.LabRun) (static, convertedPrefix string) {
	return run.Spec.Mesh.RootNamespace + "/istio_converted_static_strict",
		run.TargetNamespace() + "/converted_peer_authentication_"
}

// deniedAsExpected: STRICT's refusal is the DENY policy istiod generates from the PeerAuthentication; the
// AuthorizationPolicy's is an ALLOW policy that did not match, or the policy itself denying.
func deniedAsExpected(run *labsv1.LabRun, denier labs.Denier, who string) bool {
	switch denier {
	case labs.DenierStrict:
		static, converted := strictDenials(run)
		return who == static || strings.HasPrefix(who, converted)
	case labs.DenierPolicy:
		ref := policyRef(run)
		return strings.HasPrefix(who, "no ALLOW policy") || who == ref.Namespace+"/"+ref.Name
	}
	return false
}

// recordDenial records a denied probe that ended as expected, passing it only if the right policy denied it.
func (r *LabRunReconciler) recordDenial(run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step, res probe.Result, d denial) {
	observed := fillProbe(st, step, res)
	if d.line == nil {
		r.finishStep(run, st, labsv1.VerdictFail, observed, fmt.Sprintf(
			"Denied, but no destination ztunnel line for this probe says who denied it within %s: expected %s", r.EvidenceWait, step.Denier))
		return
	}
	observed = fmt.Sprintf("%s by %s", observed, d.who)
	st.Evidence = []string{ztunnel.FormatText(*d.line)}
	if deniedAsExpected(run, step.Denier, d.who) {
		r.finishStep(run, st, labsv1.VerdictPass, observed, fmt.Sprintf("Denied by %s (%s) after %d attempt(s) in %s, as expected",
			step.Denier, d.who, res.Attempts, st.Settle.Duration))
		return
	}
	r.finishStep(run, st, labsv1.VerdictFail, observed, fmt.Sprintf(
		"Denied, but by %s, not by %s, until settle ran out: the refusal is not the one the lab demonstrates", d.who, step.Denier))
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

// caller is where a caller's probe pods run and as which ServiceAccount.
func (r *LabRunReconciler) caller(run *labsv1.LabRun, c labs.Caller) (namespace, serviceAccount string) {
	switch c {
	case labs.CallerNonMesh:
		return nonMeshNamespace(run), ""
	case labs.CallerAttacker:
		return run.TargetNamespace(), attackerServiceAccount
	}
	return run.TargetNamespace(), run.Spec.Client.ServiceAccount
}

// probePodName is stable for a run and step, so a restarted manager finds the pod it created.
func probePodName(run *labsv1.LabRun, step labs.Step) string {
	return shortName(run.Name, 40) + "-probe-" + hash(string(run.UID)+"/"+step.ID())
}

func shortName(name string, n int) string {
	if len(name) > n {
		name = name[:n]
	}
	return strings.TrimRight(name, "-.")
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:10]
}

func (r *LabRunReconciler) probePod(run *labsv1.LabRun, step labs.Step, key types.NamespacedName, sa string) *corev1.Pod {
	image := run.Spec.Probe.Image
	if image == "" {
		image = r.ProbeImage
	}
	return probe.Pod(probe.PodRequest{
		Name: key.Name, Namespace: key.Namespace, ServiceAccount: sa, Image: image,
		Labels: map[string]string{
			labsv1.LabelProbe: "true", labsv1.LabelLabRun: string(run.UID),
			labsv1.LabelLab: string(step.Lab), labsv1.LabelStep: step.Name,
		},
		Annotations: ownerAnnotation(run),
		Options: probe.Options{
			URL:     targetURL(run),
			Expect:  step.Expect,
			Timeout: run.Spec.Probe.RequestTimeout.Duration,
			Settle:  run.Spec.Probe.SettleTimeout.Duration,
			Count:   step.Count,
		},
	})
}

func ownerAnnotation(run *labsv1.LabRun) map[string]string {
	return map[string]string{labsv1.AnnotationOwner: run.Namespace + "/" + run.Name}
}

// targetURL is the in-cluster URL of the target, as the guide's curl calls it.
func targetURL(run *labsv1.LabRun) string {
	t := run.Spec.Target
	return fmt.Sprintf("http://%s.%s.svc:%d%s", t.Service, run.TargetNamespace(), t.Port, t.Path)
}

// event records one Event for users; logs are for operators.
func (r *LabRunReconciler) event(run *labsv1.LabRun, typ, reason, action, format string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(run, nil, typ, reason, action, format, args...)
	}
}

// ownerOf maps a probe pod or a changed mesh object to its LabRun through the owner annotation.
func ownerOf(_ context.Context, obj client.Object) []reconcile.Request {
	ns, name, ok := strings.Cut(obj.GetAnnotations()[labsv1.AnnotationOwner], "/")
	if !ok || ns == "" || name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}}
}
