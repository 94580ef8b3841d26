package labschedule_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// TestScheduleActsWithItsAuthorsRightsOfToday: admission records who wrote a schedule's spec, nobody can forge or
// remove that record, and once the author loses a right the runs need (her RoleBinding is deleted) the schedule
// is Stalled, naming the right, and creates no more runs.
func TestScheduleActsWithItsAuthorsRightsOfToday(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	suite.Start(t, suite.Options())
	suite.Grant(t, "sam", sandbox.DemoNamespace, suite.Rule(labsv1.GroupVersion.Group, "labschedules", "create", "get", "update", "patch"),
		suite.Rule(labsv1.GroupVersion.Group, "labruns", "create"))
	suite.Grant(t, "sam", "istio-system", suite.Rule("", "pods/log", "get"))
	// The right to create pods in demo comes from a RoleBinding of its own, deleted below.
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.DemoNamespace, Name: "sam-pods"},
		Rules: []rbacv1.PolicyRule{suite.Rule("", "pods", "create")}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.DemoNamespace, Name: "sam-pods"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "sam"}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name}}
	for _, o := range []client.Object{role, binding} {
		g.Expect(suite.K8s.Create(ctx, o)).To(Succeed())
		t.Cleanup(func() { _ = suite.K8s.Delete(ctx, o) })
	}
	sam := suite.AsUser(t, "sam")

	ls := suite.NewSchedule("@every 2s")
	// A forged author in the spec write is overwritten with the writer's.
	ls.Annotations = map[string]string{labsv1.AnnotationAuthor: "system:admin", labsv1.AnnotationAuthorGroups: `"system:masters"`}
	log := watchRuns(t, ls)
	g.Eventually(func() error { return sam.Create(ctx, ls) }).WithTimeout(10 * time.Second).
		WithPolling(100 * time.Millisecond).Should(Succeed())
	t.Cleanup(func() {
		_ = suite.K8s.Delete(ctx, ls)
		g.Eventually(func(g Gomega) {
			for _, run := range suite.RunsOf(g, ls) {
				suite.DeleteAndWait(t, &run)
			}
			g.Expect(suite.RunsOf(g, ls)).To(BeEmpty())
		}).WithTimeout(60 * time.Second).Should(Succeed())
	})
	cur := getSchedule(g, ls)
	g.Expect(cur.Annotations).To(HaveKeyWithValue(labsv1.AnnotationAuthor, "sam"))
	g.Expect(cur.Annotations).To(HaveKeyWithValue(labsv1.AnnotationAuthorGroups, `"system:authenticated"`))

	// A metadata-only update can neither change nor remove the record.
	patch := client.MergeFrom(cur.DeepCopy())
	cur.Annotations[labsv1.AnnotationAuthor] = "system:admin"
	delete(cur.Annotations, labsv1.AnnotationAuthorGroups)
	cur.Labels = map[string]string{"owner": "sam"}
	g.Expect(sam.Patch(ctx, cur, patch)).To(Succeed())
	cur = getSchedule(g, ls)
	g.Expect(cur.Labels).To(HaveKeyWithValue("owner", "sam"))
	g.Expect(cur.Annotations).To(HaveKeyWithValue(labsv1.AnnotationAuthor, "sam"))
	g.Expect(cur.Annotations).To(HaveKeyWithValue(labsv1.AnnotationAuthorGroups, `"system:authenticated"`))

	g.Eventually(log.names).WithTimeout(15*time.Second).ShouldNot(BeEmpty(), "runs while sam has her rights")

	g.Expect(suite.K8s.Delete(ctx, binding)).To(Succeed())
	g.Eventually(func(g Gomega) {
		cur := getSchedule(g, ls)
		stalled := meta.FindStatusCondition(cur.Status.Conditions, labsv1.ConditionStalled)
		g.Expect(stalled).NotTo(BeNil())
		g.Expect(stalled.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(stalled.Reason).To(Equal("AuthorLacksRight"))
		g.Expect(stalled.Message).To(ContainSubstring("its author sam may no longer create pods in namespace demo"))
		g.Expect(meta.IsStatusConditionFalse(cur.Status.Conditions, labsv1.ConditionReady)).To(BeTrue())
		g.Expect(cur.Status.NextScheduleTime).To(BeNil())
	}).WithTimeout(15 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	g.Expect(scheduleKstatus(t, getSchedule(g, ls))).To(Equal(status.FailedStatus))
	before := log.names()
	g.Consistently(log.names).WithTimeout(6*time.Second).WithPolling(200*time.Millisecond).
		Should(Equal(before), "no run after three more intervals")
}
