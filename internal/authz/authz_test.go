package authz

import (
	"net/netip"
	"strings"
	"testing"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"sigs.k8s.io/yaml"
)

// policy reads an AuthorizationPolicy from YAML, as it is stored.
func policy(t *testing.T, doc string) Policy {
	t.Helper()
	ap := &securityv1.AuthorizationPolicy{}
	if err := yaml.Unmarshal([]byte(doc), ap); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	return FromObject(ap)
}

func mesh(ns, sa, ip string) Peer {
	return Peer{Mesh: true, Namespace: ns, ServiceAccount: sa, IP: netip.MustParseAddr(ip)}
}

func plain(ip string) Peer { return Peer{IP: netip.MustParseAddr(ip)} }

var (
	frontend = mesh("demo", "frontend", "10.1.0.5")
	attacker = mesh("demo", "attacker", "10.1.0.6")
	other    = mesh("tenant", "app", "10.2.0.7")
	nonMesh  = plain("10.3.0.8")
	backend  = Workload{Namespace: "demo", Labels: map[string]string{"app": "backend"}, IP: netip.MustParseAddr("10.1.0.9")}
	bystand  = Workload{Namespace: "demo", Labels: map[string]string{"app": "bystander"}, IP: netip.MustParseAddr("10.1.0.10")}
	elsewhr  = Workload{Namespace: "tenant", Labels: map[string]string{"app": "backend"}, IP: netip.MustParseAddr("10.2.0.11")}
)

// allowFrontend is the lab guide's policy: ALLOW only the frontend's identity to the backend.
const allowFrontend = `
metadata: {name: backend-allow-frontend-only, namespace: demo}
spec:
  selector: {matchLabels: {app: backend}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/demo/sa/frontend"]}
`

type probe struct {
	src     Peer
	dst     Workload
	port    uint32
	allowed bool
	by      string // the deciding policy's key, or ztunnel's reason when none
}

// TestDecide: ztunnel's order (ISTIO-FACTS.md: CUSTOM is not sent; a matching DENY denies; no ALLOW policy
// allows; a matching ALLOW allows; otherwise "allow policies exist, but none allowed") and its L4 fields, each row
// with the policies as a user writes them.
func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name     string
		policies []string
		probes   []probe
	}{
		{"no policy allows", nil, []probe{{frontend, backend, 8080, true, "no ALLOW policy"}, {nonMesh, backend, 8080, true, "no ALLOW policy"}}},
		{"the lab guide's ALLOW: the frontend only", []string{allowFrontend}, []probe{
			{frontend, backend, 8080, true, "demo/backend-allow-frontend-only"},
			{attacker, backend, 8080, false, "allow policies exist, but none allowed"},
			{nonMesh, backend, 8080, false, "allow policies exist, but none allowed"},
			{attacker, bystand, 8080, true, "no ALLOW policy"}, // the selector picks the backend only
		}},
		{"a matching DENY wins over a matching ALLOW", []string{allowFrontend, `
metadata: {name: deny-demo, namespace: demo}
spec:
  action: DENY
  rules: [{from: [{source: {namespaces: ["demo"]}}]}]
`}, []probe{{frontend, backend, 8080, false, "demo/deny-demo"}, {other, backend, 8080, false, "allow policies exist, but none allowed"}}},
		{"STRICT as istiod writes it: DENY notPrincipals *", []string{`
metadata: {name: strict, namespace: istio-system}
spec:
  action: DENY
  rules: [{from: [{source: {notPrincipals: ["*"]}}]}]
`}, []probe{{nonMesh, backend, 8080, false, "istio-system/strict"}, {frontend, elsewhr, 8080, true, "no ALLOW policy"}}},
		{"principals: prefix, suffix, presence", []string{`
metadata: {name: wildcards, namespace: demo}
spec:
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/tenant/*"]}}]
  - from: [{source: {principals: ["*/sa/frontend"]}}]
`}, []probe{{other, backend, 80, true, "demo/wildcards"}, {frontend, backend, 80, true, "demo/wildcards"},
			{attacker, backend, 80, false, "allow policies exist, but none allowed"}}},
		{"namespaces, notNamespaces and a non-mesh source", []string{`
metadata: {name: ns, namespace: demo}
spec:
  action: ALLOW
  rules: [{from: [{source: {namespaces: ["*"], notNamespaces: ["tenant"]}}]}]
`}, []probe{{frontend, backend, 80, true, "demo/ns"}, {other, backend, 80, false, "allow policies exist, but none allowed"},
			{nonMesh, backend, 80, false, "allow policies exist, but none allowed"}}},
		{"serviceAccounts: in the policy's namespace, or ns/sa", []string{`
metadata: {name: sas, namespace: demo}
spec:
  action: ALLOW
  rules: [{from: [{source: {serviceAccounts: ["frontend", "tenant/app"]}}]}]
`}, []probe{{frontend, backend, 80, true, "demo/sas"}, {other, backend, 80, true, "demo/sas"},
			{attacker, backend, 80, false, "allow policies exist, but none allowed"}}},
		{"ipBlocks and notIpBlocks (a non-mesh source has an address)", []string{`
metadata: {name: ips, namespace: demo}
spec:
  action: ALLOW
  rules: [{from: [{source: {ipBlocks: ["10.0.0.0/8"], notIpBlocks: ["10.1.0.6"]}}]}]
`}, []probe{{nonMesh, backend, 80, true, "demo/ips"}, {attacker, backend, 80, false, "allow policies exist, but none allowed"}}},
		{"from and to: both must match; the sources of one from are OR-ed", []string{`
metadata: {name: ports, namespace: demo}
spec:
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/demo/sa/frontend"]}}, {source: {namespaces: ["tenant"]}}]
    to: [{operation: {ports: ["8080"]}}]
`}, []probe{{frontend, backend, 8080, true, "demo/ports"}, {other, backend, 8080, true, "demo/ports"},
			{frontend, backend, 9090, false, "allow policies exist, but none allowed"}}},
		{"notPorts, and a port that is no number matches nothing", []string{`
metadata: {name: not-admin, namespace: demo}
spec:
  action: DENY
  rules: [{to: [{operation: {notPorts: ["8080"]}}]}]
`, `
metadata: {name: named-port, namespace: demo}
spec:
  action: DENY
  rules: [{to: [{operation: {ports: ["http"]}}]}]
`}, []probe{{frontend, backend, 9090, false, "demo/not-admin"}, {frontend, backend, 8080, true, "no ALLOW policy"}}},
		{"when: source.ip and destination.port", []string{`
metadata: {name: when, namespace: demo}
spec:
  action: DENY
  rules: [{when: [{key: source.ip, values: ["10.3.0.0/16"]}, {key: destination.port, values: ["8080"]}]}]
`}, []probe{{nonMesh, backend, 8080, false, "demo/when"}, {nonMesh, backend, 9090, true, "no ALLOW policy"},
			{frontend, backend, 8080, true, "no ALLOW policy"}}},
		{"ALLOW without rules allows nothing; rules: [{}] allows everything", []string{`
metadata: {name: nothing, namespace: demo}
spec: {selector: {matchLabels: {app: backend}}, action: ALLOW}
`, `
metadata: {name: everything, namespace: demo}
spec:
  selector: {matchLabels: {app: bystander}}
  action: ALLOW
  rules: [{}]
`}, []probe{{frontend, backend, 80, false, "allow policies exist, but none allowed"}, {nonMesh, bystand, 80, true, "demo/everything"}}},
		{"DENY rules: [{}] denies everything; DENY without rules nothing", []string{`
metadata: {name: deny-all, namespace: demo}
spec:
  selector: {matchLabels: {app: backend}}
  action: DENY
  rules: [{}]
`, `
metadata: {name: deny-none, namespace: demo}
spec: {selector: {matchLabels: {app: bystander}}, action: DENY}
`}, []probe{{frontend, backend, 80, false, "demo/deny-all"}, {frontend, bystand, 80, true, "no ALLOW policy"}}},
		{"an empty source is skipped by ztunnel: it matches nothing", []string{`
metadata: {name: empty-source, namespace: demo}
spec:
  action: ALLOW
  rules: [{from: [{source: {}}]}]
`}, []probe{{frontend, backend, 80, false, "allow policies exist, but none allowed"}}},
		{"scope: the root namespace is every namespace, another namespace is not", []string{`
metadata: {name: root-deny, namespace: istio-system}
spec:
  action: DENY
  rules: [{from: [{source: {principals: ["cluster.local/ns/demo/sa/attacker"]}}]}]
`, `
metadata: {name: tenant-only, namespace: tenant}
spec:
  action: DENY
  rules: [{}]
`}, []probe{{attacker, elsewhr, 80, false, "istio-system/root-deny"}, {frontend, backend, 80, true, "no ALLOW policy"},
			{frontend, elsewhr, 80, false, "tenant/tenant-only"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var read []Reading
			for _, doc := range tc.policies {
				read = append(read, Read(policy(t, doc), Options{}))
			}
			for _, p := range tc.probes {
				d := Decide(read, p.src, p.dst, p.port)
				got := d.By
				if got == "" {
					got = d.Reason
				}
				if d.Allowed != p.allowed || got != p.by {
					t.Errorf("%s → %s/%v:%d: allowed=%v by %q; want allowed=%v by %q", p.src.principal()+p.src.IP.String(),
						p.dst.Namespace, p.dst.Labels, p.port, d.Allowed, got, p.allowed, p.by)
				}
			}
		})
	}
}

// TestRead: what istiod does with a policy before ztunnel sees it, in its own words where it has some
// (pilot/pkg/serviceregistry/ambient/authorization.go), and what is then enforced.
func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name   string
		doc    string
		o      Options
		effect Effect
		says   string
		probes []probe
	}{
		{"as written", allowFrontend, Options{}, AsWritten, "", nil},
		{"ALLOW with HTTP rules: the rules go, the workload is denied all", `
metadata: {name: get-only, namespace: demo}
spec:
  selector: {matchLabels: {app: backend}}
  action: ALLOW
  rules: [{from: [{source: {principals: ["cluster.local/ns/demo/sa/frontend"]}}], to: [{operation: {methods: ["GET"]}}]}]
`, Options{}, Narrowed, "ztunnel does not support HTTP attributes (found: methods). In ambient mode you must use a waypoint proxy to enforce HTTP rules. Within an ALLOW policy, rules matching HTTP attributes are omitted.",
			[]probe{{frontend, backend, 80, false, "allow policies exist, but none allowed"}}},
		{"DENY with HTTP and L4 parts: enforced without the HTTP parts", `
metadata: {name: no-post-8080, namespace: demo}
spec:
  action: DENY
  rules: [{to: [{operation: {methods: ["POST"], ports: ["8080"]}}]}]
`, Options{}, Narrowed, "DENY policy with HTTP attributes is enforced without the HTTP rules",
			[]probe{{frontend, backend, 8080, false, "demo/no-post-8080"}, {frontend, backend, 9090, true, "no ALLOW policy"}}},
		{"DENY with HTTP parts only: no effect", `
metadata: {name: no-post, namespace: demo}
spec:
  action: DENY
  rules: [{to: [{operation: {methods: ["POST"]}}], when: [{key: "request.headers[x-test]", values: ["1"]}]}]
`, Options{}, NoEffect, "found: methods, request.headers[x-test]). In ambient mode you must use a waypoint proxy to enforce HTTP rules. After omitting unsupported HTTP attributes, this DENY policy has no enforceable rules",
			[]probe{{attacker, backend, 8080, true, "no ALLOW policy"}}},
		{"selector {}", `
metadata: {name: empty-selector, namespace: demo}
spec: {selector: {}, action: DENY, rules: [{}]}
`, Options{}, NoEffect, "selector {} applies to no workload", []probe{{attacker, backend, 80, true, "no ALLOW policy"}}},
		{"another revision", `
metadata: {name: canary, namespace: demo, labels: {istio.io/rev: canary}}
spec: {action: DENY, rules: [{}]}
`, Options{}, NoEffect, "istio.io/rev=canary", []probe{{attacker, backend, 80, true, "no ALLOW policy"}}},
		{"this revision", `
metadata: {name: canary, namespace: demo, labels: {istio.io/rev: canary}}
spec: {action: DENY, rules: [{}]}
`, Options{Revision: "canary"}, AsWritten, "", []probe{{attacker, backend, 80, false, "demo/canary"}}},
		{"dry run, Istio 1.30 on", `
metadata: {name: dry, namespace: demo, annotations: {istio.io/dry-run: "true"}}
spec: {action: DENY, rules: [{}]}
`, Options{}, NoEffect, "dry run", []probe{{attacker, backend, 80, true, "no ALLOW policy"}}},
		{"dry run, Istio 1.28 and 1.29 enforce it", `
metadata: {name: dry, namespace: demo, annotations: {istio.io/dry-run: "true"}}
spec: {action: DENY, rules: [{}]}
`, Options{DryRunEnforced: true}, AsWritten, "", []probe{{attacker, backend, 80, false, "demo/dry"}}},
		{"CUSTOM is not sent to ztunnel", `
metadata: {name: ext, namespace: demo}
spec: {action: CUSTOM, provider: {name: opa}, rules: [{}]}
`, Options{}, NoEffect, "ztunnel does not support the CUSTOM action", nil},
		{"targetRefs: a waypoint's", `
metadata: {name: waypoint, namespace: demo}
spec:
  targetRefs: [{kind: Service, group: "", name: backend}]
  action: DENY
  rules: [{}]
`, Options{}, Untestable, "waypoint", []probe{{attacker, backend, 80, true, "no ALLOW policy"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Read(policy(t, tc.doc), tc.o)
			if r.Effect != tc.effect || !strings.Contains(r.Reason, tc.says) {
				t.Fatalf("%s: %q; want %s saying %q", r.Effect, r.Reason, tc.effect, tc.says)
			}
			for _, p := range tc.probes {
				d := Decide([]Reading{r}, p.src, p.dst, p.port)
				got := d.By
				if got == "" {
					got = d.Reason
				}
				if d.Allowed != p.allowed || got != p.by {
					t.Errorf("%s → port %d: allowed=%v by %q; want allowed=%v by %q", p.src.principal(), p.port, d.Allowed, got, p.allowed, p.by)
				}
			}
		})
	}
}
