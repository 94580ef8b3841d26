package policy

import (
	"encoding/json"
	"net/netip"
	"sort"
)

// The simulated ztunnel enforces what the real istiod sends ztunnel: istio.security.Authorization policies and,
// per workload, the names of those attached to it. The sandbox reads them from istiod's /debug/ambientz
// (protojson field names; zero values omitted), so istiod, not this package, converts PeerAuthentication and
// AuthorizationPolicy objects.

// Ambientz is the part of istiod's /debug/ambientz the simulated ztunnel needs.
type Ambientz struct {
	Workloads []AmbientWorkload `json:"workloads"`
	Policies  []Authorization   `json:"policies"`
}

// AmbientWorkload is an istio.workload.Workload: its name and the policies istiod attached to it.
type AmbientWorkload struct {
	Name                  string   `json:"name"`
	Namespace             string   `json:"namespace"`
	AuthorizationPolicies []string `json:"authorizationPolicies"`
}

// Authorization is an istio.security.Authorization.
type Authorization struct {
	Name      string  `json:"name"`
	Namespace string  `json:"namespace"`
	Scope     string  `json:"scope"`  // GLOBAL (omitted), NAMESPACE, WORKLOAD_SELECTOR
	Action    string  `json:"action"` // ALLOW (omitted), DENY
	DryRun    bool    `json:"dryRun"`
	Groups    []Group `json:"groups"`
}

// Group is one rule of the policy: it matches when every one of its Rules matches.
type Group struct {
	Rules []Rules `json:"rules"`
}

// Rules matches when any of its Matches matches.
type Rules struct {
	Matches []Match `json:"matches"`
}

// Match is one istio.security.Match: every non-empty field must hold.
type Match struct {
	Namespaces          []StringMatch `json:"namespaces"`
	NotNamespaces       []StringMatch `json:"notNamespaces"`
	Principals          []StringMatch `json:"principals"`
	NotPrincipals       []StringMatch `json:"notPrincipals"`
	ServiceAccounts     []SAMatch     `json:"serviceAccounts"`
	NotServiceAccounts  []SAMatch     `json:"notServiceAccounts"`
	SourceIps           []Address     `json:"sourceIps"`
	NotSourceIps        []Address     `json:"notSourceIps"`
	DestinationIps      []Address     `json:"destinationIps"`
	NotDestinationIps   []Address     `json:"notDestinationIps"`
	DestinationPorts    []int         `json:"destinationPorts"`
	NotDestinationPorts []int         `json:"notDestinationPorts"`
}

// StringMatch is one of exact, prefix, suffix or presence.
type StringMatch struct {
	Exact    *string          `json:"exact"`
	Prefix   *string          `json:"prefix"`
	Suffix   *string          `json:"suffix"`
	Presence *json.RawMessage `json:"presence"`
}

// SAMatch is a ServiceAccount by namespace and name.
type SAMatch struct {
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
}

// Address is an IP prefix: raw address bytes (base64 in JSON) and a prefix length.
type Address struct {
	Address []byte `json:"address"`
	Length  int    `json:"length"`
}

// Ztunnel is the policy state a ztunnel holds: the converted policies and their attachment to workloads.
type Ztunnel struct {
	policies  map[string]compiled
	global    []string
	namespace map[string][]string
	workloads map[string][]string // "<ns>/<name>" → attached policy keys
}

// NewZtunnel builds the state from istiod's view. Dry-run policies are left out: from Istio 1.30 they are not
// enforced (ISTIO-FACTS.md).
func NewZtunnel(a Ambientz) *Ztunnel {
	z := &Ztunnel{policies: map[string]compiled{}, namespace: map[string][]string{}, workloads: map[string][]string{}}
	for _, p := range a.Policies {
		if p.DryRun {
			continue
		}
		c := compileAuthorization(p)
		z.policies[c.key] = c
		switch p.Scope {
		case "", "GLOBAL":
			z.global = append(z.global, c.key)
		case "NAMESPACE":
			z.namespace[p.Namespace] = append(z.namespace[p.Namespace], c.key)
		}
	}
	for _, w := range a.Workloads {
		z.workloads[key(w.Namespace, w.Name)] = w.AuthorizationPolicies
	}
	return z
}

// Has tells whether the state holds the enforced policy "<ns>/<name>".
func (z *Ztunnel) Has(key string) bool {
	_, ok := z.policies[key]
	return ok
}

// Evaluate decides a connection at dst's ztunnel (src/state.rs assert_rbac): the policies that apply are the
// namespace-scoped ones of dst's namespace, the global ones and those istiod attached to dst; then DENY, ALLOW
// as in decide. Which of several matching DENY policies is named is not deterministic in ztunnel; here the
// first by "<ns>/<name>".
func (z *Ztunnel) Evaluate(src Peer, dst Workload) Decision {
	seen := map[string]bool{}
	var keys []string
	for _, group := range [][]string{z.namespace[dst.Namespace], z.global, z.workloads[key(dst.Namespace, dst.Name)]} {
		for _, k := range group {
			if _, ok := z.policies[k]; ok && !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	policies := make([]compiled, 0, len(keys))
	for _, k := range keys {
		policies = append(policies, z.policies[k])
	}
	return decide(policies, newConnection(src, dst))
}

// compileAuthorization is the matcher's form of an Authorization: groups are OR-ed rules, a group's Rules are
// AND-ed clauses, a Rules' Matches are OR-ed match groups (ztunnel rbac.rs).
func compileAuthorization(p Authorization) compiled {
	c := compiled{key: key(p.Namespace, p.Name), deny: p.Action == "DENY"}
	for _, g := range p.Groups {
		var rule l4Rule
		for _, r := range g.Rules {
			var cl clause
			for _, m := range r.Matches {
				cl = append(cl, m.group())
			}
			rule = append(rule, cl)
		}
		c.rules = append(c.rules, rule)
	}
	return c
}

func (m Match) group() matchGroup {
	return matchGroup{
		namespaces: strs(m.Namespaces), notNamespaces: strs(m.NotNamespaces),
		principals: strs(m.Principals), notPrincipals: strs(m.NotPrincipals),
		serviceAccounts: sas(m.ServiceAccounts), notServiceAccounts: sas(m.NotServiceAccounts),
		srcIPs: prefixes(m.SourceIps), notSrcIPs: prefixes(m.NotSourceIps),
		dstIPs: prefixes(m.DestinationIps), notDstIPs: prefixes(m.NotDestinationIps),
		ports: m.DestinationPorts, notPorts: m.NotDestinationPorts,
	}
}

func strs(in []StringMatch) []stringMatch {
	var out []stringMatch
	for _, s := range in {
		switch {
		case s.Exact != nil:
			out = append(out, stringMatch{kind: matchExact, value: *s.Exact})
		case s.Prefix != nil:
			out = append(out, stringMatch{kind: matchPrefix, value: *s.Prefix})
		case s.Suffix != nil:
			out = append(out, stringMatch{kind: matchSuffix, value: *s.Suffix})
		case s.Presence != nil:
			out = append(out, stringMatch{kind: matchPresence})
		}
	}
	return out
}

func sas(in []SAMatch) []serviceAccountMatch {
	var out []serviceAccountMatch
	for _, s := range in {
		out = append(out, serviceAccountMatch{namespace: s.Namespace, serviceAccount: s.ServiceAccount})
	}
	return out
}

// prefixes converts Addresses as ztunnel does (src/rbac.rs lines 426-433 with src/state/workload.rs byte_to_ip,
// lines 336-348, at istio/ztunnel 62d826530e5c): 4 bytes are IPv4, 16 bytes IPv6 — an IPv4-mapped address stays
// IPv6 and so never contains a (canonical, IPv4) connection address; any other length, or a prefix length
// beyond the family's, drops the entry.
func prefixes(in []Address) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range in {
		if addr, ok := netip.AddrFromSlice(a.Address); ok {
			if p, err := addr.Prefix(a.Length); err == nil {
				out = append(out, p)
			}
		}
	}
	return out
}
