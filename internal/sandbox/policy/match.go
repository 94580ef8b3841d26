package policy

import (
	"net/netip"
	"strings"
)

type matchKind int

const (
	matchExact matchKind = iota
	matchPrefix
	matchSuffix
	matchPresence
)

type stringMatch struct {
	kind  matchKind
	value string
}

func (m stringMatch) matches(s string) bool {
	switch m.kind {
	case matchPrefix:
		return strings.HasPrefix(s, m.value)
	case matchSuffix:
		return strings.HasSuffix(s, m.value)
	case matchPresence:
		return s != ""
	default:
		return s == m.value
	}
}

type serviceAccountMatch struct {
	namespace, serviceAccount string
}

// matchGroup is one ztunnel RbacMatch: every non-empty field must hold.
type matchGroup struct {
	namespaces, notNamespaces           []stringMatch
	principals, notPrincipals           []stringMatch
	serviceAccounts, notServiceAccounts []serviceAccountMatch
	srcIPs, notSrcIPs                   []netip.Prefix
	dstIPs, notDstIPs                   []netip.Prefix
	ports, notPorts                     []int
}

// connection is what the destination ztunnel knows about a connection.
type connection struct {
	hasIdentity    bool
	principal      string // "<td>/ns/<ns>/sa/<sa>", "" without identity
	namespace      string // "" without identity
	serviceAccount string
	src, dst       netip.Addr
	port           int
}

func newConnection(src Peer, dst Workload) connection {
	c := connection{port: dst.Port}
	// ztunnel canonicalises both socket addresses before building rbac::Connection (src/proxy/inbound.rs
	// lines 111 and 116, src/proxy/inbound_passthrough.rs lines 96 and 132, src/socket.rs lines 46-50
	// to_canonical at istio/ztunnel 62d826530e5c): an IPv4-mapped IPv6 address is matched as IPv4.
	c.src = canonicalAddr(src.IP)
	c.dst = canonicalAddr(dst.IP)
	if src.Mesh {
		// Identity of a mesh peer: trust domain + namespace + service account.
		td := src.TrustDomain
		if td == "" {
			td = DefaultTrustDomain
		}
		c.hasIdentity = true
		c.principal = td + "/ns/" + src.Namespace + "/sa/" + src.ServiceAccount
		c.namespace = src.Namespace
		c.serviceAccount = src.ServiceAccount
	}
	return c
}

func canonicalAddr(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// matches mirrors ztunnel Authorization::matches: no rules never matches; a rule
// without clauses always matches.
func (p compiled) matches(c connection) bool {
	for _, r := range p.rules {
		if r.matches(c) {
			return true
		}
	}
	return false
}

func (r l4Rule) matches(c connection) bool {
	for _, cl := range r {
		if !cl.matches(c) {
			return false
		}
	}
	return true
}

// matches: an empty clause matches; otherwise any non-empty group must match
// (ztunnel skips empty groups, so a clause of only empty groups never matches).
func (cl clause) matches(c connection) bool {
	if len(cl) == 0 {
		return true
	}
	for _, g := range cl {
		if !g.isEmpty() && g.matches(c) {
			return true
		}
	}
	return false
}

func (g matchGroup) isEmpty() bool {
	return len(g.namespaces)+len(g.notNamespaces)+len(g.principals)+len(g.notPrincipals)+
		len(g.serviceAccounts)+len(g.notServiceAccounts)+len(g.srcIPs)+len(g.notSrcIPs)+
		len(g.dstIPs)+len(g.notDstIPs)+len(g.ports)+len(g.notPorts) == 0
}

// matches follows ztunnel rbac.rs: for each field "any positive matches" and
// "no negative matches". A peer without identity has principal "" and namespace
// "": positive principals/namespaces/serviceAccounts never match it, and the
// negative forms (notPrincipals, notNamespaces, notServiceAccounts) are always
// satisfied by it — exactly what lets istiod express STRICT as
// DENY notPrincipals ["*"].
func (g matchGroup) matches(c connection) bool {
	return posNeg(g.dstIPs, g.notDstIPs, func(p netip.Prefix) bool { return c.dst.IsValid() && p.Contains(c.dst) }) &&
		posNeg(g.srcIPs, g.notSrcIPs, func(p netip.Prefix) bool { return c.src.IsValid() && p.Contains(c.src) }) &&
		posNeg(g.ports, g.notPorts, func(p int) bool { return p == c.port }) &&
		posNeg(g.serviceAccounts, g.notServiceAccounts, func(s serviceAccountMatch) bool {
			return c.hasIdentity && s.namespace == c.namespace && s.serviceAccount == c.serviceAccount
		}) &&
		posNeg(g.principals, g.notPrincipals, func(m stringMatch) bool { return c.hasIdentity && m.matches(c.principal) }) &&
		posNeg(g.namespaces, g.notNamespaces, func(m stringMatch) bool { return m.matches(c.namespace) })
}

// posNeg is ztunnel's matches_internal: (positive empty or any matches) and
// (negative empty or none matches).
func posNeg[T any](positive, negative []T, pred func(T) bool) bool {
	if len(positive) > 0 && !anyOf(positive, pred) {
		return false
	}
	return !anyOf(negative, pred)
}

func anyOf[T any](items []T, pred func(T) bool) bool {
	for _, it := range items {
		if pred(it) {
			return true
		}
	}
	return false
}
