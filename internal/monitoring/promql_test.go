package monitoring

import (
	"testing"

	. "github.com/onsi/gomega"
)

// TestParse: the metrics and label names of the query shapes the rules and the dashboard use.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		query    string
		want     []Selector
		grouping []string
	}{
		{`up`, []Selector{{Metric: "up"}}, nil},
		{`max by (namespace, schedule) (sum without (result) (labrun_schedule_last_run_steps{result=~"failed|errored"})) > 0`,
			[]Selector{{Metric: "labrun_schedule_last_run_steps", Labels: []string{"result"}}},
			[]string{"namespace", "schedule", "result"}},
		{`time() - (a_seconds or b_seconds) > 2 * c_seconds unless on (namespace) (max by (namespace) (d) == 1)`,
			[]Selector{{Metric: "a_seconds"}, {Metric: "b_seconds"}, {Metric: "c_seconds"}, {Metric: "d"}},
			[]string{"namespace", "namespace"}},
		{`histogram_quantile(0.95, sum by (le) (rate(x_bucket[$__rate_interval]))) * 1e3`,
			[]Selector{{Metric: "x_bucket"}}, []string{"le"}},
		{`sum(increase(runs_total{mesh_restored="false", phase!="a}b"}[15m] offset 5m))`,
			[]Selector{{Metric: "runs_total", Labels: []string{"mesh_restored", "phase"}}}, nil},
		{`max(s{namespace=~"$namespace"}) / ignoring(pod) group_left(lab) t`,
			[]Selector{{Metric: "s", Labels: []string{"namespace"}}, {Metric: "t"}}, []string{"pod", "lab"}},
		{`label_values(created_seconds, namespace)`, []Selector{{Metric: "created_seconds"}}, []string{"namespace"}},
		{`label_replace(m, "dst", "$1", "src", "(.*)")`, []Selector{{Metric: "m"}}, nil},
	} {
		t.Run(tc.query, func(t *testing.T) {
			g := NewWithT(t)
			u := Parse(tc.query)
			g.Expect(u.Selectors).To(ConsistOf(tc.want))
			g.Expect(u.Grouping).To(ConsistOf(tc.grouping))
		})
	}
}
