package controllers

import (
	"context"
	"fmt"
	"strings"

	"gopkg.in/inf.v0"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// sidecarNames are what sidecar mode injects: the proxy and its init containers.
var sidecarNames = map[string]bool{"istio-proxy": true, "istio-init": true, "istio-validation": true}

func (r *LabRunReconciler) noSidecars(ctx context.Context, run *labsv1.LabRun) (labsv1.Verdict, string, string, error) {
	pods, err := r.countedPods(ctx, run, client.InNamespace(run.TargetNamespace()))
	if err != nil {
		return "", "", "", err
	}
	var offenders []string
	for _, p := range pods {
		for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			if sidecarNames[c.Name] {
				offenders = append(offenders, p.Name+"/"+c.Name)
			}
		}
	}
	observed := fmt.Sprintf("%d pods, %d containers, %d sidecars", len(pods), containers(pods), len(offenders))
	if len(pods) == 0 {
		return labsv1.VerdictFail, observed, "No pods in the target namespace", nil
	}
	if len(offenders) > 0 {
		return labsv1.VerdictFail, observed, "Sidecars found: " + strings.Join(offenders, ", "), nil
	}
	return labsv1.VerdictPass, observed, "No pod carries istio-proxy or istio-init: ztunnel serves them", nil
}

func containers(pods []corev1.Pod) int {
	n := 0
	for _, p := range pods {
		n += len(p.Spec.Containers)
	}
	return n
}

// appPods lists pods live. It leaves none out for a label: a label on a pod is its owner's to write, and a target
// pod hidden by one would escape every check. Counts leave out the run's own probe pods by UID (ownPods).
func (r *LabRunReconciler) appPods(ctx context.Context, opts ...client.ListOption) ([]corev1.Pod, error) {
	list := &corev1.PodList{}
	if err := r.APIReader.List(ctx, list, opts...); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	return list.Items, nil
}

// countedPods lists pods, leaving out those the run created (by UID in its trusted record).
func (r *LabRunReconciler) countedPods(ctx context.Context, run *labsv1.LabRun, opts ...client.ListOption) ([]corev1.Pod, error) {
	pods, err := r.appPods(ctx, opts...)
	if err != nil {
		return nil, err
	}
	rec, err := r.Records.Get(ctx, string(run.UID))
	if err != nil {
		return nil, err
	}
	return ownPods(rec, pods), nil
}

// ztunnelUsage measures ztunnel: live usage from metrics.k8s.io when it is served, else the pods' requests.
func (r *LabRunReconciler) ztunnelUsage(ctx context.Context, run *labsv1.LabRun) (labsv1.Verdict, string, string, error) {
	z := r.meshConfig()
	pods, err := r.appPods(ctx, client.InNamespace(z.ZtunnelNamespace), client.MatchingLabels(z.ZtunnelSelector))
	if err != nil {
		return "", "", "", err
	}
	nodes := &corev1.NodeList{}
	if err := r.APIReader.List(ctx, nodes); err != nil {
		return "", "", "", fmt.Errorf("listing nodes: %w", err)
	}
	fp := footprintOf(run)
	fp.Nodes, fp.ZtunnelPods = int32(len(nodes.Items)), int32(len(pods))
	fp.Source, fp.AmbientCPU, fp.AmbientMemory = "metrics.k8s.io", resource.Quantity{}, resource.Quantity{}
	if !r.usage(ctx, z.ZtunnelNamespace, z.ZtunnelSelector, fp) {
		fp.Source = "requests"
		for _, p := range pods {
			for _, c := range p.Spec.Containers {
				fp.AmbientCPU.Add(c.Resources.Requests[corev1.ResourceCPU])
				fp.AmbientMemory.Add(c.Resources.Requests[corev1.ResourceMemory])
			}
		}
	}
	ready := 0
	for i := range pods {
		if podReady(&pods[i]) {
			ready++
		}
	}
	observed := fmt.Sprintf("%d ready ztunnel pods on %d nodes: %s CPU, %s memory (%s)", ready, fp.Nodes,
		fp.AmbientCPU.String(), fp.AmbientMemory.String(), fp.Source)
	if ready < len(nodes.Items) {
		return labsv1.VerdictFail, observed, "Some nodes have no ready ztunnel: their pods are outside the mesh", nil
	}
	return labsv1.VerdictPass, observed, "One ztunnel per node serves every pod on it", nil
}

// usage reads ztunnel's live usage from metrics.k8s.io; false when the API is not served.
func (r *LabRunReconciler) usage(ctx context.Context, ns string, selector map[string]string, fp *labsv1.FootprintStatus) bool {
	list := &unstructured.UnstructuredList{}
	list.SetAPIVersion("metrics.k8s.io/v1beta1")
	list.SetKind("PodMetricsList")
	if err := r.APIReader.List(ctx, list, client.InNamespace(ns), client.MatchingLabels(selector)); err != nil || len(list.Items) == 0 {
		return false
	}
	for _, item := range list.Items {
		cs, _, _ := unstructured.NestedSlice(item.Object, "containers")
		for _, c := range cs {
			m, _ := c.(map[string]any)
			usage, _ := m["usage"].(map[string]any)
			addQuantity(&fp.AmbientCPU, usage["cpu"])
			addQuantity(&fp.AmbientMemory, usage["memory"])
		}
	}
	return true
}

func addQuantity(sum *resource.Quantity, v any) {
	if s, ok := v.(string); ok {
		if q, err := resource.ParseQuantity(s); err == nil {
			sum.Add(q)
		}
	}
}

// sidecarEstimate compares ambient with sidecar mode for the pods in ambient-enrolled namespaces now.
func (r *LabRunReconciler) sidecarEstimate(ctx context.Context, run *labsv1.LabRun) (labsv1.Verdict, string, string, error) {
	fp := footprintOf(run)
	if fp.Source == "" {
		return labsv1.VerdictError, "", "ztunnel-usage did not run", nil
	}
	nss := &corev1.NamespaceList{}
	if err := r.APIReader.List(ctx, nss, client.MatchingLabels{ambientLabel: ambientValue}); err != nil {
		return "", "", "", fmt.Errorf("listing enrolled namespaces: %w", err)
	}
	fp.MeshPods = 0
	for _, ns := range nss.Items {
		pods, err := r.countedPods(ctx, run, client.InNamespace(ns.Name))
		if err != nil {
			return "", "", "", err
		}
		for _, p := range pods {
			if p.Labels[ambientLabel] != "none" {
				fp.MeshPods++
			}
		}
	}
	fp.SidecarCPU = times(*run.Spec.Footprint.SidecarCPU, fp.MeshPods)
	fp.SidecarMemory = times(*run.Spec.Footprint.SidecarMemory, fp.MeshPods)
	fp.SavedCPU, fp.SavedMemory = fp.SidecarCPU.DeepCopy(), fp.SidecarMemory.DeepCopy()
	fp.SavedCPU.Sub(fp.AmbientCPU)
	fp.SavedMemory.Sub(fp.AmbientMemory)
	observed := fmt.Sprintf("sidecar mode for %d pods ≈ %s CPU, %s memory; ambient %s CPU, %s memory; %s",
		fp.MeshPods, cpuText(fp.SidecarCPU), memoryText(fp.SidecarMemory), cpuText(fp.AmbientCPU),
		memoryText(fp.AmbientMemory), savingText(fp.SavedCPU, fp.SavedMemory))
	return labsv1.VerdictPass, observed, "Estimate recorded in status.footprint", nil
}

// cpuText is a CPU quantity in millicores, as kubectl top prints it: 400m.
func cpuText(q resource.Quantity) string { return fmt.Sprintf("%dm", q.MilliValue()) }

// memoryText is a memory quantity in mebibytes, rounded, as kubectl top prints it: 1441Mi (not 1510612736).
func memoryText(q resource.Quantity) string {
	const mi = 1 << 20
	b := q.Value()
	if b < 0 {
		return "-" + memoryText(*resource.NewQuantity(-b, resource.BinarySI))
	}
	return fmt.Sprintf("%dMi", (b+mi/2)/mi)
}

// savingText says what ambient saves against the sidecars, or, where it uses more (a few pods against a ztunnel
// on every node), that it does: never a negative saving.
func savingText(cpu, memory resource.Quantity) string {
	var saved, more []string
	for _, q := range []struct {
		v    resource.Quantity
		text func(resource.Quantity) string
		what string
	}{{cpu, cpuText, "CPU"}, {memory, memoryText, "memory"}} {
		switch q.v.Sign() {
		case 1:
			saved = append(saved, q.text(q.v)+" "+q.what)
		case -1:
			n := q.v.DeepCopy()
			n.Neg()
			more = append(more, q.text(n)+" "+q.what)
		}
	}
	var parts []string
	if len(saved) > 0 {
		parts = append(parts, "saving "+strings.Join(saved, ", "))
	}
	if len(more) > 0 {
		parts = append(parts, "ambient uses "+strings.Join(more, ", ")+" more than the sidecars would")
	}
	if len(parts) == 0 {
		return "no difference"
	}
	return strings.Join(parts, "; ")
}

// times is q × n, computed in arbitrary precision: no quantity the API admits can overflow it.
func times(q resource.Quantity, n int32) resource.Quantity {
	product := new(inf.Dec).Mul(q.AsDec(), inf.NewDec(int64(n), 0))
	return *resource.NewDecimalQuantity(*product, q.Format)
}

func footprintOf(run *labsv1.LabRun) *labsv1.FootprintStatus {
	if run.Status.Footprint == nil {
		run.Status.Footprint = &labsv1.FootprintStatus{}
	}
	return run.Status.Footprint
}
