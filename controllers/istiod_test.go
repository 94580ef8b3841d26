package controllers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/internal/sandbox/policy"
)

// These tests run through the real istiod the sandbox starts: the simulated ztunnel enforces what istiod
// converted and attached, so the verdicts and policy names are istiod's, not a re-implementation's.

// TestPortLevelPeerAuthenticationThroughIstiod: a workload PeerAuthentication with portLevelMtls makes istiod
// convert it to demo/converted_peer_authentication_<name> and drop the static strict policy for backend. The
// plaintext probe is denied by that policy, which the lab accepts as STRICT's refusal, and the evidence step
// finds it; the temporary workload PERMISSIVE one would lose to it (the oldest wins), which the set-permissive step
// reports without changing anything.
func TestPortLevelPeerAuthenticationThroughIstiod(t *testing.T) {
	addPeerAuthentication(t, "backend-port", "STRICT", map[string]any{"app": "backend"})
	NewWithT(t).Eventually(func() error { // istiod may write its status meanwhile: read fresh on a conflict
		pa := readMesh(mesh.Ref{Kind: mesh.KindPeerAuthentication, Namespace: sandbox.DemoNamespace, Name: "backend-port"})
		if err := unstructured.SetNestedField(pa.Object, map[string]any{"8080": map[string]any{"mode": "PERMISSIVE"}},
			"spec", "portLevelMtls"); err != nil {
			return err
		}
		return k8s.Update(context.Background(), pa)
	}).WithTimeout(10 * time.Second).Should(Succeed())
	NewWithT(t).Eventually(func() bool { // istiod converted it and the simulated ztunnel has it
		z, ok := sb.Dataplane.Effective().(*policy.Ztunnel)
		return ok && z.Has(sandbox.DemoNamespace+"/converted_peer_authentication_backend-port")
	}).WithTimeout(30 * time.Second).WithPolling(20 * time.Millisecond).Should(BeTrue())
	startManager(t, managerOptions())
	g := NewWithT(t)
	run := newRun(labsv1.LabPeerAuthentication)
	create(t, run)
	done := finished(t, run)
	denied := stepOf(t, done, labsv1.LabPeerAuthentication, "non-mesh-denied")
	g.Expect(denied.Verdict).To(Equal(labsv1.VerdictPass), denied.Message)
	g.Expect(denied.Observed).To(HaveSuffix("by demo/converted_peer_authentication_backend-port"))
	logged := stepOf(t, done, labsv1.LabPeerAuthentication, "strict-rejection-logged")
	g.Expect(logged.Verdict).To(Equal(labsv1.VerdictPass), logged.Message)
	g.Expect(logged.Evidence[0]).To(ContainSubstring("demo/converted_peer_authentication_backend-port"))
	base := stepOf(t, done, labsv1.LabPeerAuthentication, "baseline-strict")
	g.Expect(base.Observed).To(ContainSubstring("decided by demo/backend-port, workload level"))
	st := stepOf(t, done, labsv1.LabPeerAuthentication, "set-permissive")
	g.Expect(st.Verdict).To(Equal(labsv1.VerdictFail))
	g.Expect(st.Message).To(ContainSubstring("would stay STRICT (decided by demo/backend-port, workload level)"))
	expectMeshAsFound(t)
}

// TestPoliciesIstiodDoesNotEnforce: each AuthorizationPolicy below would refuse the client if it applied; istiod
// does not send it to ztunnel for backend (ISTIO-FACTS.md), so the mtls lab's client still gets through.
func TestPoliciesIstiodDoesNotEnforce(t *testing.T) {
	denyAll := func(selector any) map[string]any {
		spec := map[string]any{"action": "DENY", "rules": []any{map[string]any{}}}
		if selector != nil {
			spec["selector"] = selector
		}
		return spec
	}
	cases := []struct {
		name        string
		labels      map[string]string
		annotations map[string]string
		spec        map[string]any
	}{
		{"selector {} attaches to no workload", nil, nil, denyAll(map[string]any{})},
		{"dry run is not enforced", nil, map[string]string{"istio.io/dry-run": "true"}, denyAll(nil)},
		{"another revision's policy", map[string]string{"istio.io/rev": "canary"}, nil, denyAll(nil)},
	}
	startManager(t, managerOptions())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addPolicy(t, sandbox.DemoNamespace, "test-deny-all", tc.labels, tc.annotations, tc.spec)
			inForce(t)
			run := newRun(labsv1.LabMTLS)
			create(t, run)
			done := finished(t, run)
			st := stepOf(t, done, labsv1.LabMTLS, "client-allowed")
			NewWithT(t).Expect(st.Verdict).To(Equal(labsv1.VerdictPass), st.Message)
		})
	}
	// The control: the same policy without the exemption does refuse the client.
	t.Run("control: a namespace-wide DENY all is enforced", func(t *testing.T) {
		addPolicy(t, sandbox.DemoNamespace, "test-deny-all", nil, nil, denyAll(nil))
		inForce(t)
		run := newRun(labsv1.LabMTLS)
		run.Spec.Probe.SettleTimeout = shortSettle(run).Spec.Probe.SettleTimeout
		create(t, run)
		done := finished(t, run)
		st := stepOf(t, done, labsv1.LabMTLS, "client-allowed")
		NewWithT(t).Expect(st.Verdict).To(Equal(labsv1.VerdictFail))
		NewWithT(t).Expect(st.Observed).To(ContainSubstring("denied"))
	})
}

// inForce creates a harmless marker policy after the test's own and waits until the simulated ztunnel enforces
// what istiod computed with it: the run that follows then meets the test's policy as istiod handled it, not a
// state from before the change.
func inForce(t *testing.T) {
	t.Helper()
	marker := fmt.Sprintf("test-marker-%d", runCounter.Add(1)) // never one a previous test left in force
	addPolicy(t, sandbox.DemoNamespace, marker, nil, nil, map[string]any{"action": "DENY", "rules": []any{
		map[string]any{"from": []any{map[string]any{"source": map[string]any{"principals": []any{"cluster.local/ns/none/sa/none"}}}}}}})
	NewWithT(t).Eventually(func() bool {
		z, ok := sb.Dataplane.Effective().(*policy.Ztunnel)
		return ok && z.Has(sandbox.DemoNamespace+"/"+marker)
	}).WithTimeout(30 * time.Second).WithPolling(20 * time.Millisecond).Should(BeTrue())
}
