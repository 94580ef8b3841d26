package sandbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ambientlab/labrun-operator/internal/probe"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/internal/sandbox/policy"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// httpAttributesOmitted is what istiod writes on an ALLOW policy with HTTP attributes that ztunnel enforces
// (ISTIO-FACTS.md; pilot/pkg/serviceregistry/ambient/authorization.go).
const httpAttributesOmitted = "ztunnel does not support HTTP attributes (found: methods). In ambient mode you must " +
	"use a waypoint proxy to enforce HTTP rules. Within an ALLOW policy, rules matching HTTP attributes are omitted. " +
	"This will be more restrictive than requested."

// TestShopWorld checks shop as kubectl would show it: orders, payments and catalog run on the last node, web and
// legacy are identities without pods, catalog declares its metrics port.
func TestShopWorld(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	ns := &corev1.Namespace{}
	g.Expect(sb.Client.Get(ctx, client.ObjectKey{Name: sandbox.ShopNamespace}, ns)).To(Succeed())
	g.Expect(ns.Labels).To(HaveKeyWithValue("istio.io/dataplane-mode", "ambient"))
	g.Expect(ns.Labels).To(HaveKeyWithValue("labs.ambientlab.io/enabled", "true"))
	for _, sa := range []string{"web", "legacy", "orders", "payments", "catalog"} {
		g.Expect(sb.Client.Get(ctx, client.ObjectKey{Namespace: sandbox.ShopNamespace, Name: sa},
			&corev1.ServiceAccount{})).To(Succeed(), "ServiceAccount %s", sa)
	}
	last := sb.Nodes[len(sb.Nodes)-1]
	pods := &corev1.PodList{}
	g.Expect(sb.Client.List(ctx, pods, client.InNamespace(sandbox.ShopNamespace))).To(Succeed())
	apps := map[string]corev1.Pod{}
	for _, p := range pods.Items {
		apps[p.Labels["app"]] = p
	}
	g.Expect(apps).To(HaveLen(3))
	for _, app := range []string{"orders", "payments", "catalog"} {
		p := apps[app]
		g.Expect(p.Spec.NodeName).To(Equal(last), app)
		g.Expect(p.Spec.ServiceAccountName).To(Equal(app))
		g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning), app)
		g.Expect(p.Spec.Containers).To(HaveLen(1), app)
	}
	var ports []int32
	for _, cp := range apps["catalog"].Spec.Containers[0].Ports {
		ports = append(ports, cp.ContainerPort)
	}
	g.Expect(ports).To(Equal([]int32{80, sandbox.CatalogMetricsPort}))
	svc := &corev1.Service{}
	g.Expect(sb.Client.Get(ctx, client.ObjectKey{Namespace: sandbox.ShopNamespace, Name: "catalog"}, svc)).To(Succeed())
	g.Expect(svc.Spec.Ports).To(HaveLen(2))
	g.Expect(svc.Spec.Ports[1].Port).To(BeEquivalentTo(sandbox.CatalogMetricsPort))
	g.Expect(svc.Spec.Ports[1].TargetPort.IntValue()).To(Equal(sandbox.CatalogMetricsPort))
}

// TestShopPolicyStatus reads what the real istiod wrote into the shop policies' status. It does not wait: the
// sandbox is ready only once istiod wrote it, so a test never races istiod.
func TestShopPolicyStatus(t *testing.T) {
	ctx := t.Context()
	accepted := []string{sandbox.OrdersAllowWebPolicy, sandbox.OrdersDenyLegacyPolicy, sandbox.OrdersAllowGatewayPolicy,
		sandbox.GhostAllowWebPolicy}
	for _, name := range append(accepted, sandbox.PaymentsGetOnlyPolicy) {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			ap := &securityv1.AuthorizationPolicy{}
			g.Expect(sb.Client.Get(ctx, client.ObjectKey{Namespace: sandbox.ShopNamespace, Name: name}, ap)).To(Succeed())
			conditions := ap.Status.GetConditions()
			g.Expect(conditions).To(HaveLen(1), "%v", conditions)
			c := conditions[0]
			g.Expect(c.GetType()).To(Equal("ZtunnelAccepted"))
			g.Expect(c.GetStatus()).To(Equal("True"))
			g.Expect(c.GetObservedGeneration()).To(Equal(ap.Generation))
			if name == sandbox.PaymentsGetOnlyPolicy {
				g.Expect(c.GetReason()).To(Equal("UnsupportedValue"))
				g.Expect(c.GetMessage()).To(Equal(httpAttributesOmitted))
			} else {
				g.Expect(c.GetReason()).To(Equal("Accepted"))
				g.Expect(c.GetMessage()).To(Equal("attached to ztunnel"))
			}
		})
	}
}

// TestShopVerdicts probes shop through the simulated data plane with the real istiod's policies, one probe per
// verdict, and checks on the destination ztunnel's access log which policy decided.
func TestShopVerdicts(t *testing.T) {
	ctx := t.Context()
	waitForShop(t)
	shopURL := func(svc string, port int) string {
		return fmt.Sprintf("http://%s.%s.svc:%d/get", svc, sandbox.ShopNamespace, port)
	}
	noMesh := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("no-mesh-%d", probeCounter.Add(1))}}
	NewWithT(t).Expect(sb.Client.Create(ctx, noMesh)).To(Succeed())
	t.Cleanup(func() { _ = sb.Client.Delete(context.Background(), noMesh) })

	tests := []struct {
		name, ns, sa, url string
		allowed           bool
		// inboundError is the destination ztunnel's error; "" for an allowed connection.
		inboundError string
	}{
		{"web reaches orders", sandbox.ShopNamespace, "web", shopURL("orders", 80), true, ""},
		{"legacy is denied by orders-deny-legacy", sandbox.ShopNamespace, "legacy", shopURL("orders", 80), false,
			policy.ErrExplicitlyDeniedPrefix + sandbox.ShopNamespace + "/" + sandbox.OrdersDenyLegacyPolicy},
		{"web is denied by payments: its only rule was HTTP", sandbox.ShopNamespace, "web", shopURL("payments", 80),
			false, policy.ErrNoAllowMatched},
		{"plaintext reaches catalog's metrics port", noMesh.Name, "", shopURL("catalog", sandbox.CatalogMetricsPort),
			true, ""},
		{"plaintext is denied on catalog's http port", noMesh.Name, "", shopURL("catalog", 80), false,
			policy.ErrExplicitlyDeniedPrefix + sandbox.ShopNamespace + "/" + sandbox.ConvertedPeerAuthenticationPrefix +
				sandbox.CatalogMetricsPermissive},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			expect := probe.ExpectDenied
			if tc.allowed {
				expect = probe.ExpectAllowed
			}
			pod := newProbePod(tc.ns, tc.sa, probe.Options{URL: tc.url, Expect: expect, Timeout: 2 * time.Second})
			res := runProbe(t, pod)
			g.Expect(res.Observed).To(Equal(string(expect)), "%+v", res)
			g.Expect(res.Matched).To(BeTrue())
			if tc.allowed {
				g.Expect(res.HTTPCode).To(Equal(200))
			} else {
				g.Expect(res.ExitCode).To(Equal(56), "curl's 'Recv failure: Connection reset by peer'")
			}
			e := inboundLine(t, pod.Name)
			g.Expect(e.Error()).To(Equal(tc.inboundError))
			if tc.sa != "" {
				g.Expect(e.SrcIdentity()).To(Equal("spiffe://cluster.local/ns/shop/sa/" + tc.sa))
			} else {
				g.Expect(e.Fields.Map()).NotTo(HaveKey(ztunnel.FieldSrcIdentity), "a plaintext peer has no identity")
			}
		})
	}
}

// inboundLine is the destination ztunnel's one `connection complete` line for the probe pod's connection.
func inboundLine(t *testing.T, podName string) ztunnel.Entry {
	t.Helper()
	var inbound []ztunnel.Entry
	NewWithT(t).Eventually(func(g Gomega) {
		inbound = nil
		for _, e := range ztunnelLogs(g, t.Context()) {
			if e.Message == "connection complete" && e.Fields.Get("src.workload") == podName && e.Direction() == "inbound" {
				inbound = append(inbound, e)
			}
		}
		g.Expect(inbound).To(HaveLen(1))
	}, waitFor, pollFor).Should(Succeed())
	return inbound[0]
}

// waitForShop waits until the simulated ztunnel enforces what istiod computed for shop (the sandbox waited for
// istiod; the data plane takes the propagation delay on top). It checks the enforcer, not the probes' verdicts.
func waitForShop(t *testing.T) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		z, ok := sb.Dataplane.Effective().(*policy.Ztunnel)
		g.Expect(ok).To(BeTrue())
		for _, name := range []string{sandbox.OrdersAllowWebPolicy, sandbox.OrdersDenyLegacyPolicy,
			sandbox.OrdersAllowGatewayPolicy, sandbox.PaymentsGetOnlyPolicy, sandbox.GhostAllowWebPolicy,
			sandbox.ConvertedPeerAuthenticationPrefix + sandbox.CatalogMetricsPermissive} {
			g.Expect(z.Has(sandbox.ShopNamespace+"/"+name)).To(BeTrue(), name)
		}
	}, waitFor, pollFor).Should(Succeed())
}
