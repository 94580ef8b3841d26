package policy

// Enforcer is what a simulated ztunnel enforces: istiod's converted and attached policies (Ztunnel).
type Enforcer interface {
	Evaluate(src Peer, dst Workload) Decision
}

// decide applies ztunnel's order (ISTIO-FACTS.md, "AuthorizationPolicy in ambient"; src/state.rs assert_rbac):
// any matching DENY denies ("explicitly denied by: <ns>/<name>"); no ALLOW policy allows; any matching ALLOW
// allows; otherwise deny ("allow policies exist, but none allowed").
func decide(policies []compiled, conn connection) Decision {
	var d Decision
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
