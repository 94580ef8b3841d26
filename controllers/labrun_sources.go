package controllers

import (
	"cmp"
	"context"
	"slices"
	"time"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// maxEvidenceSources is status.steps[].evidenceSources' MaxItems.
const maxEvidenceSources = 64

// readZtunnel reads the run's ztunnel access logs in scope since the given time and records on st the pods it
// read, so that the step's reports say where its evidence came from. A failed read leaves st's sources as they
// were; a window not held in full returns what is held, and the *ztunnel.Incomplete error saying so.
func (r *LabRunReconciler) readZtunnel(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, since time.Time, scope ztunnel.Scope) ([]ztunnel.Entry, error) {
	entries, sources, err := r.readZtunnelSources(ctx, run, since, scope)
	if err != nil && !ztunnel.IsIncomplete(err) {
		return nil, err
	}
	st.EvidenceSources = sources
	return entries, err
}

// readZtunnelSources reads the run's ztunnel access logs in scope since the given time and names the pods it
// read.
func (r *LabRunReconciler) readZtunnelSources(ctx context.Context, run *labsv1.LabRun, since time.Time, scope ztunnel.Scope) ([]ztunnel.Entry, []labsv1.EvidenceSource, error) {
	z := r.meshConfig() // the operator's ztunnel, never one a spec names
	entries, sources, err := r.Logs.ReadScoped(ctx, z.ZtunnelNamespace, z.ZtunnelSelector, since, scope)
	if err != nil && !ztunnel.IsIncomplete(err) {
		return nil, nil, err
	}
	return entries, evidenceSources(sources), err
}

// evidenceSources orders the pods read by node and name and keeps the first maxEvidenceSources.
func evidenceSources(sources []ztunnel.Source) []labsv1.EvidenceSource {
	out := make([]labsv1.EvidenceSource, 0, len(sources))
	for _, s := range sources {
		out = append(out, labsv1.EvidenceSource{Namespace: s.Namespace, Pod: s.Pod, Node: s.Node})
	}
	slices.SortFunc(out, func(a, b labsv1.EvidenceSource) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Pod, b.Pod))
	})
	out = slices.CompactFunc(out, func(a, b labsv1.EvidenceSource) bool { return a == b })
	if len(out) > maxEvidenceSources {
		out = out[:maxEvidenceSources]
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// endpointNodes are the nodes of the target's pods: their ztunnels log the inbound lines of every connection to the
// target, refusals included. Nil when the pods cannot be read: then every ztunnel is read.
func (r *LabRunReconciler) endpointNodes(ctx context.Context, run *labsv1.LabRun) []string {
	_, pods, err := r.targetPods(ctx, run)
	if err != nil {
		return nil
	}
	var nodes []string
	for i := range pods {
		p := &pods[i]
		if n := p.Spec.NodeName; n != "" && !slices.Contains(nodes, n) {
			nodes = append(nodes, n)
		}
	}
	return nodes
}
