package controllers

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
	"github.com/ambientlab/labrun-operator/internal/probe"
)

// TestCoveragePairs: the pairs grow with nodes plus endpoints, each node calls two endpoints and each endpoint is
// called from two nodes (where there are two), and with one or two endpoints they are every pair.
func TestCoveragePairs(t *testing.T) {
	for n := 1; n <= 12; n++ {
		for e := 1; e <= 12; e++ {
			calls := coveragePairs(n, e)
			total, from := 0, make([]int, e)
			for i, c := range calls {
				total += len(c)
				if len(c) < min(2, e) || !slices.IsSorted(c) || len(slices.Compact(slices.Clone(c))) != len(c) {
					t.Fatalf("n=%d e=%d: node %d calls %v", n, e, i, c)
				}
				for _, j := range c {
					from[j]++
				}
			}
			for j, k := range from {
				if k < min(2, n) {
					t.Fatalf("n=%d e=%d: endpoint %d is called from %d node(s)", n, e, j, k)
				}
			}
			if total > 2*(n+e) || (e <= 2 && total != n*e) {
				t.Fatalf("n=%d e=%d: %d pairs", n, e, total)
			}
		}
	}
	if got := len(slices.Concat(coveragePairs(300, 20)...)); got > 640 {
		t.Errorf("300 nodes, 20 endpoints: %d pairs, want at most 640 (the matrix is 6000)", got)
	}
}

// TestAttributeWithPairs: with the reduced pairs, a failing source node or a failing endpoint is still named, and
// nothing else is.
func TestAttributeWithPairs(t *testing.T) {
	const n, e = 7, 5
	f := fleet{calls: map[string][]int{}}
	for i := range n {
		f.nodes = append(f.nodes, fmt.Sprintf("node-%d", i))
	}
	for j := range e {
		f.endpoints = append(f.endpoints, endpoint{pod: fmt.Sprintf("backend-%d", j), node: fmt.Sprintf("node-%d", j+1), ip: fmt.Sprintf("10.0.0.%d", j+1), port: 80})
	}
	for i, c := range coveragePairs(n, e) {
		f.calls[f.nodes[i]] = c
	}
	judged := func(pass bool) steps.Judgement {
		a := &probe.Attempt{Observed: "denied", ExitCode: 56, Reason: "reset"}
		if !pass {
			a = &probe.Attempt{Observed: "allowed", HTTPCode: 200}
		}
		return steps.Judgement{Pass: pass, Last: a}
	}
	pairsWith := func(fails func(node string, ep endpoint) bool) []pair {
		var out []pair
		for _, node := range f.nodes {
			for _, j := range f.calls[node] {
				out = append(out, pair{node: node, endpoint: f.endpoints[j], j: judged(!fails(node, f.endpoints[j]))})
			}
		}
		return out
	}
	check := func(t *testing.T, pairs []pair, role labsv1.CoverageRole, who, named string) {
		cov, msg := attribute(f, pairs)
		for _, c := range cov {
			want := labsv1.VerdictPass
			if c.Role == role && (c.Node == who && role == labsv1.RoleSource || c.Endpoint != "" && strings.HasPrefix(c.Endpoint, who+" ")) {
				want = labsv1.VerdictFail
			}
			if c.Verdict != want {
				t.Errorf("coverage %+v: want %s", c, want)
			}
		}
		if !strings.Contains(msg, named) || strings.Count(msg, "node-") != 1+strings.Count(named, "node-")-1 {
			t.Errorf("%q: want it to name %q and nothing else", msg, named)
		}
	}
	for _, node := range f.nodes {
		t.Run("source "+node, func(t *testing.T) {
			check(t, pairsWith(func(n string, _ endpoint) bool { return n == node }), labsv1.RoleSource, node, "source node "+node+" ")
		})
	}
	for _, ep := range f.endpoints {
		t.Run("endpoint "+ep.pod, func(t *testing.T) {
			check(t, pairsWith(func(_ string, x endpoint) bool { return x.pod == ep.pod }), labsv1.RoleDestination, ep.pod,
				"destination node "+ep.node+" (endpoint "+ep.String())
		})
	}
}
