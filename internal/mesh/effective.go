package mesh

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Levels of the PeerAuthentication that decides a workload's mode.
const (
	LevelDefault   = "default"
	LevelMesh      = "mesh"
	LevelNamespace = "namespace"
	LevelWorkload  = "workload"
)

// ModeDecision is a workload's effective mTLS mode and the PeerAuthentication that decided it.
type ModeDecision struct {
	// Mode is STRICT, PERMISSIVE or DISABLE; with nothing deciding, PERMISSIVE (Istio's default).
	Mode string
	// By is the deciding PeerAuthentication; nil when none decides.
	By *Ref
	// Level is where it decided: default, mesh, namespace, workload, or "workload port N".
	Level string
}

func (d ModeDecision) String() string {
	if d.By == nil {
		return d.Mode + " (no PeerAuthentication decides: Istio's default)"
	}
	return fmt.Sprintf("%s (decided by %s/%s, %s level)", d.Mode, d.By.Namespace, d.By.Name, d.Level)
}

// EffectiveMode is the mTLS mode a workload with podLabels in namespace ns gets on its container port from the
// PeerAuthentications pas (those of the root namespace and of ns), as ISTIO-FACTS.md describes istiod:
//   - in the root namespace only a policy without a selector counts (mesh-wide; `selector: {}` is not
//     mesh-wide, and selector policies there are ignored);
//   - elsewhere a policy without a selector is namespace-wide, one with a selector applies to the workloads it
//     matches;
//   - workload over namespace over mesh; UNSET (or no mode) inherits from the level above; at one level the
//     oldest policy wins; a workload policy's portLevelMtls entry for the port overrides its mode.
func EffectiveMode(pas []unstructured.Unstructured, root, ns string, podLabels map[string]string, port int32) ModeDecision {
	var meshWide, nsWide, workload []unstructured.Unstructured
	for _, pa := range pas {
		_, hasSelector, _ := unstructured.NestedFieldNoCopy(pa.Object, "spec", "selector")
		switch {
		case pa.GetNamespace() == root && !hasSelector:
			meshWide = append(meshWide, pa)
		case pa.GetNamespace() == root || pa.GetNamespace() != ns:
			// selector policies in the root namespace are ignored; other namespaces do not apply
		case !hasSelector:
			nsWide = append(nsWide, pa)
		case selects(pa, podLabels):
			workload = append(workload, pa)
		}
	}
	d := ModeDecision{Mode: "PERMISSIVE", Level: LevelDefault}
	for _, level := range []struct {
		name string
		pas  []unstructured.Unstructured
	}{{LevelMesh, meshWide}, {LevelNamespace, nsWide}, {LevelWorkload, workload}} {
		pa := oldest(level.pas)
		if pa == nil {
			continue
		}
		if mode := modeAt(pa.Object, "spec", "mtls", "mode"); mode != "" {
			d = decided(pa, mode, level.name)
		}
		if level.name == LevelWorkload {
			if mode := modeAt(pa.Object, "spec", "portLevelMtls", strconv.Itoa(int(port)), "mode"); mode != "" {
				d = decided(pa, mode, fmt.Sprintf("%s port %d", LevelWorkload, port))
			}
		}
	}
	return d
}

func decided(pa *unstructured.Unstructured, mode, level string) ModeDecision {
	return ModeDecision{Mode: mode, Level: level,
		By: &Ref{Kind: KindPeerAuthentication, Namespace: pa.GetNamespace(), Name: pa.GetName()}}
}

// modeAt reads a mode; UNSET counts as none (it inherits).
func modeAt(obj map[string]any, path ...string) string {
	mode, _, _ := unstructured.NestedString(obj, path...)
	if mode == "UNSET" {
		return ""
	}
	return mode
}

// selects: every matchLabels entry is on the pod (an empty selector selects every workload of the namespace).
func selects(pa unstructured.Unstructured, podLabels map[string]string) bool {
	want, _, _ := unstructured.NestedStringMap(pa.Object, "spec", "selector", "matchLabels")
	for k, v := range want {
		if got, ok := podLabels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// oldest is the policy that wins at one level: the oldest, then by name.
func oldest(pas []unstructured.Unstructured) *unstructured.Unstructured {
	if len(pas) == 0 {
		return nil
	}
	sort.SliceStable(pas, func(i, j int) bool {
		ti, tj := pas[i].GetCreationTimestamp(), pas[j].GetCreationTimestamp()
		if !ti.Equal(&tj) {
			return ti.Before(&tj)
		}
		return pas[i].GetName() < pas[j].GetName()
	})
	return &pas[0]
}

// PeerAuthentications lists those of the root namespace and of ns, which decide ns's workloads' modes.
func PeerAuthentications(ctx context.Context, r client.Reader, root, ns string) ([]unstructured.Unstructured, error) {
	var out []unstructured.Unstructured
	for _, n := range []string{root, ns} {
		list := &unstructured.UnstructuredList{}
		gvk := GVK(KindPeerAuthentication)
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := r.List(ctx, list, client.InNamespace(n)); err != nil {
			return nil, fmt.Errorf("listing PeerAuthentications in %s: %w", n, err)
		}
		out = append(out, list.Items...)
		if root == ns {
			break
		}
	}
	return out, nil
}
