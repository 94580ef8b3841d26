package chart_test

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	loaderv2 "helm.sh/helm/v4/pkg/chart/v2/loader"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/ambientlab/labrun-operator/internal/bundle"
	"github.com/ambientlab/labrun-operator/internal/chart"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

func chartMetadata(t *testing.T) *chartv2.Metadata {
	t.Helper()
	ch, err := loaderv2.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ch.Metadata
}

// TestArtifactHubAnnotations reads Chart.yaml's annotations as Artifact Hub does (each a YAML document) and
// checks them against the rest of the repository: the CRDs and samples of config/, the OLM bundle's capability
// level and release image, the chart's own appVersion.
func TestArtifactHubAnnotations(t *testing.T) {
	g := NewWithT(t)
	md := chartMetadata(t)
	ann := md.Annotations
	g.Expect(ann).To(HaveKeyWithValue("artifacthub.io/operator", "true"))
	g.Expect(ann).To(HaveKeyWithValue("artifacthub.io/operatorCapabilities", bundle.Capability))
	g.Expect(md.AppVersion).To(Equal(bundle.Version))

	var images []struct {
		Name, Image string
		Platforms   []string
	}
	g.Expect(yaml.UnmarshalStrict([]byte(ann["artifacthub.io/images"]), &images)).To(Succeed())
	g.Expect(images).To(HaveLen(1))
	g.Expect(images[0].Image).To(Equal(bundle.DefaultImage), "the release image, as the bundle names it")
	g.Expect(images[0].Image).To(HaveSuffix(":v" + md.AppVersion))
	g.Expect(images[0].Platforms).To(ConsistOf("linux/amd64", "linux/arm64"), "what make image builds")

	var links []struct{ Name, URL string }
	g.Expect(yaml.UnmarshalStrict([]byte(ann["artifacthub.io/links"]), &links)).To(Succeed())
	g.Expect(links).NotTo(BeEmpty())
	for _, l := range links {
		g.Expect(l.Name).NotTo(BeEmpty())
		_, err := url.ParseRequestURI(l.URL)
		g.Expect(err).NotTo(HaveOccurred())
	}

	var crds []chart.ArtifactHubCRD
	g.Expect(yaml.UnmarshalStrict([]byte(ann["artifacthub.io/crds"]), &crds)).To(Succeed())
	var kinds []string
	for _, c := range crds {
		kinds = append(kinds, c.Kind)
		g.Expect(c.Version).To(Equal("v1alpha1"))
		g.Expect(c.Name).To(Equal(strings.ToLower(c.Kind) + "s.labs.ambientlab.io"))
		g.Expect(c.Description).To(HavePrefix(c.Kind+" "), "the CRD's own description")
	}
	g.Expect(kinds).To(ConsistOf("LabRun", "LabSchedule"))

	var examples []map[string]any
	g.Expect(yaml.Unmarshal([]byte(ann["artifacthub.io/crdsExamples"]), &examples)).To(Succeed())
	covered := map[string]bool{}
	for _, ex := range examples {
		g.Expect(ex["apiVersion"]).To(Equal("labs.ambientlab.io/v1alpha1"))
		covered[ex["kind"].(string)] = true
	}
	g.Expect(covered).To(HaveLen(len(crds)), "an example of every CRD")
}

// TestCRDExamplesAreAdmitted applies every crdsExamples entry to the sandbox's API server with a server-side dry
// run: what Artifact Hub shows is what the API server accepts.
func TestCRDExamplesAreAdmitted(t *testing.T) {
	g := NewWithT(t)
	var examples []map[string]any
	g.Expect(yaml.Unmarshal([]byte(chartMetadata(t).Annotations["artifacthub.io/crdsExamples"]), &examples)).To(Succeed())
	for _, ex := range examples {
		b, _ := json.Marshal(ex)
		objs, err := chart.Decode(string(b))
		g.Expect(err).NotTo(HaveOccurred())
		u := objs[0]
		g.Expect(sb.Client.Create(context.Background(), u, client.DryRunAll)).To(Succeed(), key(u))
	}
}

// TestKubeVersionFloor renders the chart for the Kubernetes versions around its kubeVersion: 1.35 lacks the
// MutatingAdmissionPolicy v1 that records a LabSchedule's author (ValidatingAdmissionPolicy alone would need
// 1.30), so Helm refuses it; 1.36 renders.
func TestKubeVersionFloor(t *testing.T) {
	g := NewWithT(t)
	g.Expect(chartMetadata(t).KubeVersion).To(Equal(">=1.36.0-0"))
	g.Expect(bundle.MinKubeVersion).To(Equal("1.36.0"), "the OLM bundle's floor")
	for v, ok := range map[string]bool{"v1.35.9": false, "v1.36.0": true, "v1.36.1-gke.100": true} {
		err := renderFor(t, v)
		if ok {
			g.Expect(err).NotTo(HaveOccurred(), v)
		} else {
			g.Expect(err).To(MatchError(ContainSubstring("kubeVersion")), v)
		}
	}
}

func renderFor(t *testing.T, kubeVersion string) error {
	ch, err := loaderv2.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(chart.Quiet())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName, install.Namespace, install.KubeVersion = release, sandbox.OperatorNamespace, kv
	_, err = install.RunWithContext(context.Background(), ch, nil)
	return err
}

// TestSchemaCoversEveryValue walks values.yaml and finds each value's schema in values.schema.json, with a type:
// a value the schema does not describe would be accepted whatever it is.
func TestSchemaCoversEveryValue(t *testing.T) {
	g := NewWithT(t)
	b, err := os.ReadFile(filepath.Join(dir, "values.schema.json"))
	g.Expect(err).NotTo(HaveOccurred())
	var schema map[string]any
	g.Expect(json.Unmarshal(b, &schema)).To(Succeed())
	b, err = os.ReadFile(filepath.Join(dir, "values.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	var values map[string]any
	g.Expect(yaml.Unmarshal(b, &values)).To(Succeed())
	var missing []string
	walkValues(schema, schema, "", values, &missing)
	sort.Strings(missing)
	g.Expect(missing).To(BeEmpty(), "values without a typed schema")
}

// walkValues checks v (at path) against the schema node s, resolving $ref and allOf, and recurses.
func walkValues(root, s map[string]any, path string, v any, missing *[]string) {
	s = resolve(root, s)
	if s == nil {
		*missing = append(*missing, path)
		return
	}
	if _, typed := s["type"]; !typed {
		*missing = append(*missing, path+" (no type)")
	}
	switch v := v.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		for k, child := range v {
			cs, _ := props[k].(map[string]any)
			if cs == nil {
				cs, _ = s["additionalProperties"].(map[string]any)
			}
			walkValues(root, cs, path+"."+k, child, missing)
		}
		if len(v) == 0 && props == nil && s["additionalProperties"] == nil {
			*missing = append(*missing, path+" (an empty map of what?)")
		}
	case []any:
		items, _ := s["items"].(map[string]any)
		if items == nil {
			*missing = append(*missing, path+" (a list of what?)")
		}
		for i, child := range v {
			walkValues(root, items, path+"["+string(rune('0'+i))+"]", child, missing)
		}
	}
}

// resolve follows $ref (to #/definitions/…) and merges allOf's first typed member, as far as this schema uses
// them.
func resolve(root, s map[string]any) map[string]any {
	if s == nil {
		return nil
	}
	if ref, ok := s["$ref"].(string); ok {
		node := any(root)
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, _ := node.(map[string]any)
			node = m[part]
		}
		m, _ := node.(map[string]any)
		return resolve(root, m)
	}
	if all, ok := s["allOf"].([]any); ok {
		merged := map[string]any{}
		for _, a := range all {
			for k, v := range resolve(root, a.(map[string]any)) {
				merged[k] = v
			}
		}
		for k, v := range s {
			if k != "allOf" {
				merged[k] = v
			}
		}
		return merged
	}
	return s
}

// TestSchemaRefusesBadValues renders the chart with one bad value at a time: Helm refuses each before
// rendering, naming the value.
func TestSchemaRefusesBadValues(t *testing.T) {
	cases := map[string]map[string]any{
		"image.digest":                 {"image": map[string]any{"digest": "sha256:not-hex"}},
		"image.pullPolicy":             {"image": map[string]any{"pullPolicy": "Sometimes"}},
		"replicas":                     {"replicas": -1},
		"leaderElection.leaseDuration": {"leaderElection": map[string]any{"leaseDuration": "6 seconds"}},
		"runs.maxActive":               {"runs": map[string]any{"maxActive": -1}},
		"runs.queueLookahead":          {"runs": map[string]any{"queueLookahead": 0}},
		"metrics.secure":               {"metrics": map[string]any{"secure": "yes"}},
		"podAnnotations":               {"podAnnotations": map[string]any{"a": 1}},
		"extraArgs":                    {"extraArgs": []any{1}},
		"tolerations":                  {"tolerations": []any{"NoSchedule"}},
		"imagePullSecrets":             {"imagePullSecrets": []any{map[string]any{}}},
		"resources":                    {"resources": map[string]any{"limits": map[string]any{"memory": true}}},
		"resources.limit":              {"resources": map[string]any{"limit": map[string]any{"memory": "1Gi"}}},
		"affinity":                     {"affinity": map[string]any{"nodeAfinity": map[string]any{}}},
		"probeImage.extra":             {"probeImage": map[string]any{"extra": []any{"a,b"}}},
		"serviceMonitor.labels":        {"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": 1}}},
	}
	for name, vals := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := chart.Render(context.Background(), dir, release, sandbox.OperatorNamespace, vals)
			NewWithT(t).Expect(err).To(MatchError(ContainSubstring("values don't meet the specifications of the schema")), "%v", vals)
		})
	}
	t.Run("good values pass", func(t *testing.T) {
		_, err := chart.Render(context.Background(), dir, release, sandbox.OperatorNamespace, map[string]any{
			"resources":        map[string]any{"limits": map[string]any{"cpu": 1, "memory": "1Gi"}, "requests": map[string]any{"cpu": "10m"}},
			"tolerations":      []any{map[string]any{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}},
			"imagePullSecrets": []any{map[string]any{"name": "regcred"}},
		})
		NewWithT(t).Expect(err).NotTo(HaveOccurred())
	})
}
