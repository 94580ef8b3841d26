package operator_test

// config/samples/world is the lab guide's world as plain manifests for a real cluster (docs/real-cluster.md); the
// sandbox builds the same world in code (internal/sandbox/world.go). This test keeps the two from drifting apart:
// it applies the manifests to the sandbox's API server (server-side dry run: schema, Istio's CRD validation and
// config/default's admission policies) and compares them, where a run depends on them, with the objects the
// sandbox seeded. It lives here because this package already runs a sandbox (one per test package).

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/proto"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

// renderWorld renders config/samples/world as `kubectl apply -k` would, indexed by kind/namespace/name.
func renderWorld(t *testing.T) map[string]*unstructured.Unstructured {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(sb.Env.Root, "config", "samples", "world"))
	if err != nil {
		t.Fatalf("rendering config/samples/world: %v", err)
	}
	out := map[string]*unstructured.Unstructured{}
	for _, r := range res.Resources() {
		b, err := r.MarshalJSON() // through JSON, so numbers are int64 as in objects read from the API server
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			t.Fatal(err)
		}
		out[worldKey(u.GetKind(), u.GetNamespace(), u.GetName())] = u
	}
	return out
}

func worldKey(kind, ns, name string) string { return kind + " " + ns + "/" + name }

// shop's workloads and AuthorizationPolicies (internal/sandbox/shop.go).
var (
	shopApps     = []string{"orders", "payments", "catalog"}
	shopPolicies = []string{sandbox.OrdersAllowWebPolicy, sandbox.OrdersDenyLegacyPolicy,
		sandbox.OrdersAllowGatewayPolicy, sandbox.PaymentsGetOnlyPolicy, sandbox.GhostAllowWebPolicy}
)

// decode converts a rendered manifest into its Go type through JSON, as the API server reads it (Istio's specs
// are protobuf messages with their own JSON decoding).
func decode[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	b, err := json.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("decoding %s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return &out
}

// live reads the sandbox's own object of the world.
func live[T client.Object](t *testing.T, obj T, ns, name string) T {
	t.Helper()
	if err := sb.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
		t.Fatalf("reading the sandbox's %T %s/%s: %v", obj, ns, name, err)
	}
	return obj
}

func TestWorldManifestsMatchTheSandbox(t *testing.T) {
	world := renderWorld(t)
	demo, root := sandbox.DemoNamespace, sandbox.RootNamespace
	var want []string
	for _, app := range []string{"frontend", "backend"} {
		want = append(want, worldKey("ServiceAccount", demo, app), worldKey("Deployment", demo, app),
			worldKey("Service", demo, app))
	}
	want = append(want, worldKey("Namespace", "", demo), worldKey("PeerAuthentication", root, "default"),
		worldKey("AuthorizationPolicy", demo, sandbox.PolicyName))
	shop := sandbox.ShopNamespace
	want = append(want, worldKey("Namespace", "", shop), worldKey("ServiceAccount", shop, "web"),
		worldKey("ServiceAccount", shop, "legacy"),
		worldKey("PeerAuthentication", shop, sandbox.CatalogMetricsPermissive))
	for _, app := range shopApps {
		want = append(want, worldKey("ServiceAccount", shop, app), worldKey("Deployment", shop, app),
			worldKey("Service", shop, app))
	}
	for _, name := range shopPolicies {
		want = append(want, worldKey("AuthorizationPolicy", shop, name))
	}
	NewWithT(t).Expect(slices.Collect(maps.Keys(world))).To(ConsistOf(want), "config/samples/world holds the sandbox's world, no more, no less")

	t.Run("server-side dry run", func(t *testing.T) {
		for _, k := range slices.Sorted(maps.Keys(world)) {
			// Forced, so a field the sandbox set differently is validated rather than reported as a conflict: the
			// subtests below report the drift itself.
			err := sb.Client.Patch(context.Background(), world[k].DeepCopy(), client.Apply, client.DryRunAll,
				client.FieldOwner("labrun-world-sample"), client.ForceOwnership)
			if err != nil {
				t.Errorf("applying %s: %v", k, err)
			}
		}
	})
	for _, ns := range []string{demo, shop} {
		t.Run("namespace "+ns+" enrolled and enabled", func(t *testing.T) {
			m := decode[corev1.Namespace](t, world[worldKey("Namespace", "", ns)])
			l := live(t, &corev1.Namespace{}, "", ns)
			delete(l.Labels, corev1.LabelMetadataName) // the API server's own label
			g := NewWithT(t)
			g.Expect(m.Labels).To(Equal(l.Labels))
			g.Expect(m.Labels).To(HaveKeyWithValue(labsv1.LabelEnabled, "true"))
		})
	}
	apps := [][2]string{{demo, "frontend"}, {demo, "backend"}}
	for _, app := range shopApps {
		apps = append(apps, [2]string{shop, app})
	}
	for _, a := range apps {
		ns, app := a[0], a[1]
		t.Run(ns+"/"+app, func(t *testing.T) {
			g := NewWithT(t)
			md := decode[appsv1.Deployment](t, world[worldKey("Deployment", ns, app)])
			g.Expect(deploymentShape(md)).To(Equal(deploymentShape(live(t, &appsv1.Deployment{}, ns, app))))
			ms := decode[corev1.Service](t, world[worldKey("Service", ns, app)])
			g.Expect(serviceShape(ms)).To(Equal(serviceShape(live(t, &corev1.Service{}, ns, app))))
			g.Expect(md.Spec.Template.Labels).To(Equal(ms.Spec.Selector), "Service %s selects the Deployment's pods", app)
		})
	}
	peerAuthentications := []client.ObjectKey{{Namespace: root, Name: "default"},
		{Namespace: shop, Name: sandbox.CatalogMetricsPermissive}}
	for _, k := range peerAuthentications {
		t.Run("PeerAuthentication "+k.String(), func(t *testing.T) {
			m := decode[securityv1.PeerAuthentication](t, world[worldKey("PeerAuthentication", k.Namespace, k.Name)])
			l := live(t, &securityv1.PeerAuthentication{}, k.Namespace, k.Name)
			NewWithT(t).Expect(proto.Equal(&m.Spec, &l.Spec)).To(BeTrue(), "manifest %s, sandbox %s",
				m.Spec.String(), l.Spec.String())
		})
	}
	policies := []client.ObjectKey{{Namespace: demo, Name: sandbox.PolicyName}}
	for _, name := range shopPolicies {
		policies = append(policies, client.ObjectKey{Namespace: shop, Name: name})
	}
	for _, k := range policies {
		t.Run("AuthorizationPolicy "+k.String(), func(t *testing.T) {
			m := decode[securityv1.AuthorizationPolicy](t, world[worldKey("AuthorizationPolicy", k.Namespace, k.Name)])
			l := live(t, &securityv1.AuthorizationPolicy{}, k.Namespace, k.Name)
			NewWithT(t).Expect(proto.Equal(&m.Spec, &l.Spec)).To(BeTrue(), "manifest %s, sandbox %s",
				m.Spec.String(), l.Spec.String())
		})
	}
	t.Run("the sample LabRun names what the world has", func(t *testing.T) { sampleRunFits(t, world) })
}

// deploymentShape is what a run depends on: the pods' labels (the policy's selector, the Service's), their
// ServiceAccount (their SPIFFE identity), and their one container, port and requests (the footprint lab).
func deploymentShape(d *appsv1.Deployment) map[string]any {
	var containers []map[string]any
	for _, c := range d.Spec.Template.Spec.Containers {
		var ports []int32
		for _, p := range c.Ports {
			ports = append(ports, p.ContainerPort)
		}
		containers = append(containers, map[string]any{"name": c.Name, "image": c.Image, "ports": ports,
			"cpu": c.Resources.Requests.Cpu().String(), "memory": c.Resources.Requests.Memory().String()})
	}
	return map[string]any{"selector": d.Spec.Selector.MatchLabels, "labels": d.Spec.Template.Labels,
		"serviceAccount": d.Spec.Template.Spec.ServiceAccountName, "containers": containers,
		"initContainers": len(d.Spec.Template.Spec.InitContainers)}
}

// serviceShape is the Service's selector and ports, as the probes call them.
func serviceShape(s *corev1.Service) map[string]any {
	var ports []string
	for _, p := range s.Spec.Ports {
		ports = append(ports, fmt.Sprintf("%s %d->%s", p.Name, p.Port, p.TargetPort.String()))
	}
	return map[string]any{"selector": s.Spec.Selector, "ports": ports}
}

// sampleRunFits checks that config/samples' LabRun, which docs/real-cluster.md runs, names objects the world has.
func sampleRunFits(t *testing.T, world map[string]*unstructured.Unstructured) {
	b, err := os.ReadFile(filepath.Join(sb.Env.Root, "config", "samples", "labs_v1alpha1_labrun.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var run labsv1.LabRun
	if err := yaml.UnmarshalStrict(b, &run); err != nil {
		t.Fatalf("decoding the sample LabRun: %v", err)
	}
	g := NewWithT(t)
	ns := run.Spec.Target.Namespace
	if ns == "" {
		ns = run.Namespace // the API's default: the LabRun's namespace
	}
	g.Expect(world).To(HaveKey(worldKey("Service", ns, run.Spec.Target.Service)))
	svc := decode[corev1.Service](t, world[worldKey("Service", ns, run.Spec.Target.Service)])
	g.Expect(svc.Spec.Ports).To(ContainElement(HaveField("Port", run.Spec.Target.Port)))
	g.Expect(world).To(HaveKey(worldKey("ServiceAccount", ns, run.Spec.Client.ServiceAccount)))
	root := run.Spec.Mesh.RootNamespace
	if root == "" {
		root = sandbox.RootNamespace // the operator's configuration, Istio's default
	}
	g.Expect(world).To(HaveKey(worldKey("PeerAuthentication", root, run.Spec.Mesh.PeerAuthentication)))
	g.Expect(run.Spec.Mesh.AuthorizationPolicy).NotTo(BeNil())
	ap := run.Spec.Mesh.AuthorizationPolicy
	apNamespace := ap.Namespace
	if apNamespace == "" {
		apNamespace = ns // the API's default: the target namespace
	}
	g.Expect(world).To(HaveKey(worldKey("AuthorizationPolicy", apNamespace, ap.Name)))
}
