package policy

import (
	"testing"
	"time"

	secv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Expected strings, written out as ISTIO-FACTS.md ("ztunnel access logs") gives them.
const (
	errNoneAllowed = "connection closed due to policy rejection: allow policies exist, but none allowed"
	errDeniedBy    = "connection closed due to policy rejection: explicitly denied by: "
	staticStrict   = "istio-system/istio_converted_static_strict"
)

type mtlsMode = secv1beta1.PeerAuthentication_MutualTLS_Mode

const (
	unset      = secv1beta1.PeerAuthentication_MutualTLS_UNSET
	disable    = secv1beta1.PeerAuthentication_MutualTLS_DISABLE
	permissive = secv1beta1.PeerAuthentication_MutualTLS_PERMISSIVE
	strict     = secv1beta1.PeerAuthentication_MutualTLS_STRICT

	allowAction  = secv1beta1.AuthorizationPolicy_ALLOW
	denyAction   = secv1beta1.AuthorizationPolicy_DENY
	customAction = secv1beta1.AuthorizationPolicy_CUSTOM
	auditAction  = secv1beta1.AuthorizationPolicy_AUDIT
)

var (
	epoch      = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	backendSel = map[string]string{"app": "backend"}

	frontend = Peer{Mesh: true, Namespace: "demo", ServiceAccount: "frontend", IP: "10.1.0.5"}
	kong     = Peer{Mesh: true, Namespace: "kong", ServiceAccount: "kong-gateway", IP: "10.2.0.7"}
	attacker = Peer{Mesh: true, Namespace: "demo", ServiceAccount: "attacker", IP: "10.1.0.9"}
	outsider = Peer{Mesh: true, Namespace: "attack", ServiceAccount: "evil", IP: "10.3.0.9"}
	plain    = Peer{IP: "10.9.0.1"} // non-mesh: no identity, no namespace
)

// objMeta builds metadata created `minute` minutes after epoch (lower = older).
func objMeta(ns, name string, minute int) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name,
		CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(minute) * time.Minute))}
}

func selector(labels map[string]string) *typev1beta1.WorkloadSelector {
	if labels == nil {
		return nil
	}
	return &typev1beta1.WorkloadSelector{MatchLabels: labels}
}

func peerAuth(ns, name string, minute int, sel map[string]string, mode mtlsMode) *securityv1.PeerAuthentication {
	return &securityv1.PeerAuthentication{
		ObjectMeta: objMeta(ns, name, minute),
		Spec: secv1beta1.PeerAuthentication{
			Selector: selector(sel),
			Mtls:     &secv1beta1.PeerAuthentication_MutualTLS{Mode: mode},
		},
	}
}

func withPorts(pa *securityv1.PeerAuthentication, ports map[uint32]mtlsMode) *securityv1.PeerAuthentication {
	pa.Spec.PortLevelMtls = map[uint32]*secv1beta1.PeerAuthentication_MutualTLS{}
	for p, m := range ports {
		pa.Spec.PortLevelMtls[p] = &secv1beta1.PeerAuthentication_MutualTLS{Mode: m}
	}
	return pa
}

func meshStrict() *securityv1.PeerAuthentication {
	return peerAuth("istio-system", "default", 0, nil, strict)
}

func authz(ns, name string, action secv1beta1.AuthorizationPolicy_Action, sel map[string]string,
	rules ...*secv1beta1.Rule) *securityv1.AuthorizationPolicy {
	return &securityv1.AuthorizationPolicy{
		ObjectMeta: objMeta(ns, name, 0),
		Spec:       secv1beta1.AuthorizationPolicy{Selector: selector(sel), Action: action, Rules: rules},
	}
}

func from(src *secv1beta1.Source) *secv1beta1.Rule {
	return &secv1beta1.Rule{From: []*secv1beta1.Rule_From{{Source: src}}}
}

func to(op *secv1beta1.Operation) *secv1beta1.Rule {
	return &secv1beta1.Rule{To: []*secv1beta1.Rule_To{{Operation: op}}}
}

func when(key string, values, notValues []string) *secv1beta1.Rule {
	return &secv1beta1.Rule{When: []*secv1beta1.Condition{{Key: key, Values: values, NotValues: notValues}}}
}

func principals(p ...string) *secv1beta1.Source { return &secv1beta1.Source{Principals: p} }

// seedPolicy is the guide's demo/backend-allow-frontend-only.
func seedPolicy() *securityv1.AuthorizationPolicy {
	return authz("demo", "backend-allow-frontend-only", allowAction, backendSel,
		from(principals("cluster.local/ns/demo/sa/frontend", "cluster.local/ns/kong/sa/kong-gateway")))
}

func backend() Workload {
	return Workload{Namespace: "demo", Labels: map[string]string{"app": "backend", "version": "v1"}, IP: "10.0.0.10", Port: 8080}
}

func backendOn(port int) Workload {
	w := backend()
	w.Port = port
	return w
}

func pas(p ...*securityv1.PeerAuthentication) Config { return Config{PeerAuthentications: p} }

func aps(p ...*securityv1.AuthorizationPolicy) Config { return Config{AuthorizationPolicies: p} }

func allowed(mode, policy string) Decision {
	return Decision{Allowed: true, MTLSMode: mode, Policy: policy}
}

func deniedBy(mode, policy string) Decision {
	return Decision{MTLSMode: mode, Policy: policy, Error: errDeniedBy + policy}
}

func noneAllowed(mode string) Decision {
	return Decision{MTLSMode: mode, Error: errNoneAllowed}
}

type evalCase struct {
	name string
	rule string // the ISTIO-FACTS.md rule (or documented source behaviour) checked
	cfg  Config
	src  Peer
	dst  Workload
	want Decision
}

func TestEvaluate(t *testing.T) {
	var cases []evalCase
	for _, group := range [][]evalCase{peerAuthenticationCases(), peerAuthenticationModeCases(),
		authorizationCases(), l4SourceCases(), l4PortAndWhenCases(), l7Cases()} {
		cases = append(cases, group...)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Evaluate(tc.cfg, tc.src, tc.dst)
			if got != tc.want {
				t.Errorf("rule %q:\n got  %+v\n want %+v", tc.rule, got, tc.want)
			}
		})
	}
}

func peerAuthenticationCases() []evalCase {
	nilMtls := peerAuth("demo", "ns-nil", 1, nil, unset)
	nilMtls.Spec.Mtls = nil
	return []evalCase{
		{"mesh STRICT admits a mesh peer", "mesh-wide STRICT: peers with identity pass",
			pas(meshStrict()), frontend, backend(), allowed("STRICT", "")},
		{"mesh STRICT refuses a non-mesh peer", "STRICT + no peer identity → istio_converted_static_strict denies",
			pas(meshStrict()), plain, backend(), deniedBy("STRICT", staticStrict)},
		{"PERMISSIVE allows plaintext", "PERMISSIVE is non-STRICT: no static strict deny",
			pas(peerAuth("istio-system", "default", 0, nil, permissive)), plain, backend(), allowed("PERMISSIVE", "")},
		{"namespace PERMISSIVE overrides mesh STRICT", "precedence workload > namespace > mesh",
			pas(meshStrict(), peerAuth("demo", "ns", 1, nil, permissive)), plain, backend(), allowed("PERMISSIVE", "")},
		{"namespace STRICT overrides mesh PERMISSIVE", "precedence workload > namespace > mesh",
			pas(peerAuth("istio-system", "default", 0, nil, permissive), peerAuth("demo", "ns", 1, nil, strict)),
			plain, backend(), deniedBy("STRICT", staticStrict)},
		{"workload PERMISSIVE overrides namespace STRICT", "precedence workload > namespace > mesh",
			pas(peerAuth("demo", "ns", 0, nil, strict), peerAuth("demo", "wl", 1, backendSel, permissive)),
			plain, backend(), allowed("PERMISSIVE", "")},
		{"workload UNSET inherits namespace STRICT", "UNSET inherits from the parent",
			pas(peerAuth("demo", "ns", 0, nil, strict), peerAuth("demo", "wl", 1, backendSel, unset)),
			plain, backend(), deniedBy("STRICT", staticStrict)},
		{"namespace with nil mtls inherits mesh STRICT", "UNSET (nil mtls) inherits from the parent",
			pas(meshStrict(), nilMtls), plain, backend(), deniedBy("STRICT", staticStrict)},
		{"UNSET with no parent is PERMISSIVE", "UNSET with no parent means PERMISSIVE",
			pas(peerAuth("demo", "wl", 0, backendSel, unset)), plain, backend(), allowed("PERMISSIVE", "")},
		{"no PeerAuthentication at all allows plaintext", "static strict policy exists only when a PeerAuthentication exists",
			Config{}, plain, backend(), allowed("PERMISSIVE", "")},
		{"oldest namespace policy wins", "at one level, the oldest policy wins",
			pas(peerAuth("demo", "b-older-permissive", 1, nil, permissive), peerAuth("demo", "a-newer-strict", 5, nil, strict)),
			plain, backend(), allowed("PERMISSIVE", "")},
		{"same age: name order wins", "at one level, the oldest policy wins (tie → name order)",
			pas(peerAuth("demo", "b-permissive", 1, nil, permissive), peerAuth("demo", "a-strict", 1, nil, strict)),
			plain, backend(), deniedBy("STRICT", staticStrict)},
		{"selector policy in root namespace is ignored", "selector policies in the root namespace are ignored",
			pas(peerAuth("istio-system", "wl-in-root", 0, backendSel, strict)), plain, backend(), allowed("PERMISSIVE", "")},
		{"workload selector that does not match is ignored", "workload scope = selector ⊆ workload labels",
			pas(meshStrict(), peerAuth("demo", "other", 1, map[string]string{"app": "other"}, permissive)),
			plain, backend(), deniedBy("STRICT", staticStrict)},
		{"another namespace's policy is ignored", "namespace scope = the policy's own namespace",
			pas(peerAuth("other", "ns", 0, nil, strict)), plain, backend(), allowed("PERMISSIVE", "")},
	}
}

func peerAuthenticationModeCases() []evalCase {
	customRoot := peerAuth("mesh-root", "default", 0, nil, strict)
	return []evalCase{
		{"namespace DISABLE is non-STRICT", "DISABLE behaves as non-STRICT in ambient",
			pas(meshStrict(), peerAuth("demo", "ns", 1, nil, disable)), plain, backend(), allowed("DISABLE", "")},
		{"workload DISABLE over mesh STRICT is non-STRICT", "DISABLE behaves as non-STRICT in ambient",
			pas(meshStrict(), peerAuth("demo", "wl", 1, backendSel, disable)), plain, backend(), allowed("DISABLE", "")},
		{"portLevelMtls PERMISSIVE opens its port", "portLevelMtls overrides the mode for that container port",
			pas(withPorts(peerAuth("demo", "wl", 0, backendSel, strict), map[uint32]mtlsMode{8080: permissive})),
			plain, backendOn(8080), allowed("PERMISSIVE", "")},
		{"portLevelMtls leaves other ports STRICT", "portLevelMtls overrides only that container port",
			pas(withPorts(peerAuth("demo", "wl", 0, backendSel, strict), map[uint32]mtlsMode{8080: permissive})),
			plain, backendOn(9090), deniedBy("STRICT", staticStrict)},
		{"portLevelMtls STRICT under PERMISSIVE workload", "portLevelMtls overrides the mode for that container port",
			pas(withPorts(peerAuth("demo", "wl", 0, backendSel, permissive), map[uint32]mtlsMode{8080: strict})),
			plain, backendOn(8080), deniedBy("STRICT", staticStrict)},
		{"portLevelMtls UNSET workload with STRICT parent", "UNSET inherits; portLevelMtls overrides its port",
			pas(meshStrict(), withPorts(peerAuth("demo", "wl", 1, backendSel, unset), map[uint32]mtlsMode{8080: permissive})),
			plain, backendOn(8080), allowed("PERMISSIVE", "")},
		{"portLevelMtls without selector is ignored", "portLevelMtls needs a selector",
			pas(withPorts(peerAuth("demo", "ns", 0, nil, permissive), map[uint32]mtlsMode{8080: strict})),
			plain, backendOn(8080), allowed("PERMISSIVE", "")},
		{"custom root namespace names the static policy", "static strict policy lives in the root namespace",
			Config{RootNamespace: "mesh-root", PeerAuthentications: []*securityv1.PeerAuthentication{customRoot}},
			plain, backend(), deniedBy("STRICT", "mesh-root/istio_converted_static_strict")},
	}
}

func authorizationCases() []evalCase {
	allowFrontend := authz("demo", "allow-frontend", allowAction, backendSel, from(principals("cluster.local/ns/demo/sa/frontend")))
	waypointOnly := authz("demo", "waypoint-deny-all", allowAction, nil)
	waypointOnly.Spec.TargetRefs = []*typev1beta1.PolicyTargetReference{{Kind: "Service", Name: "backend"}}
	waypointSingle := authz("demo", "waypoint-single", denyAction, nil, &secv1beta1.Rule{})
	waypointSingle.Spec.TargetRef = &typev1beta1.PolicyTargetReference{Kind: "Gateway", Name: "waypoint"}
	return []evalCase{
		{"matching DENY beats matching ALLOW", "any matching DENY denies before ALLOW is considered",
			aps(allowFrontend, authz("demo", "deny-frontend", denyAction, nil, from(principals("cluster.local/ns/demo/sa/frontend")))),
			frontend, backend(), deniedBy("PERMISSIVE", "demo/deny-frontend")},
		{"no ALLOW policy allows", "no ALLOW policies → allow",
			aps(authz("demo", "deny-attacker", denyAction, nil, from(principals("cluster.local/ns/demo/sa/attacker")))),
			frontend, backend(), allowed("PERMISSIVE", "")},
		{"ALLOW matches principal", "any matching ALLOW → allow",
			aps(allowFrontend), frontend, backend(), allowed("PERMISSIVE", "demo/allow-frontend")},
		{"ALLOW matches none", "otherwise deny: allow policies exist, but none allowed",
			aps(allowFrontend), attacker, backend(), noneAllowed("PERMISSIVE")},
		{"non-mesh peer never matches principals", "a non-mesh source has no principal",
			aps(allowFrontend), plain, backend(), noneAllowed("PERMISSIVE")},
		{"empty ALLOW spec denies all", "ALLOW with no rules: nothing matches, allow policy exists",
			aps(authz("demo", "deny-all", allowAction, nil)), frontend, backend(), noneAllowed("PERMISSIVE")},
		{"rules [{}] allows all", "an empty rule matches everything",
			aps(authz("demo", "allow-all", allowAction, nil, &secv1beta1.Rule{})), plain, backend(), allowed("PERMISSIVE", "demo/allow-all")},
		{"targetRefs policy is ignored", "policies with targetRefs go to waypoints",
			aps(waypointOnly), attacker, backend(), allowed("PERMISSIVE", "")},
		{"targetRef policy is ignored", "policies with targetRef go to waypoints",
			aps(waypointSingle), attacker, backend(), allowed("PERMISSIVE", "")},
		{"CUSTOM is ignored", "CUSTOM is not sent to ztunnel",
			aps(authz("demo", "ext-authz", customAction, nil, &secv1beta1.Rule{})), attacker, backend(), allowed("PERMISSIVE", "")},
		{"AUDIT is ignored", "only ALLOW and DENY reach ztunnel",
			aps(authz("demo", "audit", auditAction, nil, &secv1beta1.Rule{})), attacker, backend(), allowed("PERMISSIVE", "")},
		{"root-namespace policy applies mesh-wide", "root namespace without selector = all workloads",
			aps(authz("istio-system", "deny-attack-ns", denyAction, nil, from(&secv1beta1.Source{Namespaces: []string{"attack"}}))),
			outsider, backend(), deniedBy("PERMISSIVE", "istio-system/deny-attack-ns")},
		{"other namespace's policy does not apply", "namespace without selector = that namespace only",
			aps(authz("other", "deny-all-ns", allowAction, nil)), attacker, backend(), allowed("PERMISSIVE", "")},
		{"selector that does not match is ignored", "selector matchLabels ⊆ workload labels",
			aps(authz("demo", "other-app", allowAction, map[string]string{"app": "other"})), attacker, backend(), allowed("PERMISSIVE", "")},
		{"seed policy allows frontend", "seed demo/backend-allow-frontend-only: principals match",
			aps(seedPolicy()), frontend, backend(), allowed("PERMISSIVE", "demo/backend-allow-frontend-only")},
		{"seed policy allows the Kong gateway", "seed demo/backend-allow-frontend-only: principals match",
			aps(seedPolicy()), kong, backend(), allowed("PERMISSIVE", "demo/backend-allow-frontend-only")},
		{"seed policy denies attacker", "seed policy: allow policies exist, but none allowed",
			aps(seedPolicy()), attacker, backend(), noneAllowed("PERMISSIVE")},
		{"seed policy + STRICT: plaintext hits the static DENY first", "DENY (converted STRICT) before ALLOW",
			Config{PeerAuthentications: []*securityv1.PeerAuthentication{meshStrict()},
				AuthorizationPolicies: []*securityv1.AuthorizationPolicy{seedPolicy()}},
			plain, backend(), deniedBy("STRICT", staticStrict)},
	}
}

func l4SourceCases() []evalCase {
	return []evalCase{
		{"namespaces match", "L4 field namespaces",
			aps(authz("demo", "ns-demo", allowAction, nil, from(&secv1beta1.Source{Namespaces: []string{"demo"}}))),
			frontend, backend(), allowed("PERMISSIVE", "demo/ns-demo")},
		{"namespaces mismatch", "L4 field namespaces",
			aps(authz("demo", "ns-demo", allowAction, nil, from(&secv1beta1.Source{Namespaces: []string{"demo"}}))),
			outsider, backend(), noneAllowed("PERMISSIVE")},
		{"notPrincipals denies everyone else", "L4 field notPrincipals",
			aps(authz("demo", "only-frontend", denyAction, nil, from(&secv1beta1.Source{NotPrincipals: []string{"cluster.local/ns/demo/sa/frontend"}}))),
			attacker, backend(), deniedBy("PERMISSIVE", "demo/only-frontend")},
		{"notPrincipals spares the listed principal", "L4 field notPrincipals",
			aps(authz("demo", "only-frontend", denyAction, nil, from(&secv1beta1.Source{NotPrincipals: []string{"cluster.local/ns/demo/sa/frontend"}}))),
			frontend, backend(), allowed("PERMISSIVE", "")},
		{"notPrincipals matches a peer without principal", "ztunnel rbac.rs: absent principal satisfies notPrincipals",
			aps(authz("demo", "only-frontend", denyAction, nil, from(&secv1beta1.Source{NotPrincipals: []string{"cluster.local/ns/demo/sa/frontend"}}))),
			plain, backend(), deniedBy("PERMISSIVE", "demo/only-frontend")},
		{"serviceAccounts match", "L4 field serviceAccounts (ns/sa)",
			aps(authz("demo", "sa", allowAction, nil, from(&secv1beta1.Source{ServiceAccounts: []string{"kong/kong-gateway"}}))),
			kong, backend(), allowed("PERMISSIVE", "demo/sa")},
		{"principal prefix wildcard", "principals support suffix \"*\" (prefix match)",
			aps(authz("demo", "demo-ns", allowAction, nil, from(principals("cluster.local/ns/demo/*")))),
			attacker, backend(), allowed("PERMISSIVE", "demo/demo-ns")},
		{"principal suffix wildcard matches", "principals support leading \"*\" (suffix match)",
			aps(authz("demo", "any-frontend", allowAction, nil, from(principals("*/sa/frontend")))),
			frontend, backend(), allowed("PERMISSIVE", "demo/any-frontend")},
		{"principal suffix wildcard mismatch", "principals support leading \"*\" (suffix match)",
			aps(authz("demo", "any-frontend", allowAction, nil, from(principals("*/sa/frontend")))),
			attacker, backend(), noneAllowed("PERMISSIVE")},
		{"principal \"*\" needs an identity", "principals \"*\" = any authenticated peer; non-mesh has none",
			aps(authz("demo", "authn", allowAction, nil, from(principals("*")))), plain, backend(), noneAllowed("PERMISSIVE")},
		{"principal includes the trust domain", "identity = trust domain + ns + sa",
			aps(seedPolicy()), Peer{Mesh: true, TrustDomain: "other.td", Namespace: "demo", ServiceAccount: "frontend", IP: "10.1.0.5"},
			backend(), noneAllowed("PERMISSIVE")},
	}
}

func l4PortAndWhenCases() []evalCase {
	onPort := func(p ...string) *secv1beta1.Operation { return &secv1beta1.Operation{Ports: p} }
	return []evalCase{
		{"ipBlocks CIDR match", "L4 field ipBlocks",
			aps(authz("demo", "lan", allowAction, nil, from(&secv1beta1.Source{IpBlocks: []string{"10.9.0.0/16"}}))),
			plain, backend(), allowed("PERMISSIVE", "demo/lan")},
		{"notIpBlocks single IP", "L4 field notIpBlocks",
			aps(authz("demo", "not-frontend-ip", denyAction, nil, from(&secv1beta1.Source{NotIpBlocks: []string{"10.1.0.5"}}))),
			attacker, backend(), deniedBy("PERMISSIVE", "demo/not-frontend-ip")},
		{"ports mismatch", "L4 field ports",
			aps(authz("demo", "metrics", allowAction, nil, to(onPort("9090")))), frontend, backendOn(8080), noneAllowed("PERMISSIVE")},
		{"ports match", "L4 field ports",
			aps(authz("demo", "http", allowAction, nil, to(onPort("8080")))), frontend, backendOn(8080), allowed("PERMISSIVE", "demo/http")},
		{"when source.principal matches", "when key source.principal",
			aps(authz("demo", "when-frontend", allowAction, nil, when("source.principal", []string{"cluster.local/ns/demo/sa/frontend"}, nil))),
			frontend, backend(), allowed("PERMISSIVE", "demo/when-frontend")},
		{"when source.principal mismatch", "when key source.principal",
			aps(authz("demo", "when-frontend", allowAction, nil, when("source.principal", []string{"cluster.local/ns/demo/sa/frontend"}, nil))),
			attacker, backend(), noneAllowed("PERMISSIVE")},
		{"when destination.port notValues", "when key destination.port (notValues)",
			aps(authz("demo", "not-admin", denyAction, nil, when("destination.port", nil, []string{"8080"}))),
			frontend, backendOn(15000), deniedBy("PERMISSIVE", "demo/not-admin")},
	}
}

func l7Cases() []evalCase {
	l7Allow := authz("demo", "get-only", allowAction, nil, to(&secv1beta1.Operation{Methods: []string{"GET"}}))
	mixedAllow := authz("demo", "frontend-get", allowAction, nil, &secv1beta1.Rule{
		From: []*secv1beta1.Rule_From{{Source: principals("cluster.local/ns/demo/sa/frontend")}},
		To:   []*secv1beta1.Rule_To{{Operation: &secv1beta1.Operation{Methods: []string{"GET"}}}}})
	denyMixed := authz("demo", "deny-attack-jwt", denyAction, nil,
		from(&secv1beta1.Source{Namespaces: []string{"attack"}, RequestPrincipals: []string{"*"}}))
	denyL7Only := authz("demo", "deny-post", denyAction, nil, to(&secv1beta1.Operation{Methods: []string{"POST"}}))
	return []evalCase{
		{"L7-only ALLOW never matches", "ALLOW rule with L7 fields never matches → deny-all",
			aps(l7Allow), frontend, backend(), noneAllowed("PERMISSIVE")},
		{"ALLOW mixing L4 and L7 never matches", "ALLOW rule with L7 fields never matches",
			aps(mixedAllow), frontend, backend(), noneAllowed("PERMISSIVE")},
		{"ALLOW with L7 when key never matches", "when keys other than the L4 ones are L7",
			aps(authz("demo", "jwt", allowAction, nil, when("request.auth.claims[iss]", []string{"x"}, nil))),
			frontend, backend(), noneAllowed("PERMISSIVE")},
		{"ALLOW with L7 beside L4 in one source never matches", "ALLOW rule with L7 fields never matches",
			aps(authz("demo", "frontend-jwt", allowAction, nil,
				from(&secv1beta1.Source{Principals: []string{"cluster.local/ns/demo/sa/frontend"}, RequestPrincipals: []string{"*"}}))),
			frontend, backend(), noneAllowed("PERMISSIVE")},
		{"DENY with L7 parts still denies on L4", "a DENY rule loses its L7 parts",
			aps(denyMixed), outsider, backend(), deniedBy("PERMISSIVE", "demo/deny-attack-jwt")},
		{"DENY with L7 parts spares others", "a DENY rule loses its L7 parts",
			aps(denyMixed), frontend, backend(), allowed("PERMISSIVE", "")},
		{"DENY with only L7 parts has no effect", "ztunnel skips empty match groups (istio/istio#61126)",
			aps(denyL7Only), attacker, backend(), allowed("PERMISSIVE", "")},
	}
}

func TestEffectiveMTLSIgnoresNilEntries(t *testing.T) {
	cfg := Config{PeerAuthentications: []*securityv1.PeerAuthentication{nil, meshStrict()}}
	if got := EffectiveMTLS(cfg, backend()); got != ModeStrict {
		t.Errorf("EffectiveMTLS = %q, want %q", got, ModeStrict)
	}
	if d := Evaluate(Config{AuthorizationPolicies: []*securityv1.AuthorizationPolicy{nil}}, plain, backend()); !d.Allowed {
		t.Errorf("nil AuthorizationPolicy must be ignored, got %+v", d)
	}
}
