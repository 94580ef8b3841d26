package controllers

import (
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
	"github.com/ambientlab/labrun-operator/internal/authz"
	"github.com/ambientlab/labrun-operator/internal/probe"
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
	g.Expect(strings.Join(ok.Probes, "\n")).To(ContainSubstring("allowed by shop/orders-allow-web from every node"))
}
