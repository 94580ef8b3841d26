package policy

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/ambientlab/labrun-operator/internal/authz/authztest"
)

// TestUpstreamRBAC runs upstream ztunnel's own L4 authorization cases (the table in internal/authz/authztest,
// which internal/authz is checked against too) through NewZtunnel(...).Evaluate. Each case's policies are taken
// in their Ztunnel form, what istiod sends ztunnel, as the sandbox reads it from istiod's /debug/ambientz.
func TestUpstreamRBAC(t *testing.T) {
	for _, c := range authztest.Cases {
		a, src, dst := ztunnelState(c)
		got := NewZtunnel(a).Evaluate(src, dst)
		want := Decision{Allowed: c.Allowed, Policy: c.By}
		switch {
		case c.Allowed:
		case c.By != "":
			want.Error = ErrExplicitlyDeniedPrefix + c.By
		default:
			want.Error = ErrNoAllowMatched
		}
		if got != want {
			t.Errorf("%s (ztunnel %.12s %s): got %+v, want %+v", c.Name, authztest.Commit, c.Upstream, got, want)
		}
	}
}

// TestUpstreamStringMatch is src/rbac.rs string_match (authztest.StringCases): each row on the simulator's
// conversion of an istio.security.StringMatch and its matcher.
func TestUpstreamStringMatch(t *testing.T) {
	for _, tc := range authztest.StringCases {
		ms := strs([]StringMatch{stringMatchOf(tc.Match)})
		if len(ms) != 1 {
			t.Fatalf("src/rbac.rs string_match %q: %d matchers from %q", tc.Name, len(ms), tc.Match)
		}
		if got := ms[0].matches(tc.Matchee); got != tc.Want {
			t.Errorf("src/rbac.rs string_match %q (ztunnel %.12s): matches(%q) = %v, want %v",
				tc.Name, authztest.Commit, tc.Matchee, got, tc.Want)
		}
	}
}

// ztunnelState is a case as the simulated ztunnel gets it: istiod's view (the policies' Ztunnel form and their
// attachment to the destination), the peer and the destination.
func ztunnelState(c authztest.Case) (Ambientz, Peer, Workload) {
	var a Ambientz
	for _, p := range c.Policies {
		z := Authorization{Name: p.Name, Namespace: p.Namespace, Scope: p.Ztunnel.Scope, Action: p.Ztunnel.Action,
			DryRun: p.DryRun}
		for _, r := range p.Ztunnel.Rules {
			var g Group
			for _, cl := range r {
				var rs Rules
				for _, m := range cl {
					rs.Matches = append(rs.Matches, matchOf(m))
				}
				g.Rules = append(g.Rules, rs)
			}
			z.Groups = append(z.Groups, g)
		}
		a.Policies = append(a.Policies, z)
	}
	if len(c.Attached) > 0 {
		a.Workloads = []AmbientWorkload{{Name: c.Dst.Name, Namespace: c.Dst.Namespace, AuthorizationPolicies: c.Attached}}
	}
	src := Peer{Mesh: c.Src.Mesh, TrustDomain: c.Src.TrustDomain, Namespace: c.Src.Namespace,
		ServiceAccount: c.Src.ServiceAccount, IP: c.Src.IP}
	dst := Workload{Namespace: c.Dst.Namespace, Name: c.Dst.Name, Labels: c.Dst.Labels, IP: c.Dst.IP, Port: int(c.Dst.Port)}
	return a, src, dst
}

func matchOf(m authztest.Match) Match {
	return Match{
		Namespaces: stringMatches(m.Namespaces), NotNamespaces: stringMatches(m.NotNamespaces),
		Principals: stringMatches(m.Principals), NotPrincipals: stringMatches(m.NotPrincipals),
		ServiceAccounts: saMatches(m.ServiceAccounts), NotServiceAccounts: saMatches(m.NotServiceAccounts),
		SourceIps: addresses(m.SourceIPs), NotSourceIps: addresses(m.NotSourceIPs),
		DestinationIps: addresses(m.DestinationIPs), NotDestinationIps: addresses(m.NotDestinationIPs),
		DestinationPorts: portsOf(m.DestinationPorts), NotDestinationPorts: portsOf(m.NotDestinationPorts),
	}
}

// stringMatchOf reads a StringMatch as authztest writes it, as istiod's stringToMatch writes one
// (pilot/pkg/serviceregistry/ambient/authorization.go).
func stringMatchOf(s string) StringMatch {
	switch {
	case s == "*":
		empty := json.RawMessage(`{}`) // protojson's {"presence": {}} (google.protobuf.Empty)
		return StringMatch{Presence: &empty}
	case strings.HasPrefix(s, "*"):
		v := s[1:]
		return StringMatch{Suffix: &v}
	case strings.HasSuffix(s, "*"):
		v := s[:len(s)-1]
		return StringMatch{Prefix: &v}
	}
	return StringMatch{Exact: &s}
}

func stringMatches(in []string) []StringMatch {
	var out []StringMatch
	for _, s := range in {
		out = append(out, stringMatchOf(s))
	}
	return out
}

func saMatches(in []string) []SAMatch {
	var out []SAMatch
	for _, s := range in {
		ns, sa, _ := strings.Cut(s, "/")
		out = append(out, SAMatch{Namespace: ns, ServiceAccount: sa})
	}
	return out
}

// addresses are istio.security.Addresses as istiod's stringToIP builds them (and upstream's tests with
// IpNet::new(ip, length)): the address bytes are not masked.
func addresses(in []string) []Address {
	var out []Address
	for _, s := range in {
		var p netip.Prefix
		if strings.Contains(s, "/") {
			p = netip.MustParsePrefix(s)
		} else {
			a := netip.MustParseAddr(s)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, Address{Address: p.Addr().AsSlice(), Length: p.Bits()})
	}
	return out
}

func portsOf(in []uint32) []int {
	var out []int
	for _, p := range in {
		out = append(out, int(p))
	}
	return out
}
