// Package authz is the operator's own reading of an AuthorizationPolicy as ztunnel enforces it
// (../shared/ISTIO-FACTS.md, "AuthorizationPolicy in ambient"): what istiod drops or narrows before ztunnel sees
// it (Read), which workloads it applies to, and whether ztunnel allows a connection (Decide). The policy-audit
// lab computes its expectations here, from the policies' specs as written: never from istiod's output or from
// the sandbox's matcher (internal/sandbox/policy, which the real istiod feeds), so that a wrong simulator cannot
// agree with a wrong expectation. Both are checked against the same table of ztunnel's own test cases
// (internal/authz/authztest).
package authz

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
)

// DefaultTrustDomain is the trust domain of a peer that names none.
const DefaultTrustDomain = "cluster.local"

// Peer is the client of a connection as the destination ztunnel knows it: a mesh peer's identity (from its
// certificate), or none, and its address.
type Peer struct {
	Mesh                                   bool
	TrustDomain, Namespace, ServiceAccount string
	IP                                     netip.Addr
}

// principal is the peer's identity as policies write it, "<td>/ns/<ns>/sa/<sa>"; "" without one.
func (p Peer) principal() string {
	if !p.Mesh {
		return ""
	}
	td := p.TrustDomain
	if td == "" {
		td = DefaultTrustDomain
	}
	return td + "/ns/" + p.Namespace + "/sa/" + p.ServiceAccount
}

// Workload is the destination: its namespace and labels (which policies apply to it) and its address.
type Workload struct {
	Namespace string
	Labels    map[string]string
	IP        netip.Addr
}

// Policy is an AuthorizationPolicy as stored: what a user wrote.
type Policy struct {
	Namespace, Name     string
	Labels, Annotations map[string]string
	Spec                *v1beta1.AuthorizationPolicy
}

// FromObject is the policy of a stored AuthorizationPolicy.
func FromObject(ap *securityv1.AuthorizationPolicy) Policy {
	return Policy{Namespace: ap.Namespace, Name: ap.Name, Labels: ap.Labels, Annotations: ap.Annotations, Spec: &ap.Spec}
}

// Key is the policy's namespace/name, as ztunnel names it in a rejection.
func (p Policy) Key() string { return p.Namespace + "/" + p.Name }

// Options are what a policy's spec alone does not settle: the cluster's istiod.
type Options struct {
	// RootNamespace is the mesh root namespace (istio-system when empty): a policy there without a selector
	// applies to every workload.
	RootNamespace string
	// Revision is the istio.io/rev the audited istiod serves ("" or "default": the default revision).
	Revision string
	// DryRunEnforced says the istiod enforces dry-run policies all the same (Istio 1.28 and 1.29 ignore the
	// istio.io/dry-run annotation); from 1.30 they are not enforced.
	DryRunEnforced bool
}

func (o Options) root() string {
	if o.RootNamespace == "" {
		return "istio-system"
	}
	return o.RootNamespace
}

// Effect is what becomes of a policy at ztunnel.
type Effect string

const (
	// AsWritten: ztunnel enforces every rule of the policy as written.
	AsWritten Effect = "AsWritten"
	// Narrowed: istiod dropped the HTTP attributes ztunnel cannot enforce: an ALLOW policy loses the rules that
	// have them, a DENY policy is enforced without them; either is more restrictive than written.
	Narrowed Effect = "Narrowed"
	// NoEffect: ztunnel does not enforce the policy at all (another revision, a dry run, an action ztunnel does
	// not support, `selector: {}`, a DENY left without rules).
	NoEffect Effect = "NoEffect"
	// Untestable: the policy is enforced elsewhere or in a way this package does not model (a waypoint, a
	// selector in the root namespace).
	Untestable Effect = "Untestable"
)

// Reading is a policy as ztunnel will enforce it: its effect, why, and its rules at L4.
type Reading struct {
	Policy Policy
	Effect Effect
	// Reason says why the effect is not AsWritten, in istiod's words where istiod has some.
	Reason string
	// Dropped are the HTTP attributes istiod omitted (e.g. "methods", "paths"), sorted.
	Dropped []string

	deny  bool
	scope scope
	rules []rule
}

type scope int

const (
	scopeNamespace scope = iota // no selector: the policy's namespace (every namespace from the root)
	scopeGlobal                 // no selector, in the root namespace
	scopeSelector               // a selector with labels, in the policy's namespace
)

// istiod's words for policies with HTTP attributes (pilot/pkg/serviceregistry/ambient/authorization.go).
const (
	httpRule     = "ztunnel does not support HTTP attributes (found: %s). In ambient mode you must use a waypoint proxy to enforce HTTP rules. %s"
	httpAllow    = "Within an ALLOW policy, rules matching HTTP attributes are omitted. This will be more restrictive than requested."
	httpDeny     = "DENY policy with HTTP attributes is enforced without the HTTP rules. This will be more restrictive than requested."
	httpDenyNone = "After omitting unsupported HTTP attributes, this DENY policy has no enforceable rules at ztunnel and will have no effect. " +
		"Deploy a waypoint proxy and use a targetRef to enforce this policy."
)

// Read works out what ztunnel will enforce of p.
func Read(p Policy, o Options) Reading {
	r := Reading{Policy: p, Effect: AsWritten}
	spec := p.Spec
	if spec == nil {
		spec = &v1beta1.AuthorizationPolicy{}
	}
	if rev := p.Labels["istio.io/rev"]; rev != "" && rev != o.Revision && !(rev == "default" && o.Revision == "") {
		return r.none(fmt.Sprintf("labelled istio.io/rev=%s: another revision's istiod serves it", rev))
	}
	if v, err := strconv.ParseBool(p.Annotations["istio.io/dry-run"]); err == nil && v && !o.DryRunEnforced {
		return r.none("a dry run (istio.io/dry-run): ztunnel does not enforce it")
	}
	if spec.TargetRef != nil || len(spec.TargetRefs) > 0 {
		r.Effect, r.Reason = Untestable, "it has targetRefs: a waypoint enforces it, not ztunnel"
		return r
	}
	switch spec.Action {
	case v1beta1.AuthorizationPolicy_ALLOW:
	case v1beta1.AuthorizationPolicy_DENY:
		r.deny = true
	default:
		return r.none(fmt.Sprintf("ztunnel does not support the %s action", spec.Action))
	}
	switch {
	case spec.Selector == nil && p.Namespace == o.root():
		r.scope = scopeGlobal
	case spec.Selector == nil:
		r.scope = scopeNamespace
	case len(spec.Selector.MatchLabels) == 0:
		return r.none("selector {} applies to no workload in ambient")
	case p.Namespace == o.root():
		r.Effect, r.Reason = Untestable, "a selector in the root namespace: which workloads it applies to in ambient is not modelled"
		return r
	default:
		r.scope = scopeSelector
	}
	dropped := map[string]bool{}
	for _, sr := range spec.Rules {
		ru, l7 := readRule(sr, p.Namespace)
		for _, a := range l7 {
			dropped[a] = true
		}
		if len(l7) > 0 && !r.deny {
			continue // an ALLOW rule with HTTP attributes never matches at ztunnel
		}
		r.rules = append(r.rules, ru)
	}
	if len(dropped) == 0 {
		return r
	}
	r.Dropped = slices.Sorted(maps.Keys(dropped))
	found := strings.Join(r.Dropped, ", ")
	switch {
	case r.deny && !slices.ContainsFunc(r.rules, rule.effective):
		r.Effect, r.Reason = NoEffect, fmt.Sprintf(httpRule, found, httpDenyNone)
	case r.deny:
		r.Effect, r.Reason = Narrowed, fmt.Sprintf(httpRule, found, httpDeny)
	default:
		r.Effect, r.Reason = Narrowed, fmt.Sprintf(httpRule, found, httpAllow)
	}
	return r
}

func (r Reading) none(why string) Reading {
	r.Effect, r.Reason, r.rules = NoEffect, why, nil
	return r
}

// Enforced tells whether ztunnel enforces the policy in some form (as written or narrowed).
func (r Reading) Enforced() bool { return r.Effect == AsWritten || r.Effect == Narrowed }

// Deny tells whether the policy is a DENY policy.
func (r Reading) Deny() bool { return r.deny }

// AppliesTo tells whether ztunnel applies the policy to connections to w.
func (r Reading) AppliesTo(w Workload) bool {
	if !r.Enforced() {
		return false
	}
	switch r.scope {
	case scopeGlobal:
		return true
	case scopeNamespace:
		return r.Policy.Namespace == w.Namespace
	}
	if r.Policy.Namespace != w.Namespace {
		return false
	}
	for k, v := range r.Policy.Spec.Selector.MatchLabels {
		if got, ok := w.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Matches tells whether any of the policy's rules (as ztunnel enforces them) matches a connection from src to
// w on port. A policy without rules matches nothing.
func (r Reading) Matches(src Peer, w Workload, port uint32) bool {
	c := conn{src: src, principal: src.principal(), dst: w.IP, port: port}
	return slices.ContainsFunc(r.rules, func(ru rule) bool { return ru.matches(c) })
}

// BySource tells whether ztunnel's decision under the policy may depend on the source's address (ipBlocks,
// notIpBlocks, a source.ip condition): its probes' expectations need the address their pods get.
func (r Reading) BySource() bool {
	for _, ru := range r.rules {
		for _, cl := range ru.clauses {
			for _, m := range cl {
				if len(m.srcIPs) > 0 || len(m.notSrcIPs) > 0 {
					return true
				}
			}
		}
	}
	return false
}

// Decision is ztunnel's answer for one connection.
type Decision struct {
	Allowed bool
	// By is the policy that decided (its Key); "" when no policy applies, or when ALLOW policies exist and none
	// allowed.
	By string
	// Reason is ztunnel's: "denied by a DENY policy", "allowed by an ALLOW policy", "no ALLOW policy",
	// "allow policies exist, but none allowed".
	Reason string
}

// Decide is ztunnel's decision for a connection from src to w on port, given every policy read (those that do not
// apply to w are passed over): a matching DENY denies; no ALLOW policy allows; a matching ALLOW allows; otherwise
// it is denied. Several matching DENY policies: the first in the order given (ztunnel names one of them, not
// deterministically, ISTIO-FACTS.md).
func Decide(policies []Reading, src Peer, w Workload, port uint32) Decision {
	var allows []Reading
	for _, r := range policies {
		if !r.AppliesTo(w) {
			continue
		}
		if r.deny {
			if r.Matches(src, w, port) {
				return Decision{By: r.Policy.Key(), Reason: "denied by a DENY policy"}
			}
			continue
		}
		allows = append(allows, r)
	}
	if len(allows) == 0 {
		return Decision{Allowed: true, Reason: "no ALLOW policy"}
	}
	for _, r := range allows {
		if r.Matches(src, w, port) {
			return Decision{Allowed: true, By: r.Policy.Key(), Reason: "allowed by an ALLOW policy"}
		}
	}
	return Decision{Reason: "allow policies exist, but none allowed"}
}
