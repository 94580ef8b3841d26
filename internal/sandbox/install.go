package sandbox

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// The manager's identity as config/default installs it: the sandbox's in-process manager runs as this
// ServiceAccount (impersonated), so config/default's RBAC and admission policies apply to it as on a cluster.
const (
	ManagerServiceAccount = "labrun-controller-manager"
	ManagerUser           = "system:serviceaccount:" + OperatorNamespace + ":" + ManagerServiceAccount
	// ProbeImagesConfigMap lists the images the manager may start probe pods with (config/admission).
	ProbeImagesConfigMap = "labrun-probe-images"
	// MeshConfigMap says where the mesh lives, as the manager's flags do (config/admission/mesh.yaml): the
	// requester policies' parameter.
	MeshConfigMap = "labrun-mesh"
)

// installed are the kinds of config/default the sandbox applies. The CRD is installed with the control plane,
// and the Deployment is left out: no kubelet pulls images here, the manager runs in-process instead.
var installed = []string{
	"Namespace", "ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
	"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding",
}

// RenderDefault renders config/default as `kubectl apply -k config/default` would.
func RenderDefault(root string) ([]*unstructured.Unstructured, error) {
	return Kustomize(filepath.Join(root, "config", "default"))
}

// Kustomize renders the kustomization in dir, as `kubectl kustomize` would.
func Kustomize(dir string) ([]*unstructured.Unstructured, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resources, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("rendering %s: %w", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range resources.Resources() {
		m, err := r.Map()
		if err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{Object: m}
		if clusterScopedUnknownToKustomize[u.GetKind()] {
			u.SetNamespace("") // kustomize's namespace transformer gave it one
		}
		out = append(out, u)
	}
	return out, nil
}

// clusterScopedUnknownToKustomize are cluster-scoped kinds newer than kustomize's built-in list (kyaml's openapi).
var clusterScopedUnknownToKustomize = map[string]bool{"MutatingAdmissionPolicy": true, "MutatingAdmissionPolicyBinding": true}

// installDefault applies config/default's namespace, ServiceAccount, RBAC and admission policies, with the
// sandbox's probe images permitted.
func installDefault(ctx context.Context, c client.Client, root string, probeImages []string) error {
	objs, err := RenderDefault(root)
	if err != nil {
		return err
	}
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int {
		return slices.Index(installed, a.GetKind()) - slices.Index(installed, b.GetKind())
	})
	for _, u := range objs {
		if !slices.Contains(installed, u.GetKind()) {
			continue
		}
		if u.GetKind() == "ConfigMap" && u.GetName() == ProbeImagesConfigMap {
			if err := unstructured.SetNestedField(u.Object, strings.Join(probeImages, ","), "data", "probeImages"); err != nil {
				return err
			}
		}
		if err := c.Patch(ctx, u, client.Apply, client.FieldOwner("labrun-sandbox"), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying %s %s from config/default: %w", u.GetKind(), u.GetName(), err)
		}
	}
	return nil
}

// waitForAdmission waits until the API server enforces the admission policies just installed (it loads them
// asynchronously): a LabSchedule gets its author stamped, a marked PeerAuthentication from the admin and a foreign
// namespace from the manager are refused, and so is a pod the admin marks as a probe. All are server-side dry runs.
func waitForAdmission(ctx context.Context, admin client.Client, manager client.Client) error {
	pa := &unstructured.Unstructured{}
	pa.SetAPIVersion("security.istio.io/v1")
	pa.SetKind("PeerAuthentication")
	pa.SetNamespace(RootNamespace)
	pa.SetName("labrun-sandbox-admission-check")
	pa.SetLabels(map[string]string{"labs.ambientlab.io/changed-by": "nobody"})
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "labrun-sandbox-admission-check"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: RootNamespace, Name: "labrun-sandbox-admission-check",
		Labels: map[string]string{labsv1.LabelProbe: "true"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "none"}}}}
	// A LabSchedule gets its author stamped (schedule-author, a MutatingAdmissionPolicy).
	sched := &labsv1.LabSchedule{ObjectMeta: metav1.ObjectMeta{Namespace: OperatorNamespace, Name: "labrun-sandbox-admission-check"},
		Spec: labsv1.LabScheduleSpec{Schedule: "@every 1h", Template: labsv1.LabRunTemplate{Spec: labsv1.LabRunSpec{
			Mode: labsv1.ModeVerify, Labs: []labsv1.LabName{labsv1.LabMTLS}, Target: labsv1.TargetSpec{Service: "backend"}}}}}
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		stamped := sched.DeepCopy()
		if err := admin.Create(ctx, stamped, client.DryRunAll); err != nil || stamped.Annotations[labsv1.AnnotationAuthor] == "" {
			return false, nil
		}
		marks := admin.Create(ctx, pa.DeepCopy(), client.DryRunAll)
		limits := manager.Create(ctx, ns.DeepCopy(), client.DryRunAll)
		podMarks := admin.Create(ctx, pod.DeepCopy(), client.DryRunAll)
		return refused(marks) && refused(limits) && refused(podMarks), nil
	})
}

func refused(err error) bool { return apierrors.IsInvalid(err) || apierrors.IsForbidden(err) }

// ManagerConfig is the API server config of the manager's ServiceAccount (the sandbox's admin credentials,
// impersonating it), so the manager has exactly the rights config/default gives it.
func (s *Sandbox) ManagerConfig() *rest.Config {
	return AsUser(s.Env.Config, ManagerUser, "system:serviceaccounts", "system:serviceaccounts:"+OperatorNamespace)
}

// AsUser is cfg impersonating user (in groups, plus system:authenticated), e.g. a tenant in a test.
func AsUser(cfg *rest.Config, user string, groups ...string) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: append(groups, "system:authenticated")}
	return c
}
