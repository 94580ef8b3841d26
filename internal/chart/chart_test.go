package chart_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/ambientlab/labrun-operator/internal/chart"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

func render(t *testing.T, vals map[string]any) *chart.Rendered {
	t.Helper()
	r, err := chart.Render(context.Background(), dir, release, sandbox.OperatorNamespace, vals)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func key(u *unstructured.Unstructured) string {
	return u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
}

// find returns the rendered object of kind named name, or nil.
func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			return u
		}
	}
	return nil
}

// TestChartIsGenerated fails when the committed chart differs from what hack/chartgen writes from config/
// today, or holds a generated file config/ no longer produces: run `make chart`.
func TestChartIsGenerated(t *testing.T) {
	want, err := chart.Generate(root)
	if err != nil {
		t.Fatal(err)
	}
	for rel, b := range want {
		got, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Errorf("%s: %v (run make chart)", rel, err)
			continue
		}
		if !bytes.Equal(got, b) {
			t.Errorf("%s differs from what hack/chartgen generates from config/ (run make chart)", rel)
		}
	}
	for _, sub := range chart.Generated {
		_ = filepath.WalkDir(filepath.Join(dir, sub), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			rel, _ := filepath.Rel(dir, p)
			if _, ok := want[filepath.ToSlash(rel)]; !ok {
				t.Errorf("%s is no longer generated from config/ (run make chart)", rel)
			}
			return nil
		})
	}
}

// TestDefaultsAreConfigDefault renders the chart with its default values and compares it object by object with
// `kubectl apply -k config/default`, less the Namespace (Helm's --create-namespace) and the chart's own labels
// and the CRDs' keep policy. It covers the handwritten Deployment, which no generator keeps in step.
func TestDefaultsAreConfigDefault(t *testing.T) {
	g := NewWithT(t)
	kustomized, err := sandbox.RenderDefault(root)
	g.Expect(err).NotTo(HaveOccurred())
	want := map[string]*unstructured.Unstructured{}
	for _, u := range kustomized {
		if u.GetKind() != "Namespace" {
			want[key(u)] = jsonCopy(t, u)
		}
	}
	got := map[string]*unstructured.Unstructured{}
	for _, u := range render(t, nil).Objects {
		got[key(u)] = withoutChartMetadata(u)
	}
	g.Expect(sortedKeys(got)).To(Equal(sortedKeys(want)), "the chart's objects at default values")
	for k, w := range want {
		if got[k] != nil {
			g.Expect(asYAML(t, got[k])).To(Equal(asYAML(t, w)), "%s in the chart and in config/default", k)
		}
	}
}

// withoutChartMetadata drops what the chart adds to config/default's objects: its labels, and the CRDs' keep
// policy (checked in TestCRDsAreKept).
func withoutChartMetadata(u *unstructured.Unstructured) *unstructured.Unstructured {
	u = u.DeepCopy()
	labels := u.GetLabels()
	for _, l := range chart.ChartLabels {
		delete(labels, l)
	}
	if len(labels) == 0 {
		unstructured.RemoveNestedField(u.Object, "metadata", "labels")
	} else {
		u.SetLabels(labels)
	}
	ann := u.GetAnnotations()
	delete(ann, "helm.sh/resource-policy")
	if len(ann) == 0 {
		unstructured.RemoveNestedField(u.Object, "metadata", "annotations")
	} else {
		u.SetAnnotations(ann)
	}
	return u
}

// TestCRDsAreKept checks that both CRDs are templates (so `helm upgrade` updates them) kept on uninstall.
func TestCRDsAreKept(t *testing.T) {
	g := NewWithT(t)
	var names []string
	for _, u := range render(t, nil).Objects {
		if u.GetKind() == "CustomResourceDefinition" {
			names = append(names, u.GetName())
			g.Expect(u.GetAnnotations()).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"), u.GetName())
		}
	}
	g.Expect(names).To(ConsistOf("labruns.labs.ambientlab.io", "labschedules.labs.ambientlab.io"))
	_, err := os.Stat(filepath.Join(dir, "crds"))
	g.Expect(os.IsNotExist(err)).To(BeTrue(), "a crds/ directory, which helm upgrade never updates")
}

func jsonCopy(t *testing.T, u *unstructured.Unstructured) *unstructured.Unstructured {
	b, err := u.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	out := &unstructured.Unstructured{}
	if err := out.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	return out
}

func asYAML(t *testing.T, u *unstructured.Unstructured) string {
	b, err := yaml.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sortedKeys(m map[string]*unstructured.Unstructured) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// managerArgs are the manager container's arguments in a render.
func managerArgs(t *testing.T, r *chart.Rendered) []string {
	t.Helper()
	d := find(r.Objects, "Deployment", "labrun-controller-manager")
	if d == nil {
		t.Fatal("no Deployment labrun-controller-manager in the render")
	}
	containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	image, _, _ := unstructured.NestedString(containers[0].(map[string]any), "image")
	return append([]string{"image=" + image}, args...)
}

func probeImagesOf(t *testing.T, r *chart.Rendered) string {
	t.Helper()
	cm := find(r.Objects, "ConfigMap", sandbox.ProbeImagesConfigMap)
	if cm == nil {
		return ""
	}
	s, _, _ := unstructured.NestedString(cm.Object, "data", "probeImages")
	return s
}

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestValues renders the chart with values other than the defaults and checks what each changes.
func TestValues(t *testing.T) {
	t.Run("digests", func(t *testing.T) {
		g := NewWithT(t)
		r := render(t, map[string]any{
			"image":      map[string]any{"repository": "ghcr.io/ambientlab/labrun-operator", "tag": "v1", "digest": digest},
			"probeImage": map[string]any{"repository": "ghcr.io/ambientlab/labrun-probe", "digest": digest, "extra": []any{"example.com/probe:1"}},
		})
		args := managerArgs(t, r)
		g.Expect(args).To(ContainElement("image=ghcr.io/ambientlab/labrun-operator@" + digest))
		g.Expect(args).To(ContainElement("--probe-image=ghcr.io/ambientlab/labrun-probe@" + digest))
		g.Expect(probeImagesOf(t, r)).To(Equal("ghcr.io/ambientlab/labrun-probe@" + digest + ",example.com/probe:1"))
	})
	t.Run("probe image defaults to the manager's", func(t *testing.T) {
		g := NewWithT(t)
		r := render(t, map[string]any{"image": map[string]any{"repository": "registry.example/labrun", "tag": "v2"}})
		g.Expect(managerArgs(t, r)).To(ContainElement("--probe-image=registry.example/labrun:v2"))
		g.Expect(probeImagesOf(t, r)).To(Equal("registry.example/labrun:v2"))
	})
	t.Run("where the mesh lives", func(t *testing.T) {
		g := NewWithT(t)
		r := render(t, map[string]any{"mesh": map[string]any{"rootNamespace": "istio-root",
			"ztunnel": map[string]any{"namespace": "ztunnel-ns", "selector": map[string]any{"k8s-app": "ztunnel", "app": "zt"}}}})
		g.Expect(managerArgs(t, r)).To(ContainElements("--mesh-root-namespace=istio-root", "--ztunnel-namespace=ztunnel-ns",
			"--ztunnel-selector=app=zt,k8s-app=ztunnel"))
		cm := find(r.Objects, "ConfigMap", sandbox.MeshConfigMap)
		g.Expect(cm).NotTo(BeNil(), "the admission policies' mesh parameter")
		data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
		g.Expect(data).To(Equal(map[string]string{"rootNamespace": "istio-root", "ztunnelNamespace": "ztunnel-ns",
			"ztunnelSelector": "app=zt,k8s-app=ztunnel"}), "the same values as the manager's flags")
		_, err := chart.Render(context.Background(), dir, release, sandbox.OperatorNamespace,
			map[string]any{"mesh": map[string]any{"rootNamespace": "Istio_System"}})
		g.Expect(err).To(MatchError(ContainSubstring("rootNamespace")), "not a namespace name")
	})
	t.Run("namespace opt-in off", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(managerArgs(t, render(t, nil))).NotTo(ContainElement("--allow-any-namespace"))
		g.Expect(managerArgs(t, render(t, map[string]any{"namespaceOptIn": false}))).To(ContainElement("--allow-any-namespace"))
	})
	t.Run("metrics off", func(t *testing.T) {
		g := NewWithT(t)
		r := render(t, map[string]any{"metrics": map[string]any{"enabled": false}, "serviceMonitor": map[string]any{"enabled": true}})
		g.Expect(managerArgs(t, r)).To(ContainElement("--metrics-bind-address=0"))
		for _, u := range r.Objects {
			g.Expect(u.GetName()).NotTo(ContainSubstring("metrics"), key(u))
		}
	})
	t.Run("metrics over plain HTTP", func(t *testing.T) {
		g := NewWithT(t)
		r := render(t, map[string]any{"metrics": map[string]any{"secure": false}, "serviceMonitor": map[string]any{"enabled": true}})
		g.Expect(managerArgs(t, r)).To(ContainElements("--metrics-bind-address=:8443", "--metrics-secure=false"))
		sm := find(r.Objects, "ServiceMonitor", "labrun-controller-manager-metrics-monitor")
		g.Expect(sm).NotTo(BeNil())
		g.Expect(asYAML(t, sm)).To(ContainSubstring("scheme: http\n"))
	})
	t.Run("pprof", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(strings.Join(managerArgs(t, render(t, nil)), " ")).NotTo(ContainSubstring("pprof"), "off by default")
		r := render(t, map[string]any{"pprof": map[string]any{"bindAddress": "127.0.0.1:8082"}})
		g.Expect(managerArgs(t, r)).To(ContainElement("--pprof-bind-address=127.0.0.1:8082"))
	})
	t.Run("the Go memory limit follows the container's", func(t *testing.T) {
		g := NewWithT(t)
		r := render(t, map[string]any{"resources": map[string]any{"limits": map[string]any{"memory": "1Gi"}}})
		containers, _, _ := unstructured.NestedSlice(find(r.Objects, "Deployment", "labrun-controller-manager").Object,
			"spec", "template", "spec", "containers")
		g.Expect(containers).To(HaveLen(1))
		env, _, _ := unstructured.NestedSlice(containers[0].(map[string]any), "env")
		g.Expect(env).To(ContainElement(map[string]any{"name": "MEMORY_LIMIT", "valueFrom": map[string]any{
			"resourceFieldRef": map[string]any{"containerName": "manager", "resource": "limits.memory"}}}))
	})
	t.Run("leader election", func(t *testing.T) {
		g := NewWithT(t)
		r := render(t, map[string]any{"replicas": 1, "leaderElection": map[string]any{"leaseDuration": "15s", "renewDeadline": "10s", "retryPeriod": "2s"}})
		g.Expect(managerArgs(t, r)).To(ContainElements("--leader-elect", "--leader-elect-lease-duration=15s",
			"--leader-elect-renew-deadline=10s", "--leader-elect-retry-period=2s"))
		replicas, _, _ := unstructured.NestedFieldNoCopy(find(r.Objects, "Deployment", "labrun-controller-manager").Object, "spec", "replicas")
		g.Expect(replicas).To(BeNumerically("==", 1))
		r = render(t, map[string]any{"leaderElection": map[string]any{"enabled": false}})
		g.Expect(managerArgs(t, r)).To(ContainElement("--leader-elect=false"))
		g.Expect(strings.Join(managerArgs(t, r), " ")).NotTo(ContainSubstring("lease-duration"))
	})
	t.Run("admission policies cannot be switched off", func(t *testing.T) {
		// They hold the trust boundary and exist on every Kubernetes the chart installs on (>= 1.30); the
		// manager holds Lab runs while they are missing, so a switch would only stall the operator.
		g := NewWithT(t)
		_, err := chart.Render(context.Background(), dir, release, sandbox.OperatorNamespace,
			map[string]any{"admissionPolicies": map[string]any{"enabled": false}})
		g.Expect(err).To(MatchError(ContainSubstring("admissionPolicies")))
		var kinds []string
		for _, u := range render(t, map[string]any{"metrics": map[string]any{"enabled": false}}).Objects {
			kinds = append(kinds, u.GetKind())
		}
		g.Expect(kinds).To(ContainElements("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"))
	})
	t.Run("monitoring and Argo CD extras", func(t *testing.T) {
		g := NewWithT(t)
		r := render(t, map[string]any{"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "kps"}},
			"prometheusRule": map[string]any{"enabled": true}, "grafanaDashboard": map[string]any{"enabled": true},
			"argocd": map[string]any{"healthCheck": map[string]any{"enabled": true}}})
		sm := find(r.Objects, "ServiceMonitor", "labrun-controller-manager-metrics-monitor")
		g.Expect(sm).NotTo(BeNil())
		g.Expect(sm.GetLabels()).To(HaveKeyWithValue("release", "kps"))
		checkServiceMonitor(t)
		lua, err := os.ReadFile(filepath.Join(root, "config", "argocd", "health.lua"))
		g.Expect(err).NotTo(HaveOccurred())
		cm := find(r.Objects, "ConfigMap", "labrun-argocd-health")
		g.Expect(cm).NotTo(BeNil())
		got, _, _ := unstructured.NestedString(cm.Object, "data", "resource.customizations.health.labs.ambientlab.io_LabRun")
		g.Expect(got).To(Equal(strings.TrimRight(string(lua), "\n")))
		g.Expect(r.Notes).To(ContainSubstring("kubectl -n argocd patch configmap argocd-cm"))
		checkMonitoringFiles(t, r)
	})
	t.Run("schema refuses unknown values", func(t *testing.T) {
		_, err := chart.Render(context.Background(), dir, release, sandbox.OperatorNamespace, map[string]any{"namespaceOptin": false})
		NewWithT(t).Expect(err).To(HaveOccurred())
	})
}

// checkServiceMonitor compares the chart's ServiceMonitor with config/prometheus's, less the chart's labels.
func checkServiceMonitor(t *testing.T) {
	g := NewWithT(t)
	objs, err := sandbox.Kustomize(filepath.Join(root, "config", "prometheus"))
	g.Expect(err).NotTo(HaveOccurred())
	var want *unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == "ServiceMonitor" {
			want = withoutChartMetadata(jsonCopy(t, u))
		}
	}
	g.Expect(want).NotTo(BeNil(), "config/prometheus has no ServiceMonitor")
	got := find(render(t, map[string]any{"serviceMonitor": map[string]any{"enabled": true}}).Objects, want.GetKind(), want.GetName())
	g.Expect(got).NotTo(BeNil(), "the chart has no ServiceMonitor %s", want.GetName())
	g.Expect(asYAML(t, withoutChartMetadata(got))).To(Equal(asYAML(t, want)))
}

// checkMonitoringFiles checks the PrometheusRule and the dashboards against config/prometheus/rules.yaml and
// config/grafana when those exist, and their absence when they do not.
func checkMonitoringFiles(t *testing.T, r *chart.Rendered) {
	g := NewWithT(t)
	rules, err := os.ReadFile(filepath.Join(root, "config", "prometheus", "rules.yaml"))
	rule := find(r.Objects, "PrometheusRule", "labrun-alerts")
	if err != nil {
		g.Expect(rule).To(BeNil())
	} else {
		g.Expect(rule).NotTo(BeNil())
		var doc map[string]any
		g.Expect(yaml.Unmarshal(rules, &doc)).To(Succeed())
		if spec, ok := doc["spec"].(map[string]any); ok {
			doc = spec
		}
		want, _ := yaml.Marshal(doc["groups"])
		groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
		got, _ := yaml.Marshal(groups)
		g.Expect(string(got)).To(Equal(string(want)))
	}
	dashboards, _ := filepath.Glob(filepath.Join(root, "config", "grafana", "*.json"))
	cm := find(r.Objects, "ConfigMap", "labrun-operator-dashboards")
	if len(dashboards) == 0 {
		g.Expect(cm).To(BeNil())
		return
	}
	g.Expect(cm).NotTo(BeNil())
	g.Expect(cm.GetLabels()).To(HaveKeyWithValue("grafana_dashboard", "1"))
	for _, p := range dashboards {
		b, _ := os.ReadFile(p)
		got, _, _ := unstructured.NestedString(cm.Object, "data", filepath.Base(p))
		g.Expect(got).To(Equal(strings.TrimRight(string(b), "\n")), p)
	}
}

// variants are the value sets linted and applied in a server-side dry run.
var variants = map[string]map[string]any{
	"defaults": nil,
	"non-default": {
		"image":          map[string]any{"repository": "ghcr.io/ambientlab/labrun-operator", "digest": digest},
		"namespaceOptIn": false, "metrics": map[string]any{"enabled": false},
		"leaderElection": map[string]any{"enabled": false}, "replicas": 1,
		"argocd": map[string]any{"healthCheck": map[string]any{"enabled": true}}, "grafanaDashboard": map[string]any{"enabled": true},
	},
}

// TestLint lints the chart as `helm lint` does: no errors or warnings.
func TestLint(t *testing.T) {
	for name, vals := range variants {
		t.Run(name, func(t *testing.T) {
			msgs, err := chart.Lint(dir, sandbox.OperatorNamespace, vals)
			g := NewWithT(t)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(msgs).To(BeEmpty())
		})
	}
}

// TestServerSideDryRun applies every rendered object to the API server with a server-side dry run: the API server
// validates them (schemas, CEL of the admission policies and CRDs) without keeping them.
func TestServerSideDryRun(t *testing.T) {
	for name, vals := range variants {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			r := render(t, vals)
			g.Expect(r.Objects).NotTo(BeEmpty())
			for _, u := range r.Objects {
				err := sb.Client.Patch(context.Background(), u, client.Apply, client.FieldOwner("helm-test"),
					client.ForceOwnership, client.DryRunAll)
				g.Expect(err).NotTo(HaveOccurred(), key(u))
			}
		})
	}
}
