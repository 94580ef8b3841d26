package labschedule_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// LabSchedules against the sandbox: the manager creates Verify runs of one lab (fast, and they change nothing),
// so each test sees several runs within seconds.

func getSchedule(g Gomega, ls *labsv1.LabSchedule) *labsv1.LabSchedule {
	out := &labsv1.LabSchedule{}
	g.Expect(suite.K8s.Get(context.Background(), client.ObjectKeyFromObject(ls), out)).To(Succeed())
	return out
}

// scheduledAt reads the scheduled time back from a scheduled run's name, <schedule>-<unix seconds>.
func scheduledAt(t testing.TB, ls *labsv1.LabSchedule, name string) int64 {
	t.Helper()
	s, ok := strings.CutPrefix(name, ls.Name+"-")
	if !ok {
		t.Fatalf("run %s is not named for schedule %s", name, ls.Name)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("run %s: not <schedule>-<unix seconds>: %v", name, err)
	}
	return n
}

// runLog watches a schedule's runs and remembers every run it saw, the most active at once, and the runs
// deleted before they finished.
type runLog struct {
	mu                sync.Mutex
	seen              map[string]labsv1.Phase
	maxActive         int
	deletedUnfinished []string
}

func watchRuns(t *testing.T, ls *labsv1.LabSchedule) *runLog {
	t.Helper()
	w, err := suite.K8s.Watch(context.Background(), &labsv1.LabRunList{}, client.InNamespace(ls.Namespace),
		client.MatchingLabels{labsv1.LabelSchedule: ls.Name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	l := &runLog{seen: map[string]labsv1.Phase{}}
	go func() {
		for ev := range w.ResultChan() {
			run, ok := ev.Object.(*labsv1.LabRun)
			if !ok {
				continue
			}
			l.mu.Lock()
			phase := run.Status.Phase
			done := phase == labsv1.PhaseSucceeded || phase == labsv1.PhaseFailed
			if last, ok := l.seen[run.Name]; ok && (last == labsv1.PhaseSucceeded || last == labsv1.PhaseFailed) {
				done = true
			}
			l.seen[run.Name] = phase
			if (ev.Type == watch.Deleted || !run.DeletionTimestamp.IsZero()) && !done &&
				!slices.Contains(l.deletedUnfinished, run.Name) {
				l.deletedUnfinished = append(l.deletedUnfinished, run.Name)
			}
			l.maxActive = max(l.maxActive, l.activeLocked())
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *runLog) activeLocked() int {
	n := 0
	for name, p := range l.seen {
		if p != labsv1.PhaseSucceeded && p != labsv1.PhaseFailed && !slices.Contains(l.deletedUnfinished, name) {
			n++
		}
	}
	return n
}

func (l *runLog) names() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for n := range l.seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (l *runLog) snapshot() (maxActive int, deletedUnfinished []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.maxActive, slices.Clone(l.deletedUnfinished)
}

// TestScheduleRunsPrunesAndSuspends: @every 5s creates runs named for their scheduled times, 5s apart; history is
// pruned to one success; status reports the last run; suspend stops creation.
func TestScheduleRunsPrunesAndSuspends(t *testing.T) {
	g := NewWithT(t)
	suite.Start(t, suite.Options())
	ls := suite.NewSchedule("@every 5s")
	ls.Spec.SuccessfulRunsHistoryLimit = ptr.To[int32](1)
	log := watchRuns(t, ls)
	suite.CreateSchedule(t, ls)

	g.Eventually(func(g Gomega) {
		g.Expect(len(log.names())).To(BeNumerically(">=", 3))
		cur := getSchedule(g, ls)
		g.Expect(cur.Status.LastRun).NotTo(BeNil())
		g.Expect(cur.Status.LastRun.Phase).To(Equal(labsv1.PhaseSucceeded))
		var succeeded int
		for _, run := range suite.RunsOf(g, ls) {
			if run.Status.Phase == labsv1.PhaseSucceeded && run.DeletionTimestamp.IsZero() {
				succeeded++
			}
		}
		g.Expect(succeeded).To(Equal(1), "successful runs kept")
	}).WithTimeout(40 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())

	names := log.names()
	for i := 1; i < len(names); i++ {
		g.Expect(scheduledAt(t, ls, names[i])-scheduledAt(t, ls, names[i-1])).To(BeNumerically("==", 5),
			"runs %v are 5s apart", names)
	}
	cur := getSchedule(g, ls)
	run := suite.RunsOf(g, ls)[0]
	g.Expect(run.Labels).To(HaveKeyWithValue("team", "platform"), "template labels")
	g.Expect(metav1.IsControlledBy(&run, cur)).To(BeTrue(), "owned by the schedule")
	g.Expect(run.Spec.Mode).To(Equal(labsv1.ModeVerify))
	g.Expect(cur.Status.LastSuccessfulTime).NotTo(BeNil())
	g.Expect(cur.Status.NextScheduleTime).NotTo(BeNil())
	// The run is created before the schedule's status says so: a run seen may be newer than the status read.
	last := scheduledAt(t, ls, names[len(names)-1])
	g.Eventually(func(g Gomega) {
		g.Expect(getSchedule(g, ls).Status.LastScheduleTime.Unix()).To(BeNumerically(">=", last))
	}).WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	g.Expect(cur.Status.ObservedGeneration).To(Equal(cur.Generation))
	ready := meta.FindStatusCondition(cur.Status.Conditions, labsv1.ConditionReady)
	g.Expect(ready).NotTo(BeNil())
	g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), ready.Message)
	g.Expect(meta.FindStatusCondition(cur.Status.Conditions, labsv1.ConditionStalled)).To(BeNil())
	g.Expect(scheduleKstatus(t, cur)).To(Equal(status.CurrentStatus))

	// Suspend: once the manager has seen it, no run is created for longer than an interval.
	patch := client.MergeFrom(cur.DeepCopy())
	cur.Spec.Suspend = ptr.To(true)
	g.Expect(suite.K8s.Patch(context.Background(), cur, patch)).To(Succeed())
	g.Eventually(func(g Gomega) {
		s := getSchedule(g, ls)
		g.Expect(s.Status.ObservedGeneration).To(Equal(s.Generation))
		g.Expect(s.Status.NextScheduleTime).To(BeNil())
	}).WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	before := len(log.names())
	g.Consistently(func() int { return len(log.names()) }).WithTimeout(7 * time.Second).
		WithPolling(200 * time.Millisecond).Should(Equal(before))
}

// longRunSchedule's runs stay active for the probe pods' start grace: their image cannot be pulled.
func longRunSchedule(policy labsv1.ConcurrencyPolicy) *labsv1.LabSchedule {
	ls := suite.NewSchedule("@every 2s")
	ls.Spec.ConcurrencyPolicy = policy
	ls.Spec.Template.Spec.Probe.Image = suite.UnpullableImage
	return ls
}

func TestScheduleConcurrencyPolicies(t *testing.T) {
	suite.Start(t, suite.Options())
	t.Run("Forbid", func(t *testing.T) {
		g := NewWithT(t)
		ls := longRunSchedule(labsv1.ConcurrencyForbid)
		log := watchRuns(t, ls)
		suite.CreateSchedule(t, ls)
		g.Eventually(log.names).WithTimeout(10 * time.Second).Should(HaveLen(1))
		// Three more intervals pass while the first run is active: no second run.
		g.Consistently(log.names).WithTimeout(6 * time.Second).WithPolling(100 * time.Millisecond).Should(HaveLen(1))
		g.Eventually(func(g Gomega) { g.Expect(getSchedule(g, ls).Status.Active).To(Equal(log.names())) }).
			WithTimeout(5 * time.Second).Should(Succeed())
	})
	t.Run("Allow", func(t *testing.T) {
		g := NewWithT(t)
		ls := longRunSchedule(labsv1.ConcurrencyAllow)
		log := watchRuns(t, ls)
		suite.CreateSchedule(t, ls)
		g.Eventually(func() int { n, _ := log.snapshot(); return n }).WithTimeout(15*time.Second).
			Should(BeNumerically(">=", 2), "runs active at once")
		g.Eventually(func(g Gomega) { g.Expect(len(getSchedule(g, ls).Status.Active)).To(BeNumerically(">=", 2)) }).
			WithTimeout(5 * time.Second).Should(Succeed())
		_, deleted := log.snapshot()
		g.Expect(deleted).To(BeEmpty())
	})
	t.Run("Replace", func(t *testing.T) {
		g := NewWithT(t)
		ls := longRunSchedule(labsv1.ConcurrencyReplace)
		log := watchRuns(t, ls)
		suite.CreateSchedule(t, ls)
		g.Eventually(func() []string { _, d := log.snapshot(); return d }).WithTimeout(15*time.Second).
			ShouldNot(BeEmpty(), "a run deleted before it finished")
		n, _ := log.snapshot()
		g.Expect(n).To(Equal(1), "never two runs active at once")
	})
}

// TestScheduleSurvivesRestart: a manager stopped for two intervals; the next runs the most recent missed time
// once, and neither repeats a time already run nor runs the older missed one.
func TestScheduleSurvivesRestart(t *testing.T) {
	g := NewWithT(t)
	stop := suite.Start(t, suite.Options())
	ls := suite.NewSchedule("@every 4s")
	log := watchRuns(t, ls)
	cleanup := suite.CreateSchedule(t, ls)
	g.Eventually(log.names).WithTimeout(15 * time.Second).Should(HaveLen(2))
	stop()
	first := log.names()
	last := scheduledAt(t, ls, first[1])
	// Wait, by the clock, until two more scheduled times have passed with no manager.
	g.Eventually(func() int64 { return time.Now().Unix() }).WithTimeout(15 * time.Second).
		WithPolling(100 * time.Millisecond).Should(BeNumerically(">=", last+9))
	g.Expect(log.names()).To(Equal(first), "no run while the manager is down")
	suite.Start(t, suite.Options())
	g.Eventually(log.names).WithTimeout(15 * time.Second).Should(HaveLen(4))
	names := log.names()
	g.Expect(names[:2]).To(Equal(first))
	g.Expect(scheduledAt(t, ls, names[2])).To(Equal(last+8), "the most recent missed time, once: %v", names)
	g.Expect(scheduledAt(t, ls, names[3])).To(Equal(last+12), "then on schedule: %v", names)
	cleanup() // while the second manager runs: the runs' finalizers need it
}

// TestScheduleTriggers: a tenant-like edit of the AuthorizationPolicy's spec starts a run after the debounce; a
// metadata-only edit and a Lab run's own temporary changes do not; a new ztunnel pod template does.
func TestScheduleTriggers(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	suite.Start(t, suite.Options())
	ls := suite.NewSchedule("@every 1h")
	ls.Spec.Trigger = &labsv1.TriggerSpec{OnPolicyChange: true, OnZtunnelChange: true,
		Debounce: &metav1.Duration{Duration: time.Second}, MinInterval: &metav1.Duration{Duration: time.Second}}
	log := watchRuns(t, ls)
	suite.CreateSchedule(t, ls)
	quiet := func(why string) {
		t.Helper()
		g.Consistently(log.names).WithTimeout(3*time.Second).WithPolling(100*time.Millisecond).Should(BeEmpty(), why)
	}

	editPolicy(t, func(ap *unstructured.Unstructured) {
		ap.SetAnnotations(map[string]string{"example.com/note": "reviewed"})
	})
	quiet("a metadata-only change")

	lab := suite.NewRun(labsv1.LabAuthorizationPolicy)
	suite.Create(t, lab)
	g.Expect(suite.Finished(t, lab).Status.Phase).To(Equal(labsv1.PhaseSucceeded))
	quiet("the operator's own temporary change and restore")

	restore := editPolicy(t, func(ap *unstructured.Unstructured) {
		rules, _, _ := unstructured.NestedSlice(ap.Object, "spec", "rules")
		rules = append(rules, map[string]any{"from": []any{map[string]any{"source": map[string]any{
			"principals": []any{"cluster.local/ns/demo/sa/reviewer"}}}}})
		g.Expect(unstructured.SetNestedSlice(ap.Object, rules, "spec", "rules")).To(Succeed())
	})
	g.Eventually(log.names).WithTimeout(10 * time.Second).Should(HaveLen(1))
	name := log.names()[0]
	g.Expect(name).To(HavePrefix(ls.Name + "-t-"))
	g.Eventually(func() *metav1.Time { return getSchedule(g, ls).Status.LastTriggerTime }).
		WithTimeout(5 * time.Second).ShouldNot(BeNil())
	restore()
	// Putting the policy back is a change too: one more run.
	g.Eventually(log.names).WithTimeout(10 * time.Second).Should(HaveLen(2))

	ds := &appsv1.DaemonSet{}
	g.Expect(suite.K8s.Get(ctx, client.ObjectKey{Namespace: sandbox.RootNamespace, Name: "ztunnel"}, ds)).To(Succeed())
	orig := ds.DeepCopy()
	patch := client.MergeFrom(ds.DeepCopy())
	ds.Spec.Template.Annotations = map[string]string{"example.com/restartedAt": time.Now().Format(time.RFC3339)}
	g.Expect(suite.K8s.Patch(ctx, ds, patch)).To(Succeed())
	t.Cleanup(func() {
		back := client.MergeFrom(ds.DeepCopy())
		ds.Spec.Template.Annotations = orig.Spec.Template.Annotations
		if err := suite.K8s.Patch(ctx, ds, back); err != nil {
			t.Errorf("restoring the ztunnel DaemonSet: %v", err)
		}
	})
	g.Eventually(log.names).WithTimeout(10*time.Second).Should(HaveLen(3), "a new ztunnel pod template")
}

// editPolicy changes the guide's AuthorizationPolicy as its owner would and returns how to put it back.
func editPolicy(t *testing.T, edit func(*unstructured.Unstructured)) (restore func()) {
	t.Helper()
	ctx := context.Background()
	ap := suite.ReadMesh(suite.PolicyRef)
	orig := ap.DeepCopy()
	edit(ap)
	NewWithT(t).Expect(suite.K8s.Update(ctx, ap)).To(Succeed())
	var once sync.Once
	restore = func() {
		once.Do(func() {
			cur := suite.ReadMesh(suite.PolicyRef)
			cur.Object["spec"] = orig.Object["spec"]
			cur.SetAnnotations(orig.GetAnnotations())
			NewWithT(t).Expect(suite.K8s.Update(ctx, cur)).To(Succeed())
		})
	}
	t.Cleanup(restore)
	return restore
}

func TestScheduleThatCannotRunIsStalled(t *testing.T) {
	suite.Start(t, suite.Options())
	for _, tc := range []struct{ name, schedule, zone, message string }{
		{"unknown time zone", "@every 5s", "Mars/Olympus_Mons", "unknown time zone"},
		{"minute out of range", "61 * * * *", "", "does not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			ls := suite.NewSchedule(tc.schedule)
			if tc.zone != "" {
				ls.Spec.TimeZone = &tc.zone
			}
			suite.CreateSchedule(t, ls)
			g.Eventually(func(g Gomega) {
				cur := getSchedule(g, ls)
				stalled := meta.FindStatusCondition(cur.Status.Conditions, labsv1.ConditionStalled)
				g.Expect(stalled).NotTo(BeNil())
				g.Expect(stalled.Status).To(Equal(metav1.ConditionTrue))
				g.Expect(stalled.Message).To(ContainSubstring(tc.message))
				g.Expect(meta.IsStatusConditionFalse(cur.Status.Conditions, labsv1.ConditionReady)).To(BeTrue())
				g.Expect(cur.Status.NextScheduleTime).To(BeNil())
			}).WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
			g.Expect(suite.RunsOf(g, ls)).To(BeEmpty())
			g.Expect(scheduleKstatus(t, getSchedule(g, ls))).To(Equal(status.FailedStatus))
		})
	}
}

// TestScheduleAdmission: a schedule is a LabRun request made again and again by the manager, so its template is
// checked against its writer's rights when it is written; the runs the manager then creates are admitted.
func TestScheduleAdmission(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	suite.EnsureTenantNamespace(t)
	suite.Grant(t, "sally", suite.TenantNamespace, suite.Rule(labsv1.GroupVersion.Group, "labschedules", "create", "update", "get", "patch"),
		suite.Rule(labsv1.GroupVersion.Group, "labruns", "create", "get", "list"), suite.Rule("", "pods", "create"))
	suite.GrantFootprintReads(t, "sally") // her footprint schedules read pods across the cluster
	sally := suite.AsUser(t, "sally")
	tenantSchedule := func(lab labsv1.LabName) *labsv1.LabSchedule {
		ls := suite.NewSchedule("@every 1h")
		ls.Namespace = suite.TenantNamespace
		ls.Spec.Template.Spec.Labs = []labsv1.LabName{lab}
		ls.Spec.Template.Spec.Mesh.AuthorizationPolicy = nil
		return ls
	}
	g.Eventually(func() error { return sally.Create(ctx, tenantSchedule(labsv1.LabMTLS), client.DryRunAll) }).
		WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).
		Should(MatchError(ContainSubstring("user sally may not get pods/log in namespace istio-system")))
	custom := tenantSchedule(labsv1.LabFootprint)
	custom.Spec.Template.Spec.Probe.Image = "registry.example/sally/forger:1"
	g.Expect(sally.Create(ctx, custom, client.DryRunAll)).
		To(MatchError(ContainSubstring("user sally may not set-probe-image on labruns in namespace team-a")))

	// An administrator's schedule that reads ztunnel logs: sally may not rewrite it, but may label it.
	admins := tenantSchedule(labsv1.LabMTLS)
	g.Expect(suite.K8s.Create(ctx, admins)).To(Succeed())
	t.Cleanup(func() { _ = suite.K8s.Delete(ctx, admins) })
	mine := &labsv1.LabSchedule{}
	g.Expect(sally.Get(ctx, client.ObjectKeyFromObject(admins), mine)).To(Succeed())
	mine.Spec.Schedule = "@every 1m"
	g.Expect(sally.Update(ctx, mine.DeepCopy())).
		To(MatchError(ContainSubstring("user sally may not get pods/log in namespace istio-system")))
	// kubectl label sends a patch of the labels alone. (A typed update that round-trips the spec rewrites the
	// defaulted "2m" of maxExposure as "2m0s": a spec change, checked like any other.)
	labelled := &labsv1.LabSchedule{}
	g.Expect(sally.Get(ctx, client.ObjectKeyFromObject(admins), labelled)).To(Succeed())
	patch := client.MergeFrom(labelled.DeepCopy())
	labelled.Labels = map[string]string{"owner": "sally"}
	g.Expect(sally.Patch(ctx, labelled, patch)).To(Succeed(), "a metadata-only change is not a new request")

	// Without the right to create LabRuns, no schedule of them either.
	suite.Grant(t, "sid", suite.TenantNamespace, suite.Rule(labsv1.GroupVersion.Group, "labschedules", "create"), suite.Rule("", "pods", "create"))
	g.Expect(suite.AsUser(t, "sid").Create(ctx, tenantSchedule(labsv1.LabFootprint), client.DryRunAll)).
		To(MatchError(ContainSubstring("user sid may not create labruns in namespace team-a")))

	// The manager itself may create only a schedule's runs (config/admission/manager_policy.yaml).
	manager, err := client.New(suite.SB.ManagerConfig(), client.Options{Scheme: suite.K8s.Scheme()})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(manager.Create(ctx, suite.NewRun(labsv1.LabFootprint), client.DryRunAll)).To(MatchError(ContainSubstring(
		"the labrun-operator may only create the LabRuns of a LabSchedule")))

	// Her footprint schedule is admitted, and so is the run the manager creates from it.
	suite.Start(t, suite.Options())
	ls := tenantSchedule(labsv1.LabFootprint)
	ls.Spec.Schedule = "@every 2s"
	g.Expect(sally.Create(ctx, ls)).To(Succeed())
	t.Cleanup(func() {
		_ = suite.K8s.Delete(ctx, ls)
		g.Eventually(func(g Gomega) {
			for _, run := range suite.RunsOf(g, ls) {
				suite.DeleteAndWait(t, &run)
			}
			g.Expect(suite.RunsOf(g, ls)).To(BeEmpty())
		}).WithTimeout(60 * time.Second).Should(Succeed())
	})
	g.Eventually(func(g Gomega) { g.Expect(suite.RunsOf(g, ls)).NotTo(BeEmpty()) }).WithTimeout(10 * time.Second).Should(Succeed())
	run := suite.RunsOf(g, ls)[0]
	g.Expect(metav1.IsControlledBy(&run, getSchedule(g, ls))).To(BeTrue())
}

// TestScheduleSampleIsAdmitted sends config/samples' LabSchedule to the API server (server-side dry run).
func TestScheduleSampleIsAdmitted(t *testing.T) {
	g := NewWithT(t)
	raw, err := os.ReadFile(filepath.Join(suite.SB.Env.Root, "config", "samples", "labs_v1alpha1_labschedule.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	ls := &labsv1.LabSchedule{}
	g.Expect(yaml.UnmarshalStrict(raw, ls)).To(Succeed())
	g.Expect(ls.Spec.Template.Spec.Mode).To(Equal(labsv1.ModeVerify))
	g.Expect(suite.K8s.Create(context.Background(), ls, client.DryRunAll)).To(Succeed())
	// The ClusterRole config/samples documents for running the samples is enough for it.
	role := &rbacv1.ClusterRole{}
	raw, err = os.ReadFile(filepath.Join(suite.SB.Env.Root, "config", "samples", "mesh_tester_role.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(yaml.UnmarshalStrict(raw, role)).To(Succeed())
	suite.Grant(t, "tess", "", role.Rules...)
	g.Eventually(func() error {
		return suite.AsUser(t, "tess").Create(context.Background(), ls.DeepCopy(), client.DryRunAll)
	}).
		WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	g.Expect(apierrors.IsNotFound(suite.K8s.Get(context.Background(), client.ObjectKeyFromObject(ls), &labsv1.LabSchedule{}))).
		To(BeTrue(), "a dry run stores nothing")
}

// scheduleKstatus is what kstatus (Flux, Argo CD's kstatus-based tools, kubectl wait) makes of the schedule.
func scheduleKstatus(t *testing.T, ls *labsv1.LabSchedule) status.Status {
	return suite.KstatusOf(t, ls)
}
