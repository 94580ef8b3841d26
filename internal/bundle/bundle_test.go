package bundle_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/ambientlab/labrun-operator/internal/bundle"
	"github.com/ambientlab/labrun-operator/internal/controlplane"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

const csvFile = bundle.Dir + "/manifests/" + bundle.Package + ".clusterserviceversion.yaml"

func root(t *testing.T) string {
	t.Helper()
	r, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func generate(t *testing.T, o bundle.Options) map[string][]byte {
	t.Helper()
	files, err := bundle.Generate(root(t), o)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestBundleIsGenerated fails when the committed bundle differs from what `make bundle` writes from config/
// today, or holds a file it no longer writes.
func TestBundleIsGenerated(t *testing.T) {
	r := root(t)
	want := generate(t, bundle.Options{})
	for rel, b := range want {
		got, err := os.ReadFile(filepath.Join(r, rel))
		if err != nil {
			t.Errorf("%s: %v (run make bundle)", rel, err)
			continue
		}
		if !bytes.Equal(got, b) {
			t.Errorf("%s differs from what hack/bundlegen generates from config/ (run make bundle)", rel)
		}
	}
	_ = filepath.WalkDir(filepath.Join(r, bundle.Dir), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(r, p)
		if _, ok := want[filepath.ToSlash(rel)]; !ok {
			t.Errorf("%s is no longer generated (run make bundle)", rel)
		}
		return nil
	})
}

// TestCommittedBundleValidates validates the bundle as committed.
func TestCommittedBundleValidates(t *testing.T) {
	r := root(t)
	files := map[string][]byte{}
	for rel := range generate(t, bundle.Options{}) {
		b, err := os.ReadFile(filepath.Join(r, rel))
		if err != nil {
			t.Fatal(err)
		}
		files[rel] = b
	}
	NewWithT(t).Expect(bundle.Validate(files)).To(Succeed())
}

func csvOf(t *testing.T, files map[string][]byte) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(files[csvFile], &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

func setCSV(t *testing.T, files map[string][]byte, u *unstructured.Unstructured) {
	t.Helper()
	b, err := yaml.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	files[csvFile] = b
}

// TestValidateRefuses breaks a valid bundle in the ways OLM and OperatorHub refuse, one at a time, and expects
// each refusal to name the problem.
func TestValidateRefuses(t *testing.T) {
	cases := map[string]struct {
		breakIt func(t *testing.T, files map[string][]byte)
		want    string
	}{
		"an example the API server refuses (enum)": {func(t *testing.T, f map[string][]byte) {
			u := csvOf(t, f)
			ann := u.GetAnnotations()
			ann["alm-examples"] = strings.Replace(ann["alm-examples"], `"mode": "Verify"`, `"mode": "Sometimes"`, 1)
			u.SetAnnotations(ann)
			setCSV(t, f, u)
		}, `spec.mode`},
		"an example with a field the CRD does not know": {func(t *testing.T, f map[string][]byte) {
			u := csvOf(t, f)
			ann := u.GetAnnotations()
			ann["alm-examples"] = strings.Replace(ann["alm-examples"], `"maxExposure"`, `"maxExposures"`, 1)
			u.SetAnnotations(ann)
			setCSV(t, f, u)
		}, `unknown field "spec.maxExposures"`},
		"a CSV field OLM's schema does not know": {func(t *testing.T, f map[string][]byte) {
			u := csvOf(t, f)
			_ = unstructured.SetNestedField(u.Object, "x", "spec", "installStrategy")
			setCSV(t, f, u)
		}, `unknown field "spec.installStrategy"`},
		"a CSV field of the wrong type": {func(t *testing.T, f map[string][]byte) {
			u := csvOf(t, f)
			_ = unstructured.SetNestedField(u.Object, "alpha", "spec", "keywords")
			setCSV(t, f, u)
		}, `spec.keywords`},
		"a capability level that does not exist": {func(t *testing.T, f map[string][]byte) {
			u := csvOf(t, f)
			ann := u.GetAnnotations()
			ann["capabilities"] = "Full Lifecycles"
			u.SetAnnotations(ann)
			setCSV(t, f, u)
		}, `capabilities`},
		"an owned CRD missing from the bundle": {func(t *testing.T, f map[string][]byte) {
			delete(f, bundle.Dir+"/manifests/labschedules.labs.ambientlab.io.yaml")
		}, `owned CRD labschedules.labs.ambientlab.io is not in the bundle`},
		"a kind OLM cannot install": {func(t *testing.T, f map[string][]byte) {
			f[bundle.Dir+"/manifests/policy.yaml"] = []byte("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata: {name: x}\n")
		}, `kind ValidatingAdmissionPolicy cannot be in a bundle`},
		"a descriptor for no field": {func(t *testing.T, f map[string][]byte) {
			u := csvOf(t, f)
			owned, _, _ := unstructured.NestedSlice(u.Object, "spec", "customresourcedefinitions", "owned")
			ds := owned[0].(map[string]any)["statusDescriptors"].([]any)
			ds[0].(map[string]any)["path"] = "phasee"
			_ = unstructured.SetNestedSlice(u.Object, owned, "spec", "customresourcedefinitions", "owned")
			setCSV(t, f, u)
		}, `statusDescriptors path "phasee"`},
		"an image that is not a related image": {func(t *testing.T, f map[string][]byte) {
			u := csvOf(t, f)
			_ = unstructured.SetNestedSlice(u.Object, []any{}, "spec", "relatedImages")
			setCSV(t, f, u)
		}, `is not in spec.relatedImages`},
		"annotations.yaml of another media type": {func(t *testing.T, f map[string][]byte) {
			f[bundle.Dir+"/metadata/annotations.yaml"] = bytes.Replace(f[bundle.Dir+"/metadata/annotations.yaml"], []byte("registry+v1"), []byte("plain+v0"), 1)
		}, `mediatype.v1 is "plain+v0"`},
		"a bundle image labelled otherwise": {func(t *testing.T, f map[string][]byte) {
			f[bundle.Dockerfile] = bytes.Replace(f[bundle.Dockerfile], []byte("package.v1=labrun-operator"), []byte("package.v1=other"), 1)
		}, `no LABEL operators.operatorframework.io.bundle.package.v1=labrun-operator`},
		"a name without the version": {func(t *testing.T, f map[string][]byte) {
			u := csvOf(t, f)
			u.SetName("labrun-operator")
			setCSV(t, f, u)
		}, `metadata.name`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			files := generate(t, bundle.Options{})
			c.breakIt(t, files)
			err := bundle.Validate(files)
			NewWithT(t).Expect(err).To(MatchError(ContainSubstring(c.want)))
		})
	}
}

// TestCSVFollowsConfig checks the CSV against config/: the Deployment as config/default has it (with the
// bundle's image), the RBAC bound to the manager's ServiceAccount, an example of every sample, both CRDs owned,
// the suggested namespace the admission policies need, and the capability level claimed.
func TestCSVFollowsConfig(t *testing.T) {
	g := NewWithT(t)
	files := generate(t, bundle.Options{})
	csv := csvOf(t, files)
	objs, err := sandbox.RenderDefault(root(t))
	g.Expect(err).NotTo(HaveOccurred())
	var policies int
	for _, u := range objs {
		switch {
		case u.GetKind() == "Deployment":
			want, _, _ := unstructured.NestedFieldNoCopy(u.Object, "spec")
			wantYAML, _ := yaml.Marshal(want)
			deps, _, _ := unstructured.NestedSlice(csv.Object, "spec", "install", "spec", "deployments")
			g.Expect(deps).To(HaveLen(1))
			got, _ := yaml.Marshal(deps[0].(map[string]any)["spec"])
			g.Expect(string(got)).To(Equal(strings.ReplaceAll(string(wantYAML), "controller:latest", bundle.DefaultImage)))
		case u.GetKind() == "ClusterRole" && u.GetName() == "labrun-manager-role":
			rules, _ := yaml.Marshal(u.Object["rules"])
			cp, _, _ := unstructured.NestedSlice(csv.Object, "spec", "install", "spec", "clusterPermissions")
			g.Expect(cp).To(HaveLen(1))
			g.Expect(cp[0].(map[string]any)["serviceAccountName"]).To(Equal("labrun-controller-manager"))
			got, _ := yaml.Marshal(cp[0].(map[string]any)["rules"])
			g.Expect(string(got)).To(HavePrefix(string(rules)), "the manager's ClusterRole's rules, then the metrics auth role's")
		case strings.HasSuffix(u.GetKind(), "AdmissionPolicy"):
			policies++
			g.Expect(string(files[bundle.Dir+"/extra/admission-policies.yaml"])).To(ContainSubstring("name: "+u.GetName()+"\n"),
				"OLM cannot install %s: bundle/extra has it", u.GetName())
		}
	}
	g.Expect(policies).To(BeNumerically(">", 5))
	ann := csv.GetAnnotations()
	g.Expect(ann).To(HaveKeyWithValue("capabilities", "Basic Install"))
	g.Expect(ann).To(HaveKeyWithValue("operatorframework.io/suggested-namespace", sandbox.OperatorNamespace))
	samples, _ := filepath.Glob(filepath.Join(root(t), "config", "samples", "labs_*.yaml"))
	g.Expect(samples).NotTo(BeEmpty())
	for _, s := range samples {
		b, _ := os.ReadFile(s)
		var sample map[string]any
		g.Expect(yaml.Unmarshal(b, &sample)).To(Succeed())
		name := sample["metadata"].(map[string]any)["name"].(string)
		g.Expect(ann["alm-examples"]).To(ContainSubstring(`"name": "`+name+`"`), s)
	}
	owned, _, _ := unstructured.NestedSlice(csv.Object, "spec", "customresourcedefinitions", "owned")
	var kinds []string
	for _, o := range owned {
		kinds = append(kinds, o.(map[string]any)["kind"].(string))
		g.Expect(o.(map[string]any)["statusDescriptors"]).To(ContainElement(HaveKeyWithValue("path", "conditions")))
	}
	g.Expect(kinds).To(ConsistOf("LabRun", "LabSchedule"))
}

// TestBundleByDigest generates the bundle for an image by digest, as a release would: every place the image
// appears (the Deployment, --probe-image, the probe-images ConfigMap, relatedImages, containerImage) has it, and
// the bundle validates.
func TestBundleByDigest(t *testing.T) {
	g := NewWithT(t)
	const image = "ghcr.io/ambientlab/labrun-operator@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	files := generate(t, bundle.Options{Image: image})
	g.Expect(bundle.Validate(files)).To(Succeed())
	csv := string(files[csvFile])
	g.Expect(csv).NotTo(ContainSubstring("controller:latest"))
	g.Expect(strings.Count(csv, image)).To(Equal(4), "containerImage, the container, --probe-image, relatedImages")
	g.Expect(string(files[bundle.Dir+"/manifests/labrun-probe-images_v1_configmap.yaml"])).To(ContainSubstring(image))
}

// TestMakefileBundleImage keeps `make bundle`'s default image the one the committed bundle is generated with.
func TestMakefileBundleImage(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	NewWithT(t).Expect(string(b)).To(ContainSubstring("BUNDLE_IMAGE ?= " + bundle.DefaultImage + "\n"))
}

// TestProjectListsEveryServedKind checks that PROJECT names every kind the operator's CRDs serve.
func TestProjectListsEveryServedKind(t *testing.T) {
	g := NewWithT(t)
	b, err := os.ReadFile(filepath.Join(root(t), "PROJECT"))
	g.Expect(err).NotTo(HaveOccurred())
	var project struct {
		Resources []struct {
			Kind, Group, Version string
			Controller           bool
		}
	}
	g.Expect(yaml.Unmarshal(b, &project)).To(Succeed())
	var listed []string
	for _, r := range project.Resources {
		g.Expect(r.Controller).To(BeTrue(), r.Kind)
		listed = append(listed, r.Group+"/"+r.Version+"/"+r.Kind)
	}
	crds, _ := filepath.Glob(filepath.Join(root(t), "config", "crd", "bases", "*.yaml"))
	var served []string
	for _, p := range crds {
		b, _ := os.ReadFile(p)
		var crd struct {
			Spec struct {
				Group    string
				Names    struct{ Kind string }
				Versions []struct {
					Name   string
					Served bool
				}
			}
		}
		g.Expect(yaml.Unmarshal(b, &crd)).To(Succeed())
		for _, v := range crd.Spec.Versions {
			if v.Served {
				served = append(served, strings.TrimSuffix(crd.Spec.Group, ".ambientlab.io")+"/"+v.Name+"/"+crd.Spec.Names.Kind)
			}
		}
	}
	g.Expect(listed).To(ConsistOf(served))
}
