package labschedule_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/internal/sandbox/dataplane"
	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// rememberedPolicies is the schedule's memory of the audit (status.policies), by "<kind> <ns>/<name>".
func rememberedPolicies(g Gomega, ls *labsv1.LabSchedule) map[string]labsv1.SchedulePolicy {
	out := map[string]labsv1.SchedulePolicy{}
	for _, p := range getSchedule(g, ls).Status.Policies {
		out[p.Kind+" "+p.Policy] = p
	}
	return out
}

// failingStepSeries are the labels of each labrun_schedule_failing_step series of schedule ls, gathered from
// controller-runtime's registry, which the manager's /metrics endpoint serves.
func failingStepSeries(g Gomega, ls *labsv1.LabSchedule) []map[string]string {
	families, err := metrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred(), "gathering the manager's metrics")
	var out []map[string]string
	for _, mf := range families {
		if mf.GetName() != "labrun_schedule_failing_step" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] == ls.Namespace && labels["schedule"] == ls.Name {
				g.Expect(m.GetGauge().GetValue()).To(BeEquivalentTo(1))
				out = append(out, labels)
			}
		}
	}
	return out
}

// TestScheduleRemembersARegressedPolicy: a schedule of policy-audit runs over shop lists each policy with the
// newest verdict in its status. Once the ztunnel of the node that runs shop's pods stops enforcing, the next run
// finds shop/orders-deny-legacy NotEnforced; the schedule keeps when a run last found it Enforced, and its
// metrics name the regressed policy, although the schedule keeps no run that found it Enforced (successful runs
// are pruned at once, and only the newest failed run is kept). A tenant may not erase that memory.
func TestScheduleRemembersARegressedPolicy(t *testing.T) {
	g := NewWithT(t)
	suite.Start(t, suite.Options())
	ls := suite.NewSchedule("@every 3s")
	ls.Spec.SuccessfulRunsHistoryLimit = ptr.To[int32](0)
	ls.Spec.FailedRunsHistoryLimit = ptr.To[int32](1)
	tmpl := &ls.Spec.Template.Spec
	tmpl.Labs = []labsv1.LabName{labsv1.LabPolicyAudit}
	tmpl.Mesh.AuthorizationPolicy = nil
	tmpl.Target = labsv1.TargetSpec{Service: "backend", Port: 80, Path: "/get"}
	tmpl.Audit = &labsv1.AuditSpec{Namespaces: []string{sandbox.ShopNamespace}}
	suite.CreateSchedule(t, ls)

	const denyLegacy = "AuthorizationPolicy shop/orders-deny-legacy"
	var enforcedAt time.Time
	g.Eventually(func(g Gomega) {
		got := rememberedPolicies(g, ls)
		verdicts := map[string]labsv1.PolicyVerdict{}
		for k, p := range got {
			verdicts[k] = p.Verdict
		}
		g.Expect(verdicts).To(Equal(map[string]labsv1.PolicyVerdict{
			"AuthorizationPolicy shop/orders-allow-web":          labsv1.PolicyEnforced,
			"AuthorizationPolicy shop/orders-deny-legacy":        labsv1.PolicyEnforced,
			"AuthorizationPolicy shop/orders-allow-gateway":      labsv1.PolicyUntestable,
			"AuthorizationPolicy shop/payments-get-only":         labsv1.PolicyEnforcedDifferently,
			"AuthorizationPolicy shop/ghost-allow-web":           labsv1.PolicyNoEffect,
			"PeerAuthentication shop/catalog-metrics-permissive": labsv1.PolicyEnforced,
			"PeerAuthentication istio-system/default":            labsv1.PolicyEnforced,
		}))
		deny := got[denyLegacy]
		g.Expect(deny.LastEnforced).NotTo(BeNil())
		g.Expect(deny.LastRun).To(HavePrefix(ls.Name + "-"))
		g.Expect(got["AuthorizationPolicy shop/ghost-allow-web"].LastEnforced).To(BeNil(), "never enforced")
		g.Expect(got["AuthorizationPolicy shop/payments-get-only"].LastEnforced).NotTo(BeNil(), "enforced differently")
		enforcedAt = deny.LastEnforced.Time
	}).WithTimeout(2 * time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
	g.Expect(failingStepSeries(g, ls)).To(BeEmpty(), "nothing regressed yet")

	node := suite.SB.Nodes[len(suite.SB.Nodes)-1]
	suite.SB.SetNodeFault(node, dataplane.FaultNoEnforce)
	t.Cleanup(func() { suite.SB.SetNodeFault(node, dataplane.FaultNone) })

	var broken string
	g.Eventually(func(g Gomega) {
		deny := rememberedPolicies(g, ls)[denyLegacy]
		g.Expect(deny.Verdict).To(Equal(labsv1.PolicyNotEnforced))
		g.Expect(deny.LastEnforced).NotTo(BeNil(), "when a run last found it Enforced")
		g.Expect(deny.LastEnforced.Time).NotTo(BeTemporally("<", enforcedAt))
		broken = deny.LastRun
	}).WithTimeout(2 * time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
	g.Expect(getSchedule(g, ls).Status.LastRun.Phase).To(Equal(labsv1.PhaseFailed))

	g.Eventually(func(g Gomega) {
		g.Expect(failingStepSeries(g, ls)).To(ContainElement(map[string]string{
			"namespace": ls.Namespace, "schedule": ls.Name, "lab": "policy-audit", "step": "audit-policies",
			"node": "", "kind": "AuthorizationPolicy", "policy": "shop/orders-deny-legacy"}))
	}).WithTimeout(10 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())

	// No run the schedule keeps found the policy Enforced: the regression is the schedule's memory alone.
	for _, run := range suite.RunsOf(g, ls) {
		if !run.DeletionTimestamp.IsZero() {
			continue // pruned, its finalizer still at work
		}
		g.Expect(run.Status.Phase).NotTo(Equal(labsv1.PhaseSucceeded), "successful runs are pruned: %s", run.Name)
		for _, st := range run.Status.Steps {
			for _, p := range st.Policies {
				if p.Kind+" "+p.Policy == denyLegacy {
					g.Expect(p.Verdict).NotTo(Equal(labsv1.PolicyEnforced), "run %s (after %s)", run.Name, broken)
				}
			}
		}
	}

	// Nor can a tenant whom RBAC lets write the schedule's status make the regression go away by forgetting it.
	suite.Grant(t, "tom", ls.Namespace, suite.Rule(labsv1.GroupVersion.Group, "labschedules", "get"),
		suite.Rule(labsv1.GroupVersion.Group, "labschedules/status", "get", "update", "patch"))
	tom := suite.AsUser(t, "tom")
	g.Eventually(func() error {
		cur := &labsv1.LabSchedule{}
		if err := tom.Get(context.Background(), client.ObjectKeyFromObject(ls), cur); err != nil {
			return err
		}
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Status.Policies = nil
		return tom.Status().Patch(context.Background(), cur, patch)
	}).WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).Should(MatchError(ContainSubstring(
		"user tom may not update labschedules/status of LabSchedule " + ls.Namespace + "/" + ls.Name)))
}
