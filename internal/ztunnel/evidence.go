package ztunnel

import (
	"slices"
	"strings"
	"time"
)

// Criteria describes the access-log evidence a check is looking for. The zero
// value matches every entry; each set field narrows the match.
type Criteria struct {
	Since, Until   time.Time // window, both ends inclusive; zero means unbounded; entries without a time never match a bounded window
	Direction      string    // "inbound" | "outbound" | "" (any)
	SrcIdentity    string    // exact SPIFFE ID or ""
	DstIdentity    string    // exact SPIFFE ID or ""
	DstService     string    // substring match on dst.service, or ""
	HBONE          bool      // require IsHBONE
	PolicyRejected *bool     // nil = don't care; true = must be a policy rejection; false = must have no error
	ErrorContains  string    // substring the error must contain, or ""
	ErrorAnyOf     []string  // substrings of which the error must contain one, or nil
	NoSrcIdentity  bool      // require no src.identity (a plaintext, non-mesh source)
	SrcWorkload    string    // exact src.workload (the source pod's name) or ""
	// SrcWorkloadPrefix: src.workload must start with it (the per-node observers of one caller), or "".
	SrcWorkloadPrefix string
	// SrcNamespace and DstNamespace: exact src.namespace / dst.namespace, or "". A pod's name is unique only in
	// its namespace: a tenant may name a pod of their own like an observer, so a name without its namespace
	// does not say whose connection a line is.
	SrcNamespace, DstNamespace string
}

// Match returns the entries satisfying every set criterion, in input order.
// A "connection opened" line never matches, whatever the criteria: ztunnel
// writes it at debug level when a connection starts, with the fields of the
// "connection complete" line that ends it but no outcome, so counting it
// would count a connection twice and could pass "allowed" for a connection
// that was then refused (ISTIO-FACTS.md, "ztunnel access logs"). Otherwise
// Match does not restrict itself to access lines; callers that only want
// connection records should filter with Entry.IsAccess.
func Match(entries []Entry, c Criteria) []Entry {
	var out []Entry
	for _, e := range entries {
		if c.matches(e) {
			out = append(out, e)
		}
	}
	return out
}

func (c Criteria) matches(e Entry) bool {
	return !e.isOpened() &&
		c.inWindow(e.Time) &&
		(c.Direction == "" || strings.EqualFold(c.Direction, e.Direction())) &&
		(c.SrcIdentity == "" || c.SrcIdentity == e.SrcIdentity()) &&
		(c.DstIdentity == "" || c.DstIdentity == e.DstIdentity()) &&
		(c.DstService == "" || strings.Contains(e.DstService(), c.DstService)) &&
		(!c.HBONE || e.IsHBONE()) &&
		(c.ErrorContains == "" || strings.Contains(e.Error(), c.ErrorContains)) &&
		(len(c.ErrorAnyOf) == 0 || slices.ContainsFunc(c.ErrorAnyOf, func(s string) bool { return strings.Contains(e.Error(), s) })) &&
		(!c.NoSrcIdentity || e.SrcIdentity() == "") &&
		(c.SrcWorkload == "" || c.SrcWorkload == e.Fields.Get(FieldSrcWorkload)) &&
		strings.HasPrefix(e.Fields.Get(FieldSrcWorkload), c.SrcWorkloadPrefix) &&
		(c.SrcNamespace == "" || c.SrcNamespace == e.Fields.Get(FieldSrcNamespace)) &&
		(c.DstNamespace == "" || c.DstNamespace == e.Fields.Get(FieldDstNamespace)) &&
		c.policyOK(e)
}

// inWindow refuses untimed entries for a bounded window, because a line whose
// time is unknown cannot prove it happened during the test.
func (c Criteria) inWindow(t time.Time) bool {
	if c.Since.IsZero() && c.Until.IsZero() {
		return true
	}
	if t.IsZero() {
		return false
	}
	return (c.Since.IsZero() || !t.Before(c.Since)) && (c.Until.IsZero() || !t.After(c.Until))
}

func (c Criteria) policyOK(e Entry) bool {
	switch {
	case c.PolicyRejected == nil:
		return true
	case *c.PolicyRejected:
		return e.IsPolicyRejection()
	default:
		return e.Error() == ""
	}
}

// SPIFFEID builds the identity ztunnel logs for a Kubernetes service account,
// so criteria can be written from names instead of hand-built URIs.
func SPIFFEID(trustDomain, namespace, serviceAccount string) string {
	return "spiffe://" + trustDomain + "/ns/" + namespace + "/sa/" + serviceAccount
}
