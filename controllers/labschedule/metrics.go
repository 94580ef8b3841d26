package labschedule

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// The collector reads LabSchedules, their LabRuns and the trusted records.
// +kubebuilder:rbac:groups=labs.ambientlab.io,resources=labschedules,verbs=get;list;watch

// Per-schedule and mesh-safety metrics, worked out at scrape time from the manager's cache, so that they say what
// holds now (a deleted schedule's series vanish) and survive a manager restart without replaying history.
// config/prometheus/rules.yaml alerts on them and config/grafana/labrun-dashboard.json shows them; the README's
// "Metrics and alerts" lists them.
const (
	// MaxNodesPerSchedule bounds the node label of labrun_schedule_failing_step: past this many distinct nodes per
	// schedule, the rest are reported as node="other".
	MaxNodesPerSchedule = 10
	// MaxPoliciesPerSchedule bounds the policy label of labrun_schedule_failing_step: past this many regressed
	// policies per schedule, the rest are reported as one series, kind="other" and policy="other".
	MaxPoliciesPerSchedule = 10
	// NodeOther is the node label value past MaxNodesPerSchedule, PolicyOther the kind and policy label values
	// past MaxPoliciesPerSchedule; UnknownStep the lab and step label values of a step the catalogue does not
	// know, and the kind label value of a kind the audit does not judge.
	NodeOther   = "other"
	PolicyOther = "other"
	UnknownStep = "unknown"
	// collectTimeout bounds one scrape's reads from the cache.
	collectTimeout = 5 * time.Second
)

var (
	scheduleLabels = []string{"namespace", "schedule"}

	descCreated = prometheus.NewDesc("labrun_schedule_created_timestamp_seconds",
		"When the LabSchedule was created (Unix seconds); the staleness alert counts from here until a run succeeds.",
		scheduleLabels, nil)
	descLastSuccess = prometheus.NewDesc("labrun_schedule_last_success_timestamp_seconds",
		"When the schedule's last successful run ended (Unix seconds); absent until one has.", scheduleLabels, nil)
	descLastRun = prometheus.NewDesc("labrun_schedule_last_run_timestamp_seconds",
		"When the schedule's last finished run ended (Unix seconds); absent until one has.", scheduleLabels, nil)
	descLastRunSteps = prometheus.NewDesc("labrun_schedule_last_run_steps",
		"Steps of the schedule's last finished run by result (passed, failed, errored, skipped).",
		append(slices.Clone(scheduleLabels), "result"), nil)
	descInterval = prometheus.NewDesc("labrun_schedule_interval_seconds",
		"Seconds between the schedule's next two due times (from spec.schedule and spec.timeZone); absent when "+
			"the schedule does not parse.", scheduleLabels, nil)
	descSuspended = prometheus.NewDesc("labrun_schedule_suspended",
		"1 when spec.suspend stops the schedule from creating runs, else 0.", scheduleLabels, nil)
	descFailingStep = prometheus.NewDesc("labrun_schedule_failing_step",
		fmt.Sprintf("1 for each step that failed or errored in the schedule's last finished run, by lab, step and "+
			"node (node=\"\" when the step did not fail on a particular node; kind and policy \"\"), and 1 for each "+
			"policy that regressed: the schedule's newest audit (status.policies) judged it neither Enforced nor "+
			"EnforcedDifferently while an earlier run found it so (status.policies[].lastEnforced), pruned or not "+
			"(kind, policy <namespace>/<name>, and the lab and step that audit; node \"\"). lab and step come "+
			"from the lab catalogue (%q otherwise); at most "+
			"%d distinct nodes per schedule, the rest as node=%q; at most %d regressed policies per schedule, the "+
			"rest as kind=%q, policy=%q.",
			UnknownStep, MaxNodesPerSchedule, NodeOther, MaxPoliciesPerSchedule, PolicyOther, PolicyOther),
		append(slices.Clone(scheduleLabels), "lab", "step", "node", "kind", "policy"), nil)
	descPendingRestores = prometheus.NewDesc("labrun_mesh_pending_restores",
		"Journaled mesh changes not restored yet, from the trusted run records, by the namespace of their LabRun "+
			"(one series per namespace with a record or a LabRun).", []string{"namespace"}, nil)
	descOverdueRestores = prometheus.NewDesc("labrun_mesh_overdue_restores",
		"Journaled mesh changes not restored yet although their run's restore-by deadline has passed, by the "+
			"namespace of their LabRun (one series per namespace with a record or a LabRun).", []string{"namespace"}, nil)
	descUnreadableRecords = prometheus.NewDesc("labrun_mesh_unreadable_records",
		"Trusted run records that cannot be decoded: nothing can be restored from them.", nil, nil)
)

// scheduleMetrics is the one collector of the process, registered once on controller-runtime's registry; each
// manager built points it at its own cache (the last one built wins: tests build several in one process).
var scheduleMetrics = &scheduleCollector{now: time.Now}

func init() {
	metrics.Registry.MustRegister(scheduleMetrics)
}

// CollectMetrics makes the schedule and mesh-safety metrics read from reader (the manager's cache) and
// the trusted records in namespace.
func CollectMetrics(reader client.Reader, namespace string) {
	scheduleMetrics.use(reader, mesh.Store{Reader: reader, Namespace: namespace})
}

type scheduleCollector struct {
	mu      sync.RWMutex
	reader  client.Reader
	records mesh.Store
	now     func() time.Time
}

func (c *scheduleCollector) use(reader client.Reader, records mesh.Store) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reader, c.records = reader, records
}

// Describe sends every descriptor.
func (c *scheduleCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCreated, descLastSuccess, descLastRun, descLastRunSteps, descInterval,
		descSuspended, descFailingStep, descPendingRestores, descOverdueRestores, descUnreadableRecords} {
		ch <- d
	}
}

// Collect lists from the cache. A read that fails fails the scrape (an invalid metric makes the metrics endpoint
// answer 500): missing series would silence the alerts, a failed scrape raises the usual target-down alert.
func (c *scheduleCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.RLock()
	reader, records := c.reader, c.records
	c.mu.RUnlock()
	if reader == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	now := c.now()
	if err := collectSchedules(ctx, reader, now, ch); err != nil && !cacheNotStarted(err) {
		ch <- prometheus.NewInvalidMetric(descLastRun, err)
	}
	if err := collectRestores(ctx, reader, records, now, ch); err != nil && !cacheNotStarted(err) {
		ch <- prometheus.NewInvalidMetric(descPendingRestores, err)
	}
}

// cacheNotStarted: the metrics endpoint starts before the caches do; until then the series are absent, not an
// error (no alert fires on their absence within the seconds a start takes).
func cacheNotStarted(err error) bool {
	var notStarted *cache.ErrCacheNotStarted
	return errors.As(err, &notStarted)
}

func collectSchedules(ctx context.Context, reader client.Reader, now time.Time, ch chan<- prometheus.Metric) error {
	schedules := &labsv1.LabScheduleList{}
	if err := reader.List(ctx, schedules); err != nil {
		return fmt.Errorf("listing LabSchedules for metrics: %w", err)
	}
	for i := range schedules.Items {
		ls := &schedules.Items[i]
		runs := &labsv1.LabRunList{}
		if err := reader.List(ctx, runs, client.InNamespace(ls.Namespace),
			client.MatchingLabels{labsv1.LabelSchedule: ls.Name}); err != nil {
			return fmt.Errorf("listing the LabRuns of LabSchedule %s/%s for metrics: %w", ls.Namespace, ls.Name, err)
		}
		viewSchedule(ls, runs.Items, now).send(ch, ls.Namespace, ls.Name)
	}
	return nil
}

func collectRestores(ctx context.Context, reader client.Reader, records mesh.Store, now time.Time, ch chan<- prometheus.Metric) error {
	recs, undecodable, err := records.List(ctx)
	if err != nil {
		return fmt.Errorf("reading the trusted records for metrics: %w", err)
	}
	counts := countRestores(recs, now)
	// Every namespace with a LabRun has its series, 0 when nothing is pending: an alert or a panel grouped by
	// namespace then sees the metric exported, not absent, while the mesh is whole.
	runs := &labsv1.LabRunList{}
	if err := reader.List(ctx, runs); err != nil {
		return fmt.Errorf("listing LabRuns for metrics: %w", err)
	}
	for _, run := range runs.Items {
		if _, ok := counts[run.Namespace]; !ok {
			counts[run.Namespace] = restoreCounts{}
		}
	}
	for ns, c := range counts {
		ch <- prometheus.MustNewConstMetric(descPendingRestores, prometheus.GaugeValue, float64(c.pending), ns)
		ch <- prometheus.MustNewConstMetric(descOverdueRestores, prometheus.GaugeValue, float64(c.overdue), ns)
	}
	ch <- prometheus.MustNewConstMetric(descUnreadableRecords, prometheus.GaugeValue, float64(len(undecodable)))
	return nil
}

// restoreCounts are the journal entries not restored yet, and those of them past their record's deadline.
type restoreCounts struct{ pending, overdue int }

// countRestores counts, by the namespace of the run that made them, the journal entries not restored yet and
// those of them past their record's restore-by deadline (without the watchdog's grace: an alert should see the
// mesh weak as soon as the promise is broken). The namespace is the trusted record's, so an alert says whose run
// left the mesh weak.
func countRestores(recs []*mesh.Record, now time.Time) map[string]restoreCounts {
	out := map[string]restoreCounts{}
	for _, rec := range recs {
		c := out[rec.Run.Namespace]
		n := len(rec.Pending())
		c.pending += n
		if late, _ := rec.Overdue(now, 0); late {
			c.overdue += n
		}
		out[rec.Run.Namespace] = c
	}
	return out
}

// scheduleView is what the metrics say of one schedule.
type scheduleView struct {
	created     time.Time
	lastSuccess *time.Time
	lastRun     *time.Time
	steps       labsv1.Summary
	failing     []failingStep
	regressed   []regressedPolicy
	interval    time.Duration // 0: the schedule does not parse
	suspended   bool
}

// failingStep is one series of labrun_schedule_failing_step: a step that failed or errored.
type failingStep struct{ lab, step, node string }

// regressedPolicy is one series of labrun_schedule_failing_step: a policy that regressed, with the lab and step
// that audited it.
type regressedPolicy struct{ lab, step, kind, policy string }

func (v scheduleView) send(ch chan<- prometheus.Metric, namespace, name string) {
	gauge := func(d *prometheus.Desc, value float64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, value, append([]string{namespace, name}, extra...)...)
	}
	gauge(descCreated, unixSeconds(v.created))
	gauge(descSuspended, boolValue(v.suspended))
	if v.interval > 0 {
		gauge(descInterval, v.interval.Seconds())
	}
	if v.lastSuccess != nil {
		gauge(descLastSuccess, unixSeconds(*v.lastSuccess))
	}
	if v.lastRun == nil {
		return
	}
	gauge(descLastRun, unixSeconds(*v.lastRun))
	for _, r := range []struct {
		result string
		n      int32
	}{{"passed", v.steps.Passed}, {"failed", v.steps.Failed}, {"errored", v.steps.Errored}, {"skipped", v.steps.Skipped}} {
		gauge(descLastRunSteps, float64(r.n), r.result)
	}
	for _, f := range v.failing {
		gauge(descFailingStep, 1, f.lab, f.step, f.node, "", "")
	}
	for _, r := range v.regressed {
		gauge(descFailingStep, 1, r.lab, r.step, "", r.kind, r.policy)
	}
}

// viewSchedule works out a schedule's metrics from the object and its runs. The last finished run is the newer of
// the schedule's status.lastRun and the newest finished run the schedule owns (runs merely labelled with its
// name, by anyone, do not count); the run object is preferred, for its per-node results, while it is kept.
// Regressed policies come from the schedule's memory of the audit (status.policies), which outlives its runs.
func viewSchedule(ls *labsv1.LabSchedule, runs []labsv1.LabRun, now time.Time) scheduleView {
	v := scheduleView{created: ls.CreationTimestamp.Time, suspended: ls.Spec.Suspend != nil && *ls.Spec.Suspend,
		interval: scheduleInterval(ls, now)}
	if t := ls.Status.LastSuccessfulTime; t != nil {
		v.lastSuccess = &t.Time
	}
	run := newestFinished(ls, runs)
	for _, r := range runs {
		if r.Status.Phase == labsv1.PhaseSucceeded && ownedBy(&r, ls) && finishedAt(&r) != nil &&
			(v.lastSuccess == nil || finishedAt(&r).After(*v.lastSuccess)) {
			v.lastSuccess = finishedAt(&r)
		}
	}
	last := ls.Status.LastRun
	switch {
	case run != nil && (last == nil || last.CompletionTime == nil || !finishedAt(run).Before(last.CompletionTime.Time)):
		v.lastRun, v.steps = finishedAt(run), run.Status.Summary
		v.failing = capNodes(failingStepsOfRun(run))
	case last != nil && last.CompletionTime != nil:
		v.lastRun, v.steps = &last.CompletionTime.Time, last.Summary
		v.failing = capNodes(failingStepsOfSummary(last.FailedSteps))
	}
	v.regressed = capPolicies(regressedPolicies(ls.Status.Policies))
	return v
}

// newestFinished is the finished run of the schedule that ended last, or nil.
func newestFinished(ls *labsv1.LabSchedule, runs []labsv1.LabRun) *labsv1.LabRun {
	var newest *labsv1.LabRun
	for i := range runs {
		r := &runs[i]
		if !ownedBy(r, ls) || finishedAt(r) == nil {
			continue
		}
		if newest == nil || endedAfter(r, newest) { // the LabSchedule controller's order, ties included
			newest = r
		}
	}
	return newest
}

// ownedBy: the schedule created the run (its controller reference), as the LabSchedule controller decides.
func ownedBy(run *labsv1.LabRun, ls *labsv1.LabSchedule) bool { return metav1.IsControlledBy(run, ls) }

// finishedAt is when a finished run ended, or nil while it has not.
func finishedAt(run *labsv1.LabRun) *time.Time {
	if run.Status.Phase != labsv1.PhaseSucceeded && run.Status.Phase != labsv1.PhaseFailed {
		return nil
	}
	if run.Status.CompletionTime == nil {
		return nil
	}
	return &run.Status.CompletionTime.Time
}

// failingStepsOfRun lists the steps that failed or errored, once per node whose result did not pass (node ""
// when no node's did, or the step has no per-node results).
func failingStepsOfRun(run *labsv1.LabRun) []failingStep {
	var out []failingStep
	for _, st := range run.Status.Steps {
		if st.Verdict != labsv1.VerdictFail && st.Verdict != labsv1.VerdictError {
			continue
		}
		lab, step := catalogued(string(st.Lab), st.Name)
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
			out = append(out, failingStep{lab, step, n})
		}
	}
	return out
}

// failingStepsOfSummary parses a RunSummary's failedSteps, <lab>/<step> or <lab>/<step>@<node>.
func failingStepsOfSummary(failed []string) []failingStep {
	var out []failingStep
	for _, s := range failed {
		id, node, _ := strings.Cut(s, "@")
		lab, step, _ := strings.Cut(id, "/")
		lab, step = catalogued(lab, step)
		if f := (failingStep{lab, step, node}); !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// capNodes keeps at most MaxNodesPerSchedule distinct node values (in order of appearance) and reports the rest
// as NodeOther, merging the series that then coincide.
func capNodes(steps []failingStep) []failingStep {
	var nodes []string
	out := make([]failingStep, 0, len(steps))
	for _, f := range steps {
		if f.node != "" && !slices.Contains(nodes, f.node) {
			if len(nodes) >= MaxNodesPerSchedule {
				f.node = NodeOther
			} else {
				nodes = append(nodes, f.node)
			}
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// regressedPolicies are the policies of the schedule's memory whose newest verdict is neither Enforced nor
// EnforcedDifferently although a run found them so (lastEnforced), once each, in the memory's order (the
// audit's: those not enforced first).
func regressedPolicies(memory []labsv1.SchedulePolicy) []regressedPolicy {
	var out []regressedPolicy
	for _, p := range memory {
		if enforced(p.Verdict) || p.LastEnforced == nil {
			continue
		}
		if r := (regressedPolicy{auditLab, auditStep, policyKind(p.Kind), p.Policy}); !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// policyKind bounds the kind label to the kinds the audit judges.
func policyKind(kind string) string {
	if kind == "AuthorizationPolicy" || kind == "PeerAuthentication" {
		return kind
	}
	return UnknownStep
}

// capPolicies keeps at most MaxPoliciesPerSchedule distinct policies (kind and name, in order of appearance) and
// reports the rest as one series per step, kind and policy PolicyOther.
func capPolicies(regressed []regressedPolicy) []regressedPolicy {
	var kept []policyKey
	out := make([]regressedPolicy, 0, len(regressed))
	for _, r := range regressed {
		if k := (policyKey{r.kind, r.policy}); !slices.Contains(kept, k) {
			if len(kept) >= MaxPoliciesPerSchedule {
				r.kind, r.policy = PolicyOther, PolicyOther
			} else {
				kept = append(kept, k)
			}
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// catalogueSteps is every lab/step ID of the catalogue, which bounds the lab and step labels: the labs of the
// guide and the policy audit (left out while the catalogue does not hold it).
var catalogueSteps = func() map[string]bool {
	plan, err := labs.Plan(labsv1.AllLabs)
	if err != nil {
		panic(err) // the catalogue plans every lab it names
	}
	if audit, err := labs.Plan([]labsv1.LabName{labsv1.LabPolicyAudit}); err == nil {
		plan = append(plan, audit...)
	}
	ids := make(map[string]bool, len(plan))
	for _, s := range plan {
		ids[s.ID()] = true
	}
	return ids
}()

// catalogued returns lab and step when the catalogue knows the step, else UnknownStep twice.
func catalogued(lab, step string) (string, string) {
	if catalogueSteps[lab+"/"+step] {
		return lab, step
	}
	return UnknownStep, UnknownStep
}

// scheduleInterval is the time between the schedule's next two due times after now (read as the LabSchedule
// controller reads it), or 0 when it does not parse.
func scheduleInterval(ls *labsv1.LabSchedule, now time.Time) time.Duration {
	sched, err := parseSchedule(ls)
	if err != nil {
		return 0
	}
	next := sched.Next(now)
	if next.IsZero() {
		return 0
	}
	return sched.Next(next).Sub(next)
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
