package controllers_test

import (
	"context"
	"sort"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/probe"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

// TestManagerRBACIsNarrow asks the API server's authorizer what config/default's RBAC lets the manager's
// ServiceAccount do: what the code needs, and not the rights a tenant could borrow.
func TestManagerRBACIsNarrow(t *testing.T) {
	type access struct {
		verb, group, resource, subresource, namespace, name string
	}
	cases := []struct {
		access
		allowed bool
	}{
		{access{"update", "security.istio.io", "peerauthentications", "", "istio-system", "default"}, true},
		{access{"create", "security.istio.io", "authorizationpolicies", "", "demo", ""}, true}, // restore of a deleted policy
		{access{"delete", "security.istio.io", "authorizationpolicies", "", "demo", "backend-allow-frontend-only"}, false},
		{access{"patch", "security.istio.io", "peerauthentications", "", "istio-system", "default"}, false},
		// Workload and Namespace scope create and delete a temporary PeerAuthentication (admission narrows it).
		{access{"create", "security.istio.io", "peerauthentications", "", "demo", ""}, true},
		{access{"delete", "security.istio.io", "peerauthentications", "", "demo", "labrun-permissive-x"}, true},
		{access{"create", "", "pods", "", "demo", ""}, true},
		{access{"get", "", "pods", "log", "istio-system", "ztunnel-node-1"}, true},
		{access{"create", "", "pods", "exec", "demo", "backend"}, false},
		{access{"get", "", "secrets", "", "demo", "x"}, false},
		{access{"list", "", "secrets", "", "", ""}, false},
		{access{"create", "", "configmaps", "", sandbox.OperatorNamespace, ""}, true}, // the trusted records
		{access{"update", "", "configmaps", "", sandbox.OperatorNamespace, "labrun-record-x"}, true},
		// A schedule's warm observers read their arm from a ConfigMap of their namespace: create, patch and delete
		// anywhere (admission narrows them to labrun-arm-*), never read or list.
		{access{"create", "", "configmaps", "", "demo", ""}, true},
		{access{"get", "", "configmaps", "", "demo", "app-config"}, false},
		{access{"update", "", "configmaps", "", "demo", "app-config"}, false},
		{access{"list", "", "configmaps", "", "", ""}, false},
		{access{"update", "coordination.k8s.io", "leases", "", sandbox.OperatorNamespace, "labrun-lock-some-run"}, true},
		{access{"watch", "coordination.k8s.io", "leases", "", sandbox.OperatorNamespace, "labrun-lock-some-run"}, true},
		{access{"update", "coordination.k8s.io", "leases", "", "istio-system", "labrun-lock-some-run"}, false}, // the lock lives at home
		{access{"create", "coordination.k8s.io", "leases", "", "istio-system", ""}, false},
		{access{"update", "coordination.k8s.io", "leases", "", "kube-system", "kube-controller-manager"}, false},
		{access{"watch", "coordination.k8s.io", "leases", "", "", ""}, false},
		{access{"update", "coordination.k8s.io", "leases", "", sandbox.OperatorNamespace, "labrun-operator.labs.ambientlab.io"}, true},
		{access{"update", "", "namespaces", "", "", "demo"}, false},
		{access{"watch", "", "namespaces", "", "", ""}, false},
		{access{"update", "", "serviceaccounts", "", "demo", "frontend"}, false},
		{access{"list", "", "serviceaccounts", "", "", ""}, false},
		{access{"update", labsv1.GroupVersion.Group, "labruns", "", "demo", "x"}, false},
		{access{"patch", labsv1.GroupVersion.Group, "labruns", "status", "demo", "x"}, true},
		{access{"create", "rbac.authorization.k8s.io", "clusterrolebindings", "", "", ""}, false},
		{access{"impersonate", "", "serviceaccounts", "", "demo", "frontend"}, false},
		{access{"create", "", "events", "", sandbox.OperatorNamespace, ""}, true}, // leader election
		// A LabSchedule's runs: RBAC lets it create and delete LabRuns, manager-limits only a schedule's.
		{access{"create", labsv1.GroupVersion.Group, "labruns", "", "demo", ""}, true},
		{access{"update", labsv1.GroupVersion.Group, "labschedules", "", "demo", "x"}, false},
		{access{"delete", labsv1.GroupVersion.Group, "labschedules", "", "demo", "x"}, false},
		{access{"patch", labsv1.GroupVersion.Group, "labschedules", "status", "demo", "x"}, true},
		// The trigger reads the ztunnel DaemonSet, never changes it.
		{access{"watch", "apps", "daemonsets", "", "istio-system", ""}, true},
		{access{"update", "apps", "daemonsets", "", "istio-system", "ztunnel"}, false},
		// PolicyReports (manager-limits: only labrun-*); secure metrics review callers' tokens.
		{access{"create", "wgpolicyk8s.io", "policyreports", "", "demo", ""}, true},
		{access{"create", "authentication.k8s.io", "tokenreviews", "", "", ""}, true},
		{access{"create", "authorization.k8s.io", "subjectaccessreviews", "", "", ""}, true},
		{access{"create", "", "serviceaccounts", "token", "demo", "frontend"}, false},
		// It checks its admission policies are installed as shipped (admission_guard.go), never changes them.
		{access{"watch", "admissionregistration.k8s.io", "validatingadmissionpolicies", "", "", ""}, true},
		{access{"list", "admissionregistration.k8s.io", "validatingadmissionpolicybindings", "", "", ""}, true},
		{access{"delete", "admissionregistration.k8s.io", "validatingadmissionpolicybindings", "", "", "labrun-requester-rights"}, false},
		{access{"update", "admissionregistration.k8s.io", "validatingadmissionpolicies", "", "", "labrun-requester-rights"}, false},
	}
	for _, tc := range cases {
		a := tc.access
		t.Run(a.verb+" "+a.resource+"/"+a.subresource+" "+a.namespace+"/"+a.name, func(t *testing.T) {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: sandbox.ManagerUser, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + sandbox.OperatorNamespace},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: a.verb, Group: a.group, Resource: a.resource,
					Subresource: a.subresource, Namespace: a.namespace, Name: a.name},
			}}
			NewWithT(t).Expect(k8s.Create(context.Background(), sar)).To(Succeed())
			NewWithT(t).Expect(sar.Status.Allowed).To(Equal(tc.allowed), sar.Status.Reason)
		})
	}
}

// legitProbePod is a probe pod as the controller builds it.
func legitProbePod(name string) *corev1.Pod {
	return probe.Pod(probe.PodRequest{
		Name: name, Namespace: sandbox.DemoNamespace, ServiceAccount: "frontend", Image: testProbeImage,
		Labels: map[string]string{labsv1.LabelProbe: "true", labsv1.LabelLabRun: "some-uid"},
		Options: probe.Options{URL: "http://backend.demo.svc:80/get", Expect: probe.ExpectAllowed,
			Timeout: 5 * time.Second, Settle: 30 * time.Second},
	})
}

// TestManagerMayCreateOnlyWhatARunNeeds sends, as the manager's ServiceAccount, server-side dry-run requests
// that RBAC allows: config/admission's manager-limits policy admits the shapes a run needs and refuses the rest.
func TestManagerMayCreateOnlyWhatARunNeeds(t *testing.T) {
	manager, err := client.New(sb.ManagerConfig(), client.Options{Scheme: k8s.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	labelled := map[string]string{labsv1.LabelLabRun: "some-uid"}
	cases := []struct {
		name    string
		obj     func() client.Object
		refusal string // "" = admitted
	}{
		{"a probe pod", func() client.Object { return legitProbePod("p1") }, ""},
		{"a pod that is not a probe", func() client.Object {
			p := legitProbePod("p2")
			p.Labels = nil
			return p
		}, "may only create probe pods (labelled"},
		{"a probe pod with an image nobody permitted", func() client.Object {
			p := legitProbePod("p3")
			p.Spec.Containers[0].Image = "registry.example/miner:latest"
			return p
		}, "image registry.example/miner:latest: it is not listed in probeImages"},
		{"a probe pod on the host network", func() client.Object {
			p := legitProbePod("p4")
			p.Spec.HostNetwork = true
			return p
		}, "without an API token, service links, host namespaces or hostPath volumes"},
		{"a probe pod with an API token", func() client.Object {
			p := legitProbePod("p5")
			p.Spec.AutomountServiceAccountToken = ptr.To(true)
			return p
		}, "without an API token"},
		{"a probe pod running as root", func() client.Object {
			p := legitProbePod("p6")
			p.Spec.SecurityContext.RunAsNonRoot = ptr.To(false)
			return p
		}, "run as non-root"},
		{"a probe pod running something else", func() client.Object {
			p := legitProbePod("p7")
			p.Spec.Containers[0].Command = []string{"/bin/sh"}
			return p
		}, "one container running /manager probe"},
		{"a probe pod without a deadline", func() client.Object {
			p := legitProbePod("p8")
			p.Spec.ActiveDeadlineSeconds = nil
			return p
		}, "activeDeadlineSeconds of at most 4h"},
		{"its non-mesh namespace", func() client.Object {
			return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "labrun-non-mesh-abc", Labels: labelled}}
		}, ""},
		{"any other namespace", func() client.Object {
			return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-evil", Labels: labelled}}
		}, "its own non-mesh namespaces"},
		{"its attacker ServiceAccount", func() client.Object {
			return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "labrun-attacker-abc", Labels: labelled}}
		}, ""},
		{"another ServiceAccount", func() client.Object {
			return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "deployer", Labels: labelled}}
		}, "its attacker ServiceAccounts"},
		{"the mesh lock", func() client.Object {
			return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.OperatorNamespace, Name: "labrun-lock-some-run"}}
		}, ""},
		// RBAC refuses these first (TestManagerLeasesOnlyAtHome shows admission refuses them too).
		{"the mesh lock outside its namespace", func() client.Object {
			return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "labrun-lock-some-run"}}
		}, `cannot create resource "leases" in API group "coordination.k8s.io" in the namespace "kube-system"`},
		{"another Lease outside its namespace", func() client.Object {
			return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-scheduler"}}
		}, `cannot create resource "leases" in API group "coordination.k8s.io" in the namespace "kube-system"`},
		{"an arm ConfigMap for warm observers", func() client.Object {
			return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: mesh.ArmPrefix + "abc",
				Labels: map[string]string{labsv1.LabelArm: "true"}}}
		}, ""},
		{"another ConfigMap in a tenant's namespace", func() client.Object {
			return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "app-config",
				Labels: map[string]string{labsv1.LabelArm: "true"}}}
		}, "may only write arm ConfigMaps"},
		{"an arm-named ConfigMap without the arm label", func() client.Object {
			return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: mesh.ArmPrefix + "abc"}}
		}, "may only write arm ConfigMaps"},
		{"its temporary PeerAuthentication", func() client.Object {
			return peerAuthentication("labrun-permissive-0123456789", map[string]string{mesh.LabelChangedBy: "uid"})
		}, ""},
	}
	// Refusals first: once one is seen the policy is in force, so an admission that follows is meaningful.
	sort.SliceStable(cases, func(i, j int) bool { return cases[i].refusal != "" && cases[j].refusal == "" })
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			if tc.refusal == "" {
				g.Expect(manager.Create(ctx, tc.obj(), client.DryRunAll)).To(Succeed())
				return
			}
			g.Eventually(func() error { return manager.Create(ctx, tc.obj(), client.DryRunAll) }).
				WithTimeout(10 * time.Second).Should(MatchError(ContainSubstring(tc.refusal)))
		})
	}
	t.Run("deleting a workload pod", func(t *testing.T) {
		pods := &corev1.PodList{}
		NewWithT(t).Expect(k8s.List(ctx, pods, client.InNamespace(sandbox.DemoNamespace), client.MatchingLabels{"app": "backend"})).To(Succeed())
		NewWithT(t).Expect(pods.Items).NotTo(BeEmpty())
		NewWithT(t).Expect(manager.Delete(ctx, &pods.Items[0], client.DryRunAll)).
			To(MatchError(ContainSubstring("may only delete probe pods")))
	})
	t.Run("deleting a PeerAuthentication it did not create", func(t *testing.T) {
		pa := peerAuthentication("default", nil)
		pa.SetNamespace(sandbox.RootNamespace)
		NewWithT(t).Expect(manager.Delete(ctx, pa, client.DryRunAll)).To(MatchError(ContainSubstring("may only delete its temporary PeerAuthentications")))
	})
	t.Run("deleting a namespace it did not create", func(t *testing.T) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: sandbox.DemoNamespace}}
		NewWithT(t).Expect(manager.Delete(ctx, ns, client.DryRunAll)).To(MatchError(ContainSubstring("its own non-mesh namespaces")))
	})
}

// peerAuthentication is a PeerAuthentication in demo with the given labels (a request to admit, not stored).
func peerAuthentication(name string, labels map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"mtls": map[string]any{"mode": "PERMISSIVE"}}}}
	u.SetGroupVersionKind(mesh.GVK(mesh.KindPeerAuthentication))
	u.SetNamespace(sandbox.DemoNamespace)
	u.SetName(name)
	u.SetLabels(labels)
	return u
}
