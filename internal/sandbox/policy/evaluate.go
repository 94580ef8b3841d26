package policy

import (
	"sort"

	secv1beta1 "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
)

// Evaluate decides whether ztunnel on dst's node lets a connection from src to dst
// (at dst.Port) through. Order (ISTIO-FACTS.md, "AuthorizationPolicy in ambient"):
// CUSTOM is not sent to ztunnel; any matching DENY denies ("explicitly denied by:
// <ns>/<name>"); no ALLOW policy allows; any matching ALLOW allows; otherwise deny
// ("allow policies exist, but none allowed").
//
// The DENY policies include istiod's converted static STRICT policy
// (<root>/istio_converted_static_strict, DENY notPrincipals ["*"]) when some
// PeerAuthentication exists and the effective mode for dst is STRICT, so a peer
// without identity is refused there (ISTIO-FACTS.md, "PeerAuthentication in
// ambient").
func Evaluate(cfg Config, src Peer, dst Workload) Decision {
	return cfg.Evaluate(src, dst)
}

// Enforcer is what a simulated ztunnel enforces: the sandbox's own conversion of the objects (Config, kept for
// unit tests of the data path) or istiod's converted and attached policies (Ztunnel, what the sandbox runs).
type Enforcer interface {
	Evaluate(src Peer, dst Workload) Decision
}

// Evaluate is Evaluate(c, src, dst).
func (cfg Config) Evaluate(src Peer, dst Workload) Decision {
	mode := EffectiveMTLS(cfg, dst)
	policies := applicablePolicies(cfg, dst)
	if mode == ModeStrict && cfg.hasPeerAuthentication() {
		policies = append(policies, staticStrictPolicy(cfg.rootNamespace()))
	}
	return decide(policies, newConnection(src, dst), mode)
}

func decide(policies []compiled, conn connection, mode string) Decision {
	d := Decision{MTLSMode: mode}
	hasAllow := false
	for _, p := range policies {
		if !p.deny {
			hasAllow = true
			continue
		}
		if p.matches(conn) {
			d.Policy = p.key
			d.Error = ErrExplicitlyDeniedPrefix + p.key
			return d
		}
	}
	if !hasAllow {
		d.Allowed = true
		return d
	}
	for _, p := range policies {
		if !p.deny && p.matches(conn) {
			d.Allowed = true
			d.Policy = p.key
			return d
		}
	}
	d.Error = ErrNoAllowMatched
	return d
}

// staticStrictPolicy is istiod's DefaultPolicy: DENY when the peer has no
// principal (notPrincipals: presence).
func staticStrictPolicy(root string) compiled {
	g := matchGroup{notPrincipals: []stringMatch{{kind: matchPresence}}}
	return compiled{
		key:   key(root, StaticStrictPolicyName),
		deny:  true,
		rules: []l4Rule{{clause{g}}},
	}
}

// applicablePolicies returns the ALLOW and DENY policies ztunnel holds for dst, in
// ztunnel's evaluation order (src/state.rs assert_rbac): namespace-wide, then
// mesh-wide, then selector policies; each group sorted by "<ns>/<name>".
func applicablePolicies(cfg Config, dst Workload) []compiled {
	root := cfg.rootNamespace()
	var ns, global, selected []*securityv1.AuthorizationPolicy
	for _, ap := range cfg.AuthorizationPolicies {
		if !enforcedByZtunnel(ap) {
			continue
		}
		switch {
		case ap.Spec.GetSelector() == nil && ap.Namespace == root:
			// Root namespace without selector: every workload.
			global = append(global, ap)
		case ap.Spec.GetSelector() == nil && ap.Namespace == dst.Namespace:
			ns = append(ns, ap)
		case ap.Spec.GetSelector() == nil:
			// Another namespace's namespace-wide policy.
		case (ap.Namespace == root || ap.Namespace == dst.Namespace) &&
			isSubset(ap.Spec.GetSelector().GetMatchLabels(), dst.Labels):
			// Selector policies apply in their own namespace; istiod also
			// attaches root-namespace selector policies to matching workloads
			// in every namespace.
			selected = append(selected, ap)
		}
	}
	var out []compiled
	for _, group := range [][]*securityv1.AuthorizationPolicy{ns, global, selected} {
		out = append(out, compileSorted(group)...)
	}
	return out
}

// enforcedByZtunnel drops what istiod never sends to ztunnel: policies with
// targetRef/targetRefs (they go to waypoints) and actions other than ALLOW and
// DENY (CUSTOM, AUDIT). ISTIO-FACTS.md, "AuthorizationPolicy in ambient".
func enforcedByZtunnel(ap *securityv1.AuthorizationPolicy) bool {
	if ap == nil || ap.Spec.GetTargetRef() != nil || len(ap.Spec.GetTargetRefs()) > 0 {
		return false
	}
	switch ap.Spec.GetAction() {
	case secv1beta1.AuthorizationPolicy_ALLOW, secv1beta1.AuthorizationPolicy_DENY:
		return true
	default:
		return false
	}
}

func compileSorted(aps []*securityv1.AuthorizationPolicy) []compiled {
	out := make([]compiled, 0, len(aps))
	for _, ap := range aps {
		out = append(out, compileAuthorizationPolicy(ap))
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}
