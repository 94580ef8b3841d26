package labschedule_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// Triggers as a tenant sees them: she owns policies in a namespace a platform schedule depends on.

// triggerSchedule is a schedule that runs only when a policy it depends on changes.
func triggerSchedule(policy labsv1.ConcurrencyPolicy, debounce, minInterval time.Duration) *labsv1.LabSchedule {
	ls := suite.NewSchedule("@every 1h")
	ls.Spec.ConcurrencyPolicy = policy
	ls.Spec.Trigger = &labsv1.TriggerSpec{OnPolicyChange: true, Debounce: &metav1.Duration{Duration: debounce},
		MinInterval: &metav1.Duration{Duration: minInterval}}
	return ls
}

// seenBy waits until the manager has handled the schedule's spec, so that a change made now finds it.
func seenBy(t *testing.T, ls *labsv1.LabSchedule) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		cur := getSchedule(g, ls)
		g.Expect(cur.Status.ObservedGeneration).To(Equal(cur.Generation))
	}).WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
}

// TestScheduleTriggeredByATenantsNamesake: a PeerAuthentication a tenant names like the operator's temporary ones
// (labrun-permissive-x) is a policy change like any other; only the operator's marks, which she cannot write,
// would make it the operator's.
func TestScheduleTriggeredByATenantsNamesake(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	suite.Start(t, suite.Options())
	ls := triggerSchedule(labsv1.ConcurrencyForbid, time.Second, time.Second)
	log := watchRuns(t, ls)
	suite.CreateSchedule(t, ls)
	seenBy(t, ls)

	suite.Grant(t, "tina", sandbox.DemoNamespace, suite.Rule("security.istio.io", "peerauthentications", "create", "delete"))
	tina := suite.AsUser(t, "tina")
	pa := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"selector": map[string]any{"matchLabels": map[string]any{"app": "tina-nothing"}},
		"mtls":     map[string]any{"mode": "PERMISSIVE"}}}}
	pa.SetGroupVersionKind(mesh.GVK(mesh.KindPeerAuthentication))
	pa.SetNamespace(sandbox.DemoNamespace)
	pa.SetName("labrun-permissive-x")

	forged := pa.DeepCopy()
	forged.SetLabels(map[string]string{mesh.LabelChangedBy: "0123"})
	g.Eventually(func() error { return tina.Create(ctx, forged, client.DryRunAll) }).
		WithTimeout(10*time.Second).WithPolling(100*time.Millisecond).
		Should(MatchError(ContainSubstring("only the labrun-operator writes them")), "the mark is the operator's")

	g.Expect(tina.Create(ctx, pa)).To(Succeed())
	t.Cleanup(func() {
		if err := suite.K8s.Delete(ctx, pa); client.IgnoreNotFound(err) != nil {
			t.Errorf("deleting %s: %v", pa.GetName(), err)
		}
	})
	g.Eventually(log.names).WithTimeout(15*time.Second).Should(HaveLen(1), "the namesake's creation starts a run")
	g.Expect(log.names()[0]).To(HavePrefix(ls.Name + "-t-"))
}

// TestScheduleTriggersAreRateLimited: a tenant edits, every second, a policy a platform schedule depends on.
func TestScheduleTriggersAreRateLimited(t *testing.T) {
	ctx := context.Background()
	suite.Start(t, suite.Options())
	suite.Grant(t, "tina", sandbox.DemoNamespace, suite.Rule("security.istio.io", "authorizationpolicies", "get", "update"))
	tina := suite.AsUser(t, "tina")
	// editEverySecond changes the AuthorizationPolicy's rules as tina, once a second, n times; the last edit
	// puts the rules back. It returns when the last edit began.
	editEverySecond := func(t *testing.T, n int) (last time.Time) {
		t.Helper()
		orig := suite.ReadMesh(suite.PolicyRef)
		origRules, _, _ := unstructured.NestedSlice(orig.Object, "spec", "rules")
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for i := range n {
			<-tick.C
			last = time.Now()
			rules := origRules
			if i%2 == 0 && i != n-1 {
				rules = append(append([]any{}, origRules...), map[string]any{"from": []any{map[string]any{
					"source": map[string]any{"principals": []any{"cluster.local/ns/demo/sa/tina-" + strconv.Itoa(i)}}}}})
			}
			NewWithT(t).Eventually(func() error {
				ap := &unstructured.Unstructured{}
				ap.SetGroupVersionKind(orig.GroupVersionKind())
				if err := tina.Get(ctx, client.ObjectKeyFromObject(orig), ap); err != nil {
					return err
				}
				if err := unstructured.SetNestedSlice(ap.Object, rules, "spec", "rules"); err != nil {
					return err
				}
				err := tina.Update(ctx, ap)
				if apierrors.IsConflict(err) {
					return err
				}
				NewWithT(t).Expect(err).NotTo(HaveOccurred())
				return nil
			}).WithTimeout(5 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
		}
		return last
	}

	t.Run("at most one run per interval", func(t *testing.T) {
		g := NewWithT(t)
		// Allow: nothing but the interval holds triggered runs back.
		ls := triggerSchedule(labsv1.ConcurrencyAllow, 500*time.Millisecond, 5*time.Second)
		log := watchRuns(t, ls)
		suite.CreateSchedule(t, ls)
		seenBy(t, ls)
		start := time.Now()
		lastEdit := editEverySecond(t, 16)
		elapsed := time.Since(start)
		// The last edits are folded into one more run, once the interval since the last one has passed.
		g.Eventually(func(g Gomega) {
			cur := getSchedule(g, ls)
			g.Expect(cur.Status.LastTriggerTime).NotTo(BeNil())
			g.Expect(cur.Status.LastTriggerTime.Time).To(BeTemporally(">=", lastEdit))
		}).WithTimeout(15 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
		names := log.names()
		g.Expect(len(names)).To(BeNumerically(">=", 3), "edits over %v still run, folded: %v", elapsed, names)
		g.Expect(len(names)).To(BeNumerically("<=", 2+int(elapsed/(5*time.Second))),
			"at most one run per 5s interval over %v: %v", elapsed, names)
		for i := 1; i < len(names); i++ {
			g.Expect(triggeredAt(t, ls, names[i])-triggeredAt(t, ls, names[i-1])).To(BeNumerically(">=", 5),
				"runs %v are at least minInterval apart", names)
		}
		cur := getSchedule(g, ls)
		g.Expect(cur.Status.NextTriggerAllowedTime).NotTo(BeNil())
		g.Expect(cur.Status.NextTriggerAllowedTime.Sub(cur.Status.LastTriggerTime.Time)).To(Equal(5 * time.Second))
	})

	t.Run("Replace: a triggered run never aborts an active one", func(t *testing.T) {
		g := NewWithT(t)
		ls := triggerSchedule(labsv1.ConcurrencyReplace, 500*time.Millisecond, time.Second)
		ls.Spec.Template.Spec.Probe.Image = suite.UnpullableImage // its runs stay active for the pod start grace
		log := watchRuns(t, ls)
		suite.CreateSchedule(t, ls)
		seenBy(t, ls)
		editEverySecond(t, 8)
		g.Expect(log.names()).To(HaveLen(1), "one run, active throughout the edits")
		_, deleted := log.snapshot()
		g.Expect(deleted).To(BeEmpty(), "no run deleted before it finished")
	})
}

// triggeredAt reads the time back from a triggered run's name, <schedule>-t-<unix seconds>.
func triggeredAt(t testing.TB, ls *labsv1.LabSchedule, name string) int64 {
	t.Helper()
	s, ok := strings.CutPrefix(name, ls.Name+"-t-")
	if !ok {
		t.Fatalf("run %s is not a triggered run of schedule %s", name, ls.Name)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("run %s: not <schedule>-t-<unix seconds>: %v", name, err)
	}
	return n
}
