package sandbox

import (
	"maps"
	"slices"
	"testing"

	"github.com/ambientlab/labrun-operator/internal/sandbox/policy"
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

// TestShopPodsOnTheLastNode: orders, payments and catalog run on the last node, whatever the node count; web and
// legacy have no pods.
func TestShopPodsOnTheLastNode(t *testing.T) {
	for _, nodes := range [][]string{{"node-1"}, {"node-1", "node-2", "node-3"}} {
		on := map[string]string{}
		for _, p := range worldPods(nodes, 2) {
			if p.Namespace == ShopNamespace {
				on[p.Labels["app"]] = p.Spec.NodeName
			}
		}
		last := nodes[len(nodes)-1]
		want := map[string]string{"orders": last, "payments": last, "catalog": last}
		if !maps.Equal(on, want) {
			t.Errorf("%d nodes: shop's pods on %v, want %v", len(nodes), on, want)
		}
	}
}

// TestWorldAttached: the sandbox waits for istiod until every policy is attached where istiod attaches it, and
// ghost-allow-web (attached nowhere) converted; it names what is missing.
func TestWorldAttached(t *testing.T) {
	strict := RootNamespace + "/" + policy.StaticStrictPolicyName
	converted := ShopNamespace + "/" + ConvertedPeerAuthenticationPrefix + CatalogMetricsPermissive
	shop := func(name string) string { return ShopNamespace + "/" + name }
	pod := func(ns, app string, policies ...string) policy.AmbientWorkload {
		return policy.AmbientWorkload{Namespace: ns, Name: app + "-7d4f8b9c6d-x2k9p", AuthorizationPolicies: policies}
	}
	complete := func() policy.Ambientz {
		return policy.Ambientz{
			Workloads: []policy.AmbientWorkload{
				pod(DemoNamespace, "frontend", strict),
				pod(DemoNamespace, "backend", strict, DemoNamespace+"/"+PolicyName),
				pod(ShopNamespace, "orders", strict, shop(OrdersAllowWebPolicy), shop(OrdersDenyLegacyPolicy),
					shop(OrdersAllowGatewayPolicy)),
				pod(ShopNamespace, "payments", strict, shop(PaymentsGetOnlyPolicy)),
				pod(ShopNamespace, "catalog", converted),
			},
			Policies: []policy.Authorization{{Namespace: ShopNamespace, Name: GhostAllowWebPolicy}},
		}
	}
	if got := worldAttached(complete()); got != "" {
		t.Errorf("complete: %q, want nothing missing", got)
	}
	tests := map[string]struct {
		change func(*policy.Ambientz)
		want   string
	}{
		"orders' last two policies not attached yet": {
			func(a *policy.Ambientz) {
				a.Workloads[2].AuthorizationPolicies = a.Workloads[2].AuthorizationPolicies[:2]
			},
			shop(OrdersDenyLegacyPolicy) + " on shop/orders-7d4f8b9c6d-x2k9p, " +
				shop(OrdersAllowGatewayPolicy) + " on shop/orders-7d4f8b9c6d-x2k9p",
		},
		"catalog has the static strict policy, not the converted one": {
			func(a *policy.Ambientz) { a.Workloads[4].AuthorizationPolicies = []string{strict} },
			converted + " on shop/catalog-7d4f8b9c6d-x2k9p",
		},
		"payments' pod not known yet": {
			func(a *policy.Ambientz) { a.Workloads = slices.Delete(a.Workloads, 3, 4) },
			"no workload shop/payments",
		},
		"ghost not converted yet": {
			func(a *policy.Ambientz) { a.Policies = nil },
			"policy " + shop(GhostAllowWebPolicy) + " not converted",
		},
		"a second backend pod without its policy": {
			func(a *policy.Ambientz) {
				second := pod(DemoNamespace, "backend", strict)
				second.Name = "backend-7d4f8b9c6d-r0001"
				a.Workloads = append(a.Workloads, second)
			},
			DemoNamespace + "/" + PolicyName + " on demo/backend-7d4f8b9c6d-r0001",
		},
	}
	for name, tc := range tests {
		a := complete()
		tc.change(&a)
		if got := worldAttached(a); got != tc.want {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
	}
}
