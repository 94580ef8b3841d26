package controllers

import (
	"context"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

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

// denial reads the destination ztunnel's inbound lines from the probe's pod (src.workload in src.namespace) since
// the step started. It errs when the logs cannot be read, or when no line is found in a window not held in full.
//
// The line must name the destination too: a pod of the target namespace (dst.namespace), and, when dst is not
// nil, one of those pods (dst.workload). A refusal of the same source by any other workload (say a deny-all
// Service of a tenant's) says nothing about the target.
func (r *LabRunReconciler) denial(ctx context.Context, run *labsv1.LabRun, since time.Time, pod *corev1.Pod, dst []corev1.Pod) (steps.Denial, error) {
	// The refusal is logged by the destination's node: with the destination pods named, only their nodes' ztunnels
	// are read (all of them when a pod's node is not known).
	var scope ztunnel.Scope
	var names []string
	for _, p := range dst {
		names = append(names, p.Name)
		scope.OnNode(p.Spec.NodeName)
	}
	if slices.Contains(scope.Nodes, "") {
		scope.Nodes = nil
	}
	entries, sources, err := r.readZtunnelSources(ctx, run, since, scope)
	if err != nil && !ztunnel.IsIncomplete(err) {
		return steps.Denial{}, err
	}
	rejected := true
	matched := ztunnel.Match(entries, ztunnel.Criteria{Since: since, Direction: "inbound", SrcWorkload: pod.Name,
		SrcNamespace: pod.Namespace, DstNamespace: run.TargetNamespace(), PolicyRejected: &rejected})
	if dst != nil {
		matched = slices.DeleteFunc(matched, func(e ztunnel.Entry) bool {
			return !slices.Contains(names, e.Fields.Get(ztunnel.FieldDstWorkload))
		})
	}
	if len(matched) == 0 {
		// With the window not held in full, the line may be among those dropped: no answer, not "none".
		return steps.Denial{Sources: sources}, err
	}
	last := matched[len(matched)-1] // the newest lines are the ones held
	return steps.Denial{Line: &last, Who: deniedBy(last), Sources: sources}, nil
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
func (r *LabRunReconciler) strictDenials(run *labsv1.LabRun) (static, convertedPrefix string) {
	return r.meshConfig().RootNamespace + "/istio_converted_static_strict",
		run.TargetNamespace() + "/converted_peer_authentication_"
}

// deniedAsExpected: STRICT's refusal is the DENY policy istiod generates from the PeerAuthentication; the
// AuthorizationPolicy's is an ALLOW policy that did not match, or the policy itself denying.
func (r *LabRunReconciler) deniedAsExpected(run *labsv1.LabRun, denier labs.Denier, who string) bool {
	switch denier {
	case labs.DenierStrict:
		static, converted := r.strictDenials(run)
		return who == static || strings.HasPrefix(who, converted)
	case labs.DenierPolicy:
		ref := policyRef(run)
		return strings.HasPrefix(who, "no ALLOW policy") || who == ref.Namespace+"/"+ref.Name
	}
	return false
}

// caller is where a caller's probe pods run and as which ServiceAccount.
func (r *LabRunReconciler) caller(run *labsv1.LabRun, c labs.Caller) (namespace, serviceAccount string) {
	if ns, sa, ok := r.auditIdentity(run, c); ok {
		return ns, sa
	}
	switch c {
	case labs.CallerNonMesh:
		return nonMeshNamespace(r.keeper(run)), ""
	case labs.CallerAttacker:
		return run.TargetNamespace(), attackerServiceAccount(r.keeper(run))
	}
	return run.TargetNamespace(), run.Spec.Client.ServiceAccount
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
