package authztest

import (
	"slices"
	"testing"
)

// TestCases checks the table itself: every upstream assertion is there once, and each case is well formed.
func TestCases(t *testing.T) {
	if len(Cases) != 60 {
		t.Errorf("%d cases, want the 60 transcribed from ztunnel %s", len(Cases), Commit)
	}
	seen := map[string]bool{}
	for _, c := range Cases {
		if seen[c.Name] {
			t.Errorf("%q: name used twice", c.Name)
		}
		seen[c.Name] = true
		if c.Upstream == "" {
			t.Errorf("%q: no upstream reference", c.Name)
		}
		var keys []string
		for _, p := range c.Policies {
			keys = append(keys, p.Namespace+"/"+p.Name)
			if !slices.Contains([]string{"GLOBAL", "NAMESPACE", "WORKLOAD_SELECTOR"}, p.Ztunnel.Scope) ||
				!slices.Contains([]string{"ALLOW", "DENY"}, p.Ztunnel.Action) || p.Spec == "" {
				t.Errorf("%q: policy %s/%s: scope %q, action %q, spec %q", c.Name, p.Namespace, p.Name,
					p.Ztunnel.Scope, p.Ztunnel.Action, p.Spec)
			}
		}
		for _, k := range append(slices.Clone(c.Attached), c.By) {
			if k != "" && !slices.Contains(keys, k) {
				t.Errorf("%q: %s is not one of its policies %v", c.Name, k, keys)
			}
		}
	}
}
