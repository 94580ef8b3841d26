package labschedule

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

var metricsNow = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func metricsAt(minutes int) *metav1.Time {
	t := metav1.NewTime(metricsNow.Add(time.Duration(minutes) * time.Minute))
	return &t
}

func scheduleFor(uid string) *labsv1.LabSchedule {
	return &labsv1.LabSchedule{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "nightly", UID: types.UID(uid)},
		Spec: labsv1.LabScheduleSpec{Schedule: "@every 15m"}}
}

// finishedRun is a run that ended at end minutes, controlled by the schedule with UID owner ("" for none).
func finishedRun(owner string, phase labsv1.Phase, end int, steps ...labsv1.StepResult) labsv1.LabRun {
	run := labsv1.LabRun{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("run-%d", end)},
		Status: labsv1.LabRunStatus{Phase: phase, CompletionTime: metricsAt(end), Steps: steps}}
	if owner != "" {
		run.OwnerReferences = []metav1.OwnerReference{{APIVersion: labsv1.GroupVersion.String(), Kind: "LabSchedule",
			Name: "nightly", UID: types.UID(owner), Controller: ptr.To(true)}}
	}
	for _, st := range steps {
		switch st.Verdict {
		case labsv1.VerdictPass:
			run.Status.Summary.Passed++
		case labsv1.VerdictFail:
			run.Status.Summary.Failed++
		}
	}
	return run
}

func step(lab labsv1.LabName, name string, v labsv1.Verdict, nodes ...labsv1.NodeResult) labsv1.StepResult {
	return labsv1.StepResult{Lab: lab, Name: name, Verdict: v, Coverage: nodes}
}

// TestViewSchedule: which run the schedule metrics describe, and what they say of it.
func TestViewSchedule(t *testing.T) {
	failedOnNode2 := step(labsv1.LabMTLS, "client-allowed", labsv1.VerdictFail,
		labsv1.NodeResult{Node: "node-1", Verdict: labsv1.VerdictPass}, labsv1.NodeResult{Node: "node-2", Verdict: labsv1.VerdictFail})
	for _, tc := range []struct {
		name        string
		status      labsv1.LabScheduleStatus
		runs        []labsv1.LabRun
		lastRun     *metav1.Time
		lastSuccess *metav1.Time
		failing     []failingStep
	}{
		{name: "no run yet"},
		{name: "the newest owned run wins; a failure names its node",
			runs: []labsv1.LabRun{finishedRun("uid", labsv1.PhaseSucceeded, -20),
				finishedRun("uid", labsv1.PhaseFailed, -5, failedOnNode2)},
			lastRun: metricsAt(-5), lastSuccess: metricsAt(-20), failing: []failingStep{{"mtls", "client-allowed", "node-2"}}},
		{name: "of two runs that ended in the same second, the later-created one (as status.lastRun says)",
			runs:    sameSecond(failedOnNode2),
			lastRun: metricsAt(-5), lastSuccess: metricsAt(-5), failing: []failingStep{{"mtls", "client-allowed", "node-2"}}},
		{name: "the same, listed the other way round",
			runs:    reversed(sameSecond(failedOnNode2)),
			lastRun: metricsAt(-5), lastSuccess: metricsAt(-5), failing: []failingStep{{"mtls", "client-allowed", "node-2"}}},
		{name: "a run only labelled with the schedule's name does not count",
			runs:    []labsv1.LabRun{finishedRun("uid", labsv1.PhaseSucceeded, -20), finishedRun("", labsv1.PhaseFailed, -5, failedOnNode2)},
			lastRun: metricsAt(-20), lastSuccess: metricsAt(-20)},
		{name: "a run of another schedule of the same name does not count",
			runs: []labsv1.LabRun{finishedRun("other-uid", labsv1.PhaseFailed, -5, failedOnNode2)}},
		{name: "a running run does not count",
			runs: []labsv1.LabRun{{ObjectMeta: metav1.ObjectMeta{OwnerReferences: finishedRun("uid", "", 0).OwnerReferences},
				Status: labsv1.LabRunStatus{Phase: labsv1.PhaseRunning}}}},
		{name: "status.lastRun once the run is pruned, its failed steps parsed; a step not in the catalogue is unknown",
			status: labsv1.LabScheduleStatus{LastSuccessfulTime: metricsAt(-60), LastRun: &labsv1.RunSummary{Name: "gone",
				Phase: labsv1.PhaseFailed, CompletionTime: metricsAt(-10), Summary: labsv1.Summary{Failed: 3},
				FailedSteps: []string{"hbone/hbone-tunnel@node-3", "hbone/hbone-tunnel@node-3", "mtls/client-allowed", "mtls/forged"}}},
			runs:    []labsv1.LabRun{finishedRun("uid", labsv1.PhaseSucceeded, -30)},
			lastRun: metricsAt(-10), lastSuccess: metricsAt(-30),
			failing: []failingStep{{"hbone", "hbone-tunnel", "node-3"}, {"mtls", "client-allowed", ""}, {UnknownStep, UnknownStep, ""}}},
		{name: "an unparsable failedSteps entry is unknown",
			status:  labsv1.LabScheduleStatus{LastRun: &labsv1.RunSummary{CompletionTime: metricsAt(-1), FailedSteps: []string{"garbage"}}},
			lastRun: metricsAt(-1), failing: []failingStep{{UnknownStep, UnknownStep, ""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			ls := scheduleFor("uid")
			ls.Status = tc.status
			v := viewSchedule(ls, tc.runs, metricsNow)
			g.Expect(timeOf(v.lastRun)).To(Equal(timeOf(ptrTime(tc.lastRun))))
			g.Expect(timeOf(v.lastSuccess)).To(Equal(timeOf(ptrTime(tc.lastSuccess))))
			g.Expect(v.failing).To(ConsistOf(tc.failing))
			g.Expect(v.interval).To(Equal(15 * time.Minute))
		})
	}
}

// sameSecond: a run that passed and, created after it, one that failed with failing, both ended at -5 minutes.
func sameSecond(failing labsv1.StepResult) []labsv1.LabRun {
	passed := finishedRun("uid", labsv1.PhaseSucceeded, -5)
	passed.Name, passed.CreationTimestamp = "run-a", *metricsAt(-6)
	failed := finishedRun("uid", labsv1.PhaseFailed, -5, failing)
	failed.Name, failed.CreationTimestamp = "run-b", *metricsAt(-5)
	return []labsv1.LabRun{passed, failed}
}

func reversed(runs []labsv1.LabRun) []labsv1.LabRun {
	slices.Reverse(runs)
	return runs
}

func ptrTime(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	return &t.Time
}

func timeOf(t *time.Time) string {
	if t == nil {
		return "none"
	}
	return t.UTC().Format(time.RFC3339)
}

// TestCapNodes: past MaxNodesPerSchedule distinct nodes the rest are "other", and series that then coincide merge.
func TestCapNodes(t *testing.T) {
	var in []failingStep
	for i := range MaxNodesPerSchedule + 3 {
		in = append(in, failingStep{"mtls", "client-allowed", fmt.Sprintf("node-%02d", i)})
	}
	in = append(in, failingStep{"mtls", "inbound-identity", ""}, failingStep{"mtls", "inbound-identity", "node-00"})
	out := capNodes(in)
	g := NewWithT(t)
	g.Expect(out).To(HaveLen(MaxNodesPerSchedule + 1 + 2))
	g.Expect(out).To(ContainElement(failingStep{"mtls", "client-allowed", NodeOther}))
	g.Expect(out).NotTo(ContainElement(failingStep{"mtls", "client-allowed", fmt.Sprintf("node-%02d", MaxNodesPerSchedule)}))
	g.Expect(out).To(ContainElements(failingStep{"mtls", "inbound-identity", ""}, failingStep{"mtls", "inbound-identity", "node-00"}))
}

// TestScheduleInterval: the interval is read as the LabSchedule controller reads the schedule.
func TestScheduleInterval(t *testing.T) {
	for _, tc := range []struct {
		schedule string
		tz       *string
		want     time.Duration
	}{
		{"@every 5s", nil, 5 * time.Second},
		{"*/10 * * * *", nil, 10 * time.Minute},
		{"@daily", nil, 24 * time.Hour},
		{"0 3 * * 1", ptr.To("Europe/Berlin"), 7 * 24 * time.Hour},
		{"not a schedule", nil, 0},
		{"0 3 * * *", ptr.To("Mars/Olympus"), 0},
	} {
		ls := scheduleFor("uid")
		ls.Spec.Schedule, ls.Spec.TimeZone = tc.schedule, tc.tz
		NewWithT(t).Expect(scheduleInterval(ls, metricsNow)).To(Equal(tc.want), tc.schedule)
	}
}

// TestCountRestores: pending entries, and those of records past their restore-by deadline, by the namespace of
// the run that made them.
func TestCountRestores(t *testing.T) {
	entry := func(restored bool) labsv1.JournalEntry { return labsv1.JournalEntry{Restored: restored} }
	team := func(ns string) mesh.RunRef { return mesh.RunRef{Namespace: ns, Name: "run"} }
	recs := []*mesh.Record{
		{Run: team("team-a"), RestoreBy: metricsAt(5), Entries: []labsv1.JournalEntry{entry(false), entry(true)}},   // pending, in time
		{Run: team("team-b"), RestoreBy: metricsAt(-1), Entries: []labsv1.JournalEntry{entry(false), entry(false)}}, // overdue
		{Run: team("team-a"), RestoreBy: metricsAt(-1), Entries: []labsv1.JournalEntry{entry(true)}},                // restored late: fine
		{Run: team("team-c"), Entries: []labsv1.JournalEntry{}},
	}
	NewWithT(t).Expect(countRestores(recs, metricsNow)).To(Equal(map[string]restoreCounts{
		"team-a": {pending: 1}, "team-b": {pending: 2, overdue: 2}, "team-c": {},
	}))
}

// failingReader answers every read with err.
type failingReader struct{ err error }

func (r failingReader) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return r.err
}

func (r failingReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return r.err
}

// TestCollectErrors: before the caches start the series are absent; any other failed read fails the scrape (an
// invalid metric, which the registry reports as an error) instead of silently dropping series.
func TestCollectErrors(t *testing.T) {
	for _, tc := range []struct {
		err    error
		failed bool
	}{{&cache.ErrCacheNotStarted{}, false}, {errors.New("connection refused"), true}} {
		g := NewWithT(t)
		c := &scheduleCollector{now: time.Now}
		c.use(failingReader{tc.err}, mesh.Store{Reader: failingReader{tc.err}, Namespace: "labrun-system"})
		reg := prometheus.NewPedanticRegistry()
		g.Expect(reg.Register(c)).To(Succeed())
		families, err := reg.Gather()
		if tc.failed {
			g.Expect(err).To(MatchError(ContainSubstring("connection refused")))
		} else {
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(families).To(BeEmpty())
		}
	}
}

// audit is a policy-audit step that judged the given policies.
func audit(v labsv1.Verdict, policies ...labsv1.PolicyResult) labsv1.StepResult {
	st := step(labsv1.LabPolicyAudit, "audit-policies", v)
	st.Policies = policies
	return st
}

func policy(kind, name string, v labsv1.PolicyVerdict) labsv1.PolicyResult {
	return labsv1.PolicyResult{Kind: kind, Policy: name, Verdict: v, Reason: "why", Probes: []string{"a probe"}}
}

const ap, pa = "AuthorizationPolicy", "PeerAuthentication"

// remembered is an entry of a schedule's memory of the audit (status.policies), given by run-5; lastEnforced nil
// for none.
func remembered(kind, name string, v labsv1.PolicyVerdict, lastEnforced *metav1.Time) labsv1.SchedulePolicy {
	return labsv1.SchedulePolicy{Kind: kind, Policy: name, Verdict: v, LastEnforced: lastEnforced, LastRun: "run-5"}
}

// TestViewScheduleRegressedPolicies: a policy regressed when the schedule's memory of the audit gives it a verdict
// neither Enforced nor EnforcedDifferently and remembers a run that found it so, whatever runs are still kept.
func TestViewScheduleRegressedPolicies(t *testing.T) {
	regressed := func(kind, name string) regressedPolicy {
		return regressedPolicy{"policy-audit", "audit-policies", kind, name}
	}
	lastRun := &labsv1.RunSummary{Name: "run-5", Phase: labsv1.PhaseFailed, CompletionTime: metricsAt(-5),
		FailedSteps: []string{"policy-audit/audit-policies"}}
	for _, tc := range []struct {
		name      string
		policies  []labsv1.SchedulePolicy
		runs      []labsv1.LabRun
		regressed []regressedPolicy
	}{
		{name: "not enforced, of no effect or untestable after a run found it enforced: each regressed; enforced " +
			"or enforced differently now: not",
			policies: []labsv1.SchedulePolicy{
				remembered(ap, "shop/orders-allow-web", labsv1.PolicyNotEnforced, metricsAt(-30)),
				remembered(pa, "shop/strict", labsv1.PolicyNoEffect, metricsAt(-30)),
				remembered(ap, "shop/orders-deny-legacy", labsv1.PolicyUntestable, metricsAt(-30)),
				remembered(ap, "shop/cart", labsv1.PolicyEnforced, metricsAt(-5)),
				remembered(ap, "shop/cart-get-only", labsv1.PolicyEnforcedDifferently, metricsAt(-5))},
			regressed: []regressedPolicy{regressed(ap, "shop/orders-allow-web"), regressed(pa, "shop/strict"),
				regressed(ap, "shop/orders-deny-legacy")}},
		{name: "never found enforced: no regression",
			policies: []labsv1.SchedulePolicy{remembered(ap, "shop/new", labsv1.PolicyNotEnforced, nil),
				remembered(ap, "shop/legacy", labsv1.PolicyNoEffect, nil)}},
		{name: "the run that found it enforced, and the last run, pruned: still regressed",
			policies:  []labsv1.SchedulePolicy{remembered(ap, "shop/orders-allow-web", labsv1.PolicyNotEnforced, metricsAt(-600))},
			regressed: []regressedPolicy{regressed(ap, "shop/orders-allow-web")}},
		{name: "kept runs do not count: only the schedule's memory does",
			runs: []labsv1.LabRun{
				finishedRun("uid", labsv1.PhaseSucceeded, -30, audit(labsv1.VerdictPass, policy(ap, "shop/orders-allow-web", labsv1.PolicyEnforced))),
				finishedRun("uid", labsv1.PhaseFailed, -5, audit(labsv1.VerdictFail, policy(ap, "shop/orders-allow-web", labsv1.PolicyNotEnforced)))},
			policies: []labsv1.SchedulePolicy{remembered(ap, "shop/orders-allow-web", labsv1.PolicyNotEnforced, nil)}},
		{name: "a kind the audit does not judge is unknown",
			policies:  []labsv1.SchedulePolicy{remembered("Sidecar", "shop/x", labsv1.PolicyNotEnforced, metricsAt(-30))},
			regressed: []regressedPolicy{regressed(UnknownStep, "shop/x")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls := scheduleFor("uid")
			ls.Status = labsv1.LabScheduleStatus{LastRun: lastRun, Policies: tc.policies}
			got := viewSchedule(ls, tc.runs, metricsNow).regressed
			if len(tc.regressed) == 0 {
				NewWithT(t).Expect(got).To(BeEmpty())
				return
			}
			NewWithT(t).Expect(got).To(Equal(tc.regressed))
		})
	}
}

// TestCapPolicies: past MaxPoliciesPerSchedule distinct policies the rest are one series, kind and policy
// "other".
func TestCapPolicies(t *testing.T) {
	var in []regressedPolicy
	for i := range MaxPoliciesPerSchedule + 3 {
		in = append(in, regressedPolicy{auditLab, auditStep, ap, fmt.Sprintf("shop/p-%02d", i)})
	}
	in = append(in, regressedPolicy{auditLab, auditStep, pa, "shop/p-00"})
	out := capPolicies(in)
	g := NewWithT(t)
	g.Expect(out).To(HaveLen(MaxPoliciesPerSchedule + 1))
	g.Expect(out[:MaxPoliciesPerSchedule]).To(Equal(in[:MaxPoliciesPerSchedule]), "the first ones, in order")
	g.Expect(out[MaxPoliciesPerSchedule]).To(Equal(regressedPolicy{auditLab, auditStep, PolicyOther, PolicyOther}))
}

// viewCollector exports one schedule's view as the manager's collector does.
type viewCollector struct{ v scheduleView }

func (c viewCollector) Describe(ch chan<- *prometheus.Desc) { (&scheduleCollector{}).Describe(ch) }
func (c viewCollector) Collect(ch chan<- prometheus.Metric) { c.v.send(ch, "shop", "nightly") }

// TestFailingStepSeries: labrun_schedule_failing_step names a failing step with kind and policy empty, and a
// regressed policy of the schedule's memory with its kind and <namespace>/<name>, node empty, with the lab and
// step that audit it.
func TestFailingStepSeries(t *testing.T) {
	runs := []labsv1.LabRun{
		finishedRun("uid", labsv1.PhaseFailed, -5, audit(labsv1.VerdictFail, policy(ap, "shop/orders-allow-web", labsv1.PolicyNotEnforced)),
			step(labsv1.LabMTLS, "client-allowed", labsv1.VerdictFail, labsv1.NodeResult{Node: "node-2", Verdict: labsv1.VerdictFail})),
	}
	ls := scheduleFor("uid")
	ls.Status.Policies = []labsv1.SchedulePolicy{remembered(ap, "shop/orders-allow-web", labsv1.PolicyNotEnforced, metricsAt(-30))}
	c := viewCollector{viewSchedule(ls, runs, metricsNow)}
	reg := prometheus.NewPedanticRegistry()
	g := NewWithT(t)
	g.Expect(reg.Register(c)).To(Succeed())
	families, err := reg.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	var series []map[string]string
	for _, mf := range families {
		if mf.GetName() != "labrun_schedule_failing_step" {
			continue
		}
		for _, m := range mf.GetMetric() {
			g.Expect(m.GetGauge().GetValue()).To(BeEquivalentTo(1))
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			series = append(series, labels)
		}
	}
	of := func(lab, step, node, kind, policy string) map[string]string {
		return map[string]string{"namespace": "shop", "schedule": "nightly", "lab": lab, "step": step, "node": node,
			"kind": kind, "policy": policy}
	}
	g.Expect(series).To(ConsistOf(
		of("mtls", "client-allowed", "node-2", "", ""),
		of("policy-audit", "audit-policies", "", "", ""),
		of("policy-audit", "audit-policies", "", ap, "shop/orders-allow-web")))
}
