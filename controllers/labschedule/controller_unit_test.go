package labschedule

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func schedule(spec string, zone string) *labsv1.LabSchedule {
	ls := &labsv1.LabSchedule{Spec: labsv1.LabScheduleSpec{Schedule: spec}}
	if zone != "" {
		ls.Spec.TimeZone = &zone
	}
	return ls
}

func TestDueTimes(t *testing.T) {
	cases := []struct {
		name, spec, zone   string
		earliest, now      string
		wantLast, wantNext string // wantLast "" for none
	}{
		{"nothing due yet", "@every 5s", "", "2026-01-01T00:00:00Z", "2026-01-01T00:00:04Z", "", "2026-01-01T00:00:05Z"},
		{"exactly due", "@every 5s", "", "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z", "2026-01-01T00:00:05Z", "2026-01-01T00:00:10Z"},
		{"several missed: only the most recent", "@every 5s", "", "2026-01-01T00:00:00Z", "2026-01-01T00:00:23Z",
			"2026-01-01T00:00:20Z", "2026-01-01T00:00:25Z"},
		{"a year down with @every 1s", "@every 1s", "", "2025-01-01T00:00:00Z", "2026-01-01T00:00:00.5Z",
			"2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"},
		{"cron, missed hours", "0 * * * *", "", "2026-01-01T00:00:00Z", "2026-01-01T05:30:00Z",
			"2026-01-01T05:00:00Z", "2026-01-01T06:00:00Z"},
		{"cron in a time zone", "0 3 * * *", "Asia/Seoul", "2026-01-01T00:00:00Z", "2026-01-01T19:00:00Z",
			"2026-01-01T18:00:00Z", "2026-01-02T18:00:00Z"},
		{"descriptor", "@daily", "", "2026-01-01T12:00:00Z", "2026-01-03T01:00:00Z", "2026-01-03T00:00:00Z",
			"2026-01-04T00:00:00Z"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sched, err := parseSchedule(schedule(tc.spec, tc.zone))
			if err != nil {
				t.Fatal(err)
			}
			last, next, err := dueTimes(sched, at(tc.earliest), at(tc.now))
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantLast == "" && !last.IsZero() || tc.wantLast != "" && !last.Equal(at(tc.wantLast)) {
				t.Errorf("last = %v, want %q", last, tc.wantLast)
			}
			if !next.Equal(at(tc.wantNext)) {
				t.Errorf("next = %v, want %s", next, tc.wantNext)
			}
		})
	}
	t.Run("every minute for a year gives up on the missed time", func(t *testing.T) {
		sched, _ := parseSchedule(schedule("* * * * *", ""))
		last, next, err := dueTimes(sched, at("2025-01-01T00:00:00Z"), at("2026-01-01T00:00:30Z"))
		if err == nil || !last.IsZero() || !next.Equal(at("2026-01-01T00:01:00Z")) {
			t.Errorf("got %v, %v, %v; want an error, no missed time, next 00:01", last, next, err)
		}
	})
}

func TestParseScheduleRefuses(t *testing.T) {
	for _, tc := range []struct{ spec, zone, msg string }{
		{"61 * * * *", "", "does not parse"},
		{"0 0 * * * *", "", "does not parse"},
		{"@fortnightly", "", "does not parse"},
		{"@every 5s", "Mars/Olympus", "unknown time zone"},
	} {
		if _, err := parseSchedule(schedule(tc.spec, tc.zone)); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("parseSchedule(%q, %q) = %v, want an error with %q", tc.spec, tc.zone, err, tc.msg)
		}
	}
}

func TestTooLate(t *testing.T) {
	ls := schedule("@every 5s", "")
	if tooLate(ls, at("2026-01-01T00:00:00Z"), at("2026-01-02T00:00:00Z")) {
		t.Error("no deadline: never too late")
	}
	ls.Spec.StartingDeadlineSeconds = ptr.To[int64](30)
	if tooLate(ls, at("2026-01-01T00:00:00Z"), at("2026-01-01T00:00:30Z")) {
		t.Error("at the deadline: still in time")
	}
	if !tooLate(ls, at("2026-01-01T00:00:00Z"), at("2026-01-01T00:00:31Z")) {
		t.Error("past the deadline: too late")
	}
}

func TestRunNames(t *testing.T) {
	when := at("2026-01-01T00:00:00Z")
	if got := scheduledRunName("verify", when); got != "verify-1767225600" {
		t.Errorf("scheduledRunName = %s", got)
	}
	if got := triggeredRunName("verify", when); got != "verify-t-1767225600" {
		t.Errorf("triggeredRunName = %s", got)
	}
	long1, long2 := strings.Repeat("a", 60)+"-one", strings.Repeat("a", 60)+"-two"
	n1, n2 := triggeredRunName(long1, when), triggeredRunName(long2, when)
	if n1 == n2 {
		t.Errorf("two long names that share a prefix make the same run name %s", n1)
	}
	for _, n := range []string{n1, n2, scheduledRunName(strings.Repeat("b-", 126)+"b", when)} {
		if len(n) > 63 || len(validation.IsDNS1123Label(n)) > 0 {
			t.Errorf("run name %q (%d) is not a valid label value: %v", n, len(n), validation.IsDNS1123Label(n))
		}
	}
}

func TestFailedSteps(t *testing.T) {
	steps := []labsv1.StepResult{
		{Lab: "mtls", Name: "client-allowed", Verdict: labsv1.VerdictPass},
		{Lab: "peer-authentication", Name: "non-mesh-denied", Verdict: labsv1.VerdictFail, Coverage: []labsv1.NodeResult{
			{Node: "node-1", Verdict: labsv1.VerdictPass}, {Node: "node-2", Verdict: labsv1.VerdictFail},
			{Node: "node-2", Role: labsv1.RoleDestination, Verdict: labsv1.VerdictFail}}},
		{Lab: "authorization-policy", Name: "attacker-denied", Verdict: labsv1.VerdictFail, Coverage: []labsv1.NodeResult{
			{Node: "node-1", Verdict: labsv1.VerdictFail}, {Node: "node-2", Verdict: labsv1.VerdictError}}},
		{Lab: "hbone", Name: "evidence", Verdict: labsv1.VerdictError},
		{Lab: "hbone", Name: "skipped", Verdict: labsv1.VerdictSkipped},
	}
	got := failedSteps(steps)
	want := []string{"peer-authentication/non-mesh-denied@node-2", "authorization-policy/attacker-denied", "hbone/evidence"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("failedSteps = %v, want %v", got, want)
	}
	var many []labsv1.StepResult
	for range 30 {
		many = append(many, labsv1.StepResult{Lab: "mtls", Name: "x", Verdict: labsv1.VerdictFail})
	}
	if n := len(failedSteps(many)); n != maxFailedSteps {
		t.Errorf("%d failed steps kept, want %d", n, maxFailedSteps)
	}
}

func TestScheduleConditions(t *testing.T) {
	ok := &labsv1.RunSummary{Name: "r", Phase: labsv1.PhaseSucceeded}
	bad := &labsv1.RunSummary{Name: "r", Phase: labsv1.PhaseFailed}
	cases := []struct {
		name                 string
		invalid              string
		suspend              bool
		last                 *labsv1.RunSummary
		ready                metav1.ConditionStatus
		reconciling, stalled bool
	}{
		{"invalid", "unknown time zone", false, ok, metav1.ConditionFalse, false, true},
		{"no run yet", "", false, nil, metav1.ConditionUnknown, true, false},
		{"suspended before any run", "", true, nil, metav1.ConditionUnknown, false, false},
		{"last run succeeded", "", false, ok, metav1.ConditionTrue, false, false},
		{"last run failed", "", false, bad, metav1.ConditionFalse, false, false},
		{"suspended after a success", "", true, ok, metav1.ConditionTrue, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ls := &labsv1.LabSchedule{Spec: labsv1.LabScheduleSpec{Suspend: &tc.suspend},
				Status: labsv1.LabScheduleStatus{LastRun: tc.last}}
			ready, reconciling, stalled := scheduleConditions(ls, reasonInvalidSchedule, tc.invalid)
			if ready == nil || ready.Status != tc.ready {
				t.Errorf("Ready = %+v, want %s", ready, tc.ready)
			}
			if (reconciling != nil) != tc.reconciling || (stalled != nil) != tc.stalled {
				t.Errorf("Reconciling %v, Stalled %v; want %v, %v", reconciling, stalled, tc.reconciling, tc.stalled)
			}
		})
	}
	// Before its first run, Ready says when it is due and how to run one now.
	next := metav1.NewTime(time.Date(2026, 12, 6, 12, 15, 0, 0, time.UTC))
	ls := &labsv1.LabSchedule{ObjectMeta: metav1.ObjectMeta{Name: "nightly"},
		Status: labsv1.LabScheduleStatus{NextScheduleTime: &next}}
	ready, _, _ := scheduleConditions(ls, "", "")
	for _, want := range []string{"the first is due at 2026-12-06T12:15:00Z", "kubectl labrun schedule run nightly"} {
		if !strings.Contains(ready.Message, want) {
			t.Errorf("Ready message %q does not say %q", ready.Message, want)
		}
	}
}

// TestSchedulePolicyMatchesRequesterPolicy keeps config/admission/schedule_policy.yaml's checks of a template the
// same as requester_policy.yaml's checks of a LabRun: a check added to one and not the other would let a tenant
// have the manager create a run she could not create herself.
func TestSchedulePolicyMatchesRequesterPolicy(t *testing.T) {
	type policy struct {
		Spec struct {
			Variables   []struct{ Name, Expression string } `json:"variables"`
			Validations []struct {
				Expression        string `json:"expression"`
				MessageExpression string `json:"messageExpression"`
			} `json:"validations"`
		} `json:"spec"`
	}
	read := func(name string) policy {
		raw, err := os.ReadFile("../../config/admission/" + name)
		if err != nil {
			t.Fatal(err)
		}
		var p policy
		if err := yaml.Unmarshal([]byte(strings.Split(string(raw), "\n---\n")[0]), &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run, sched := read("requester_policy.yaml"), read("schedule_policy.yaml")
	onTemplate := func(s string) string {
		// The template's fields, and the messages that name them.
		return strings.NewReplacer("object.spec.", "variables.spec.", "'spec.", "'spec.template.spec.").Replace(s)
	}
	vars := map[string]string{}
	for _, v := range sched.Spec.Variables {
		vars[v.Name] = v.Expression
	}
	for _, v := range run.Spec.Variables {
		if got := vars[v.Name]; got != onTemplate(v.Expression) {
			t.Errorf("variable %s: schedule policy has %q, want %q", v.Name, got, onTemplate(v.Expression))
		}
	}
	checks := map[string]bool{}
	for _, v := range sched.Spec.Validations {
		checks[v.Expression+"\n"+v.MessageExpression] = true
	}
	for _, v := range run.Spec.Validations {
		if !checks[onTemplate(v.Expression)+"\n"+onTemplate(v.MessageExpression)] {
			t.Errorf("the schedule policy lacks the LabRun check %q", v.Expression)
		}
	}
	if len(sched.Spec.Validations) != len(run.Spec.Validations)+1 {
		t.Errorf("schedule policy has %d checks, want the LabRun's %d and labruns create", len(sched.Spec.Validations),
			len(run.Spec.Validations))
	}
}

// TestOperatorsOwn: only the changed-by mark of a run the operator recorded makes a policy its own; a name, or an
// annotation, never does. (The sandbox test TestScheduleTriggersIgnoreOnlyTheOperator reads real records.)
func TestOperatorsOwn(t *testing.T) {
	obj := func(kind, name string, labels, annotations map[string]string) *metav1.PartialObjectMetadata {
		return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{Kind: kind},
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations}}
	}
	r := &Reconciler{}
	r.recordedRuns.add("recorded-uid", time.Now())
	cases := []struct {
		name string
		obj  *metav1.PartialObjectMetadata
		want bool
	}{
		{"a tenant's policy", obj("AuthorizationPolicy", "allow", map[string]string{"app": "x"},
			map[string]string{"example.com/note": "x"}), false},
		{"changed by a recorded run", obj("AuthorizationPolicy", "allow",
			map[string]string{"labs.ambientlab.io/changed-by": "recorded-uid"}, nil), true},
		{"annotated only", obj("PeerAuthentication", "default", nil, map[string]string{"labs.ambientlab.io/owner": "demo/r"}), false},
		{"named like a temporary PeerAuthentication", obj("PeerAuthentication", "labrun-permissive-0123456789", nil, nil), false},
		{"an empty mark", obj("PeerAuthentication", "labrun-permissive-x", map[string]string{"labs.ambientlab.io/changed-by": ""}, nil), false},
	}
	for _, tc := range cases {
		if got := r.operatorsOwn(context.Background(), tc.obj); got != tc.want {
			t.Errorf("%s: operatorsOwn = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDependsOnNamespace(t *testing.T) {
	spec := &labsv1.LabRunSpec{Target: labsv1.TargetSpec{Namespace: "apps"},
		Mesh: labsv1.MeshSpec{RootNamespace: "istio-system", AuthorizationPolicy: &labsv1.ObjectRef{Namespace: "policies", Name: "p"}}}
	for ns, want := range map[string]bool{"istio-system": true, "apps": true, "policies": true, "demo": false, "other": false} {
		if got := dependsOnNamespace(spec, "istio-system", "demo", ns); got != want {
			t.Errorf("dependsOnNamespace(%s) = %v, want %v", ns, got, want)
		}
	}
	// Defaults: the target is the schedule's namespace, the policy the target's.
	bare := &labsv1.LabRunSpec{}
	if !dependsOnNamespace(bare, "istio-system", "demo", "demo") || !dependsOnNamespace(bare, "istio-system", "demo", "istio-system") ||
		dependsOnNamespace(bare, "istio-system", "demo", "apps") {
		t.Error("defaults: want demo and istio-system only")
	}
	// The root namespace is the operator's, not the one a spec names.
	if !dependsOnNamespace(spec, "mesh-root", "demo", "mesh-root") || dependsOnNamespace(spec, "mesh-root", "demo", "istio-system") {
		t.Error("root namespace: want the operator's (mesh-root), not the spec's (istio-system)")
	}
}

func TestSelects(t *testing.T) {
	if !selects(map[string]string{"app": "ztunnel"}, map[string]string{"app": "ztunnel", "x": "y"}) {
		t.Error("a subset selects")
	}
	if selects(map[string]string{"app": "ztunnel"}, map[string]string{"app": "istiod"}) ||
		selects(map[string]string{}, map[string]string{"app": "ztunnel"}) {
		t.Error("another value, or an empty selector, selects nothing")
	}
}

func TestPendingTriggersDebounce(t *testing.T) {
	p := newPendingTriggers()
	key := types.NamespacedName{Namespace: "demo", Name: "verify"}
	first, later := at("2026-01-01T00:00:10Z"), at("2026-01-01T00:00:12Z")
	p.note(key, first)
	p.note(key, later)
	p.note(key, first) // an older event read late does not shorten the wait
	got, _ := p.pending(key)
	if !got.first.Equal(first) || !got.last.Equal(later) {
		t.Fatalf("pending = %+v, want %v to %v", got, first, later)
	}
	p.done(key, pendingTrigger{first: first, last: first}) // a run for earlier changes does not clear a later one
	if got, ok := p.pending(key); !ok || !got.first.Equal(later) {
		t.Fatalf("a later change was cleared or not restarted from its own time: %+v", got)
	}
	p.done(key, pendingTrigger{first: later, last: later})
	if _, ok := p.pending(key); ok {
		t.Fatal("still pending after its run")
	}
}

// TestTriggerDue: debounce after the last change; changes that keep coming wait at most max(debounce,
// minInterval) from the first; never before the next allowed time; whole seconds, rounded up.
func TestTriggerDue(t *testing.T) {
	t0 := at("2026-01-01T00:00:00Z")
	sec := func(n float64) time.Time { return t0.Add(time.Duration(n * float64(time.Second))) }
	allowed := func(n float64) *metav1.Time { return &metav1.Time{Time: sec(n)} }
	for _, tc := range []struct {
		name                  string
		first, last           float64
		debounce, minInterval time.Duration
		allowed               *metav1.Time
		want                  float64
	}{
		{"one change", 0, 0, 10 * time.Second, 5 * time.Minute, nil, 10},
		{"a burst", 0, 30, 10 * time.Second, 5 * time.Minute, nil, 40},
		{"endless changes", 0, 400, 10 * time.Second, 5 * time.Minute, nil, 300},
		{"a long debounce bounds itself", 0, 400, time.Hour, time.Minute, nil, 3600},
		{"not before the next allowed time", 0, 0, time.Second, time.Minute, allowed(50), 50},
		{"allowed already", 0, 0, time.Second, time.Minute, allowed(-5), 1},
		{"rounded up", 0.2, 0.2, time.Second, time.Minute, nil, 2},
	} {
		got := triggerDue(pendingTrigger{first: sec(tc.first), last: sec(tc.last)}, tc.debounce, tc.minInterval, tc.allowed)
		if !got.Equal(sec(tc.want)) {
			t.Errorf("%s: due %v, want %v", tc.name, got.Sub(t0), sec(tc.want).Sub(t0))
		}
	}
}

// TestObserveRunsInTheSameSecond: the API keeps whole seconds, so a run that fails right after another ends "at
// the same time" as the recorded one; it must still become the last run, or an alert on it never fires once the
// run is pruned. Among runs that ended in the same second the later-created one is last; an older run never
// replaces a newer record.
func TestObserveRunsInTheSameSecond(t *testing.T) {
	run := func(name string, phase labsv1.Phase, created, ended string) *labsv1.LabRun {
		r := &labsv1.LabRun{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(at(created))}}
		r.Status.Phase = phase
		r.Status.CompletionTime = ptr.To(metav1.NewTime(at(ended)))
		return r
	}
	passed := run("s-1", labsv1.PhaseSucceeded, "2026-11-28T03:00:00Z", "2026-11-28T03:00:05Z")
	failed := run("s-2", labsv1.PhaseFailed, "2026-11-28T03:00:05Z", "2026-11-28T03:00:05Z")
	older := run("s-0", labsv1.PhaseFailed, "2026-11-28T02:00:00Z", "2026-11-28T02:00:04Z")

	ls := &labsv1.LabSchedule{}
	observeRuns(ls, scheduleRuns{succeeded: []*labsv1.LabRun{passed}})
	if ls.Status.LastRun == nil || ls.Status.LastRun.Name != "s-1" {
		t.Fatalf("last run = %+v, want s-1", ls.Status.LastRun)
	}
	// s-1 was deleted; s-2 ended in the same second.
	observeRuns(ls, scheduleRuns{failed: []*labsv1.LabRun{failed}})
	if ls.Status.LastRun.Name != "s-2" || ls.Status.LastRun.Phase != labsv1.PhaseFailed {
		t.Errorf("last run = %s %s, want s-2 Failed", ls.Status.LastRun.Name, ls.Status.LastRun.Phase)
	}
	// Both listed: the later-created is last, whichever list it is in.
	if got := (scheduleRuns{succeeded: []*labsv1.LabRun{passed}, failed: []*labsv1.LabRun{failed}}).lastFinished(); got != failed {
		t.Errorf("lastFinished = %s, want s-2", got.Name)
	}
	if got := (scheduleRuns{succeeded: []*labsv1.LabRun{failed}, failed: []*labsv1.LabRun{passed}}).lastFinished(); got != failed {
		t.Errorf("lastFinished = %s, want s-2", got.Name)
	}
	// An older run left behind does not move the record back.
	observeRuns(ls, scheduleRuns{failed: []*labsv1.LabRun{older}})
	if ls.Status.LastRun.Name != "s-2" {
		t.Errorf("last run = %s after an older run was observed, want s-2", ls.Status.LastRun.Name)
	}
}
