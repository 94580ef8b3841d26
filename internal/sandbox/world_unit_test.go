package sandbox

import (
	"testing"
)

// TestBackendReplicasSpreadOverTheNodes: --replicas puts the backend's pods on the nodes from the second on,
// round robin (frontend keeps the first), each under its own name.
func TestBackendReplicasSpreadOverTheNodes(t *testing.T) {
	nodes := []string{"node-1", "node-2", "node-3"}
	on := map[string][]string{}
	names := map[string]bool{}
	for _, p := range worldPods(nodes, 4) {
		app := p.Labels["app"]
		if app == "ztunnel" {
			continue
		}
		on[app] = append(on[app], p.Spec.NodeName)
		if names[p.Name] {
			t.Fatalf("two pods named %s", p.Name)
		}
		names[p.Name] = true
	}
	if want := []string{"node-1"}; len(on["frontend"]) != 1 || on["frontend"][0] != want[0] {
		t.Errorf("frontend on %v, want %v", on["frontend"], want)
	}
	want := []string{"node-2", "node-3", "node-2", "node-3"}
	if len(on["backend"]) != len(want) {
		t.Fatalf("backend on %v, want %v", on["backend"], want)
	}
	for i := range want {
		if on["backend"][i] != want[i] {
			t.Fatalf("backend on %v, want %v", on["backend"], want)
		}
	}
	if one := worldPods([]string{"node-1"}, 2); one[1].Spec.NodeName != "node-1" || one[2].Spec.NodeName != "node-1" {
		t.Errorf("with one node the backend runs on it")
	}
}
