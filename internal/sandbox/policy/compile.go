package policy

import (
	"net/netip"
	"strconv"
	"strings"

	secv1beta1 "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
)

// l4WhenKeys are the `when` keys ztunnel enforces (ISTIO-FACTS.md, "L4 fields
// ztunnel enforces"); any other key is an L7 attribute.
var l4WhenKeys = map[string]bool{
	"source.ip":        true,
	"source.namespace": true,
	"source.principal": true,
	"destination.ip":   true,
	"destination.port": true,
}

// compiled is the L4 form of one AuthorizationPolicy as ztunnel holds it, mirroring
// istiod's conversion (convertAuthorizationPolicy/handleRule): a policy matches
// when any rule matches; a rule matches when all its clauses match; a clause
// matches when any of its match groups matches.
type compiled struct {
	key   string
	deny  bool
	rules []l4Rule
}

type l4Rule []clause

type clause []matchGroup

// compileAuthorizationPolicy converts an applicable ALLOW or DENY policy.
func compileAuthorizationPolicy(ap *securityv1.AuthorizationPolicy) compiled {
	c := compiled{
		key:  key(ap.Namespace, ap.Name),
		deny: ap.Spec.GetAction() == secv1beta1.AuthorizationPolicy_DENY,
	}
	for _, r := range ap.Spec.GetRules() {
		if rule, ok := compileRule(r, c.deny, ap.Namespace); ok {
			c.rules = append(c.rules, rule)
		}
	}
	return c
}

// compileRule builds the to-, from- and when-clauses of one rule. L7 fields are
// dropped from every match group. An ALLOW rule containing any L7 attribute is
// omitted entirely, so it never matches (ISTIO-FACTS.md: "An ALLOW rule with L7
// fields never matches in ztunnel"); a DENY rule keeps its L4 parts ("A DENY rule
// loses its L7 parts"). A from/to entry or `when` condition that carried only L7
// attributes leaves an empty match group, which ztunnel never matches (istiod
// handleRule + ztunnel rbac.rs, see istio/istio#61126): a DENY rule made only of
// L7 attributes therefore has no effect rather than denying everything.
func compileRule(r *secv1beta1.Rule, deny bool, policyNamespace string) (l4Rule, bool) {
	var rule l4Rule
	l7 := false
	if len(r.GetTo()) > 0 {
		var c clause
		for _, to := range r.GetTo() {
			op := to.GetOperation()
			l7 = l7 || hasL7Operation(op)
			c = append(c, matchGroup{ports: parsePorts(op.GetPorts()), notPorts: parsePorts(op.GetNotPorts())})
		}
		rule = append(rule, c)
	}
	if len(r.GetFrom()) > 0 {
		var c clause
		for _, from := range r.GetFrom() {
			src := from.GetSource()
			l7 = l7 || hasL7Source(src)
			c = append(c, sourceGroup(src, policyNamespace))
		}
		rule = append(rule, c)
	}
	for _, cond := range r.GetWhen() {
		l7 = l7 || !l4WhenKeys[cond.GetKey()]
		rule = append(rule, clause{whenGroup(cond)})
	}
	if l7 && !deny {
		return nil, false
	}
	return rule, true
}

func hasL7Operation(op *secv1beta1.Operation) bool {
	return len(op.GetHosts()) > 0 || len(op.GetNotHosts()) > 0 ||
		len(op.GetMethods()) > 0 || len(op.GetNotMethods()) > 0 ||
		len(op.GetPaths()) > 0 || len(op.GetNotPaths()) > 0
}

// hasL7Source reports request principals and remote IP blocks, which need HTTP
// (istiod httpSources). trustDomains/notTrustDomains are neither converted nor
// flagged by istiod's ambient conversion, so they are ignored here too.
func hasL7Source(s *secv1beta1.Source) bool {
	return len(s.GetRequestPrincipals()) > 0 || len(s.GetNotRequestPrincipals()) > 0 ||
		len(s.GetRemoteIpBlocks()) > 0 || len(s.GetNotRemoteIpBlocks()) > 0
}

func sourceGroup(s *secv1beta1.Source, policyNamespace string) matchGroup {
	return matchGroup{
		srcIPs:             parsePrefixes(s.GetIpBlocks()),
		notSrcIPs:          parsePrefixes(s.GetNotIpBlocks()),
		namespaces:         parseStringMatches(s.GetNamespaces()),
		notNamespaces:      parseStringMatches(s.GetNotNamespaces()),
		serviceAccounts:    parseServiceAccounts(s.GetServiceAccounts(), policyNamespace),
		notServiceAccounts: parseServiceAccounts(s.GetNotServiceAccounts(), policyNamespace),
		principals:         parseStringMatches(s.GetPrincipals()),
		notPrincipals:      parseStringMatches(s.GetNotPrincipals()),
	}
}

// whenGroup converts one condition; only the L4 keys contribute constraints.
func whenGroup(cond *secv1beta1.Condition) matchGroup {
	vals, not := cond.GetValues(), cond.GetNotValues()
	var g matchGroup
	switch cond.GetKey() {
	case "source.ip":
		g.srcIPs, g.notSrcIPs = parsePrefixes(vals), parsePrefixes(not)
	case "source.namespace":
		g.namespaces, g.notNamespaces = parseStringMatches(vals), parseStringMatches(not)
	case "source.principal":
		g.principals, g.notPrincipals = parseStringMatches(vals), parseStringMatches(not)
	case "destination.ip":
		g.dstIPs, g.notDstIPs = parsePrefixes(vals), parsePrefixes(not)
	case "destination.port":
		g.ports, g.notPorts = parsePorts(vals), parsePorts(not)
	}
	return g
}

// parseStringMatches applies Istio's wildcard forms: "*" = present (non-empty),
// "*x" = suffix x, "x*" = prefix x, otherwise exact.
func parseStringMatches(values []string) []stringMatch {
	var out []stringMatch
	for _, v := range values {
		switch {
		case v == "*":
			out = append(out, stringMatch{kind: matchPresence})
		case strings.HasPrefix(v, "*"):
			out = append(out, stringMatch{kind: matchSuffix, value: strings.TrimPrefix(v, "*")})
		case strings.HasSuffix(v, "*"):
			out = append(out, stringMatch{kind: matchPrefix, value: strings.TrimSuffix(v, "*")})
		default:
			out = append(out, stringMatch{kind: matchExact, value: v})
		}
	}
	return out
}

// parseServiceAccounts reads "ns/sa", or "sa" relative to the policy namespace.
func parseServiceAccounts(values []string, policyNamespace string) []serviceAccountMatch {
	var out []serviceAccountMatch
	for _, v := range values {
		if ns, sa, ok := strings.Cut(v, "/"); ok {
			out = append(out, serviceAccountMatch{namespace: ns, serviceAccount: sa})
		} else {
			out = append(out, serviceAccountMatch{namespace: policyNamespace, serviceAccount: v})
		}
	}
	return out
}

// parsePorts keeps numeric ports only; named ports are dropped, as istiod does.
func parsePorts(values []string) []int {
	var out []int
	for _, v := range values {
		p, err := strconv.ParseUint(v, 10, 32)
		if err != nil || p > 65535 {
			continue
		}
		out = append(out, int(p))
	}
	return out
}

// parsePrefixes accepts CIDRs and bare IPs (a host prefix); invalid entries are
// dropped, as istiod does.
func parsePrefixes(values []string) []netip.Prefix {
	var out []netip.Prefix
	for _, v := range values {
		if strings.Contains(v, "/") {
			if p, err := netip.ParsePrefix(v); err == nil {
				out = append(out, p.Masked())
			}
			continue
		}
		if a, err := netip.ParseAddr(v); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}
