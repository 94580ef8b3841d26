package policyaudit_test

import (
	"context"
	"os"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/report"
	"github.com/ambientlab/labrun-operator/internal/sandbox/dataplane"
	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// policies is the audit's line per policy, by "<kind> <ns>/<name>".
func policies(t *testing.T, run *labsv1.LabRun) map[string]labsv1.PolicyResult {
	st := suite.StepOf(t, run, labsv1.LabPolicyAudit, "audit-policies")
	out := map[string]labsv1.PolicyResult{}
	for _, p := range st.Policies {
		out[p.Kind+" "+p.Policy] = p
	}
	return out
}

// auditRun is a Verify run of the policy audit alone.
func auditRun(namespaces ...string) *labsv1.LabRun {
	run := suite.NewRun(labsv1.LabPolicyAudit)
	run.Spec.Mode = labsv1.ModeVerify
	if len(namespaces) > 0 {
		run.Spec.Audit = &labsv1.AuditSpec{Namespaces: namespaces}
	}
	return run
}

// TestAuditOfTheGuideWorld: the demo namespace's AuthorizationPolicy is enforced (frontend, which it names, is let
// through from every node and the attacker refused, by no ALLOW match, as ztunnel's line says), and the mesh-wide
// STRICT PeerAuthentication is enforced on every port of every demo Service (plaintext refused by
// istio_converted_static_strict). Nothing is changed and no probe is left.
func TestAuditOfTheGuideWorld(t *testing.T) {
	g := NewWithT(t)
	suite.Start(t, suite.Options())
	run := auditRun()
	suite.Create(t, run)
	done := suite.Finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), suite.NotPassed(done))
	got := policies(t, done)
	ap := got["AuthorizationPolicy demo/backend-allow-frontend-only"]
	g.Expect(ap.Verdict).To(Equal(labsv1.PolicyEnforced), "%+v", ap)
	g.Expect(ap.Probes).To(ContainElement(And(ContainSubstring("as demo/frontend → backend-"), ContainSubstring("allowed by demo/backend-allow-frontend-only"))))
	g.Expect(ap.Probes).To(ContainElement(And(ContainSubstring("as demo/labrun-attacker-"), ContainSubstring("denied (allow policies exist, but none allowed)"))), "the attacker is refused")
	pa := got["PeerAuthentication istio-system/default"]
	g.Expect(pa.Verdict).To(Equal(labsv1.PolicyEnforced), "%+v", pa)
	g.Expect(pa.Probes).To(ContainElement(And(ContainSubstring("plaintext (non-mesh) → backend-"), ContainSubstring("denied by STRICT mTLS"))))
	g.Expect(pa.Probes).To(ContainElement(ContainSubstring("plaintext (non-mesh) → frontend-")))
	g.Expect(done.Status.Journal).To(BeEmpty())
	suite.DeleteAndWait(t, run)
	g.Expect(suite.Leftovers()).To(BeEmpty())
}

// TestAuditGivesEachPolicyItsVerdict: the shop namespace's policies (internal/sandbox's world) each get the
// verdict their spec calls for, computed by the operator's evaluator and proved by probes from every node:
//   - orders-allow-web (ALLOW web): enforced; web is let through and the attacker refused;
//   - orders-deny-legacy (DENY legacy): enforced; legacy is refused by that very policy, as ztunnel's line says;
//   - orders-allow-gateway (ALLOW kong's gateway): untestable, the audit may not call as kong's ServiceAccount;
//   - payments-get-only (ALLOW web, methods GET, no waypoint): enforced differently; web, which its YAML allows, is
//     refused, with istiod's own message;
//   - ghost-allow-web (selects app=ghost): no effect;
//   - catalog-metrics-permissive (port 9090 PERMISSIVE): enforced; plaintext reaches catalog on 9090 only, and
//     the mesh-wide STRICT refuses it on 80.
//
// The run is config/samples/labs_v1alpha1_labrun_audit.yaml, which audits demo and shop.
func TestAuditGivesEachPolicyItsVerdict(t *testing.T) {
	g := NewWithT(t)
	suite.Start(t, suite.Options())
	raw, err := os.ReadFile("../../config/samples/labs_v1alpha1_labrun_audit.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	run := &labsv1.LabRun{}
	g.Expect(yaml.UnmarshalStrict(raw, run)).To(Succeed())
	g.Expect(run.Spec.Audit.Namespaces).To(ConsistOf("demo", "shop"))
	suite.Create(t, run)
	done := suite.Finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), suite.NotPassed(done))
	got := policies(t, done)
	verdicts := map[string]labsv1.PolicyVerdict{}
	for k, p := range got {
		verdicts[k] = p.Verdict
	}
	g.Expect(verdicts).To(Equal(map[string]labsv1.PolicyVerdict{
		"AuthorizationPolicy shop/orders-allow-web":            labsv1.PolicyEnforced,
		"AuthorizationPolicy shop/orders-deny-legacy":          labsv1.PolicyEnforced,
		"AuthorizationPolicy shop/orders-allow-gateway":        labsv1.PolicyUntestable,
		"AuthorizationPolicy shop/payments-get-only":           labsv1.PolicyEnforcedDifferently,
		"AuthorizationPolicy shop/ghost-allow-web":             labsv1.PolicyNoEffect,
		"PeerAuthentication shop/catalog-metrics-permissive":   labsv1.PolicyEnforced,
		"PeerAuthentication istio-system/default":              labsv1.PolicyEnforced,
		"AuthorizationPolicy demo/backend-allow-frontend-only": labsv1.PolicyEnforced,
	}), "%+v", got)
	g.Expect(got["AuthorizationPolicy shop/orders-deny-legacy"].Probes).To(ContainElement(And(
		ContainSubstring("as shop/legacy → orders-"), ContainSubstring("denied by shop/orders-deny-legacy"))))
	g.Expect(got["AuthorizationPolicy shop/orders-allow-gateway"].Reason).To(ContainSubstring("cluster.local/ns/kong/sa/kong-gateway"))
	narrowed := got["AuthorizationPolicy shop/payments-get-only"]
	g.Expect(narrowed.Reason).To(ContainSubstring("ztunnel does not support HTTP attributes (found: methods)"))
	// What the real istiod wrote in the policy's status, quoted.
	g.Expect(narrowed.Istiod).To(And(HavePrefix("ZtunnelAccepted=True (UnsupportedValue): "),
		ContainSubstring("Within an ALLOW policy, rules matching HTTP attributes are omitted.")))
	g.Expect(got["AuthorizationPolicy shop/orders-allow-web"].Istiod).To(BeEmpty(), "accepted as written: nothing to quote")
	g.Expect(narrowed.Probes).To(ContainElement(And(ContainSubstring("as shop/web → payments-"),
		ContainSubstring("denied (allow policies exist, but none allowed)"))))
	g.Expect(got["AuthorizationPolicy shop/ghost-allow-web"].Reason).To(ContainSubstring("selects no pod"))
	if path := os.Getenv("LABRUN_AUDIT_REPORT"); path != "" {
		// What `kubectl labrun report policy-audit` prints for this run (the plugin writes report.Write's output).
		f, err := os.Create(path)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(report.Write(f, done, report.FormatMarkdown)).To(Succeed())
		g.Expect(f.Close()).To(Succeed())
	}
	g.Expect(got["PeerAuthentication shop/catalog-metrics-permissive"].Probes).To(ConsistOf(
		And(ContainSubstring("plaintext (non-mesh) → catalog-"), ContainSubstring(":9090): allowed"))))
	g.Expect(got["PeerAuthentication istio-system/default"].Probes).To(ContainElement(And(
		ContainSubstring("plaintext (non-mesh) → catalog-"), ContainSubstring(":80): denied by STRICT mTLS"))))
	suite.DeleteAndWait(t, run)
	g.Expect(suite.Leftovers()).To(BeEmpty())
}

// auditWithFault audits shop while the ztunnel of the node that runs orders (the last) has fault f: the run fails,
// and it returns the node and orders-deny-legacy's line.
func auditWithFault(t *testing.T, f dataplane.Fault) (string, labsv1.PolicyResult, *labsv1.LabRun) {
	g := NewWithT(t)
	suite.Start(t, suite.Options())
	node := sb.Nodes[len(sb.Nodes)-1]
	sb.SetNodeFault(node, f)
	t.Cleanup(func() { sb.SetNodeFault(node, dataplane.FaultNone) })
	run := suite.ShortSettle(auditRun("shop"))
	suite.Create(t, run)
	done := suite.Finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed))
	deny := policies(t, done)["AuthorizationPolicy shop/orders-deny-legacy"]
	g.Expect(deny.Verdict).To(Equal(labsv1.PolicyNotEnforced), "%+v", deny)
	return node, deny, done
}

// TestAuditNamesTheNodeThatDoesNotEnforce: the ztunnel of the node that runs orders stops enforcing. The DENY
// policy's probe (legacy → orders) is let through from every node: the policy is not enforced, and the verdict
// names that node; the run fails.
func TestAuditNamesTheNodeThatDoesNotEnforce(t *testing.T) {
	g := NewWithT(t)
	node, deny, done := auditWithFault(t, dataplane.FaultNoEnforce)
	g.Expect(deny.Reason).To(ContainSubstring("node(s) " + node))
	g.Expect(deny.Probes).To(ContainElement(And(ContainSubstring("destination node "+node), ContainSubstring("as shop/legacy"),
		ContainSubstring("expected denied by shop/orders-deny-legacy"))))
	st := suite.StepOf(t, done, labsv1.LabPolicyAudit, "audit-policies")
	g.Expect(st.Verdict).To(Equal(labsv1.VerdictFail))
	g.Expect(st.Policies[0].Verdict).To(Equal(labsv1.PolicyNotEnforced), "failures first")
}

// TestAuditAsksWhoRefused: the node that runs orders resets every connection itself. legacy → orders is refused
// from every node, as orders-deny-legacy says, but not by it: ztunnel logs no policy rejection. A reset is no
// proof of the policy, so the policy is not enforced, naming the node and that nothing says who refused.
func TestAuditAsksWhoRefused(t *testing.T) {
	node, deny, _ := auditWithFault(t, dataplane.FaultRefuseAll)
	NewWithT(t).Expect(deny.Probes).To(ContainElement(And(ContainSubstring("destination node "+node), ContainSubstring("as shop/legacy"),
		ContainSubstring("refused, but no ztunnel line says who refused it"))))
}

// TestAuditWorksOutSourceAddresses: a DENY policy refuses catalog's metrics port to pods of the first node's
// address range (ipBlocks). Plaintext to catalog:9090 is then refused from the first node's observer, by that
// policy, and let through from the others: each observer's expectation is worked out with the address its pod
// got, so catalog-metrics-permissive is still enforced. The DENY policy itself cannot be chosen probes for ahead
// of those addresses, and says so.
func TestAuditWorksOutSourceAddresses(t *testing.T) {
	g := NewWithT(t)
	suite.Start(t, suite.Options())
	suite.AddPolicy(t, "shop", "catalog-deny-first-node", nil, nil, map[string]any{
		"selector": map[string]any{"matchLabels": map[string]any{"app": "catalog"}},
		"action":   "DENY",
		"rules": []any{map[string]any{
			"from": []any{map[string]any{"source": map[string]any{"ipBlocks": []any{"10.244.1.0/24"}}}},
			"to":   []any{map[string]any{"operation": map[string]any{"ports": []any{"9090"}}}},
		}},
	})
	run := auditRun("shop")
	run.Spec.Probe.Coverage = labsv1.CoverageMatrix // plaintext from every node, the first among them
	suite.Create(t, run)
	done := suite.Finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), suite.NotPassed(done))
	got := policies(t, done)
	pa := got["PeerAuthentication shop/catalog-metrics-permissive"]
	g.Expect(pa.Verdict).To(Equal(labsv1.PolicyEnforced), "%+v", pa)
	g.Expect(pa.Probes).To(ConsistOf(And(ContainSubstring(":9090): "), ContainSubstring("denied by shop/catalog-deny-first-node"),
		ContainSubstring("allowed (no ALLOW policy)"))))
	deny := got["AuthorizationPolicy shop/catalog-deny-first-node"]
	g.Expect(deny.Verdict).To(Equal(labsv1.PolicyUntestable), "%+v", deny)
	g.Expect(deny.Reason).To(ContainSubstring("decides by source address"))
}

// TestAuditSeesPoliciesIstiodIgnores: a DENY-everything policy for another revision's istiod, and one marked as a
// dry run, have no effect: the audit says so with the reason, and the policies they would override are still
// proved enforced (web reaches orders), which the real istiod and the data plane confirm.
func TestAuditSeesPoliciesIstiodIgnores(t *testing.T) {
	g := NewWithT(t)
	suite.Start(t, suite.Options())
	denyAll := map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"app": "orders"}},
		"action": "DENY", "rules": []any{map[string]any{}}}
	suite.AddPolicy(t, "shop", "orders-deny-all-canary", map[string]string{"istio.io/rev": "canary"}, nil, denyAll)
	suite.AddPolicy(t, "shop", "orders-deny-all-dry-run", nil, map[string]string{"istio.io/dry-run": "true"}, denyAll)
	run := auditRun("shop")
	suite.Create(t, run)
	done := suite.Finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), suite.NotPassed(done))
	got := policies(t, done)
	g.Expect(got["AuthorizationPolicy shop/orders-deny-all-canary"].Verdict).To(Equal(labsv1.PolicyNoEffect))
	g.Expect(got["AuthorizationPolicy shop/orders-deny-all-canary"].Reason).To(ContainSubstring("istio.io/rev=canary"))
	g.Expect(got["AuthorizationPolicy shop/orders-deny-all-dry-run"].Verdict).To(Equal(labsv1.PolicyNoEffect))
	g.Expect(got["AuthorizationPolicy shop/orders-deny-all-dry-run"].Reason).To(ContainSubstring("dry run"))
	g.Expect(got["AuthorizationPolicy shop/orders-allow-web"].Verdict).To(Equal(labsv1.PolicyEnforced))
}

// TestAuditSpreadsItsObserversOverTheNodes: with coverage Pairs (the default) the audit runs fewer observers than
// one per identity per node (Matrix), every node still sends probes, and the verdicts are the same.
func TestAuditSpreadsItsObserversOverTheNodes(t *testing.T) {
	suite.Start(t, suite.Options())
	audit := func(coverage labsv1.Coverage) (pods int, done *labsv1.LabRun) {
		g := NewWithT(t)
		ctx := context.Background()
		run := auditRun("shop")
		run.Spec.Probe.Coverage = coverage
		list := &corev1.PodList{}
		g.Expect(k8s.List(ctx, list, client.HasLabels{labsv1.LabelProbe})).To(Succeed())
		w, err := k8s.Watch(ctx, &corev1.PodList{}, client.HasLabels{labsv1.LabelProbe},
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
		g.Expect(err).NotTo(HaveOccurred())
		created := map[string]bool{}
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			for ev := range w.ResultChan() {
				if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Added && strings.Contains(p.Name, "-obs-") {
					created[p.Namespace+"/"+p.Name] = true
				}
			}
		}()
		suite.Create(t, run)
		done = suite.Finished(t, run)
		w.Stop()
		<-stopped
		g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), suite.NotPassed(done))
		return len(created), done
	}
	g := NewWithT(t)
	matrixPods, matrix := audit(labsv1.CoverageMatrix)
	pairsPods, pairs := audit(labsv1.CoveragePairs)
	g.Expect(pairsPods).To(BeNumerically("<", matrixPods))
	g.Expect(matrixPods%len(sb.Nodes)).To(BeZero(), "Matrix: every identity on every node")
	for _, run := range []*labsv1.LabRun{matrix, pairs} {
		st := suite.StepOf(t, run, labsv1.LabPolicyAudit, "audit-policies")
		var sent []string
		for _, c := range st.Coverage {
			sent = append(sent, c.Node)
		}
		g.Expect(sent).To(ConsistOf(sb.Nodes), "every node sends probes")
	}
	verdicts := func(run *labsv1.LabRun) map[string]labsv1.PolicyVerdict {
		out := map[string]labsv1.PolicyVerdict{}
		for k, p := range policies(t, run) {
			out[k] = p.Verdict
		}
		return out
	}
	g.Expect(verdicts(pairs)).To(Equal(verdicts(matrix)))
}
