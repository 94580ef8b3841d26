package authz

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"istio.io/api/security/v1beta1"
)

// A rule as ztunnel enforces it: clauses that must all match (its from, its to, each of its when conditions); a
// clause matches when one of its non-empty matches does (ztunnel skips an empty match: match-none). A rule
// without clauses (`rules: [{}]`) matches every connection.
type rule struct{ clauses []clause }

type clause []match

// match is one source, operation or condition at L4: every field set must hold, each by any of its values, and
// none of its negated values may hold.
type match struct {
	principals, notPrincipals           []stringMatch
	namespaces, notNamespaces           []stringMatch
	serviceAccounts, notServiceAccounts []serviceAccount
	srcIPs, notSrcIPs                   []netip.Prefix
	dstIPs, notDstIPs                   []netip.Prefix
	ports, notPorts                     []uint32
}

// conn is what the destination ztunnel knows of a connection.
type conn struct {
	src       Peer
	principal string
	dst       netip.Addr
	port      uint32
}

// l4When are the `when` keys ztunnel enforces; any other key is an HTTP attribute.
var l4When = []string{"source.ip", "source.namespace", "source.principal", "destination.ip", "destination.port"}

// readRule reads one rule of a policy in namespace ns: the rule at L4, and the HTTP attributes it has (which
// istiod omits).
func readRule(sr *v1beta1.Rule, ns string) (rule, []string) {
	var ru rule
	var l7 []string
	if sr == nil {
		return ru, nil
	}
	if len(sr.To) > 0 {
		var cl clause
		for _, to := range sr.To {
			op := to.GetOperation()
			l7 = append(l7, present(map[string][]string{"hosts": op.GetHosts(), "notHosts": op.GetNotHosts(),
				"methods": op.GetMethods(), "notMethods": op.GetNotMethods(), "paths": op.GetPaths(), "notPaths": op.GetNotPaths()})...)
			cl = append(cl, match{ports: ports(op.GetPorts()), notPorts: ports(op.GetNotPorts())})
		}
		ru.clauses = append(ru.clauses, cl)
	}
	if len(sr.From) > 0 {
		var cl clause
		for _, from := range sr.From {
			s := from.GetSource()
			l7 = append(l7, present(map[string][]string{"remoteIpBlocks": s.GetRemoteIpBlocks(),
				"notRemoteIpBlocks": s.GetNotRemoteIpBlocks(), "requestPrincipals": s.GetRequestPrincipals(),
				"notRequestPrincipals": s.GetNotRequestPrincipals(), "trustDomains": s.GetTrustDomains(),
				"notTrustDomains": s.GetNotTrustDomains()})...)
			cl = append(cl, match{
				principals: strs(s.GetPrincipals()), notPrincipals: strs(s.GetNotPrincipals()),
				namespaces: strs(s.GetNamespaces()), notNamespaces: strs(s.GetNotNamespaces()),
				serviceAccounts: sas(s.GetServiceAccounts(), ns), notServiceAccounts: sas(s.GetNotServiceAccounts(), ns),
				srcIPs: prefixes(s.GetIpBlocks()), notSrcIPs: prefixes(s.GetNotIpBlocks()),
			})
		}
		ru.clauses = append(ru.clauses, cl)
	}
	for _, w := range sr.When {
		m := match{}
		switch w.GetKey() {
		case "source.ip":
			m.srcIPs, m.notSrcIPs = prefixes(w.GetValues()), prefixes(w.GetNotValues())
		case "source.namespace":
			m.namespaces, m.notNamespaces = strs(w.GetValues()), strs(w.GetNotValues())
		case "source.principal":
			m.principals, m.notPrincipals = strs(w.GetValues()), strs(w.GetNotValues())
		case "destination.ip":
			m.dstIPs, m.notDstIPs = prefixes(w.GetValues()), prefixes(w.GetNotValues())
		case "destination.port":
			m.ports, m.notPorts = ports(w.GetValues()), ports(w.GetNotValues())
		}
		if !slices.Contains(l4When, w.GetKey()) {
			l7 = append(l7, w.GetKey())
		}
		ru.clauses = append(ru.clauses, clause{m})
	}
	return ru, l7
}

// present are the names of the fields that are set (Read sorts what it reports).
func present(fields map[string][]string) []string {
	var out []string
	for name, vals := range fields {
		if len(vals) > 0 {
			out = append(out, name)
		}
	}
	return out
}

// effective: the rule can match some connection (every clause has a non-empty match).
func (ru rule) effective() bool {
	for _, cl := range ru.clauses {
		if !slices.ContainsFunc(cl, func(m match) bool { return !m.empty() }) {
			return false
		}
	}
	return true
}

func (ru rule) matches(c conn) bool {
	for _, cl := range ru.clauses {
		if !slices.ContainsFunc(cl, func(m match) bool { return !m.empty() && m.matches(c) }) {
			return false
		}
	}
	return true
}

func (m match) empty() bool {
	return len(m.principals)+len(m.notPrincipals)+len(m.namespaces)+len(m.notNamespaces)+len(m.serviceAccounts)+
		len(m.notServiceAccounts)+len(m.srcIPs)+len(m.notSrcIPs)+len(m.dstIPs)+len(m.notDstIPs)+len(m.ports)+
		len(m.notPorts) == 0
}

// matches: a peer without an identity has no principal, namespace or service account (ISTIO-FACTS.md: "A non-mesh
// source has no principal and no namespace"), so no positive value of those matches it and every negated one
// holds for it: that is how istiod writes STRICT, as DENY notPrincipals ["*"].
func (m match) matches(c conn) bool {
	ns := ""
	if c.src.Mesh {
		ns = c.src.Namespace
	}
	return holds(m.principals, m.notPrincipals, func(s stringMatch) bool { return c.principal != "" && s.matches(c.principal) }) &&
		holds(m.namespaces, m.notNamespaces, func(s stringMatch) bool { return s.matches(ns) }) &&
		holds(m.serviceAccounts, m.notServiceAccounts, func(s serviceAccount) bool {
			return c.src.Mesh && s.namespace == c.src.Namespace && s.name == c.src.ServiceAccount
		}) &&
		holds(m.srcIPs, m.notSrcIPs, func(p netip.Prefix) bool { return c.src.IP.IsValid() && p.Contains(c.src.IP.Unmap()) }) &&
		holds(m.dstIPs, m.notDstIPs, func(p netip.Prefix) bool { return c.dst.IsValid() && p.Contains(c.dst.Unmap()) }) &&
		holds(m.ports, m.notPorts, func(p uint32) bool { return p == c.port })
}

// holds: no positive values, or one of them holds; and none of the negated ones holds.
func holds[T any](pos, neg []T, f func(T) bool) bool {
	return (len(pos) == 0 || slices.ContainsFunc(pos, f)) && !slices.ContainsFunc(neg, f)
}

// stringMatch is a policy string: "*" (present), "*suffix", "prefix*" or exact.
type stringMatch struct{ value string }

func (s stringMatch) matches(v string) bool {
	switch {
	case s.value == "*":
		return v != ""
	case strings.HasPrefix(s.value, "*"):
		return strings.HasSuffix(v, s.value[1:])
	case strings.HasSuffix(s.value, "*"):
		return strings.HasPrefix(v, s.value[:len(s.value)-1])
	}
	return v == s.value
}

func strs(in []string) []stringMatch {
	out := make([]stringMatch, 0, len(in))
	for _, v := range in {
		out = append(out, stringMatch{v})
	}
	return out
}

type serviceAccount struct{ namespace, name string }

// sas reads serviceAccounts: "<ns>/<sa>", or "<sa>" in the policy's namespace.
func sas(in []string, ns string) []serviceAccount {
	out := make([]serviceAccount, 0, len(in))
	for _, v := range in {
		if n, sa, ok := strings.Cut(v, "/"); ok {
			out = append(out, serviceAccount{n, sa})
		} else {
			out = append(out, serviceAccount{ns, v})
		}
	}
	return out
}

// ports reads port numbers; istiod leaves out what is not one (so a list of only those matches nothing).
func ports(in []string) []uint32 {
	out := make([]uint32, 0, len(in))
	for _, v := range in {
		if p, err := strconv.ParseUint(v, 10, 32); err == nil && p <= 65535 {
			out = append(out, uint32(p))
		}
	}
	return out
}

// prefixes reads ipBlocks and IP conditions: an address, or a CIDR (the address is not masked: 10.0.0.1/8 is
// 10.0.0.0/8 to ztunnel too); istiod leaves out what does not parse.
func prefixes(in []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(in))
	for _, v := range in {
		if strings.Contains(v, "/") {
			if p, err := netip.ParsePrefix(v); err == nil {
				a, bits := p.Addr(), p.Bits()
				if a.Is4In6() { // ztunnel compares canonical (IPv4) addresses
					a, bits = a.Unmap(), max(bits-96, 0)
				}
				out = append(out, netip.PrefixFrom(a, bits).Masked())
			}
			continue
		}
		if a, err := netip.ParseAddr(v); err == nil {
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}
