package labschedule_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// The policy-audit lab's requester rights, on the sandbox's API server with its RBAC authorizer and the admission
// policies config/default ships: requester-rights for a LabRun, schedule-requester-rights for a LabSchedule's
// template, and the SubjectAccessReviews a schedule makes for its author before each run (author.go). The audit
// reads both kinds of policy and runs probe pods in each namespace it audits (spec.audit.namespaces, else the
// target's), and creates the attacker ServiceAccount in the target namespace and the non-mesh namespace.

// auditNamespaces are eight namespaces to audit besides the tenant's (the API allows eight).
var auditNamespaces = func() []string {
	var out []string
	for i := 1; i <= 8; i++ {
		out = append(out, fmt.Sprintf("audit-%d", i))
	}
	return out
}()

// ensureAuditNamespaces creates team-a and the audit namespaces (kept: no namespace controller runs).
func ensureAuditNamespaces(t *testing.T) {
	t.Helper()
	suite.EnsureTenantNamespace(t)
	for _, name := range auditNamespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if err := suite.K8s.Create(context.Background(), ns); client.IgnoreAlreadyExists(err) != nil {
			t.Fatal(err)
		}
	}
}

// auditRun is a policy-audit LabRun in team-a, as a tenant writes it, auditing namespaces (none: the default).
func auditRun(mode labsv1.Mode, namespaces ...string) *labsv1.LabRun {
	run := suite.NewRun(labsv1.LabPolicyAudit)
	run.Namespace = suite.TenantNamespace
	run.Spec.Mesh.AuthorizationPolicy = nil
	run.Spec.Mode = mode
	if len(namespaces) > 0 {
		run.Spec.Audit = &labsv1.AuditSpec{Namespaces: namespaces}
	}
	return run
}

// auditSchedule is a LabSchedule in team-a whose runs audit namespaces; its first run is an hour away.
func auditSchedule(namespaces ...string) *labsv1.LabSchedule {
	ls := suite.NewSchedule("@every 1h")
	ls.Namespace = suite.TenantNamespace
	ls.Spec.Template.Spec.Labs = []labsv1.LabName{labsv1.LabPolicyAudit}
	ls.Spec.Template.Spec.Mesh.AuthorizationPolicy = nil
	ls.Spec.Template.Spec.Audit = &labsv1.AuditSpec{Namespaces: namespaces}
	return ls
}

// grantAuditBase gives user what every policy-audit run in team-a needs besides the audit's own rights: create
// LabRuns and LabSchedules, pods and ServiceAccounts there, namespaces, and read ztunnel's logs.
func grantAuditBase(t *testing.T, user string) {
	t.Helper()
	suite.Grant(t, user, suite.TenantNamespace, suite.Rule(labsv1.GroupVersion.Group, "labruns", "create"),
		suite.Rule(labsv1.GroupVersion.Group, "labschedules", "create"), suite.Rule("", "pods", "create"),
		suite.Rule("", "serviceaccounts", "create"))
	suite.Grant(t, user, sandbox.RootNamespace, suite.Rule("", "pods/log", "get"))
	suite.Grant(t, user, "", suite.Rule("", "namespaces", "create"))
}

// auditRules are the audit's rights in one namespace.
func auditRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{suite.Rule("security.istio.io", "authorizationpolicies", "list"),
		suite.Rule("security.istio.io", "peerauthentications", "list"), suite.Rule("", "pods", "create")}
}

func eventuallyAdmission(t *testing.T, create func() error) AsyncAssertion {
	t.Helper()
	return NewWithT(t).Eventually(create).WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond)
}

// TestPolicyAuditNeedsItsRequestersRights: a policy-audit LabRun, in either mode, is refused until its requester
// may create the attacker ServiceAccount and the non-mesh namespace, and list AuthorizationPolicies and
// PeerAuthentications and create pods in each audited namespace; each refusal names the user, the right, the
// namespace and why. Up to eight namespaces fit the admission policy's CEL budget; a request that would not is
// refused by name.
func TestPolicyAuditNeedsItsRequestersRights(t *testing.T) {
	ensureAuditNamespaces(t)
	const user = "paula"
	suite.Grant(t, user, suite.TenantNamespace, suite.Rule(labsv1.GroupVersion.Group, "labruns", "create"),
		suite.Rule("", "pods", "create"))
	suite.Grant(t, user, sandbox.RootNamespace, suite.Rule("", "pods/log", "get"))
	paula := suite.AsUser(t, user)
	refused := func(t *testing.T, message string, namespaces ...string) {
		t.Helper()
		for _, mode := range []labsv1.Mode{labsv1.ModeLab, labsv1.ModeVerify} {
			eventuallyAdmission(t, func() error {
				return paula.Create(context.Background(), auditRun(mode, namespaces...), client.DryRunAll)
			}).Should(MatchError(ContainSubstring(message)), "mode %s", mode)
		}
	}
	admitted := func(t *testing.T, run *labsv1.LabRun) {
		t.Helper()
		eventuallyAdmission(t, func() error { return paula.Create(context.Background(), run, client.DryRunAll) }).
			Should(Succeed())
	}

	t.Run("the attacker ServiceAccount", func(t *testing.T) {
		refused(t, "user paula may not create serviceaccounts in namespace team-a, where the policy-audit lab creates "+
			"the attacker ServiceAccount")
	})
	suite.Grant(t, user, suite.TenantNamespace, suite.Rule("", "serviceaccounts", "create"))
	t.Run("the non-mesh namespace", func(t *testing.T) {
		refused(t, "user paula may not create namespaces, which the policy-audit lab does for its non-mesh client")
	})
	suite.Grant(t, user, "", suite.Rule("", "namespaces", "create"))
	t.Run("the target's AuthorizationPolicies, audited by default", func(t *testing.T) {
		refused(t, "user paula may not list AuthorizationPolicies in namespace team-a, whose policies the "+
			"policy-audit lab reads and proves")
	})
	suite.Grant(t, user, suite.TenantNamespace, suite.Rule("security.istio.io", "authorizationpolicies", "list"))
	t.Run("the target's PeerAuthentications", func(t *testing.T) {
		refused(t, "user paula may not list PeerAuthentications in namespace team-a, whose policies the "+
			"policy-audit lab reads and proves")
	})
	suite.Grant(t, user, suite.TenantNamespace, suite.Rule("security.istio.io", "peerauthentications", "list"))
	t.Run("her own namespace audited", func(t *testing.T) {
		admitted(t, auditRun(labsv1.ModeLab))
		admitted(t, auditRun(labsv1.ModeVerify, suite.TenantNamespace))
	})

	// Eight namespaces besides hers; she holds the audit's rights in the first seven.
	for _, ns := range auditNamespaces[:7] {
		suite.Grant(t, user, ns, auditRules()...)
	}
	last := auditNamespaces[7]
	t.Run("the eighth namespace's AuthorizationPolicies", func(t *testing.T) {
		refused(t, "user paula may not list AuthorizationPolicies in namespace "+last+", whose policies the "+
			"policy-audit lab reads and proves", auditNamespaces...)
	})
	suite.Grant(t, user, last, suite.Rule("security.istio.io", "authorizationpolicies", "list"))
	t.Run("the eighth namespace's PeerAuthentications", func(t *testing.T) {
		refused(t, "user paula may not list PeerAuthentications in namespace "+last+", whose policies the "+
			"policy-audit lab reads and proves", auditNamespaces...)
	})
	suite.Grant(t, user, last, suite.Rule("security.istio.io", "peerauthentications", "list"))
	t.Run("pods in the eighth namespace", func(t *testing.T) {
		refused(t, "user paula may not create pods in namespace "+last+", where the policy-audit lab's probe pods "+
			"run as the ServiceAccounts its policies name", auditNamespaces...)
	})
	suite.Grant(t, user, last, suite.Rule("", "pods", "create"))
	t.Run("eight namespaces", func(t *testing.T) {
		admitted(t, auditRun(labsv1.ModeVerify, auditNamespaces...)) // 28 authorization checks: the most that fit
	})

	// A custom probe image is one check more than fits with eight namespaces besides the target's; with the
	// target's among them its pods are checked once, and seven more fit.
	suite.Grant(t, user, suite.TenantNamespace, suite.Rule(labsv1.GroupVersion.Group, "labruns", "set-probe-image"))
	custom := func(namespaces ...string) *labsv1.LabRun {
		run := auditRun(labsv1.ModeVerify, namespaces...)
		run.Spec.Probe.Image = "registry.example/paula/probe:1"
		return run
	}
	t.Run("more checks than admission may make", func(t *testing.T) {
		eventuallyAdmission(t, func() error {
			return paula.Create(context.Background(), custom(auditNamespaces...), client.DryRunAll)
		}).Should(MatchError(ContainSubstring("this LabRun would need 29 authorization checks at admission, more " +
			"than the 28 one admission policy may make (each costs 350,000 of its CEL budget of 10,000,000): audit " +
			"fewer than its 8 namespaces")))
		admitted(t, custom(append([]string{suite.TenantNamespace}, auditNamespaces[:7]...)...))
	})
	suite.GrantFootprintReads(t, user)
	t.Run("more checks than admission may make, with other labs", func(t *testing.T) {
		run := auditRun(labsv1.ModeVerify, auditNamespaces[:7]...)
		run.Spec.Labs = []labsv1.LabName{labsv1.LabFootprint, labsv1.LabPolicyAudit}
		eventuallyAdmission(t, func() error { return paula.Create(context.Background(), run, client.DryRunAll) }).
			Should(MatchError(ContainSubstring("this LabRun would need 29 authorization checks at admission, more " +
				"than the 28 one admission policy may make (each costs 350,000 of its CEL budget of 10,000,000): " +
				"audit fewer than its 7 namespaces, or run policy-audit without the other labs")))
		run.Spec.Audit.Namespaces = auditNamespaces[:6]
		admitted(t, run)
	})
}

// TestMeshTesterMayAudit: the ClusterRole config/samples documents for running the samples holds what the
// policy-audit lab needs.
func TestMeshTesterMayAudit(t *testing.T) {
	ensureAuditNamespaces(t)
	role := &rbacv1.ClusterRole{}
	raw, err := os.ReadFile(filepath.Join(suite.SB.Env.Root, "config", "samples", "mesh_tester_role.yaml"))
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	NewWithT(t).Expect(yaml.UnmarshalStrict(raw, role)).To(Succeed())
	suite.Grant(t, "maud", "", role.Rules...)
	maud := suite.AsUser(t, "maud")
	run := auditRun(labsv1.ModeLab, auditNamespaces...)
	run.Namespace = sandbox.DemoNamespace
	eventuallyAdmission(t, func() error { return maud.Create(context.Background(), run, client.DryRunAll) }).
		Should(Succeed())
	ls := auditSchedule(auditNamespaces[:7]...)
	ls.Namespace = sandbox.DemoNamespace
	NewWithT(t).Expect(maud.Create(context.Background(), ls, client.DryRunAll)).To(Succeed())
}

// TestPolicyAuditScheduleNeedsItsWritersRights: a LabSchedule's policy-audit template is checked like a LabRun
// against whoever writes it, within the same budget (one check more: creating LabRuns).
func TestPolicyAuditScheduleNeedsItsWritersRights(t *testing.T) {
	ensureAuditNamespaces(t)
	const user = "sadie"
	grantAuditBase(t, user)
	suite.Grant(t, user, suite.TenantNamespace, auditRules()...)
	for _, ns := range auditNamespaces[:6] {
		suite.Grant(t, user, ns, auditRules()...)
	}
	ns := auditNamespaces[6]
	suite.Grant(t, user, ns, suite.Rule("security.istio.io", "authorizationpolicies", "list"), suite.Rule("", "pods", "create"))
	sadie := suite.AsUser(t, user)
	withHers := append([]string{suite.TenantNamespace}, auditNamespaces[:7]...) // 28 checks, as many as fit
	eventuallyAdmission(t, func() error {
		return sadie.Create(context.Background(), auditSchedule(withHers...), client.DryRunAll)
	}).Should(MatchError(ContainSubstring("user sadie may not list PeerAuthentications in namespace " + ns +
		", whose policies the policy-audit lab reads and proves")))
	suite.Grant(t, user, ns, suite.Rule("security.istio.io", "peerauthentications", "list"))
	eventuallyAdmission(t, func() error {
		return sadie.Create(context.Background(), auditSchedule(withHers...), client.DryRunAll)
	}).Should(Succeed())
	suite.Grant(t, user, auditNamespaces[7], auditRules()...)
	eventuallyAdmission(t, func() error {
		return sadie.Create(context.Background(), auditSchedule(auditNamespaces...), client.DryRunAll)
	}).Should(MatchError(ContainSubstring("this LabSchedule's template would need 29 authorization checks at " +
		"admission, more than the 28 one admission policy may make")))
}

// TestPolicyAuditScheduleStallsWhenItsAuthorLosesARight: the rights a schedule asks for its author before each
// run include the audit's, in every audited namespace; once the author loses them in one, the schedule is
// Stalled naming each.
func TestPolicyAuditScheduleStallsWhenItsAuthorLosesARight(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ensureAuditNamespaces(t)
	const user = "abby"
	grantAuditBase(t, user)
	suite.Grant(t, user, suite.TenantNamespace, auditRules()...)
	suite.Grant(t, user, auditNamespaces[0], auditRules()...)
	// Her rights in audit-2 come from a RoleBinding of their own, deleted below.
	ns := auditNamespaces[1]
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "abby-audit"}, Rules: auditRules()}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "abby-audit"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name}}
	for _, o := range []client.Object{role, binding} {
		g.Expect(suite.K8s.Create(ctx, o)).To(Succeed())
		t.Cleanup(func() { _ = suite.K8s.Delete(ctx, o) })
	}
	ls := auditSchedule(suite.TenantNamespace, auditNamespaces[0], ns)
	abby := suite.AsUser(t, user)
	eventuallyAdmission(t, func() error { return abby.Create(ctx, ls) }).Should(Succeed())
	t.Cleanup(func() { _ = suite.K8s.Delete(ctx, ls) })

	// She loses her rights in audit-2 before the manager first looks at the schedule (its first run is an hour
	// away, so no run is created either way).
	g.Expect(suite.K8s.Delete(ctx, binding)).To(Succeed())
	abbyWithout := func() error { return abby.Create(ctx, auditSchedule(ns), client.DryRunAll) }
	eventuallyAdmission(t, abbyWithout).Should(MatchError(ContainSubstring("may not list AuthorizationPolicies in namespace " + ns)))
	suite.Start(t, suite.Options())
	g.Eventually(func(g Gomega) {
		cur := &labsv1.LabSchedule{}
		g.Expect(suite.K8s.Get(ctx, client.ObjectKeyFromObject(ls), cur)).To(Succeed())
		stalled := meta.FindStatusCondition(cur.Status.Conditions, labsv1.ConditionStalled)
		g.Expect(stalled).NotTo(BeNil())
		g.Expect(stalled.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(stalled.Reason).To(Equal("AuthorLacksRight"))
		g.Expect(stalled.Message).To(And(
			ContainSubstring("its author abby may no longer list authorizationpolicies.security.istio.io in namespace "+
				ns+" (the policy-audit lab reads and proves the policies there)"),
			ContainSubstring("nor list peerauthentications.security.istio.io in namespace "+ns+
				" (the policy-audit lab reads and proves the policies there)"),
			ContainSubstring("nor create pods in namespace "+ns+
				" (the policy-audit lab's probe pods run there as the ServiceAccounts its policies name)"),
			Not(ContainSubstring("namespace "+auditNamespaces[0])), Not(ContainSubstring("namespace team-a"))))
	}).WithTimeout(15 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	g.Expect(suite.RunsOf(g, ls)).To(BeEmpty())
}
