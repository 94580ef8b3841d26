package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// scopeOf is spec.scope, Workload when unset.
func scopeOf(run *labsv1.LabRun) labsv1.Scope {
	if run.Spec.Scope == "" {
		return labsv1.ScopeWorkload
	}
	return run.Spec.Scope
}

// temporaryPeerAuthName names the PeerAuthentication a Workload or Namespace scope run creates: stable for the
// run (a restarted manager finds it), unique across runs.
func temporaryPeerAuthName(run *labsv1.LabRun) string {
	return "labrun-permissive-" + hash(string(run.UID))
}

// permissiveRef is the object the set-permissive step changes (Mesh) or creates (Workload, Namespace).
func (r *LabRunReconciler) permissiveRef(run *labsv1.LabRun) mesh.Ref {
	if scopeOf(run) == labsv1.ScopeMesh {
		return r.peerAuthRef(run)
	}
	return mesh.Ref{Kind: mesh.KindPeerAuthentication, Namespace: run.TargetNamespace(), Name: temporaryPeerAuthName(run)}
}

// permissiveChange says what the set-permissive step does, by scope.
func (r *LabRunReconciler) permissiveChange(run *labsv1.LabRun) string {
	switch scopeOf(run) {
	case labsv1.ScopeMesh:
		return fmt.Sprintf("set %s mode %s (every workload of the mesh)", r.peerAuthRef(run), mesh.Permissive)
	case labsv1.ScopeNamespace:
		return fmt.Sprintf("create %s, mode %s for namespace %s only; removed on restore", r.permissiveRef(run),
			mesh.Permissive, run.TargetNamespace())
	}
	return fmt.Sprintf("create %s selecting only Service %s's pods, port %d %s; removed on restore", r.permissiveRef(run),
		run.Spec.Target.Service, run.Spec.Target.Port, mesh.Permissive)
}

// temporaryEntry is the journal entry of the PeerAuthentication a narrow scope creates: for Workload, the target
// Service's selector (exactly its pods) with only the container ports behind the target port PERMISSIVE.
func (r *LabRunReconciler) temporaryEntry(ctx context.Context, run *labsv1.LabRun, owner mesh.Owner, now time.Time) (labsv1.JournalEntry, error) {
	ref := r.permissiveRef(run)
	if scopeOf(run) == labsv1.ScopeNamespace {
		return mesh.TemporaryPeerAuthentication(ref.Namespace, ref.Name, nil, nil, owner, metav1.NewTime(now))
	}
	svc, pods, err := r.targetPods(ctx, run)
	if err != nil {
		return labsv1.JournalEntry{}, err
	}
	var ports []int32
	for i := range pods {
		if p := containerPort(svc, run.Spec.Target.Port, &pods[i]); !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	slices.Sort(ports)
	return mesh.TemporaryPeerAuthentication(ref.Namespace, ref.Name, svc.Spec.Selector, ports, owner, metav1.NewTime(now))
}

// permissiveBlocked works out on paper what the set-permissive step would do, before it changes anything: with
// the change made, every target pod must be PERMISSIVE on the target port. It names the policy that would still
// decide STRICT (for Workload scope, an older workload policy selecting the target: at one level the oldest
// wins), so the step fails without weakening anything; "" when the change would do what the lab needs.
func (r *LabRunReconciler) permissiveBlocked(ctx context.Context, run *labsv1.LabRun, e labsv1.JournalEntry) (string, error) {
	svc, pods, err := r.targetPods(ctx, run)
	if err != nil {
		return fmt.Sprintf("scope %s: %v", scopeOf(run), err), nil
	}
	pas, err := mesh.PeerAuthentications(ctx, r.APIReader, r.meshConfig().RootNamespace, run.TargetNamespace())
	if err != nil {
		return "", err
	}
	ref := r.permissiveRef(run)
	changed := make([]unstructured.Unstructured, 0, len(pas)+1)
	for _, pa := range pas {
		if pa.GetNamespace() == ref.Namespace && pa.GetName() == ref.Name {
			if scopeOf(run) != labsv1.ScopeMesh {
				continue // the run's own, from a pass that died after creating it
			}
			if err := unstructured.SetNestedField(pa.Object, mesh.Permissive, "spec", "mtls", "mode"); err != nil {
				return "", err
			}
		}
		changed = append(changed, pa)
	}
	if e.Created {
		spec := map[string]any{}
		if err := json.Unmarshal(e.Spec.Raw, &spec); err != nil {
			return "", err
		}
		tmp := unstructured.Unstructured{Object: map[string]any{"spec": spec}}
		tmp.SetNamespace(ref.Namespace)
		tmp.SetName(ref.Name)
		tmp.SetCreationTimestamp(metav1.NewTime(r.now().Add(time.Hour))) // newer than every policy there is
		changed = append(changed, tmp)
	}
	for i := range pods {
		port := containerPort(svc, run.Spec.Target.Port, &pods[i])
		d := mesh.EffectiveMode(changed, r.meshConfig().RootNamespace, run.TargetNamespace(), pods[i].Labels, port)
		if d.Mode != mesh.Permissive {
			return fmt.Sprintf("scope %s cannot make target pod %s PERMISSIVE on port %d: it would stay %s; nothing "+
				"was changed for it (use another scope, or change that policy)", scopeOf(run), pods[i].Name, port, d), nil
		}
	}
	return "", nil
}

// weakenedPods counts the application pods a recorded change applies to: a PeerAuthentication's workloads (its
// selector's, its namespace's, or for the mesh-wide one every pod of every ambient namespace), or the
// AuthorizationPolicy's.
func (r *LabRunReconciler) weakenedPods(ctx context.Context, run *labsv1.LabRun, e labsv1.JournalEntry) ([]string, error) {
	spec := map[string]any{}
	if e.Spec != nil {
		_ = json.Unmarshal(e.Spec.Raw, &spec)
	}
	selector, _, _ := unstructured.NestedStringMap(spec, "selector", "matchLabels")
	namespaces := []string{e.Namespace}
	if e.Kind == mesh.KindPeerAuthentication && e.Namespace == r.meshConfig().RootNamespace {
		list := &corev1.NamespaceList{}
		if err := r.APIReader.List(ctx, list, client.MatchingLabels{ambientLabel: ambientValue}); err != nil {
			return nil, fmt.Errorf("listing ambient namespaces: %w", err)
		}
		namespaces = namespaces[:0]
		for _, ns := range list.Items {
			namespaces = append(namespaces, ns.Name)
		}
		selector = nil
	}
	var names []string
	for _, ns := range namespaces {
		pods, err := r.appPods(ctx, client.InNamespace(ns), client.MatchingLabels(selector))
		if err != nil {
			return nil, err
		}
		for _, p := range pods {
			names = append(names, p.Namespace+"/"+p.Name)
		}
	}
	return names, nil
}

// countWeakened records, before a change, how many pods it weakens. Pods is the most weakened at once by one
// change (the run's changes nest: the AuthorizationPolicy's pods are the target's, which every scope weakens).
func (r *LabRunReconciler) countWeakened(ctx context.Context, run *labsv1.LabRun, e labsv1.JournalEntry) {
	names, err := r.weakenedPods(ctx, run, e)
	if err != nil {
		return // a figure for people; the run goes on without it
	}
	n := int32(len(names))
	x := &run.Status.Exposure
	x.Scope = scopeOf(run)
	x.WindowPods = max(x.WindowPods, n)
	x.Pods = max(x.Pods, n)
}

// addPodSeconds folds a closed weakening of d into the pod-seconds total.
func addPodSeconds(x *labsv1.Exposure, d time.Duration) {
	total, _ := strconv.ParseFloat(x.PodSeconds, 64)
	total += d.Seconds() * float64(x.WindowPods)
	x.PodSeconds = strconv.FormatFloat(total, 'f', 2, 64)
	x.WindowPods = 0
}

// existsUnowned tells whether ref exists without the run's mark (creating it would take over someone's object).
func existsUnowned(ctx context.Context, r client.Reader, ref mesh.Ref, uid string) (bool, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(mesh.GVK(ref.Kind))
	err := r.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, u)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return u.GetLabels()[mesh.LabelChangedBy] != uid, nil
}

// modeOf is spec.mode, Lab when unset.
func modeOf(run *labsv1.LabRun) labsv1.Mode {
	if run.Spec.Mode == "" {
		return labsv1.ModeLab
	}
	return run.Spec.Mode
}

// planOf is the run's plan: its labs' steps in its mode.
func planOf(run *labsv1.LabRun) ([]labs.Step, error) {
	return labs.PlanMode(run.Spec.Labs, modeOf(run))
}

// prepareEntry reads the original of ref (or, for an object the run creates, builds it). refused says why the
// object cannot be journaled (the step then errs, nothing changed).
func (r *LabRunReconciler) prepareEntry(ctx context.Context, run *labsv1.LabRun, rec *mesh.Record, ref mesh.Ref, create bool) (labsv1.JournalEntry, string, error) {
	now := r.now()
	if create {
		if unowned, err := existsUnowned(ctx, r.APIReader, ref, string(run.UID)); err != nil || unowned {
			if err != nil {
				return labsv1.JournalEntry{}, "", err
			}
			return labsv1.JournalEntry{}, ref.String() + " already exists and is not this run's: nothing was changed", nil
		}
		e, err := r.temporaryEntry(ctx, run, r.owner(run, rec), now)
		return e, "", err
	}
	e, err := mesh.Snapshot(ctx, r.APIReader, ref, metav1.NewTime(now))
	var other *mesh.ErrChangedByOther
	if errors.As(err, &other) {
		return e, err.Error(), nil
	}
	return e, "", err
}
