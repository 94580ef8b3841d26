package monitoring_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// renderPrometheus renders config/prometheus as `kubectl apply -k config/prometheus` would, by kind.
func renderPrometheus(t *testing.T) map[string][]map[string]any {
	t.Helper()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(),
		filepath.Join(root, "config", "prometheus"))
	if err != nil {
		t.Fatalf("rendering config/prometheus: %v", err)
	}
	out := map[string][]map[string]any{}
	for _, r := range res.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		out[r.GetKind()] = append(out[r.GetKind()], m)
	}
	return out
}

// ruleFile reads config/prometheus/rules.yaml, the rule groups promtool checks and tests.
func ruleFile(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "config", "prometheus", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string]any{}
	if err := yaml.Unmarshal(data, &groups); err != nil {
		t.Fatalf("reading config/prometheus/rules.yaml: %v", err)
	}
	return groups
}

// TestPrometheusRuleMatchesRuleFile: the PrometheusRule that config/prometheus installs carries exactly the rule
// groups of rules.yaml (the file promtool tests), in the operator's namespace; the ServiceMonitor, when present,
// keeps the metrics' own namespace label (honorLabels), which the rules and the dashboard select on.
func TestPrometheusRuleMatchesRuleFile(t *testing.T) {
	g := NewWithT(t)
	objs := renderPrometheus(t)
	g.Expect(objs["PrometheusRule"]).To(HaveLen(1))
	rule := objs["PrometheusRule"][0]
	g.Expect(rule).To(HaveKeyWithValue("metadata", HaveKeyWithValue("namespace", "labrun-system")))
	g.Expect(rule["spec"]).To(Equal(ruleFile(t)), "prometheus_rule.yaml's spec must be rules.yaml")
	for _, sm := range objs["ServiceMonitor"] {
		g.Expect(sm).To(HaveKeyWithValue("metadata", HaveKeyWithValue("namespace", "labrun-system")))
		for _, ep := range sm["spec"].(map[string]any)["endpoints"].([]any) {
			g.Expect(ep).To(HaveKeyWithValue("honorLabels", true))
		}
	}
}

// TestPromtool checks rules.yaml and runs its unit tests (rules_test.yaml) with Prometheus's own promtool,
// built by `make promtool` into bin/promtool. CI must have it; elsewhere the test is skipped without it.
func TestPromtool(t *testing.T) {
	promtool := filepath.Join(root, "bin", "promtool")
	if _, err := os.Stat(promtool); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing: `make test` builds it (make promtool)", promtool)
		}
		t.Skipf("%s is missing: run `make promtool` to check the alert rules with Prometheus's promtool", promtool)
	}
	dir := filepath.Join(root, "config", "prometheus")
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "rules_test.yaml"}} {
		t.Run(args[0], func(t *testing.T) {
			cmd := exec.Command(promtool, args...)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("promtool %v: %v\n%s", args, err, out)
			}
			t.Logf("promtool %v:\n%s", args, out)
		})
	}
}
