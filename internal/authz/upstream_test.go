package authz

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ambientlab/labrun-operator/internal/authz/authztest"
)

// Upstream istiod's own cases for what it makes of an AuthorizationPolicy in ambient, transcribed as rows:
// TestConvertAuthorizationPolicyStatus in pilot/pkg/serviceregistry/ambient/authorization_test.go of istio/istio at
// commit 1d486afd3c6242c22e885b90e79ae974a4f7c7e0. Each row is the input policy (as YAML), the status message
// istiod writes (none: the policy is enforced as written, or, with targetRefs, not by ztunnel at all) and, where
// the upstream case checks it, whether the policy keeps a rule ztunnel can match (hasEffectiveRules). Read must
// give the same message and the effect it implies.
func TestUpstreamConvertAuthorizationPolicyStatus(t *testing.T) {
	const (
		httpPrefix = "ztunnel does not support HTTP attributes (found: "
		waypoint   = "In ambient mode you must use a waypoint proxy to enforce HTTP rules. "
		allowOmit  = "Within an ALLOW policy, rules matching HTTP attributes are omitted. This will be more restrictive than requested."
		denyNone   = "After omitting unsupported HTTP attributes, this DENY policy has no enforceable rules at ztunnel and will have no effect. " +
			"Deploy a waypoint proxy and use a targetRef to enforce this policy."
		denyMixed = "DENY policy with HTTP attributes is enforced without the HTTP rules. This will be more restrictive than requested."
	)
	yes, no := true, false
	for _, tc := range []struct {
		name      string
		spec      string
		effect    Effect
		message   string // istiod's status message; "" for none
		effective *bool  // hasEffectiveRules, where upstream checks it
	}{
		{"no status - targetRef is not for ztunnel", `{targetRef: {kind: Service, name: test-svc}, rules: []}`, Untestable, "", nil},
		{"no status - policy is fine", `{rules: [{from: [{source: {principals: ["trust/ns/echo-1234/"]}}], to: [{operation: {ports: ["http"]}}]}]}`,
			AsWritten, "", nil},
		{"unsupported AUDIT action", `{action: AUDIT, rules: [{from: [{source: {principals: ["trust/ns/echo-1234/"]}}], to: [{operation: {ports: ["http"]}}]}]}`,
			NoEffect, "ztunnel does not support the AUDIT action", nil},
		{"unsupported CUSTOM action", `{action: CUSTOM, rules: [{from: [{source: {principals: ["trust/ns/echo-1234/"]}}], to: [{operation: {ports: ["http"]}}]}]}`,
			NoEffect, "ztunnel does not support the CUSTOM action", nil},
		{"unsupported HTTP methods", `{rules: [{from: [{source: {requestPrincipals: ["example.com/sub-1"]}}], to: [{operation: {methods: ["GET"]}}],
			when: [{key: request.auth.presenter, values: ["presenter.example.com"]}]}]}`,
			Narrowed, httpPrefix + "methods, request.auth.presenter, requestPrincipals). " + waypoint + allowOmit, nil},
		{"DENY policy with only L4 attributes - no status warning", `{action: DENY, rules: [{from: [{source: {principals: ["cluster.local/ns/foo/sa/bar"]}}]}]}`,
			AsWritten, "", nil},
		{"DENY policy with only L7 attributes results in no effect at ztunnel", `{action: DENY, rules: [{from: [{source: {notRequestPrincipals: ["example.com/sub-1"]}}]}]}`,
			NoEffect, httpPrefix + "notRequestPrincipals). " + waypoint + denyNone, &no},
		{"DENY policy with mixed L4 and L7 attributes is enforced without HTTP rules",
			`{action: DENY, rules: [{from: [{source: {principals: ["cluster.local/ns/foo/sa/bar"], notRequestPrincipals: ["example.com/sub-1"]}}]}]}`,
			Narrowed, httpPrefix + "notRequestPrincipals). " + waypoint + denyMixed, &yes},
		{"DENY policy with L7-only and separate L4 rule is still enforced",
			`{action: DENY, rules: [{from: [{source: {notRequestPrincipals: ["example.com/sub-1"]}}]}, {from: [{source: {principals: ["cluster.local/ns/foo/sa/bar"]}}]}]}`,
			Narrowed, httpPrefix + "notRequestPrincipals). " + waypoint + denyMixed, &yes},
		{"DENY policy with empty catch-all rule and L7-only rule is still enforced",
			`{action: DENY, rules: [{}, {from: [{source: {notRequestPrincipals: ["example.com/sub-1"]}}]}]}`,
			Narrowed, httpPrefix + "notRequestPrincipals). " + waypoint + denyMixed, &yes},
		{"DENY policy with L4 From and L7 When is a no-op due to AND empty clause",
			`{action: DENY, rules: [{from: [{source: {principals: ["cluster.local/ns/foo/sa/bar"]}}], when: [{key: "request.headers[x-token]", values: ["secret"]}]}]}`,
			NoEffect, httpPrefix + "request.headers[x-token]). " + waypoint + denyNone, &no},
		{"DENY policy with L4 From and L7-only To methods is a no-op due to AND empty clause",
			`{action: DENY, rules: [{from: [{source: {principals: ["cluster.local/ns/foo/sa/bar"]}}], to: [{operation: {methods: ["GET"]}}]}]}`,
			NoEffect, httpPrefix + "methods). " + waypoint + denyNone, &no},
		{"ALLOW policy mixing namespaces with trustDomains drops the rule",
			`{rules: [{from: [{source: {namespaces: ["allowed-ns"], trustDomains: ["cluster.local"]}}]}]}`,
			Narrowed, httpPrefix + "trustDomains). " + waypoint + allowOmit, &no},
		{"DENY policy with only notTrustDomains results in no effect at ztunnel",
			`{action: DENY, rules: [{from: [{source: {notTrustDomains: ["cluster.local"]}}]}]}`,
			NoEffect, httpPrefix + "notTrustDomains). " + waypoint + denyNone, &no},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Read(policy(t, "metadata: {name: upstream, namespace: echo}\nspec: "+tc.spec), Options{RootNamespace: "test-system"})
			message := r.Reason
			if r.Effect == AsWritten || r.Effect == Untestable {
				message = "" // no status from istiod
			}
			if r.Effect != tc.effect || message != tc.message {
				t.Errorf("%s: %q\nwant %s: %q", r.Effect, message, tc.effect, tc.message)
			}
			if tc.effective != nil {
				if got := slices.ContainsFunc(r.rules, rule.effective); got != *tc.effective {
					t.Errorf("effective rules: %v, want %v", got, *tc.effective)
				}
			}
		})
	}
}

// readExceptions are the policies of the shared upstream cases (authztest.Cases) that Read does not take as
// istiod sends them to ztunnel, with what Read gives and why. Every other policy must read AsWritten, with the
// scope, action and rules of its Ztunnel form.
var readExceptions = []struct {
	test   string // the upstream test: the start of the cases' names
	policy string // <ns>/<name>
	effect Effect
	why    string
}{
	{"assert_rbac_logic_deny_allow", "ns1/wildcard", NoEffect, dryRunWhy},
	{"assert_rbac_dry_run_with_real_policies", "ns1/dry-run-deny", NoEffect, dryRunWhy},
	{"assert_rbac_dry_run_with_real_policies", "ns1/dry-run-allow", NoEffect, dryRunWhy},
	{"rbac_empty_policy [[[]]]", "namespace/empty", AsWritten, "upstream's rule is one clause without matches, which " +
		"no spec converts to (istiod adds a clause only with matches); its spec, a rule without clauses, decides the same"},
}

const dryRunWhy = "a dry run: from Istio 1.30 ztunnel does not enforce it (ISTIO-FACTS.md), and the sandbox's matcher " +
	"leaves it out too; ztunnel's dry-run log is not modelled"

// TestUpstreamCasesDecide runs upstream ztunnel's own L4 authorization cases (the table in
// internal/authz/authztest, which the sandbox's matcher is checked against too) through Read and Decide, with
// each policy as a user writes it. It also checks that Read gives what istiod sends ztunnel for each policy (its
// Ztunnel form), so the case is the one upstream tested.
func TestUpstreamCasesDecide(t *testing.T) {
	used := make([]bool, len(readExceptions))
	for _, c := range authztest.Cases {
		t.Run(c.Name, func(t *testing.T) {
			o := Options{RootNamespace: c.RootNamespace}
			w := Workload{Namespace: c.Dst.Namespace, Labels: c.Dst.Labels, IP: netip.MustParseAddr(c.Dst.IP)}
			var readings []Reading
			for _, p := range c.Policies {
				r := Read(upstreamPolicy(t, p), o)
				readings = append(readings, r)
				want, why := AsWritten, ""
				for i, e := range readExceptions {
					if strings.HasPrefix(c.Name, e.test) && e.policy == r.Policy.Key() {
						want, why, used[i] = e.effect, e.why, true
					}
				}
				if r.Effect != want {
					t.Errorf("%s: Read gives %s (%s), want %s %s", r.Policy.Key(), r.Effect, r.Reason, want, why)
				}
				if why == "" {
					checkZtunnelForm(t, r, p.Ztunnel, slices.Contains(c.Attached, r.Policy.Key()), w)
				}
			}
			src := Peer{Mesh: c.Src.Mesh, TrustDomain: c.Src.TrustDomain, Namespace: c.Src.Namespace,
				ServiceAccount: c.Src.ServiceAccount, IP: netip.MustParseAddr(c.Src.IP)}
			if d := Decide(readings, src, w, c.Dst.Port); d.Allowed != c.Allowed || d.By != c.By {
				t.Errorf("ztunnel %.12s %s: allowed %v by %q (%s), want allowed %v by %q",
					authztest.Commit, c.Upstream, d.Allowed, d.By, d.Reason, c.Allowed, c.By)
			}
		})
	}
	for i, e := range readExceptions {
		if !used[i] {
			t.Errorf("read exception %s %s matches no case: remove it", e.test, e.policy)
		}
	}
}

// TestUpstreamStringMatch is src/rbac.rs string_match (authztest.StringCases), on a policy string as Read takes
// it.
func TestUpstreamStringMatch(t *testing.T) {
	for _, tc := range authztest.StringCases {
		if got := (stringMatch{tc.Match}).matches(tc.Matchee); got != tc.Want {
			t.Errorf("src/rbac.rs string_match %q (ztunnel %.12s): %q matches %q = %v, want %v",
				tc.Name, authztest.Commit, tc.Match, tc.Matchee, got, tc.Want)
		}
	}
}

// upstreamPolicy is a case's policy as stored, from its spec.
func upstreamPolicy(t *testing.T, p authztest.Policy) Policy {
	t.Helper()
	annotations := ""
	if p.DryRun {
		annotations = `, annotations: {istio.io/dry-run: "true"}`
	}
	return policy(t, fmt.Sprintf("metadata: {name: %q, namespace: %q%s}\nspec: %s", p.Name, p.Namespace, annotations, p.Spec))
}

// checkZtunnelForm checks that r is the policy istiod sends ztunnel as z: its scope (and, for a selector, that
// it applies to w exactly when istiod attached it), its action and its rules.
func checkZtunnelForm(t *testing.T, r Reading, z authztest.Authorization, attached bool, w Workload) {
	t.Helper()
	scopes := map[scope]string{scopeGlobal: "GLOBAL", scopeNamespace: "NAMESPACE", scopeSelector: "WORKLOAD_SELECTOR"}
	if scopes[r.scope] != z.Scope || r.deny != (z.Action == "DENY") {
		t.Errorf("%s: Read gives scope %s, deny %v; istiod sends scope %s, action %s", r.Policy.Key(),
			scopes[r.scope], r.deny, z.Scope, z.Action)
	}
	if r.scope == scopeSelector && r.AppliesTo(w) != attached {
		t.Errorf("%s: applies to the destination %v, attached by istiod %v", r.Policy.Key(), r.AppliesTo(w), attached)
	}
	var want []rule
	for _, zr := range z.Rules {
		var ru rule
		for _, zc := range zr {
			var cl clause
			for _, m := range zc {
				cl = append(cl, match{
					principals: strs(m.Principals), notPrincipals: strs(m.NotPrincipals),
					namespaces: strs(m.Namespaces), notNamespaces: strs(m.NotNamespaces),
					serviceAccounts: sas(m.ServiceAccounts, ""), notServiceAccounts: sas(m.NotServiceAccounts, ""),
					srcIPs: prefixes(m.SourceIPs), notSrcIPs: prefixes(m.NotSourceIPs),
					dstIPs: prefixes(m.DestinationIPs), notDstIPs: prefixes(m.NotDestinationIPs),
					ports: m.DestinationPorts, notPorts: m.NotDestinationPorts,
				})
			}
			ru.clauses = append(ru.clauses, cl)
		}
		want = append(want, ru)
	}
	if got, want := describeRules(r.rules), describeRules(want); !slices.Equal(got, want) {
		t.Errorf("%s: Read gives rules\n  %s\nistiod sends\n  %s", r.Policy.Key(),
			strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// describeRules writes rules for comparison: one line a rule, its clauses sorted (they are AND-ed: istiod writes
// to, from, when; ztunnel's tests any order), each clause its matches (OR-ed) by the fields they set.
func describeRules(rules []rule) []string {
	var out []string
	for _, ru := range rules {
		var cls []string
		for _, cl := range ru.clauses {
			var ms []string
			for _, m := range cl {
				ms = append(ms, describeMatch(m))
			}
			cls = append(cls, "["+strings.Join(ms, " | ")+"]")
		}
		slices.Sort(cls)
		out = append(out, "rule "+strings.Join(cls, " & "))
	}
	return out
}

func describeMatch(m match) string {
	var fields []string
	add := func(name string, n int, v any) {
		if n > 0 {
			fields = append(fields, fmt.Sprintf("%s=%v", name, v))
		}
	}
	add("principals", len(m.principals), m.principals)
	add("notPrincipals", len(m.notPrincipals), m.notPrincipals)
	add("namespaces", len(m.namespaces), m.namespaces)
	add("notNamespaces", len(m.notNamespaces), m.notNamespaces)
	add("serviceAccounts", len(m.serviceAccounts), m.serviceAccounts)
	add("notServiceAccounts", len(m.notServiceAccounts), m.notServiceAccounts)
	add("srcIPs", len(m.srcIPs), m.srcIPs)
	add("notSrcIPs", len(m.notSrcIPs), m.notSrcIPs)
	add("dstIPs", len(m.dstIPs), m.dstIPs)
	add("notDstIPs", len(m.notDstIPs), m.notDstIPs)
	add("ports", len(m.ports), m.ports)
	add("notPorts", len(m.notPorts), m.notPorts)
	return "{" + strings.Join(fields, " ") + "}"
}
