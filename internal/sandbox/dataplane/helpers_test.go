package dataplane

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/ambientlab/labrun-operator/internal/sandbox/policy"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// The lab guide's demo: a captured frontend, attacker and backend in "demo"
// (client and backend on different nodes, so both ztunnels log), and an
// uncaptured namespace "legacy".
const (
	nodeA = "node-a"
	nodeB = "node-b"

	backendIP  = "10.42.1.7"
	frontendIP = "10.42.0.5"
	webIP      = "10.42.1.30"

	backendService = "backend.demo.svc.cluster.local"

	// Written out as ISTIO-FACTS.md ("ztunnel access logs") gives them.
	errNoneAllowed  = "connection closed due to policy rejection: allow policies exist, but none allowed"
	errStaticStrict = "connection closed due to policy rejection: explicitly denied by: istio-system/istio_converted_static_strict"
	err401          = "http status: 401 Unauthorized"
)

var (
	frontend = Workload{Namespace: "demo", Name: "frontend-6d8f9"}
	attacker = Workload{Namespace: "demo", Name: "attacker-5c7b2"}
	plain    = Workload{Namespace: "legacy", Name: "curl-plain"}
)

func seedSnapshot() Snapshot {
	return Snapshot{
		Workloads: []Workload{
			{Namespace: "demo", Name: "frontend-6d8f9", ServiceAccount: "frontend", Node: nodeA, IP: frontendIP,
				Labels: map[string]string{"app": "frontend"}, Mesh: true},
			{Namespace: "demo", Name: "attacker-5c7b2", ServiceAccount: "attacker", Node: nodeA, IP: "10.42.0.9",
				Labels: map[string]string{"app": "attacker"}, Mesh: true},
			{Namespace: "demo", Name: "backend-7f9c4", ServiceAccount: "backend", Node: nodeB, IP: backendIP,
				Labels: map[string]string{"app": "backend", "version": "v1"}, Mesh: true},
			{Namespace: "legacy", Name: "curl-plain", Node: nodeA, IP: "10.42.0.20"},
			{Namespace: "legacy", Name: "web-1", Node: nodeB, IP: webIP, Labels: map[string]string{"app": "web"}},
		},
		Services: []Service{
			{Namespace: "demo", Name: "backend", Selector: map[string]string{"app": "backend"},
				Ports: []ServicePort{{Port: 80, TargetPort: 8080}}, ClusterIP: "10.96.0.20"},
			{Namespace: "demo", Name: "empty", Selector: map[string]string{"app": "nobody"},
				Ports: []ServicePort{{Port: 80}}},
			{Namespace: "legacy", Name: "web", Selector: map[string]string{"app": "web"},
				Ports: []ServicePort{{Port: 80, TargetPort: 8080}}},
		},
	}
}

// Policy keys as istiod names them.
const (
	staticStrictKey = "istio-system/istio_converted_static_strict"
	seedAllowKey    = "demo/backend-allow-frontend-only"
)

// istiodState is what istiod sends ztunnel for the demo, in the shapes the real istiod produced against the
// sandbox (internal/sandbox/policy/testdata): with strict, the static DENY for peers without a principal,
// attached to every captured workload (a mesh-wide STRICT PeerAuthentication); with allow, the guide's
// backend-allow-frontend-only, attached to backend.
func istiodState(strict, allow bool) *policy.Ztunnel {
	presence := json.RawMessage(`{}`)
	exact := func(s string) policy.StringMatch { return policy.StringMatch{Exact: &s} }
	var a policy.Ambientz
	attach := map[string][]string{}
	if strict {
		a.Policies = append(a.Policies, policy.Authorization{Name: "istio_converted_static_strict", Namespace: "istio-system",
			Scope: "WORKLOAD_SELECTOR", Action: "DENY", Groups: []policy.Group{{Rules: []policy.Rules{{Matches: []policy.Match{
				{NotPrincipals: []policy.StringMatch{{Presence: &presence}}}}}}}}})
		for _, w := range seedSnapshot().Workloads {
			if w.Mesh {
				attach[w.Name] = append(attach[w.Name], staticStrictKey)
			}
		}
	}
	if allow {
		a.Policies = append(a.Policies, policy.Authorization{Name: "backend-allow-frontend-only", Namespace: "demo",
			Scope: "WORKLOAD_SELECTOR", Groups: []policy.Group{{Rules: []policy.Rules{{Matches: []policy.Match{
				{Principals: []policy.StringMatch{exact("cluster.local/ns/demo/sa/frontend"), exact("cluster.local/ns/kong/sa/kong-gateway")}}}}}}}})
		attach["backend-7f9c4"] = append(attach["backend-7f9c4"], seedAllowKey)
	}
	for _, w := range seedSnapshot().Workloads {
		a.Workloads = append(a.Workloads, policy.AmbientWorkload{Name: w.Name, Namespace: w.Namespace, AuthorizationPolicies: attach[w.Name]})
	}
	return policy.NewZtunnel(a)
}

// has tells whether the state in force holds the policy.
func has(d *Dataplane, key string) bool {
	z, ok := d.Effective().(*policy.Ztunnel)
	return ok && z.Has(key)
}

// logSink collects access-log lines by node.
type logSink struct {
	mu    sync.Mutex
	lines []sinkLine
}

type sinkLine struct{ node, line string }

func (s *logSink) write(node, line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, sinkLine{node, line})
}

func (s *logSink) all() []sinkLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkLine(nil), s.lines...)
}

// entries parses the lines one node's ztunnel wrote in one direction.
func (s *logSink) entries(g Gomega, node, direction string) []ztunnel.Entry {
	var out []ztunnel.Entry
	for _, l := range s.all() {
		e, err := ztunnel.ParseLine(l.line)
		g.Expect(err).NotTo(HaveOccurred(), "line %q", l.line)
		if l.node == node && e.Direction() == direction {
			out = append(out, e)
		}
	}
	return out
}

// only returns the single line of node/direction.
func (s *logSink) only(g Gomega, node, direction string) ztunnel.Entry {
	es := s.entries(g, node, direction)
	g.Expect(es).To(HaveLen(1), "%s lines at %s", direction, node)
	return es[0]
}

// newDataplane starts a Dataplane with the seed snapshot and a log sink, and
// closes it when the test ends.
func newDataplane(t *testing.T, o Options) (*Dataplane, *logSink) {
	t.Helper()
	sink := &logSink{}
	o.Log = sink.write
	d, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	d.SetSnapshot(seedSnapshot())
	return d, sink
}

// get requests url as src would, through the data plane, on a fresh
// connection: the way the prober does it.
func get(d *Dataplane, src Workload, url string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	transport := &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.Dial(ctx, src, network, addr)
		},
	}
	defer transport.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}
