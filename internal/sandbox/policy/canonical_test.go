package policy

import (
	"net/netip"
	"testing"
)

// TestCanonicalAddresses pins the address handling taken from ztunnel (istio/ztunnel 62d826530e5c; no upstream
// test covers it): connection addresses are canonicalised (src/socket.rs to_canonical, used in
// src/proxy/inbound.rs and src/proxy/inbound_passthrough.rs), while a policy Address of 16 bytes stays IPv6
// (src/rbac.rs TryFrom<&XdsAddress> via src/state/workload.rs byte_to_ip), even when IPv4-mapped.
func TestCanonicalAddresses(t *testing.T) {
	deny := func(m Match) Authorization {
		return Authorization{Name: "deny", Namespace: "istio-system", Action: "DENY",
			Groups: []Group{{Rules: []Rules{{Matches: []Match{m}}}}}}
	}
	mapped := Address{Address: netip.MustParseAddr("::ffff:10.0.0.1").AsSlice(), Length: 128}
	v4 := Address{Address: netip.MustParseAddr("10.0.0.1").AsSlice(), Length: 32}
	dst := Workload{Namespace: "demo", Name: "backend", IP: "10.0.0.2", Port: 80}
	for _, tc := range []struct {
		name   string
		p      Authorization
		src    Peer
		denied bool
	}{
		// The mapped /128 is an IPv6 net: it does not contain 10.0.0.1, so the match group (not empty: it has
		// a source IP) does not match.
		{"mapped policy address, IPv4 peer", deny(Match{SourceIps: []Address{mapped}, DestinationPorts: []int{80}}), Peer{IP: "10.0.0.1"}, false},
		// A mapped peer address is matched as the IPv4 address it maps.
		{"IPv4 policy address, mapped peer", deny(Match{SourceIps: []Address{v4}}), Peer{IP: "::ffff:10.0.0.1"}, true},
		{"IPv4 policy address, IPv4 peer", deny(Match{SourceIps: []Address{v4}}), Peer{IP: "10.0.0.1"}, true},
	} {
		d := NewZtunnel(Ambientz{Policies: []Authorization{tc.p}}).Evaluate(tc.src, dst)
		if d.Allowed == tc.denied {
			t.Errorf("%s: allowed %v %q, want denied %v", tc.name, d.Allowed, d.Error, tc.denied)
		}
	}
}
