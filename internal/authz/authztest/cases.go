// Package authztest is upstream ztunnel's own L4 authorization test cases as one table, which both of the
// repository's evaluators are checked against: the sandbox's matcher (internal/sandbox/policy, the simulated
// ztunnel) and the operator's expectation evaluator (internal/authz). It imports neither, so neither depends on
// the other; each test converts the cases into its evaluator's terms.
//
// The evaluators read policies in different forms, so each policy is written in both: Spec, the
// AuthorizationPolicy a user writes (what internal/authz reads), and Ztunnel, the istio.security.Authorization
// istiod sends ztunnel for it (what the sandbox's matcher reads, and the form ztunnel's tests are written in).
// internal/authz's test checks that its reading of Spec has Ztunnel's scope, action and rules, so the two forms
// are one policy.
//
// Source: github.com/istio/ztunnel at Commit (every Upstream reference is to that commit; line numbers are of it).
//
// Mapping:
//   - ztunnel rbac::Authorization.rules ([][][]RbacMatch: rules OR-ed, clauses AND-ed, matches OR-ed) →
//     Authorization.Rules;
//   - Connection.src_identity Some(Spiffe{td, ns, sa}) → Peer{Mesh: true, TrustDomain, Namespace,
//     ServiceAccount}; None → Peer{Mesh: false}; Connection.src IP → Peer.IP; Connection.dst IP and port →
//     Workload.IP and Workload.Port;
//   - RbacScope::Global, Namespace, WorkloadSelector → Scope "GLOBAL", "NAMESPACE", "WORKLOAD_SELECTOR". A GLOBAL
//     policy is written in the case's RootNamespace, as istiod only makes one there.
//   - src/rbac.rs tests assert Authorization::matches on one ALLOW policy. Through ztunnel's decision that is:
//     matches → allowed by that policy; no match → denied, "allow policies exist, but none allowed" (src/state.rs
//     assert_rbac, lines 659-677). The destination workload there is arbitrary: a GLOBAL policy applies to every
//     workload.
//
// Upstream cases not in the table, and why:
//   - src/state.rs assert_rbac_dry_run_with_real_policies: its two telemetry assertions ("dry-run: deny policy
//     match" / "dry-run: allow policy match" logged for ns1/dry-run-deny and ns1/dry-run-allow). Neither
//     evaluator logs dry-run matches, so only the test's decision assertion (is_ok) is a case.
//   - src/proxy/connection_manager.rs test_policy_watcher_lifecycle: it inserts a GLOBAL DENY "default/allow-
//     nothing" with rules: vec![] and spawns assert_close in a detached tokio task, whose panic would not fail
//     the test; the test only asserts that the insertion succeeds and that the PolicyWatcher stops. It checks
//     no decision (and per src/rbac.rs lines 100-103, covered by rbac_empty_policy below, a policy with no
//     rules never matches, so that DENY would not close the connection anyway). Re-evaluating tracked
//     connections when policies change is not modelled.
//   - src/proxy/connection_manager.rs test_connection_manager_close / _release, src/admin.rs config-dump
//     tests, src/xds.rs tests: no policy decision is asserted (connection tracking, serialisation, endpoints).
//   - benches/throughput.rs create_test_policies: a benchmark, not a test; nothing is asserted.
//   - rbac_nesting's third assertion ("Policy is applied regardless of network": dst_network "remote") is a
//     case, but neither evaluator has a notion of network, so it is the case before it again.
package authztest

import "fmt"

// Commit is the istio/ztunnel commit the cases were read from.
const Commit = "62d826530e5ce85764e309170205b293efcbc80b"

// Case is one upstream assertion: the policies ztunnel holds, one connection, and ztunnel's decision.
type Case struct {
	// Name is the upstream test and its assertion; unique in Cases.
	Name string
	// Upstream is the file and lines the case comes from, at Commit.
	Upstream string
	// RootNamespace is the mesh root namespace ("" for istio-system): a policy there without a selector is
	// GLOBAL.
	RootNamespace string
	Policies      []Policy
	// Attached are the WORKLOAD_SELECTOR policies ("<ns>/<name>") istiod attached to Dst: those whose selector
	// matches its labels.
	Attached []string
	Src      Peer
	Dst      Workload
	// Allowed is ztunnel's decision.
	Allowed bool
	// By is the policy that decided ("<ns>/<name>"): the matching DENY policy, or the matching ALLOW policy; ""
	// when none did (no ALLOW policy applies, or ALLOW policies apply and none matched).
	By string
}

// Policy is one AuthorizationPolicy, in the form each evaluator reads.
type Policy struct {
	Namespace, Name string
	// DryRun is the istio.io/dry-run annotation; istiod passes it on as the Authorization's dryRun.
	DryRun bool
	// Spec is the policy's spec as a user writes it, in YAML.
	Spec string
	// Ztunnel is what istiod sends ztunnel for the policy.
	Ztunnel Authorization
}

// Authorization is an istio.security.Authorization without its name, namespace and dryRun (those are the
// Policy's).
type Authorization struct {
	// Scope is GLOBAL, NAMESPACE or WORKLOAD_SELECTOR.
	Scope string
	// Action is ALLOW or DENY.
	Action string
	// Rules are ztunnel's: the policy matches when any rule does, a rule when all its clauses do, and a clause
	// when any of its matches does.
	Rules [][][]Match
}

// Match is one istio.security.Match: every field set must hold. Strings are written as istiod writes a
// StringMatch from a policy (stringToMatch): "*" is presence, "*x" a suffix, "x*" a prefix, anything else exact.
// Service accounts are "<ns>/<sa>"; addresses "<ip>" or "<ip>/<bits>", the address not masked.
type Match struct {
	Namespaces, NotNamespaces             []string
	Principals, NotPrincipals             []string
	ServiceAccounts, NotServiceAccounts   []string
	SourceIPs, NotSourceIPs               []string
	DestinationIPs, NotDestinationIPs     []string
	DestinationPorts, NotDestinationPorts []uint32
}

// Peer is the connecting side. A non-mesh peer (Mesh false) has no identity: no trust domain, namespace or
// service account.
type Peer struct {
	Mesh                                   bool
	TrustDomain, Namespace, ServiceAccount string
	IP                                     string
}

// Workload is the destination: the pod (its name is how istiod attaches policies to it), and the address and
// port connected to.
type Workload struct {
	Namespace, Name string
	Labels          map[string]string
	IP              string
	Port            uint32
}

// StringCase is one row of src/rbac.rs string_match (lines 727-740): StringMatch::matches on a bare string.
type StringCase struct {
	Name string
	// Match is the StringMatch, written as in Match.
	Match   string
	Matchee string
	Want    bool
}

// StringCases are src/rbac.rs string_match's rows, in upstream order.
var StringCases = []StringCase{
	{"exact match", "foo", "foo", true},
	{"exact mismatch", "foo", "not", false},
	{"exact empty mismatch", "foo", "", false},
	{"prefix match", "foo*", "foobar", true},
	{"prefix mismatch", "foo*", "notfoo", false},
	{"prefix empty mismatch", "foo*", "", false},
	{"suffix match", "*foo", "barfoo", true},
	{"suffix mismatch", "*foo", "foonot", false},
	{"suffix empty mismatch", "*foo", "", false},
	{"presence match", "*", "foo", true},
	{"presence mismatch", "*", "", false},
}

// Cases are the upstream policy decisions, in upstream order.
var Cases = upstreamCases()

// src/rbac.rs tests: plaintext_conn, tls_conn, tls_conn_alt (lines 492-525). The destination's namespace and
// name are placeholders: upstream's connections have only an address.
var (
	rbacDst    = Workload{Namespace: "dst-ns", Name: "dst", IP: "127.0.0.2", Port: 8080}
	rbacDstAlt = Workload{Namespace: "dst-ns", Name: "dst", IP: "127.0.0.4", Port: 9090}
	plaintext  = Peer{IP: "127.0.0.1"}
	tlsPeer    = Peer{Mesh: true, TrustDomain: "td", Namespace: "namespace", ServiceAccount: "account", IP: "127.0.0.1"}
	tlsPeerAlt = Peer{Mesh: true, TrustDomain: "td-alt", Namespace: "ns-alt", ServiceAccount: "sa=alt", IP: "127.0.0.3"}
)

// allowPolicy is src/rbac.rs allow_policy (lines 481-490): a GLOBAL ALLOW policy "namespace/<name>"; its cases
// have "namespace" as their root namespace.
func allowPolicy(name, spec string, rules [][][]Match) Policy {
	return Policy{Namespace: "namespace", Name: name, Spec: spec,
		Ztunnel: Authorization{Scope: "GLOBAL", Action: "ALLOW", Rules: rules}}
}

// rbacCase is one src/rbac.rs assertion, allow_policy(...).matches(conn) == allowed.
func rbacCase(name, lines string, p Policy, src Peer, dst Workload, allowed bool) Case {
	c := Case{Name: name, Upstream: "src/rbac.rs " + lines, RootNamespace: "namespace", Policies: []Policy{p},
		Src: src, Dst: dst, Allowed: allowed}
	if allowed {
		c.By = p.Namespace + "/" + p.Name
	}
	return c
}

// rbacTest expands upstream's rbac_test! macro (src/rbac.rs lines 462-479): one ALLOW policy named after the
// field with one rule of one clause of one match setting only that field, checked against the three
// connections. spec is that policy as a user writes it.
func rbacTest(field, name, spec string, m Match, plain, tls, alt bool) []Case {
	p := allowPolicy(name, spec, [][][]Match{{{m}}})
	const lines = "lines 669-725 (rbac_test! at lines 462-479)"
	test := "rbac_test!(" + field + ") "
	return []Case{
		rbacCase(test+"plaintext_conn", lines, p, plaintext, rbacDst, plain),
		rbacCase(test+"tls_conn", lines, p, tlsPeer, rbacDst, tls),
		rbacCase(test+"tls_conn_alt", lines, p, tlsPeerAlt, rbacDstAlt, alt),
	}
}

// fromSource is a spec with one rule of one source, written as YAML flow: e.g. fromSource("namespaces: [a]").
func fromSource(source string) string {
	return "{rules: [{from: [{source: {" + source + "}}]}]}"
}

func upstreamCases() []Case {
	var cases []Case
	cases = append(cases, rbacCases()...)
	cases = append(cases, stateCases()...)
	return cases
}

// rbacCases are the src/rbac.rs tests.
func rbacCases() []Case {
	var cases []Case

	// rbac_empty_policy (lines 527-541).
	const empty = "lines 527-541"
	cases = append(cases,
		// vec![vec![vec![RbacMatch{..Default::default()}]]] → false: an empty match is skipped, so a clause of
		// only empty matches never matches. An empty source is how a policy writes one.
		rbacCase("rbac_empty_policy [[[empty match]]]", empty,
			allowPolicy("empty", "{rules: [{from: [{source: {}}]}]}", [][][]Match{{{{}}}}), plaintext, rbacDst, false),
		// vec![vec![vec![]]] → true: a clause without matches matches. No spec converts to one (istiod adds a
		// clause only with matches); a rule without clauses decides the same.
		rbacCase("rbac_empty_policy [[[]]]", empty,
			allowPolicy("empty", "{rules: [{}]}", [][][]Match{{{}}}), plaintext, rbacDst, true),
		// vec![vec![]] → true: a rule without clauses matches.
		rbacCase("rbac_empty_policy [[]]", empty,
			allowPolicy("empty", "{rules: [{}]}", [][][]Match{{}}), plaintext, rbacDst, true),
		// vec![] → false: a policy without rules never matches.
		rbacCase("rbac_empty_policy []", empty, allowPolicy("empty", "{}", nil), plaintext, rbacDst, false),
	)

	// rbac_nesting (lines 543-618): one rule, clause 1 = namespace a OR b, clause 2 = port 80.
	const nesting = "lines 543-618"
	nested := allowPolicy("nested",
		`{rules: [{from: [{source: {namespaces: [a]}}, {source: {namespaces: [b]}}], to: [{operation: {ports: ["80"]}}]}]}`,
		[][][]Match{{
			{{Namespaces: []string{"a"}}, {Namespaces: []string{"b"}}},
			{{DestinationPorts: []uint32{80}}},
		}})
	nsPeer := func(ns string) Peer {
		return Peer{Mesh: true, TrustDomain: "td", Namespace: ns, ServiceAccount: "account", IP: "127.0.0.1"}
	}
	dst80 := Workload{Namespace: "dst-ns", Name: "dst", IP: "127.0.0.2", Port: 80}
	dst12345 := Workload{Namespace: "dst-ns", Name: "dst", IP: "127.0.0.2", Port: 12345}
	cases = append(cases,
		rbacCase("rbac_nesting namespace a", nesting, nested, nsPeer("a"), dst80, true),
		rbacCase("rbac_nesting namespace b", nesting, nested, nsPeer("b"), dst80, true),
		// dst_network "remote": neither evaluator has a network, so this is the case above again.
		rbacCase("rbac_nesting namespace b, dst_network remote", nesting, nested, nsPeer("b"), dst80, true),
		rbacCase("rbac_nesting wrong namespace", nesting, nested, nsPeer("bad"), dst80, false),
		rbacCase("rbac_nesting wrong port", nesting, nested, nsPeer("b"), dst12345, false),
	)

	// rbac_multi_rule (lines 620-667): rule 1 = namespace a, rule 2 = namespace b.
	const multi = "lines 620-667"
	multiRule := allowPolicy("nested",
		"{rules: [{from: [{source: {namespaces: [a]}}]}, {from: [{source: {namespaces: [b]}}]}]}",
		[][][]Match{{{{Namespaces: []string{"a"}}}}, {{{Namespaces: []string{"b"}}}}})
	cases = append(cases,
		rbacCase("rbac_multi_rule namespace a", multi, multiRule, nsPeer("a"), dst80, true),
		rbacCase("rbac_multi_rule namespace b", multi, multiRule, nsPeer("b"), dst80, true),
		rbacCase("rbac_multi_rule wrong namespace", multi, multiRule, nsPeer("bad"), dst80, false),
	)

	// rbac_test! cases (lines 669-725), in upstream order: plaintext_conn, tls_conn, tls_conn_alt.
	ns := []string{"namespace"}
	sa := []string{"namespace/account"}
	principal := []string{"td/ns/namespace/sa/account"}
	ip := func(s string) []string { return []string{s} }
	dstIP := func(key, cidr string) string {
		return fmt.Sprintf("{rules: [{when: [{key: destination.ip, %s: [%q]}]}]}", key, cidr)
	}
	for _, t := range []struct {
		field, spec        string
		m                  Match
		plain, tls, tlsAlt bool
	}{
		{"namespaces", fromSource("namespaces: [namespace]"), Match{Namespaces: ns}, false, true, false},
		{"not_namespaces", fromSource("notNamespaces: [namespace]"), Match{NotNamespaces: ns}, true, false, true},
		{"service_accounts", fromSource("serviceAccounts: [namespace/account]"), Match{ServiceAccounts: sa}, false, true, false},
		{"not_service_accounts", fromSource("notServiceAccounts: [namespace/account]"), Match{NotServiceAccounts: sa}, true, false, true},
		{"principals", fromSource("principals: [td/ns/namespace/sa/account]"), Match{Principals: principal}, false, true, false},
		{"not_principals", fromSource("notPrincipals: [td/ns/namespace/sa/account]"), Match{NotPrincipals: principal}, true, false, true},
		{"source_ips", fromSource(`ipBlocks: ["127.0.0.1/32"]`), Match{SourceIPs: ip("127.0.0.1/32")}, true, true, false},
		{"not_source_ips", fromSource(`notIpBlocks: ["127.0.0.1/32"]`), Match{NotSourceIPs: ip("127.0.0.1/32")}, false, false, true},
		{"destination_ips", dstIP("values", "127.0.0.2/32"), Match{DestinationIPs: ip("127.0.0.2/32")}, true, true, false},
		{"not_destination_ips", dstIP("notValues", "127.0.0.2/32"), Match{NotDestinationIPs: ip("127.0.0.2/32")}, false, false, true},
		// cidr_range sets destination_ips, so the macro names the policy "destination_ips".
		{"cidr_range", dstIP("values", "127.0.0.1/24"), Match{DestinationIPs: ip("127.0.0.1/24")}, true, true, true},
		{"destination_ports", `{rules: [{to: [{operation: {ports: ["8080"]}}]}]}`, Match{DestinationPorts: []uint32{8080}}, true, true, false},
		{"not_destination_ports", `{rules: [{to: [{operation: {notPorts: ["8080"]}}]}]}`, Match{NotDestinationPorts: []uint32{8080}}, false, false, true},
	} {
		name := t.field
		if name == "cidr_range" {
			name = "destination_ips"
		}
		cases = append(cases, rbacTest(t.field, name, t.spec, t.m, t.plain, t.tls, t.tlsAlt)...)
	}
	return cases
}

// src/state.rs tests: create_workload (lines 1606-1616) and get_rbac_context (lines 1623-1646).
func stateWorkload(uid int) Workload {
	return Workload{Namespace: fmt.Sprintf("ns%d", uid), Name: "test", IP: fmt.Sprintf("192.168.0.%d", uid), Port: 8080}
}

func statePeer(sa string) Peer {
	return Peer{Mesh: true, TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: sa, IP: "192.168.1.1"}
}

// principalPolicy is a NAMESPACE policy in ns1 with one rule per principal, each of one source.
func principalPolicy(name, action string, dryRun bool, principals ...string) Policy {
	p := Policy{Namespace: "ns1", Name: name, DryRun: dryRun, Ztunnel: Authorization{Scope: "NAMESPACE", Action: action}}
	spec := "{action: " + action + ", rules: ["
	for i, pr := range principals {
		if i > 0 {
			spec += ", "
		}
		spec += fmt.Sprintf("{from: [{source: {principals: [%q]}}]}", pr)
		p.Ztunnel.Rules = append(p.Ztunnel.Rules, [][]Match{{{Principals: []string{pr}}}})
	}
	p.Spec = spec + "]}"
	return p
}

// stateCases are the src/state.rs, src/state/policy.rs and tests/namespaced.rs tests.
func stateCases() []Case {
	var cases []Case

	// src/state.rs assert_rbac_logic_deny_allow (lines 1677-1781). Workloads ns1/test (192.168.0.1) and
	// ns2/test (192.168.0.2), nothing attached; NAMESPACE policies in ns1: dry-run wildcard ALLOW and DENY
	// (rules vec![vec![]], match everything; both named ns1/wildcard upstream under different xDS keys), ALLOW
	// ns1/foo (principal defaultacct), DENY ns1/deny (principal denyacct).
	const logic, logicLines = "assert_rbac_logic_deny_allow", "src/state.rs lines 1677-1781"
	wildcard := func(action string) Policy {
		return Policy{Namespace: "ns1", Name: "wildcard", DryRun: true, Spec: "{action: " + action + ", rules: [{}]}",
			Ztunnel: Authorization{Scope: "NAMESPACE", Action: action, Rules: [][][]Match{{}}}}
	}
	logicPolicies := []Policy{
		wildcard("ALLOW"), wildcard("DENY"),
		principalPolicy("foo", "ALLOW", false, "cluster.local/ns/default/sa/defaultacct"),
		principalPolicy("deny", "DENY", false, "cluster.local/ns/default/sa/denyacct"),
	}
	cases = append(cases,
		// "3. If there are no ALLOW policies for the workload, allow the request." (ns2)
		Case{Name: logic + " ns2, not-defaultacct → is_ok", Upstream: logicLines, Policies: logicPolicies,
			Src: statePeer("not-defaultacct"), Dst: stateWorkload(2), Allowed: true},
		// "4. if any allow policies match, allow"
		Case{Name: logic + " ns1, defaultacct → is_ok", Upstream: logicLines, Policies: logicPolicies,
			Src: statePeer("defaultacct"), Dst: stateWorkload(1), Allowed: true, By: "ns1/foo"},
		// "5. deny the request" → AuthorizationRejectionError::NotAllowed
		Case{Name: logic + " ns1, not-defaultacct → NotAllowed", Upstream: logicLines, Policies: logicPolicies,
			Src: statePeer("not-defaultacct"), Dst: stateWorkload(1)},
		// "2. If there are any DENY policies that match the request, deny the request." →
		// ExplicitlyDenied("ns1", "deny")
		Case{Name: logic + " ns1, denyacct → ExplicitlyDenied(ns1, deny)", Upstream: logicLines, Policies: logicPolicies,
			Src: statePeer("denyacct"), Dst: stateWorkload(1), By: "ns1/deny"},
	)

	// src/state.rs assert_rbac_with_dest_workload_info (lines 1783-1792): no policies → is_ok.
	cases = append(cases, Case{Name: "assert_rbac_with_dest_workload_info ns1, defaultacct → is_ok",
		Upstream: "src/state.rs lines 1783-1792", Src: statePeer("defaultacct"), Dst: stateWorkload(1), Allowed: true})

	// src/state.rs assert_rbac_dry_run_with_real_policies (lines 1794-1895): the decision assertion only (the
	// dry-run log assertions are not cases, see the package comment).
	cases = append(cases, Case{
		Name: "assert_rbac_dry_run_with_real_policies ns1, defaultacct → is_ok", Upstream: "src/state.rs lines 1794-1895",
		Policies: []Policy{
			principalPolicy("real-deny", "DENY", false, "cluster.local/ns/default/sa/denyacct"),
			principalPolicy("dry-run-deny", "DENY", true, "cluster.local/ns/default/sa/defaultacct", "cluster.local/ns/default/sa/denyacct"),
			principalPolicy("real-allow", "ALLOW", false, "cluster.local/ns/default/sa/defaultacct"),
			principalPolicy("dry-run-allow", "ALLOW", true, "cluster.local/ns/default/sa/defaultacct"),
		},
		Src: statePeer("defaultacct"), Dst: stateWorkload(1), Allowed: true, By: "ns1/real-allow",
	})

	// src/state/policy.rs rbac_change_scope (lines 112-144): ALLOW default/test_policy (namespaces exact
	// "whatever") is in the "default" namespace index while NAMESPACE-scoped, and not once re-inserted as
	// WORKLOAD_SELECTOR. Upstream asserts index membership, which assert_rbac reads for a workload in "default"
	// (src/state.rs line 593); a connection the policy does not match makes it observable (our choice: upstream
	// has no connection): NAMESPACE → that ALLOW applies and nothing allows; WORKLOAD_SELECTOR and not attached
	// → no policy applies and the connection is allowed. The selector is our choice too: upstream's policy has
	// none, and it must not select the workload (which has no labels).
	const scope, scopeLines = "rbac_change_scope", "src/state/policy.rs lines 112-144"
	scoped := func(s, selector string) Policy {
		return Policy{Namespace: "default", Name: "test_policy",
			Spec:    "{" + selector + "rules: [{from: [{source: {namespaces: [whatever]}}]}]}",
			Ztunnel: Authorization{Scope: s, Action: "ALLOW", Rules: [][][]Match{{{{Namespaces: []string{"whatever"}}}}}}}
	}
	scopeDst := Workload{Namespace: "default", Name: "test", IP: "10.0.0.2", Port: 8080}
	scopeSrc := Peer{Mesh: true, Namespace: "other", ServiceAccount: "sa", IP: "10.0.0.1"}
	cases = append(cases,
		Case{Name: scope + " NAMESPACE → in get_by_namespace(default)", Upstream: scopeLines,
			Policies: []Policy{scoped("NAMESPACE", "")}, Src: scopeSrc, Dst: scopeDst},
		Case{Name: scope + " WORKLOAD_SELECTOR → not in get_by_namespace(default)", Upstream: scopeLines,
			Policies: []Policy{scoped("WORKLOAD_SELECTOR", "selector: {matchLabels: {app: selected}}, ")},
			Src:      scopeSrc, Dst: scopeDst, Allowed: true},
	)

	// tests/namespaced.rs test_policy (lines 988-1062): NAMESPACE ALLOW default/deny_bypass on principal exact
	// "spiffe://cluster.local/ns/default/sa/waypoint" (never matches: matches_principal strips "spiffe://" from
	// the peer's identity, src/rbac.rs lines 266-274). The client connects to server (default/server, port
	// SERVER_PORT 8080) over HBONE with the certificate of Identity::default(),
	// spiffe://cluster.local/ns/istio-system/sa/ztunnel; upstream expects the access-log error "connection closed
	// due to policy rejection: allow policies exist, but none allowed". The IPs are assigned by the netns test
	// manager upstream and are not referenced by the policy; these are placeholders.
	cases = append(cases, Case{
		Name:     "test_policy → allow policies exist, but none allowed",
		Upstream: "tests/namespaced.rs lines 988-1062",
		Policies: []Policy{{Namespace: "default", Name: "deny_bypass",
			Spec: fromSource(`principals: ["spiffe://cluster.local/ns/default/sa/waypoint"]`),
			Ztunnel: Authorization{Scope: "NAMESPACE", Action: "ALLOW",
				Rules: [][][]Match{{{{Principals: []string{"spiffe://cluster.local/ns/default/sa/waypoint"}}}}}}}},
		Src: Peer{Mesh: true, TrustDomain: "cluster.local", Namespace: "istio-system", ServiceAccount: "ztunnel", IP: "172.16.0.3"},
		Dst: Workload{Namespace: "default", Name: "server", IP: "172.16.0.2", Port: 8080},
	})

	return cases
}
