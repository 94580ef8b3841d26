package authz

import (
	"slices"
	"testing"
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
