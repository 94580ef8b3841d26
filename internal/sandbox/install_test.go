package sandbox_test

import (
	"context"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ambientlab/labrun-operator/internal/controlplane"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

// rendered renders config/default and indexes it by kind.
func rendered(t *testing.T) map[string][]*unstructured.Unstructured {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := sandbox.RenderDefault(root)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]*unstructured.Unstructured{}
	for _, u := range objs {
		out[u.GetKind()] = append(out[u.GetKind()], u)
	}
	return out
}

func as[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	var out T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// TestDefaultConfigIsConsistent checks what kustomize cannot: the admission policies name the manager's
// ServiceAccount and namespace in CEL, the bindings name their policies and parameters, the manager's probe
// image is one the policy permits, and the requester policies' mesh parameter says what the manager's flags say.
func TestDefaultConfigIsConsistent(t *testing.T) {
	g := NewWithT(t)
	objs := rendered(t)

	g.Expect(objs["ServiceAccount"]).To(HaveLen(1))
	sa := objs["ServiceAccount"][0]
	user := "system:serviceaccount:" + sa.GetNamespace() + ":" + sa.GetName()
	g.Expect(user).To(Equal(sandbox.ManagerUser), "the sandbox impersonates the shipped ServiceAccount")

	policies := map[string]*admissionv1.ValidatingAdmissionPolicy{}
	for _, u := range objs["ValidatingAdmissionPolicy"] {
		p := as[admissionv1.ValidatingAdmissionPolicy](t, u)
		policies[p.Name] = p
		g.Expect(*p.Spec.FailurePolicy).To(Equal(admissionv1.Fail), p.Name)
		for _, mc := range p.Spec.MatchConditions {
			if strings.Contains(mc.Expression, "system:serviceaccount:") {
				g.Expect(mc.Expression).To(ContainSubstring("'"+user+"'"), "%s names the manager", p.Name)
			}
		}
	}
	g.Expect(policies).To(HaveLen(7)) // requester-rights, schedule-requester-rights, schedule-author, mesh-marks, object-marks, status-writes, manager-limits

	// schedule-author: the mutating half stamps who wrote a LabSchedule's spec; it fails closed and is bound.
	g.Expect(objs["MutatingAdmissionPolicy"]).To(HaveLen(1))
	mp := as[admissionv1.MutatingAdmissionPolicy](t, objs["MutatingAdmissionPolicy"][0])
	g.Expect(*mp.Spec.FailurePolicy).To(Equal(admissionv1.Fail), mp.Name)
	g.Expect(policies).To(HaveKey(mp.Name), "the validating half guards what %s stamps", mp.Name)
	g.Expect(objs["MutatingAdmissionPolicyBinding"]).To(HaveLen(1))
	g.Expect(as[admissionv1.MutatingAdmissionPolicyBinding](t, objs["MutatingAdmissionPolicyBinding"][0]).Spec.PolicyName).
		To(Equal(mp.Name))

	var paramNames []string
	for _, u := range objs["ValidatingAdmissionPolicyBinding"] {
		b := as[admissionv1.ValidatingAdmissionPolicyBinding](t, u)
		g.Expect(policies).To(HaveKey(b.Spec.PolicyName), "binding %s", b.Name)
		g.Expect(b.Spec.ValidationActions).To(ConsistOf(admissionv1.Deny))
		if b.Spec.ParamRef != nil {
			g.Expect(b.Spec.ParamRef.Namespace).To(Equal(sa.GetNamespace()))
			paramNames = append(paramNames, b.Spec.ParamRef.Name)
		}
	}
	// manager-limits: the probe images; requester-rights and schedule-requester-rights: where the mesh lives.
	g.Expect(paramNames).To(ConsistOf(sandbox.ProbeImagesConfigMap, sandbox.MeshConfigMap, sandbox.MeshConfigMap))

	var images string
	var meshData map[string]string
	for _, u := range objs["ConfigMap"] {
		if u.GetName() == sandbox.ProbeImagesConfigMap && u.GetNamespace() == sa.GetNamespace() {
			images = as[corev1.ConfigMap](t, u).Data["probeImages"]
		}
		if u.GetName() == sandbox.MeshConfigMap && u.GetNamespace() == sa.GetNamespace() {
			meshData = as[corev1.ConfigMap](t, u).Data
		}
	}
	g.Expect(objs["Deployment"]).To(HaveLen(1))
	d := as[appsv1.Deployment](t, objs["Deployment"][0])
	g.Expect(d.Spec.Template.Spec.ServiceAccountName).To(Equal(sa.GetName()))
	var probeImage string
	for _, a := range d.Spec.Template.Spec.Containers[0].Args {
		if v, ok := strings.CutPrefix(a, "--probe-image="); ok {
			probeImage = v
		}
	}
	g.Expect(strings.Split(images, ",")).To(ContainElement(probeImage), "the manager's --probe-image must be permitted")
	flags := map[string]string{}
	for _, a := range d.Spec.Template.Spec.Containers[0].Args {
		if k, v, ok := strings.Cut(strings.TrimPrefix(a, "--"), "="); ok {
			flags[k] = v
		}
	}
	g.Expect(meshData).To(Equal(map[string]string{"rootNamespace": flags["mesh-root-namespace"],
		"ztunnelNamespace": flags["ztunnel-namespace"], "ztunnelSelector": flags["ztunnel-selector"]}),
		"the mesh ConfigMap must say what the manager's flags say")
	g.Expect(meshData).To(Equal(map[string]string{"rootNamespace": sandbox.RootNamespace,
		"ztunnelNamespace": sandbox.RootNamespace, "ztunnelSelector": "app=ztunnel"}), "the sandbox's world is Istio's")
}

// TestSandboxRunsLikeACluster: the sandbox installed config/default's admission policies and RBAC.
func TestSandboxRunsLikeACluster(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	for _, u := range rendered(t)["ValidatingAdmissionPolicyBinding"] {
		g.Expect(sb.Client.Get(ctx, client.ObjectKey{Name: u.GetName()}, &admissionv1.ValidatingAdmissionPolicyBinding{})).To(Succeed())
	}
	for _, u := range rendered(t)["MutatingAdmissionPolicyBinding"] {
		g.Expect(sb.Client.Get(ctx, client.ObjectKey{Name: u.GetName()}, &admissionv1.MutatingAdmissionPolicyBinding{})).To(Succeed())
	}
	manager, err := client.New(sb.ManagerConfig(), client.Options{Scheme: sb.Client.Scheme()})
	g.Expect(err).NotTo(HaveOccurred())
	// The manager reads its own records' namespace, and no Secret anywhere.
	g.Expect(manager.List(ctx, &corev1.ConfigMapList{}, client.InNamespace(sandbox.OperatorNamespace))).To(Succeed())
	g.Expect(manager.List(ctx, &corev1.SecretList{}, client.InNamespace(sandbox.DemoNamespace))).NotTo(Succeed())
}
