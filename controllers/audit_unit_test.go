package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
	"github.com/ambientlab/labrun-operator/internal/authz"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/probe"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// TestAuditRefusalIsTheExpectedPolicy: a STRICT refusal is istiod's policy of the root namespace, or the
// workload's converted one; a tenant's DENY policy named like istiod's in another namespace is not it.
func TestAuditRefusalIsTheExpectedPolicy(t *testing.T) {
	g := NewWithT(t)
	strict := auditProbe{strict: true, dst: auditWorkload{w: authz.Workload{Namespace: "shop"}}}
	g.Expect(auditRefusal(strict, "istio-system/istio_converted_static_strict", "istio-system")).To(BeTrue())
	g.Expect(auditRefusal(strict, "shop/converted_peer_authentication_catalog", "istio-system")).To(BeTrue())
	g.Expect(auditRefusal(strict, "tenant/istio_converted_static_strict", "istio-system")).To(BeFalse(), "a look-alike name")
	g.Expect(auditRefusal(strict, "tenant/converted_peer_authentication_catalog", "istio-system")).To(BeFalse(), "another namespace's")
	deny := auditProbe{want: authz.Decision{By: "shop/orders-deny-legacy"}}
	g.Expect(auditRefusal(deny, "shop/orders-deny-legacy", "istio-system")).To(BeTrue())
	g.Expect(auditRefusal(deny, "shop/other", "istio-system")).To(BeFalse())
	g.Expect(auditRefusal(deny, "no ALLOW policy (allow policies exist, but none allowed)", "istio-system")).To(BeFalse())
	none := auditProbe{want: authz.Decision{Reason: "allow policies exist, but none allowed"}}
	g.Expect(auditRefusal(none, "no ALLOW policy (allow policies exist, but none allowed)", "istio-system")).To(BeTrue())
	g.Expect(auditRefusal(none, "shop/orders-deny-legacy", "istio-system")).To(BeFalse())
}

// TestAuditLaysAFailureAtItsNode: a probe failing from every node is the destination node's; one failing from
// some nodes only is theirs.
func TestAuditLaysAFailureAtItsNode(t *testing.T) {
	g := NewWithT(t)
	now := time.Now()
	allowed := probe.Attempt{Time: now, Observed: string(probe.ExpectAllowed), HTTPCode: 200}
	denied := probe.Attempt{Time: now, Observed: string(probe.ExpectDenied), ExitCode: 56}
	judge := func(a probe.Attempt) steps.Judgement {
		return steps.Judge([]probe.Attempt{a}, probe.ExpectAllowed, 1, steps.Window{})
	}
	allow := authz.Decision{Allowed: true, By: "shop/orders-allow-web"}
	line := &auditLine{kind: "AuthorizationPolicy", key: "shop/orders-allow-web", probes: []auditProbe{{
		caller: auditCaller(authz.Peer{Mesh: true, Namespace: "shop", ServiceAccount: "web"}), port: 80,
		dst:  auditWorkload{pod: "orders-1", node: "node-3", w: authz.Workload{Namespace: "shop"}},
		want: allow,
	}}}
	everywhere := line.result([]auditResult{{node: "node-1", want: allow, j: judge(denied)}, {node: "node-2", want: allow, j: judge(denied)},
		{node: "node-3", want: allow, j: judge(denied)}}, nil, "istio-system")
	g.Expect(everywhere.Verdict).To(Equal(labsv1.PolicyNotEnforced))
	g.Expect(everywhere.Reason).To(HavePrefix("not enforced on node(s) node-3: destination node node-3"))
	some := line.result([]auditResult{{node: "node-1", want: allow, j: judge(allowed)}, {node: "node-2", want: allow, j: judge(denied)},
		{node: "node-3", want: allow, j: judge(allowed)}}, nil, "istio-system")
	g.Expect(some.Verdict).To(Equal(labsv1.PolicyNotEnforced))
	g.Expect(some.Probes).To(ConsistOf(HavePrefix("source node node-2: as shop/web → orders-1")))
	ok := line.result([]auditResult{{node: "node-1", want: allow, j: judge(allowed)}}, nil, "istio-system")
	g.Expect(ok.Verdict).To(Equal(labsv1.PolicyEnforced))
	g.Expect(strings.Join(ok.Probes, "\n")).To(ContainSubstring("allowed by shop/orders-allow-web from every node that made it"))
}

// TestAuditDenierIsTheObserversOwnLine: the audit calls as a ServiceAccount of an audited namespace, where others
// may create pods. A tenant's pod there named like the run's observer, refused at the same endpoint by another
// policy, must not stand for the observer: only lines from the observers' own addresses count.
func TestAuditDenierIsTheObserversOwnLine(t *testing.T) {
	g := NewWithT(t)
	t0 := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	run := &labsv1.LabRun{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "audit", UID: "uid-audit"},
		Spec: labsv1.LabRunSpec{Labs: []labsv1.LabName{labsv1.LabPolicyAudit}, Target: labsv1.TargetSpec{Service: "backend"}}}
	legacy := auditCaller(authz.Peer{Mesh: true, Namespace: "shop", ServiceAccount: "legacy"})
	name := observerPodName(coldKeeper(run), observer{caller: legacy, node: "node-1"})
	line := func(at time.Time, srcIP, denier string) ztunnel.Entry {
		return ztunnel.Entry{Time: at, Level: "error", Scope: "access", Message: "connection complete", Fields: ztunnel.FieldsOf(map[string]string{
			ztunnel.FieldSrcAddr: srcIP + ":40000", ztunnel.FieldSrcWorkload: name, ztunnel.FieldSrcNamespace: "shop",
			ztunnel.FieldDstAddr: "10.244.3.4:15008", ztunnel.FieldHBONEAddr: "10.244.3.4:80", ztunnel.FieldDstWorkload: "orders-1",
			ztunnel.FieldDstNamespace: "shop", ztunnel.FieldDirection: "inbound",
			ztunnel.FieldError: "connection closed due to policy rejection: explicitly denied by: " + denier,
		})}
	}
	own := line(t0.Add(time.Second), "10.244.1.7", "shop/orders-deny-legacy")
	namesake := line(t0.Add(2*time.Second), "10.244.1.9", "shop/something-else")
	r := &LabRunReconciler{Logs: staticLogs{own, namesake}, Now: func() time.Time { return t0.Add(time.Minute) }}
	dst := auditWorkload{pod: "orders-1", node: "node-3", w: authz.Workload{Namespace: "shop"}}
	p := auditProbe{caller: legacy, dst: dst, port: 80, want: authz.Decision{By: "shop/orders-deny-legacy"}}
	l := &auditLine{kind: "AuthorizationPolicy", key: "shop/orders-deny-legacy", probes: []auditProbe{p}}
	plan := auditPlan{nodes: []string{"node-1"}, lines: []*auditLine{l}}
	pods := map[labs.Caller]map[string]*corev1.Pod{legacy: {"node-1": {ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
		Status: corev1.PodStatus{PodIP: "10.244.1.7"}}}}
	denied := probe.Attempt{Time: t0, Observed: string(probe.ExpectDenied), ExitCode: 56}
	judged := map[*auditLine][]auditResult{l: {{node: "node-1", want: p.want,
		j: steps.Judge([]probe.Attempt{denied}, probe.ExpectDenied, 1, steps.Window{})}}}
	deniers, out, err := r.auditDeniers(context.Background(), run, &labsv1.StepResult{}, plan, pods, judged, steps.Window{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(BeNil())
	g.Expect(deniedBy(deniers[deniedKey{legacy, "orders-1", 80}])).To(Equal("shop/orders-deny-legacy"), "the observer's own line")
	g.Expect(l.result(judged[l], deniers, "istio-system").Verdict).To(Equal(labsv1.PolicyEnforced))
}
