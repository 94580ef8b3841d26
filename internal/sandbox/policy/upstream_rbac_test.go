package policy

// Upstream ztunnel's own L4 authorization test cases, transcribed as table rows and evaluated with
// NewZtunnel(...).Evaluate.
//
// Source: github.com/istio/ztunnel at commit 62d826530e5ce85764e309170205b293efcbc80b (the commit every
// "upstream:" citation below refers to; line numbers are of that commit).
//
// Mapping (as in the brief):
//   - ztunnel rbac::Authorization.rules ([][][]RbacMatch: rules OR-ed, clauses AND-ed, match groups OR-ed) →
//     Authorization.Groups[].Rules[].Matches[] (see rule() below);
//   - Connection.src_identity Some(Spiffe{td, ns, sa}) → Peer{Mesh: true, TrustDomain, Namespace,
//     ServiceAccount}; None → Peer{Mesh: false}; Connection.src IP → Peer.IP; Connection.dst IP and port →
//     Workload.IP and Workload.Port;
//   - RbacScope::Global → Scope "GLOBAL", Namespace → "NAMESPACE", WorkloadSelector → "WORKLOAD_SELECTOR"
//     (applies only when attached via Ambientz.Workloads[].AuthorizationPolicies).
//   - src/rbac.rs tests assert Authorization::matches on one ALLOW policy. Through Evaluate that is: matches →
//     allowed (by that policy); no match → denied with ErrNoAllowMatched (src/state.rs assert_rbac, lines
//     659-677: allow policies exist and none matched → AuthorizationRejectionError::NotAllowed). The destination
//     workload there is arbitrary: a GLOBAL policy applies to every workload.
//
// Upstream cases NOT transcribed as rows, and why:
//   - src/state.rs assert_rbac_dry_run_with_real_policies: its two telemetry assertions ("dry-run: deny policy
//     match" / "dry-run: allow policy match" logged for ns1/dry-run-deny and ns1/dry-run-allow). The simulator
//     drops dry-run policies in NewZtunnel and has no access log of dry-run matches, so only the test's
//     decision assertion (is_ok) is a row.
//   - src/proxy/connection_manager.rs test_policy_watcher_lifecycle: it inserts a GLOBAL DENY "default/allow-
//     nothing" with rules: vec![] and spawns assert_close in a detached tokio task, whose panic would not fail
//     the test; the test only asserts that the insertion succeeds and that the PolicyWatcher stops. It checks
//     no decision (and per src/rbac.rs lines 100-103, covered by rbac_empty_policy below, a policy with no
//     rules never matches, so that DENY would not close the connection anyway). The re-evaluation of tracked
//     connections on policy change is not modelled.
//   - src/proxy/connection_manager.rs test_connection_manager_close / _release, src/admin.rs config-dump
//     tests, src/xds.rs tests: no policy decision is asserted (connection tracking, serialisation, endpoints).
//   - benches/throughput.rs create_test_policies: a benchmark, not a test; nothing is asserted.
//   - rbac_nesting's third assertion ("Policy is applied regardless of network": dst_network "remote") is a
//     row, but the simulator has no notion of network, so it is identical to the row before it.
//
// src/rbac.rs string_match (StringMatch::matches on a bare string, no policy or connection) is transcribed in
// TestUpstreamStringMatch on the simulator's StringMatch conversion and matcher.

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
)

// ztunnelCommit is the upstream commit the rows were read from.
const ztunnelCommit = "62d826530e5ce85764e309170205b293efcbc80b"

func exact(s string) StringMatch  { return StringMatch{Exact: &s} }
func prefix(s string) StringMatch { return StringMatch{Prefix: &s} }
func suffix(s string) StringMatch { return StringMatch{Suffix: &s} }

// presence is protojson's {"presence": {}} (google.protobuf.Empty).
func presence() StringMatch {
	empty := json.RawMessage(`{}`)
	return StringMatch{Presence: &empty}
}

// addr is an istio.security.Address as upstream builds it with IpNet::new(ip, length): the address bytes are
// not masked.
func addr(ip string, length int) Address {
	return Address{Address: netip.MustParseAddr(ip).AsSlice(), Length: length}
}

// rule is one ztunnel rule (vec of clauses); each clause is its list of match groups.
func rule(clauses ...[]Match) Group {
	g := Group{}
	for _, c := range clauses {
		g.Rules = append(g.Rules, Rules{Matches: c})
	}
	return g
}

// src/rbac.rs tests: allow_policy (lines 481-490) is a GLOBAL ALLOW policy "namespace/<name>".
func allowPolicy(name string, rules ...Group) Authorization {
	return Authorization{Name: name, Namespace: "namespace", Scope: "GLOBAL", Groups: rules}
}

// src/rbac.rs tests: plaintext_conn, tls_conn, tls_conn_alt (lines 492-525).
var (
	rbacDst    = Workload{Namespace: "dst-ns", Name: "dst", IP: "127.0.0.2", Port: 8080}
	rbacDstAlt = Workload{Namespace: "dst-ns", Name: "dst", IP: "127.0.0.4", Port: 9090}
	plaintext  = Peer{IP: "127.0.0.1"}
	tlsPeer    = Peer{Mesh: true, TrustDomain: "td", Namespace: "namespace", ServiceAccount: "account", IP: "127.0.0.1"}
	tlsPeerAlt = Peer{Mesh: true, TrustDomain: "td-alt", Namespace: "ns-alt", ServiceAccount: "sa=alt", IP: "127.0.0.3"}
)

// src/state.rs tests: create_workload (lines 1606-1616) and get_rbac_context (lines 1623-1646).
func stateWorkload(uid int) Workload {
	return Workload{Namespace: fmt.Sprintf("ns%d", uid), Name: "test", IP: fmt.Sprintf("192.168.0.%d", uid), Port: 8080}
}

func statePeer(sa string) Peer {
	return Peer{Mesh: true, TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: sa, IP: "192.168.1.1"}
}

func principalPolicy(name, action, principal string, dryRun bool) Authorization {
	return Authorization{Name: name, Namespace: "ns1", Scope: "NAMESPACE", Action: action, DryRun: dryRun,
		Groups: []Group{rule([]Match{{Principals: []StringMatch{exact(principal)}}})}}
}

type upstreamCase struct {
	cite     string // upstream file, test function and assertion
	policies []Authorization
	src      Peer
	dst      Workload
	allowed  bool
	// policy is the policy upstream names (ExplicitlyDenied) or, for src/rbac.rs rows that match, the one ALLOW
	// policy under test; "" when none decides.
	policy string
	err    string
}

// rbacTest expands upstream's rbac_test! macro (src/rbac.rs lines 462-479): one ALLOW policy named after the
// field with a single match group setting only that field, checked against the three connections.
func rbacTest(cite, name string, m Match, plain, tls, alt bool) []upstreamCase {
	p := allowPolicy(name, rule([]Match{m}))
	row := func(conn string, src Peer, dst Workload, want bool) upstreamCase {
		c := upstreamCase{cite: cite + " " + conn, policies: []Authorization{p}, src: src, dst: dst, allowed: want}
		if want {
			c.policy = "namespace/" + name
		} else {
			c.err = ErrNoAllowMatched
		}
		return c
	}
	return []upstreamCase{
		row("plaintext_conn", plaintext, rbacDst, plain),
		row("tls_conn", tlsPeer, rbacDst, tls),
		row("tls_conn_alt", tlsPeerAlt, rbacDstAlt, alt),
	}
}

// matchRow is one src/rbac.rs assertion on allow_policy(name, rules).matches(conn).
func matchRow(cite string, p Authorization, src Peer, dst Workload, want bool) upstreamCase {
	c := upstreamCase{cite: cite, policies: []Authorization{p}, src: src, dst: dst, allowed: want}
	if want {
		c.policy = p.Namespace + "/" + p.Name
	} else {
		c.err = ErrNoAllowMatched
	}
	return c
}

func upstreamCases() []upstreamCase {
	var cases []upstreamCase

	// src/rbac.rs rbac_empty_policy (lines 527-541).
	const empty = "src/rbac.rs rbac_empty_policy"
	cases = append(cases,
		// vec![vec![vec![RbacMatch{..Default::default()}]]] → false: an empty match group is skipped, so a
		// clause of only empty groups never matches.
		matchRow(empty+" [[[empty match]]]", allowPolicy("empty", rule([]Match{{}})), plaintext, rbacDst, false),
		// vec![vec![vec![]]] → true: an empty clause matches.
		matchRow(empty+" [[[]]]", allowPolicy("empty", rule([]Match{})), plaintext, rbacDst, true),
		// vec![vec![]] → true: a rule without clauses matches.
		matchRow(empty+" [[]]", allowPolicy("empty", rule()), plaintext, rbacDst, true),
		// vec![] → false: a policy without rules never matches.
		matchRow(empty+" []", allowPolicy("empty"), plaintext, rbacDst, false),
	)

	// src/rbac.rs rbac_nesting (lines 543-618): one rule, clause 1 = namespace a OR b, clause 2 = port 80.
	const nesting = "src/rbac.rs rbac_nesting"
	nested := allowPolicy("nested", rule(
		[]Match{{Namespaces: []StringMatch{exact("a")}}, {Namespaces: []StringMatch{exact("b")}}},
		[]Match{{DestinationPorts: []int{80}}},
	))
	nsPeer := func(ns string) Peer {
		return Peer{Mesh: true, TrustDomain: "td", Namespace: ns, ServiceAccount: "account", IP: "127.0.0.1"}
	}
	dst80 := Workload{Namespace: "dst-ns", Name: "dst", IP: "127.0.0.2", Port: 80}
	dst12345 := Workload{Namespace: "dst-ns", Name: "dst", IP: "127.0.0.2", Port: 12345}
	cases = append(cases,
		matchRow(nesting+" namespace a", nested, nsPeer("a"), dst80, true),
		matchRow(nesting+" namespace b", nested, nsPeer("b"), dst80, true),
		// dst_network "remote": the simulator has no network, so this is the row above again.
		matchRow(nesting+" namespace b, dst_network remote", nested, nsPeer("b"), dst80, true),
		matchRow(nesting+" wrong namespace", nested, nsPeer("bad"), dst80, false),
		matchRow(nesting+" wrong port", nested, nsPeer("b"), dst12345, false),
	)

	// src/rbac.rs rbac_multi_rule (lines 620-667): rule 1 = namespace a, rule 2 = namespace b.
	const multi = "src/rbac.rs rbac_multi_rule"
	multiRule := allowPolicy("nested",
		rule([]Match{{Namespaces: []StringMatch{exact("a")}}}),
		rule([]Match{{Namespaces: []StringMatch{exact("b")}}}),
	)
	cases = append(cases,
		matchRow(multi+" namespace a", multiRule, nsPeer("a"), dst80, true),
		matchRow(multi+" namespace b", multiRule, nsPeer("b"), dst80, true),
		matchRow(multi+" wrong namespace", multiRule, nsPeer("bad"), dst80, false),
	)

	// src/rbac.rs rbac_test! cases (lines 669-725), in upstream order: plaintext_conn, tls_conn, tls_conn_alt.
	const rt = "src/rbac.rs rbac_test!"
	nsMatch := []StringMatch{exact("namespace")}
	saMatch := []SAMatch{{Namespace: "namespace", ServiceAccount: "account"}}
	principal := []StringMatch{exact("td/ns/namespace/sa/account")}
	cases = append(cases, rbacTest(rt+"(namespaces)", "namespaces", Match{Namespaces: nsMatch}, false, true, false)...)
	cases = append(cases, rbacTest(rt+"(not_namespaces)", "not_namespaces", Match{NotNamespaces: nsMatch}, true, false, true)...)
	cases = append(cases, rbacTest(rt+"(service_accounts)", "service_accounts", Match{ServiceAccounts: saMatch}, false, true, false)...)
	cases = append(cases, rbacTest(rt+"(not_service_accounts)", "not_service_accounts", Match{NotServiceAccounts: saMatch}, true, false, true)...)
	cases = append(cases, rbacTest(rt+"(principals)", "principals", Match{Principals: principal}, false, true, false)...)
	cases = append(cases, rbacTest(rt+"(not_principals)", "not_principals", Match{NotPrincipals: principal}, true, false, true)...)
	cases = append(cases, rbacTest(rt+"(source_ips)", "source_ips", Match{SourceIps: []Address{addr("127.0.0.1", 32)}}, true, true, false)...)
	cases = append(cases, rbacTest(rt+"(not_source_ips)", "not_source_ips", Match{NotSourceIps: []Address{addr("127.0.0.1", 32)}}, false, false, true)...)
	cases = append(cases, rbacTest(rt+"(destination_ips)", "destination_ips", Match{DestinationIps: []Address{addr("127.0.0.2", 32)}}, true, true, false)...)
	cases = append(cases, rbacTest(rt+"(not_destination_ips)", "not_destination_ips", Match{NotDestinationIps: []Address{addr("127.0.0.2", 32)}}, false, false, true)...)
	// cidr_range sets destination_ips, so the macro names the policy "destination_ips".
	cases = append(cases, rbacTest(rt+"(cidr_range)", "destination_ips", Match{DestinationIps: []Address{addr("127.0.0.1", 24)}}, true, true, true)...)
	cases = append(cases, rbacTest(rt+"(destination_ports)", "destination_ports", Match{DestinationPorts: []int{8080}}, true, true, false)...)
	cases = append(cases, rbacTest(rt+"(not_destination_ports)", "not_destination_ports", Match{NotDestinationPorts: []int{8080}}, false, false, true)...)

	// src/state.rs assert_rbac_logic_deny_allow (lines 1677-1781). Workloads ns1/test (192.168.0.1) and
	// ns2/test (192.168.0.2), nothing attached; NAMESPACE policies in ns1: dry-run wildcard ALLOW and DENY
	// (rules vec![vec![]], match everything; both named ns1/wildcard upstream under different xDS keys — dropped
	// as dry-run here), ALLOW ns1/foo (principal defaultacct), DENY ns1/deny (principal denyacct).
	const logic = "src/state.rs assert_rbac_logic_deny_allow"
	wildcard := func(action string) Authorization {
		return Authorization{Name: "wildcard", Namespace: "ns1", Scope: "NAMESPACE", Action: action, DryRun: true,
			Groups: []Group{rule()}}
	}
	logicPolicies := []Authorization{
		wildcard(""), wildcard("DENY"),
		principalPolicy("foo", "", "cluster.local/ns/default/sa/defaultacct", false),
		principalPolicy("deny", "DENY", "cluster.local/ns/default/sa/denyacct", false),
	}
	cases = append(cases,
		// "3. If there are no ALLOW policies for the workload, allow the request." (ns2)
		upstreamCase{cite: logic + " ns2, not-defaultacct → is_ok", policies: logicPolicies,
			src: statePeer("not-defaultacct"), dst: stateWorkload(2), allowed: true},
		// "4. if any allow policies match, allow"
		upstreamCase{cite: logic + " ns1, defaultacct → is_ok", policies: logicPolicies,
			src: statePeer("defaultacct"), dst: stateWorkload(1), allowed: true, policy: "ns1/foo"},
		// "5. deny the request" → AuthorizationRejectionError::NotAllowed
		upstreamCase{cite: logic + " ns1, not-defaultacct → NotAllowed", policies: logicPolicies,
			src: statePeer("not-defaultacct"), dst: stateWorkload(1), err: ErrNoAllowMatched},
		// "2. If there are any DENY policies that match the request, deny the request." →
		// ExplicitlyDenied("ns1", "deny")
		upstreamCase{cite: logic + " ns1, denyacct → ExplicitlyDenied(ns1, deny)", policies: logicPolicies,
			src: statePeer("denyacct"), dst: stateWorkload(1), policy: "ns1/deny",
			err: ErrExplicitlyDeniedPrefix + "ns1/deny"},
	)

	// src/state.rs assert_rbac_with_dest_workload_info (lines 1783-1792): no policies → is_ok.
	cases = append(cases, upstreamCase{cite: "src/state.rs assert_rbac_with_dest_workload_info ns1, defaultacct → is_ok",
		src: statePeer("defaultacct"), dst: stateWorkload(1), allowed: true})

	// src/state.rs assert_rbac_dry_run_with_real_policies (lines 1794-1895): the decision assertion only (the
	// dry-run log assertions are not modelled, see the top of the file).
	dryDeny := principalPolicy("dry-run-deny", "DENY", "cluster.local/ns/default/sa/defaultacct", true)
	dryDeny.Groups = append(dryDeny.Groups, rule([]Match{{Principals: []StringMatch{exact("cluster.local/ns/default/sa/denyacct")}}}))
	cases = append(cases, upstreamCase{
		cite: "src/state.rs assert_rbac_dry_run_with_real_policies ns1, defaultacct → is_ok",
		policies: []Authorization{
			principalPolicy("real-deny", "DENY", "cluster.local/ns/default/sa/denyacct", false),
			dryDeny,
			principalPolicy("real-allow", "", "cluster.local/ns/default/sa/defaultacct", false),
			principalPolicy("dry-run-allow", "", "cluster.local/ns/default/sa/defaultacct", true),
		},
		src: statePeer("defaultacct"), dst: stateWorkload(1), allowed: true, policy: "ns1/real-allow",
	})

	// src/state/policy.rs rbac_change_scope (lines 112-144): ALLOW default/test_policy (namespaces exact
	// "whatever") is in the "default" namespace index while NAMESPACE-scoped, and not once re-inserted as
	// WORKLOAD_SELECTOR. Upstream asserts index membership, which assert_rbac reads for a workload in
	// "default" (src/state.rs line 593); it is made observable with a connection the policy does not match
	// (our choice: upstream has no connection): NAMESPACE → that ALLOW applies and nothing allows;
	// WORKLOAD_SELECTOR and not attached → no policy applies and the connection is allowed.
	const scope = "src/state/policy.rs rbac_change_scope"
	scoped := func(s string) Authorization {
		return Authorization{Name: "test_policy", Namespace: "default", Scope: s,
			Groups: []Group{rule([]Match{{Namespaces: []StringMatch{exact("whatever")}}})}}
	}
	scopeDst := Workload{Namespace: "default", Name: "test", IP: "10.0.0.2", Port: 8080}
	scopeSrc := Peer{Mesh: true, Namespace: "other", ServiceAccount: "sa", IP: "10.0.0.1"}
	cases = append(cases,
		upstreamCase{cite: scope + " NAMESPACE → in get_by_namespace(default)", policies: []Authorization{scoped("NAMESPACE")},
			src: scopeSrc, dst: scopeDst, err: ErrNoAllowMatched},
		upstreamCase{cite: scope + " WORKLOAD_SELECTOR → not in get_by_namespace(default)", policies: []Authorization{scoped("WORKLOAD_SELECTOR")},
			src: scopeSrc, dst: scopeDst, allowed: true},
	)

	// tests/namespaced.rs test_policy (lines 988-1062): NAMESPACE ALLOW default/deny_bypass on principal
	// exact "spiffe://cluster.local/ns/default/sa/waypoint" (never matches: matches_principal strips
	// "spiffe://" from the peer's identity, src/rbac.rs lines 266-274). The client connects to server
	// (default/server, port SERVER_PORT 8080) over HBONE with the certificate of Identity::default(),
	// spiffe://cluster.local/ns/istio-system/sa/ztunnel; upstream expects the access-log error "connection
	// closed due to policy rejection: allow policies exist, but none allowed". The IPs are assigned by the
	// netns test manager upstream and are not referenced by the policy; these are placeholders.
	cases = append(cases, upstreamCase{
		cite: "tests/namespaced.rs test_policy → allow policies exist, but none allowed",
		policies: []Authorization{{Name: "deny_bypass", Namespace: "default", Scope: "NAMESPACE",
			Groups: []Group{rule([]Match{{Principals: []StringMatch{exact("spiffe://cluster.local/ns/default/sa/waypoint")}}})}}},
		src: Peer{Mesh: true, TrustDomain: "cluster.local", Namespace: "istio-system", ServiceAccount: "ztunnel", IP: "172.16.0.3"},
		dst: Workload{Namespace: "default", Name: "server", IP: "172.16.0.2", Port: 8080},
		err: ErrNoAllowMatched,
	})

	return cases
}

func TestUpstreamRBAC(t *testing.T) {
	cases := upstreamCases()
	if len(cases) != 60 {
		t.Errorf("%d rows, want the 60 transcribed from ztunnel %s", len(cases), ztunnelCommit)
	}
	for _, tc := range cases {
		d := NewZtunnel(Ambientz{Policies: tc.policies}).Evaluate(tc.src, tc.dst)
		if d.Allowed != tc.allowed || d.Policy != tc.policy || d.Error != tc.err {
			t.Errorf("%s (ztunnel %.12s): got allowed=%v policy=%q error=%q; want allowed=%v policy=%q error=%q",
				tc.cite, ztunnelCommit, d.Allowed, d.Policy, d.Error, tc.allowed, tc.policy, tc.err)
		}
	}
}

// TestUpstreamStringMatch is src/rbac.rs string_match (lines 727-740): each test_case row, on the simulator's
// conversion of an istio.security.StringMatch and its matcher.
func TestUpstreamStringMatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		m       StringMatch
		matchee string
		want    bool
	}{
		{"exact match", exact("foo"), "foo", true},
		{"exact mismatch", exact("foo"), "not", false},
		{"exact empty mismatch", exact("foo"), "", false},
		{"prefix match", prefix("foo"), "foobar", true},
		{"prefix mismatch", prefix("foo"), "notfoo", false},
		{"prefix empty mismatch", prefix("foo"), "", false},
		{"suffix match", suffix("foo"), "barfoo", true},
		{"suffix mismatch", suffix("foo"), "foonot", false},
		{"suffix empty mismatch", suffix("foo"), "", false},
		{"presence match", presence(), "foo", true},
		{"presence mismatch", presence(), "", false},
	} {
		ms := strs([]StringMatch{tc.m})
		if len(ms) != 1 {
			t.Fatalf("src/rbac.rs string_match %q: %d matchers from %+v", tc.name, len(ms), tc.m)
		}
		if got := ms[0].matches(tc.matchee); got != tc.want {
			t.Errorf("src/rbac.rs string_match %q (ztunnel %.12s): matches(%q) = %v, want %v",
				tc.name, ztunnelCommit, tc.matchee, got, tc.want)
		}
	}
}
