package authz

import (
	"strconv"
	"strings"
	"testing"
)

// TestProbesFor: the probes that prove a policy, with expectations from every policy of the workload.
func TestProbesFor(t *testing.T) {
	auditor := mesh("demo", "labrun-attacker-1", "10.1.0.99")
	for _, tc := range []struct {
		name   string
		target string // the policy proved: the first
		others []string
		ports  []uint32
		extra  []Peer
		want   []string // "<principal or ip> :<port> allowed|denied by <by or reason>"
		reason string
	}{
		{"the lab guide's ALLOW: the frontend allowed by it, the auditor refused", allowFrontend, nil, []uint32{8080}, nil,
			[]string{"cluster.local/ns/demo/sa/frontend :8080 allowed by demo/backend-allow-frontend-only",
				"cluster.local/ns/demo/sa/labrun-attacker-1 :8080 denied by allow policies exist, but none allowed"}, ""},
		{"an ALLOW of wildcards names no one to call as", `
metadata: {name: tenants, namespace: demo}
spec:
  action: ALLOW
  rules: [{from: [{source: {principals: ["cluster.local/ns/tenant/*"]}}]}]
`, nil, []uint32{80}, nil, nil, "it allows no identity the audit may call as"},
		{"a DENY: the identity it names refused by it, another let through", `
metadata: {name: deny-tenant-app, namespace: demo}
spec:
  action: DENY
  rules: [{from: [{source: {serviceAccounts: ["tenant/app"]}}]}]
`, nil, []uint32{80}, nil,
			[]string{"cluster.local/ns/tenant/sa/app :80 denied by demo/deny-tenant-app",
				"cluster.local/ns/demo/sa/labrun-attacker-1 :80 allowed by no ALLOW policy"}, ""},
		{"STRICT-like DENY of peers without identity, proved with a non-mesh caller", `
metadata: {name: no-plaintext, namespace: demo}
spec:
  action: DENY
  rules: [{from: [{source: {notPrincipals: ["*"]}}]}]
`, nil, []uint32{80}, []Peer{nonMesh},
			[]string{"10.3.0.8 :80 denied by demo/no-plaintext", "cluster.local/ns/demo/sa/labrun-attacker-1 :80 allowed by no ALLOW policy"}, ""},
		{"an ALLOW another policy's DENY overrides for everyone it names", allowFrontend, []string{`
metadata: {name: deny-frontend, namespace: demo}
spec:
  action: DENY
  rules: [{from: [{source: {principals: ["cluster.local/ns/demo/sa/frontend"]}}]}]
`}, []uint32{8080}, nil, nil, "no connection the audit can make (as cluster.local/ns/demo/sa/frontend, on ports [8080]) is one it allows"},
		{"an ALLOW on one port: proved there, and the other port refused", `
metadata: {name: admin-port, namespace: demo}
spec:
  selector: {matchLabels: {app: backend}}
  action: ALLOW
  rules: [{from: [{source: {principals: ["cluster.local/ns/demo/sa/frontend"]}}], to: [{operation: {ports: ["9090"]}}]}]
`, nil, []uint32{8080, 9090}, nil,
			[]string{"cluster.local/ns/demo/sa/frontend :9090 allowed by demo/admin-port",
				"cluster.local/ns/demo/sa/frontend :8080 denied by allow policies exist, but none allowed"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := Read(policy(t, tc.target), Options{})
			all := []Reading{target}
			for _, doc := range tc.others {
				all = append(all, Read(policy(t, doc), Options{}))
			}
			probes, reason := ProbesFor(target, all, backend, tc.ports, append(Candidates(target), tc.extra...), auditor)
			var got []string
			for _, p := range probes {
				who := p.Src.principal()
				if who == "" {
					who = p.Src.IP.String()
				}
				verdict, by := "denied", p.Want.By
				if p.Want.Allowed {
					verdict = "allowed"
				}
				if by == "" {
					by = p.Want.Reason
				}
				got = append(got, who+" :"+strconv.FormatUint(uint64(p.Port), 10)+" "+verdict+" by "+by)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") || reason != tc.reason {
				t.Errorf("probes:\n%s\nreason %q\nwant:\n%s\nreason %q", strings.Join(got, "\n"), reason, strings.Join(tc.want, "\n"), tc.reason)
			}
		})
	}
}

// TestPlaintextProbes: plaintext is refused on a STRICT port whatever the AuthorizationPolicies say, and on a
// PERMISSIVE port (port-level PERMISSIVE) it meets them.
func TestPlaintextProbes(t *testing.T) {
	modes := map[uint32]string{9090: "PERMISSIVE", 8080: Strict}
	for _, tc := range []struct {
		name     string
		policies []string
		want     []string
	}{
		{"no AuthorizationPolicy", nil, []string{"8080 denied STRICT: a peer without identity is refused", "9090 allowed no ALLOW policy"}},
		{"the lab guide's ALLOW", []string{allowFrontend}, []string{"8080 denied STRICT: a peer without identity is refused",
			"9090 denied allow policies exist, but none allowed"}},
		{"an ALLOW of the plaintext source's addresses", []string{`
metadata: {name: legacy, namespace: demo}
spec:
  action: ALLOW
  rules: [{from: [{source: {ipBlocks: ["10.3.0.0/16"]}}]}]
`}, []string{"8080 denied STRICT: a peer without identity is refused", "9090 allowed allowed by an ALLOW policy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var all []Reading
			for _, doc := range tc.policies {
				all = append(all, Read(policy(t, doc), Options{}))
			}
			var got []string
			for _, p := range PlaintextProbes(modes, all, backend, nonMesh) {
				v := "denied"
				if p.Want.Allowed {
					v = "allowed"
				}
				got = append(got, strconv.FormatUint(uint64(p.Port), 10)+" "+v+" "+p.Want.Reason)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
