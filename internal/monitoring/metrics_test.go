package monitoring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/monitoring"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	labscheme "github.com/ambientlab/labrun-operator/internal/scheme"
)

// series is one exported sample: its labels and value.
type series struct {
	labels map[string]string
	value  float64
}

// gather reads controller-runtime's registry, which the manager's /metrics endpoint serves, by metric name. A
// histogram's _bucket (with le), _sum and _count are listed under their own names, as PromQL sees them.
func gather(g Gomega) map[string][]series {
	mfs, err := metrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred(), "gathering the manager's metrics")
	out := map[string][]series{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.GetHistogram() != nil:
				h := m.GetHistogram()
				out[mf.GetName()+"_sum"] = append(out[mf.GetName()+"_sum"], series{labels, h.GetSampleSum()})
				out[mf.GetName()+"_count"] = append(out[mf.GetName()+"_count"], series{labels, float64(h.GetSampleCount())})
				le := map[string]string{"le": ""}
				for k, v := range labels {
					le[k] = v
				}
				out[mf.GetName()+"_bucket"] = append(out[mf.GetName()+"_bucket"], series{le, 0})
			case m.GetCounter() != nil:
				out[mf.GetName()] = append(out[mf.GetName()], series{labels, m.GetCounter().GetValue()})
			default:
				out[mf.GetName()] = append(out[mf.GetName()], series{labels, m.GetGauge().GetValue()})
			}
		}
	}
	return out
}

// of returns the series of name whose labels include want.
func of(all map[string][]series, name string, want map[string]string) []series {
	var out []series
	for _, s := range all[name] {
		match := true
		for k, v := range want {
			match = match && s.labels[k] == v
		}
		if match {
			out = append(out, s)
		}
	}
	return out
}

// value is the one series of name matching want, or fails.
func value(g Gomega, name string, want map[string]string) float64 {
	got := of(gather(g), name, want)
	g.Expect(got).To(HaveLen(1), "one series %s%v", name, want)
	return got[0].value
}

var runCounter int

// ownedRun is a run as schedule ls creates it: its label and its controller reference.
func ownedRun(t *testing.T, ls *labsv1.LabSchedule, mode labsv1.Mode, names ...labsv1.LabName) *labsv1.LabRun {
	t.Helper()
	run := newRun(mode, names...)
	run.Labels = map[string]string{labsv1.LabelSchedule: ls.Name}
	scheme, err := labscheme.New()
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	NewWithT(t).Expect(controllerutil.SetControllerReference(ls, run, scheme)).To(Succeed())
	return run
}

func newRun(mode labsv1.Mode, names ...labsv1.LabName) *labsv1.LabRun {
	runCounter++
	return &labsv1.LabRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.DemoNamespace, Name: fmt.Sprintf("metrics-run-%d", runCounter)},
		Spec: labsv1.LabRunSpec{
			Mode:   mode,
			Labs:   names,
			Target: labsv1.TargetSpec{Service: "backend"},
			Mesh:   labsv1.MeshSpec{AuthorizationPolicy: &labsv1.ObjectRef{Name: sandbox.PolicyName}},
			Probe:  labsv1.ProbeSpec{SettleTimeout: &metav1.Duration{Duration: 10 * time.Second}},
		},
	}
}

// createRun creates run and deletes it (waiting until it is gone: its finalizer needs the manager) at the end.
func createRun(t *testing.T, run *labsv1.LabRun) {
	t.Helper()
	ctx := context.Background()
	var creator client.Client = k8s
	if _, owned := run.Labels[labsv1.LabelSchedule]; owned {
		// Only the manager may label a LabRun as a schedule's (labrun-object-marks), as the schedule controller
		// does.
		manager, err := client.New(sb.ManagerConfig(), client.Options{Scheme: k8s.Scheme()})
		NewWithT(t).Expect(err).NotTo(HaveOccurred())
		creator = manager
	}
	NewWithT(t).Expect(creator.Create(ctx, run)).To(Succeed())
	t.Cleanup(func() { deleteRun(t, run) })
}

// deleteRun deletes run and waits until it is gone.
func deleteRun(t *testing.T, run *labsv1.LabRun) {
	t.Helper()
	ctx := context.Background()
	if err := k8s.Delete(ctx, run); client.IgnoreNotFound(err) != nil {
		t.Errorf("deleting LabRun %s: %v", run.Name, err)
	}
	NewWithT(t).Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(run), &labsv1.LabRun{}))
	}).WithTimeout(30 * time.Second).Should(BeTrue())
}

// finished waits for the run to end and returns it.
func finished(t *testing.T, run *labsv1.LabRun) *labsv1.LabRun {
	t.Helper()
	got := &labsv1.LabRun{}
	NewWithT(t).Eventually(func() labsv1.Phase {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(run), got); err != nil {
			return ""
		}
		return got.Status.Phase
	}).WithTimeout(3*time.Minute).WithPolling(100*time.Millisecond).
		Should(BeElementOf(labsv1.PhaseSucceeded, labsv1.PhaseFailed), "LabRun %s did not finish", run.Name)
	return got
}

// addPeerAuthentication creates a namespace-wide PeerAuthentication in demo until the test ends.
func addPeerAuthentication(t *testing.T, name, mode string) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"mtls": map[string]any{"mode": mode}}}}
	u.SetGroupVersionKind(mesh.GVK(mesh.KindPeerAuthentication))
	u.SetNamespace(sandbox.DemoNamespace)
	u.SetName(name)
	NewWithT(t).Expect(k8s.Create(context.Background(), u)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), u) })
}

func seconds(t *metav1.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// TestScheduleMetrics: a LabSchedule's series appear when it is created, follow its runs (real Verify runs on the
// sandbox, created as the schedule creates them), name a failing run's steps by lab, step and node, and then
// every metric the alert rules and the dashboard query is exported with the labels they use.
func TestScheduleMetrics(t *testing.T) {
	needSandbox(t)
	ctx := context.Background()
	ls := &labsv1.LabSchedule{
		ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.DemoNamespace, Name: "metrics-nightly"},
		// Daily at 03:00 UTC: no run is due while the test runs; the test creates the runs itself.
		Spec: labsv1.LabScheduleSpec{Schedule: "0 3 * * *", Template: labsv1.LabRunTemplate{
			Spec: newRun(labsv1.ModeVerify, labsv1.AllLabs...).Spec}},
	}
	NewWithT(t).Expect(k8s.Create(ctx, ls)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(ctx, ls) })
	sel := map[string]string{"namespace": ls.Namespace, "schedule": ls.Name}

	t.Run("a new schedule", func(t *testing.T) {
		g := NewWithT(t)
		g.Eventually(func(g Gomega) {
			g.Expect(value(g, "labrun_schedule_created_timestamp_seconds", sel)).To(Equal(seconds(&ls.CreationTimestamp)))
			g.Expect(value(g, "labrun_schedule_interval_seconds", sel)).To(Equal((24 * time.Hour).Seconds()))
			g.Expect(value(g, "labrun_schedule_suspended", sel)).To(BeZero())
			g.Expect(of(gather(g), "labrun_schedule_last_run_timestamp_seconds", sel)).To(BeEmpty())
			g.Expect(of(gather(g), "labrun_schedule_last_success_timestamp_seconds", sel)).To(BeEmpty())
		}).WithTimeout(10 * time.Second).Should(Succeed())
	})

	var passed *labsv1.LabRun
	t.Run("a run that passes", func(t *testing.T) {
		g := NewWithT(t)
		run := ownedRun(t, ls, labsv1.ModeVerify, labsv1.AllLabs...)
		createRun(t, run)
		passed = finished(t, run)
		g.Expect(passed.Status.Phase).To(Equal(labsv1.PhaseSucceeded), "%+v", passed.Status.Steps)
		plan, err := labs.PlanMode(labsv1.AllLabs, labsv1.ModeVerify)
		g.Expect(err).NotTo(HaveOccurred())
		end := seconds(passed.Status.CompletionTime)
		g.Eventually(func(g Gomega) {
			g.Expect(value(g, "labrun_schedule_last_run_timestamp_seconds", sel)).To(Equal(end))
			g.Expect(value(g, "labrun_schedule_last_success_timestamp_seconds", sel)).To(Equal(end))
			for result, n := range map[string]int{"passed": len(plan), "failed": 0, "errored": 0, "skipped": 0} {
				g.Expect(value(g, "labrun_schedule_last_run_steps", with(sel, "result", result))).
					To(BeEquivalentTo(n), result)
			}
			g.Expect(of(gather(g), "labrun_schedule_failing_step", sel)).To(BeEmpty())
		}).WithTimeout(10 * time.Second).Should(Succeed())
	})
	if passed == nil || passed.Status.Phase != labsv1.PhaseSucceeded {
		t.FailNow()
	}

	t.Run("a run that fails names its failing steps", func(t *testing.T) {
		g := NewWithT(t)
		// A namespace-level PERMISSIVE policy in demo: the target is no longer STRICT, which Verify must see.
		addPeerAuthentication(t, "metrics-relaxed", "PERMISSIVE")
		run := ownedRun(t, ls, labsv1.ModeVerify, labsv1.LabPeerAuthentication)
		createRun(t, run)
		done := finished(t, run)
		g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseFailed))
		want := failingOf(done)
		g.Expect(want).To(ContainElement(HaveKeyWithValue("step", "baseline-strict")))
		g.Eventually(func(g Gomega) {
			var got []map[string]string
			for _, s := range of(gather(g), "labrun_schedule_failing_step", sel) {
				g.Expect(s.value).To(BeEquivalentTo(1))
				got = append(got, map[string]string{"lab": s.labels["lab"], "step": s.labels["step"], "node": s.labels["node"]})
			}
			g.Expect(got).To(ConsistOf(want))
			g.Expect(value(g, "labrun_schedule_last_run_steps", with(sel, "result", "failed"))).
				To(BeEquivalentTo(done.Status.Summary.Failed))
			g.Expect(value(g, "labrun_schedule_last_run_timestamp_seconds", sel)).To(Equal(seconds(done.Status.CompletionTime)))
			g.Expect(value(g, "labrun_schedule_last_success_timestamp_seconds", sel)).
				To(Equal(seconds(passed.Status.CompletionTime)), "the last success is still the first run")
		}).WithTimeout(10 * time.Second).Should(Succeed())
		for _, f := range want {
			g.Expect(f["node"]).To(BeElementOf(append(slices.Clone(sb.Nodes), "")), "a failing step's node is a node")
		}

		// The alert must not resolve because the run is gone: once the schedule's status has recorded the run,
		// deleting it (as pruning does) leaves its failing steps exported, now from the status's summary
		// (<lab>/<step>, with @<node> only when one node failed).
		g.Eventually(func(g Gomega) {
			cur := &labsv1.LabSchedule{}
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ls), cur)).To(Succeed())
			g.Expect(cur.Status.LastRun).NotTo(BeNil())
			g.Expect(cur.Status.LastRun.Name).To(Equal(done.Name))
		}).WithTimeout(10 * time.Second).Should(Succeed())
		deleteRun(t, done)
		wantSteps := map[string]bool{}
		for _, f := range want {
			wantSteps[f["lab"]+"/"+f["step"]] = true
		}
		g.Eventually(func(g Gomega) {
			got := map[string]bool{}
			for _, s := range of(gather(g), "labrun_schedule_failing_step", sel) {
				got[s.labels["lab"]+"/"+s.labels["step"]] = true
				g.Expect(s.labels["node"]).To(BeElementOf(append(slices.Clone(sb.Nodes), "")))
			}
			g.Expect(got).To(Equal(wantSteps))
		}).WithTimeout(10 * time.Second).Should(Succeed())
	})

	t.Run("a suspended schedule", func(t *testing.T) {
		g := NewWithT(t)
		cur := &labsv1.LabSchedule{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ls), cur)).To(Succeed())
		cur.Spec.Suspend = ptr.To(true)
		g.Expect(k8s.Update(ctx, cur)).To(Succeed())
		g.Eventually(func(g Gomega) float64 { return value(g, "labrun_schedule_suspended", sel) }).
			WithTimeout(10 * time.Second).Should(BeEquivalentTo(1))
	})

	t.Run("the rules and the dashboard query exported metrics", func(t *testing.T) {
		// A Lab-mode run too: exposure is observed, and restores counted, by the namespace of the run that
		// weakened the mesh (Verify runs weaken nothing).
		lab := newRun(labsv1.ModeLab, labsv1.LabPeerAuthentication)
		createRun(t, lab)
		finished(t, lab)
		exported := gather(NewWithT(t))
		for _, q := range ruleQueries(t) {
			checkQuery(t, exported, "config/prometheus/rules.yaml: "+q.where, q.expr)
		}
		for _, q := range dashboardQueries(t) {
			checkQuery(t, exported, "config/grafana/labrun-dashboard.json: "+q.where, q.expr)
		}
	})
}

// failingOf lists what labrun_schedule_failing_step should say of a finished run: each step that failed or
// errored, on each node whose result did not pass (node "" when the step has no failing per-node result).
func failingOf(run *labsv1.LabRun) []map[string]string {
	var out []map[string]string
	for _, st := range run.Status.Steps {
		if st.Verdict != labsv1.VerdictFail && st.Verdict != labsv1.VerdictError {
			continue
		}
		var nodes []string
		for _, n := range st.Coverage {
			if n.Verdict != labsv1.VerdictPass && !slices.Contains(nodes, n.Node) {
				nodes = append(nodes, n.Node)
			}
		}
		if len(nodes) == 0 {
			nodes = []string{""}
		}
		for _, n := range nodes {
			out = append(out, map[string]string{"lab": string(st.Lab), "step": st.Name, "node": n})
		}
	}
	return out
}

func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for key, val := range m {
		out[key] = val
	}
	return out
}

// TestMeshRestoreMetrics: while a Lab-mode run has the mesh weakened, its journaled changes count as pending
// restores of its namespace; once it has restored them, none is pending and none overdue. The run's own metrics (its verdicts,
// its end, its exposure) carry its namespace, so an alert on them says whose run it was.
func TestMeshRestoreMetrics(t *testing.T) {
	needSandbox(t)
	g := NewWithT(t)
	run := newRun(labsv1.ModeLab, labsv1.LabPeerAuthentication)
	createRun(t, run)
	ns := map[string]string{"namespace": run.Namespace}
	g.Eventually(func(g Gomega) float64 { return value(g, "labrun_mesh_pending_restores", ns) }).
		WithTimeout(2*time.Minute).WithPolling(20*time.Millisecond).Should(BeNumerically(">", 0),
		"pending restores, under the namespace of the run that made them")
	done := finished(t, run)
	g.Expect(done.Status.Journal).NotTo(BeEmpty(), "the run changed the mesh")
	g.Eventually(func(g Gomega) {
		// A namespace's series is there while a record of its runs is, and says 0 once all is restored.
		g.Expect(total(of(gather(g), "labrun_mesh_pending_restores", ns))).To(BeZero())
		g.Expect(total(of(gather(g), "labrun_mesh_overdue_restores", ns))).To(BeZero())
		g.Expect(value(g, "labrun_mesh_unreadable_records", nil)).To(BeZero())
	}).WithTimeout(30 * time.Second).Should(Succeed())

	exported := gather(g)
	g.Expect(total(of(exported, "labrun_runs_finished_total", with(with(ns, "phase", string(done.Status.Phase)), "mesh_restored", "true")))).
		To(BeNumerically(">=", 1), "the run's end, with its namespace")
	for _, st := range done.Status.Steps {
		g.Expect(total(of(exported, "labrun_step_verdicts_total", with(with(with(ns, "lab", string(st.Lab)), "step", st.Name), "verdict", string(st.Verdict))))).
			To(BeNumerically(">=", 1), "the verdict of step %s, with the run's namespace", st.Name)
	}
	g.Expect(total(of(exported, "labrun_exposure_seconds_count", ns))).To(BeNumerically(">=", 1), "the run's exposure, with its namespace")
}

// total adds up the series' values.
func total(ss []series) float64 {
	var sum float64
	for _, s := range ss {
		sum += s.value
	}
	return sum
}

type query struct{ where, expr string }

// ruleQueries are the expressions of config/prometheus/rules.yaml.
func ruleQueries(t *testing.T) []query {
	var out []query
	for _, grp := range ruleFile(t)["groups"].([]any) {
		for _, r := range grp.(map[string]any)["rules"].([]any) {
			rule := r.(map[string]any)
			out = append(out, query{fmt.Sprint(rule["alert"]), rule["expr"].(string)})
		}
	}
	return out
}

// dashboardQueries are the PromQL of every panel target and every query variable of the dashboard.
func dashboardQueries(t *testing.T) []query {
	data, err := os.ReadFile(filepath.Join(root, "config", "grafana", "labrun-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("reading the dashboard: %v", err)
	}
	var out []query
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			out = append(out, query{"panel " + p.Title, tg.Expr})
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type == "query" {
			out = append(out, query{"variable " + v.Name, v.Definition})
		}
	}
	if len(out) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	return out
}

// checkQuery: every metric the query reads is exported, with every label its matchers use; every label it groups
// or matches by is a label of one of its metrics.
func checkQuery(t *testing.T, exported map[string][]series, where, expr string) {
	t.Helper()
	use := monitoring.Parse(expr)
	if len(use.Selectors) == 0 {
		t.Errorf("%s: no metric in %q", where, expr)
	}
	all := map[string]bool{}
	for _, s := range use.Selectors {
		labels := labelNames(exported[s.Metric])
		if len(exported[s.Metric]) == 0 {
			t.Errorf("%s: metric %s is not exported by the manager", where, s.Metric)
			continue
		}
		for _, l := range s.Labels {
			if !labels[l] {
				t.Errorf("%s: metric %s has no label %s", where, s.Metric, l)
			}
		}
		for l := range labels {
			all[l] = true
		}
	}
	for _, l := range use.Grouping {
		if !all[l] {
			t.Errorf("%s: label %s is on none of the query's metrics", where, l)
		}
	}
}

func labelNames(ss []series) map[string]bool {
	out := map[string]bool{}
	for _, s := range ss {
		for l := range s.labels {
			out[l] = true
		}
	}
	return out
}
