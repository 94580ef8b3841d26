package bundle

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/blang/semver/v4"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// csvCRD is OLM's ClusterServiceVersion CRD, the documented schema of a CSV: crds/ of
// github.com/operator-framework/api v0.45.0 (3048ccd). The Go module proxy serves only that module's v0.9.1
// (2021), whose validators do not build against the k8s.io modules this repository uses, so Validate checks the
// CSV against this schema with the API server's own CRD validation and applies the rules of that library's
// bundle, CSV and OperatorHub validators (pkg/validation/internal) itself.
//
//go:embed olm/operators.coreos.com_clusterserviceversions.yaml
var csvCRD []byte

// SupportedKinds are the kinds a registry+v1 bundle's manifests may hold besides the CSV and CRDs
// (operator-registry's supported resources).
var SupportedKinds = []string{"Secret", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "ServiceAccount", "Service",
	"Role", "RoleBinding", "PrometheusRule", "ServiceMonitor", "PodDisruptionBudget", "PriorityClass",
	"VerticalPodAutoscaler", "ConsoleYAMLSample", "ConsoleQuickStart", "ConsoleCLIDownload", "ConsoleLink", "NetworkPolicy"}

// Capabilities and Categories are OperatorHub's valid values.
var (
	Capabilities = []string{"Basic Install", "Seamless Upgrades", "Full Lifecycle", "Deep Insights", "Auto Pilot"}
	Categories   = []string{"AI/Machine Learning", "Application Runtime", "Big Data", "Cloud Provider", "Developer Tools",
		"Database", "Integration & Delivery", "Logging & Tracing", "Modernization & Migration", "Monitoring",
		"Networking", "OpenShift Optional", "Security", "Storage", "Streaming & Messaging"}
)

// Validate checks a bundle's files (paths relative to the repository root, as Generate returns them) and
// returns every problem found, joined.
func Validate(files map[string][]byte) error {
	v := &validator{}
	v.metadata(files)
	var csv *unstructured.Unstructured
	crds := map[string]*apiextensionsv1.CustomResourceDefinition{}
	for name, b := range files {
		if !strings.HasPrefix(name, Dir+"/manifests/") {
			continue
		}
		obj, err := decode(b)
		if err != nil {
			v.errf("%s: %v", name, err)
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		switch kind := u.GetKind(); {
		case kind == "ClusterServiceVersion":
			if csv != nil {
				v.errf("%s: a second ClusterServiceVersion", name)
			}
			csv = u
		case kind == "CustomResourceDefinition":
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := yaml.Unmarshal(b, crd); err != nil {
				v.errf("%s: %v", name, err)
				continue
			}
			crds[crd.Name] = crd
		case !slices.Contains(SupportedKinds, kind):
			v.errf("%s: kind %s cannot be in a bundle (OLM installs only %s)", name, kind, strings.Join(SupportedKinds, ", "))
		}
	}
	if csv == nil {
		v.errf("no ClusterServiceVersion in %s/manifests", Dir)
		return v.result()
	}
	v.schema(csv)
	v.csv(csv)
	v.ownedCRDs(csv, crds)
	v.examples(csv, crds)
	return v.result()
}

type validator struct{ errs []error }

func (v *validator) errf(format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf(format, args...))
}
func (v *validator) result() error { return errors.Join(v.errs...) }

// metadata checks annotations.yaml and that bundle.Dockerfile labels the image with the same values.
func (v *validator) metadata(files map[string][]byte) {
	var ann struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := yaml.Unmarshal(files[Dir+"/metadata/annotations.yaml"], &ann); err != nil || ann.Annotations == nil {
		v.errf("%s/metadata/annotations.yaml: missing or unreadable (%v)", Dir, err)
		return
	}
	want := map[string]string{
		"operators.operatorframework.io.bundle.mediatype.v1": "registry+v1",
		"operators.operatorframework.io.bundle.manifests.v1": "manifests/",
		"operators.operatorframework.io.bundle.metadata.v1":  "metadata/",
	}
	for k, w := range want {
		if ann.Annotations[k] != w {
			v.errf("annotations.yaml: %s is %q, want %q", k, ann.Annotations[k], w)
		}
	}
	for _, k := range []string{"operators.operatorframework.io.bundle.package.v1", "operators.operatorframework.io.bundle.channels.v1"} {
		if ann.Annotations[k] == "" {
			v.errf("annotations.yaml: %s is missing", k)
		}
	}
	if d := ann.Annotations["operators.operatorframework.io.bundle.channel.default.v1"]; d != "" &&
		!slices.Contains(strings.Split(ann.Annotations["operators.operatorframework.io.bundle.channels.v1"], ","), d) {
		v.errf("annotations.yaml: the default channel %q is not one of the channels", d)
	}
	df := string(files[Dockerfile])
	for k, val := range ann.Annotations {
		if !strings.Contains(df, "LABEL "+k+"="+val+"\n") {
			v.errf("%s: no LABEL %s=%s (annotations.yaml has it)", Dockerfile, k, val)
		}
	}
	for _, copy := range []string{"COPY " + Dir + "/manifests /manifests/", "COPY " + Dir + "/metadata /metadata/"} {
		if !strings.Contains(df, copy) {
			v.errf("%s: no %q", Dockerfile, copy)
		}
	}
}

// schema validates the CSV with OLM's CRD schema as the API server would with strict field validation: types,
// enums, required fields, and no field the schema does not know.
func (v *validator) schema(csv *unstructured.Unstructured) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(csvCRD, crd); err != nil {
		v.errf("reading OLM's ClusterServiceVersion CRD: %v", err)
		return
	}
	for _, ver := range crd.Spec.Versions {
		if ver.Name == "v1alpha1" {
			v.objectSchema("ClusterServiceVersion", ver.Schema.OpenAPIV3Schema, csv.Object)
			return
		}
	}
	v.errf("OLM's ClusterServiceVersion CRD has no v1alpha1")
}

// objectSchema validates obj against a CRD version's schema, and reports fields the schema would prune.
func (v *validator) objectSchema(what string, s *apiextensionsv1.JSONSchemaProps, obj map[string]any) {
	internal := &apiextensions.JSONSchemaProps{}
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(s, internal, nil); err != nil {
		v.errf("%s: converting its schema: %v", what, err)
		return
	}
	sv, _, err := validation.NewSchemaValidator(internal)
	if err != nil {
		v.errf("%s: %v", what, err)
		return
	}
	for _, e := range validation.ValidateCustomResource(field.NewPath(""), obj, sv) {
		v.errf("%s: %v", what, e)
	}
	st, err := structuralschema.NewStructural(internal)
	if err != nil {
		v.errf("%s: structural schema: %v", what, err)
		return
	}
	copied := runtimeCopy(obj)
	for _, p := range pruning.PruneWithOptions(copied, st, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}) {
		v.errf("%s: unknown field %q", what, p)
	}
}

var csvName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// csv applies the rules of operator-framework/api's CSV and OperatorHub validators.
func (v *validator) csv(csv *unstructured.Unstructured) {
	name := csv.GetName()
	version, _, _ := unstructured.NestedString(csv.Object, "spec", "version")
	if _, err := semver.Parse(version); err != nil {
		v.errf("spec.version %q: %v", version, err)
	}
	if !csvName.MatchString(name) || !strings.HasSuffix(name, ".v"+version) {
		v.errf("metadata.name %q: want <package>.v<spec.version>, a DNS subdomain", name)
	}
	if min, _, _ := unstructured.NestedString(csv.Object, "spec", "minKubeVersion"); min == "" {
		v.errf("spec.minKubeVersion is not set")
	} else if _, err := semver.Parse(min); err != nil {
		v.errf("spec.minKubeVersion %q: %v", min, err)
	}
	modes, _, _ := unstructured.NestedSlice(csv.Object, "spec", "installModes")
	seen, supported := map[string]bool{}, 0
	for _, m := range modes {
		mm, _ := m.(map[string]any)
		t, _ := mm["type"].(string)
		if seen[t] {
			v.errf("spec.installModes: %s twice", t)
		}
		seen[t] = true
		if mm["supported"] == true {
			supported++
		}
	}
	for _, t := range []string{"OwnNamespace", "SingleNamespace", "MultiNamespace", "AllNamespaces"} {
		if !seen[t] {
			v.errf("spec.installModes: no %s", t)
		}
	}
	if supported == 0 {
		v.errf("spec.installModes: none supported")
	}
	ann := csv.GetAnnotations()
	if !slices.Contains(Capabilities, ann["capabilities"]) {
		v.errf("metadata.annotations.capabilities %q: not one of %q", ann["capabilities"], Capabilities)
	}
	for _, c := range strings.Split(ann["categories"], ",") {
		if !slices.Contains(Categories, strings.TrimSpace(c)) {
			v.errf("metadata.annotations.categories: %q is not an OperatorHub category", c)
		}
	}
	if p, _, _ := unstructured.NestedString(csv.Object, "spec", "provider", "name"); strings.TrimSpace(p) == "" {
		v.errf("spec.provider.name is not set")
	}
	links, _, _ := unstructured.NestedSlice(csv.Object, "spec", "links")
	for _, l := range links {
		lm, _ := l.(map[string]any)
		u, _ := lm["url"].(string)
		if lm["name"] == "" || u == "" {
			v.errf("spec.links: each needs a name and a url")
		} else if _, err := url.ParseRequestURI(u); err != nil {
			v.errf("spec.links: %v", err)
		}
	}
	v.install(csv)
}

// install checks the install strategy: every deployment's ServiceAccount has permissions, and every container
// image is a related image (what a disconnected mirror copies) and the containerImage annotation's.
func (v *validator) install(csv *unstructured.Unstructured) {
	strategy, _, _ := unstructured.NestedString(csv.Object, "spec", "install", "strategy")
	if strategy != "deployment" {
		v.errf("spec.install.strategy %q: OLM knows only deployment", strategy)
	}
	deployments, _, _ := unstructured.NestedSlice(csv.Object, "spec", "install", "spec", "deployments")
	if len(deployments) == 0 {
		v.errf("spec.install.spec.deployments is empty")
	}
	accounts := map[string]bool{}
	for _, key := range []string{"permissions", "clusterPermissions"} {
		perms, _, _ := unstructured.NestedSlice(csv.Object, "spec", "install", "spec", key)
		for _, p := range perms {
			pm, _ := p.(map[string]any)
			sa, _ := pm["serviceAccountName"].(string)
			accounts[sa] = true
		}
	}
	related := map[string]bool{}
	images, _, _ := unstructured.NestedSlice(csv.Object, "spec", "relatedImages")
	for _, i := range images {
		im, _ := i.(map[string]any)
		s, _ := im["image"].(string)
		related[s] = true
	}
	for _, d := range deployments {
		dm, _ := d.(map[string]any)
		sa, _, _ := unstructured.NestedString(dm, "spec", "template", "spec", "serviceAccountName")
		if !accounts[sa] {
			v.errf("deployment %v: ServiceAccount %q has no permissions", dm["name"], sa)
		}
		containers, _, _ := unstructured.NestedSlice(dm, "spec", "template", "spec", "containers")
		for _, c := range containers {
			cm, _ := c.(map[string]any)
			img, _ := cm["image"].(string)
			if !related[img] {
				v.errf("deployment %v: image %q is not in spec.relatedImages", dm["name"], img)
			}
			if img != csv.GetAnnotations()["containerImage"] {
				v.errf("deployment %v: image %q is not the containerImage annotation's", dm["name"], img)
			}
		}
	}
}

// ownedCRDs checks the bundle validator's rules: every owned CRD is in the bundle with that kind and a served
// version, every CRD of the bundle is owned, and each descriptor's path is a field of the CRD's schema.
func (v *validator) ownedCRDs(csv *unstructured.Unstructured, crds map[string]*apiextensionsv1.CustomResourceDefinition) {
	owned, _, _ := unstructured.NestedSlice(csv.Object, "spec", "customresourcedefinitions", "owned")
	names := map[string]bool{}
	for _, o := range owned {
		om, _ := o.(map[string]any)
		name, _ := om["name"].(string)
		names[name] = true
		crd := crds[name]
		if crd == nil {
			v.errf("owned CRD %s is not in the bundle", name)
			continue
		}
		if om["kind"] != crd.Spec.Names.Kind {
			v.errf("owned CRD %s: kind %v, the CRD's is %s", name, om["kind"], crd.Spec.Names.Kind)
		}
		if d, _ := om["description"].(string); strings.TrimSpace(d) == "" {
			v.errf("owned CRD %s has no description", name)
		}
		sch := servedSchema(crd, om["version"])
		if sch == nil {
			v.errf("owned CRD %s: version %v is not served", name, om["version"])
			continue
		}
		for _, key := range []string{"specDescriptors", "statusDescriptors"} {
			ds, _ := om[key].([]any)
			for _, d := range ds {
				dm, _ := d.(map[string]any)
				path, _ := dm["path"].(string)
				root := strings.TrimSuffix(key, "Descriptors")
				if !hasPath(sch.Properties[root], strings.Split(path, ".")) {
					v.errf("owned CRD %s: %s path %q is no field of .%s", name, key, path, root)
				}
			}
		}
	}
	for name := range crds {
		if !names[name] {
			v.errf("CRD %s is in the bundle but not owned by the CSV", name)
		}
	}
}

// examples checks alm-examples: JSON, one example of each owned kind at least, each of an owned kind and valid
// against that CRD's schema (what the API server would refuse, OperatorHub's "try it" would too).
func (v *validator) examples(csv *unstructured.Unstructured, crds map[string]*apiextensionsv1.CustomResourceDefinition) {
	var examples []map[string]any
	if err := utiljson.Unmarshal([]byte(csv.GetAnnotations()["alm-examples"]), &examples); err != nil {
		v.errf("alm-examples: %v", err)
		return
	}
	covered := map[string]bool{}
	for i, ex := range examples {
		u := &unstructured.Unstructured{Object: ex}
		gvk := u.GroupVersionKind()
		var crd *apiextensionsv1.CustomResourceDefinition
		for _, c := range crds {
			if c.Spec.Group == gvk.Group && c.Spec.Names.Kind == gvk.Kind {
				crd = c
			}
		}
		if crd == nil {
			v.errf("alm-examples[%d]: %s is not an API the bundle provides", i, gvk)
			continue
		}
		sch := servedSchema(crd, gvk.Version)
		if sch == nil {
			v.errf("alm-examples[%d]: %s: version not served", i, gvk)
			continue
		}
		covered[crd.Name] = true
		v.objectSchema(fmt.Sprintf("alm-examples[%d] (%s %s)", i, gvk.Kind, u.GetName()), sch, ex)
	}
	for name := range crds {
		if !covered[name] {
			v.errf("alm-examples: no example of %s", name)
		}
	}
}

func servedSchema(crd *apiextensionsv1.CustomResourceDefinition, version any) *apiextensionsv1.JSONSchemaProps {
	for _, ver := range crd.Spec.Versions {
		if ver.Name == version && ver.Served && ver.Schema != nil {
			return ver.Schema.OpenAPIV3Schema
		}
	}
	return nil
}

func hasPath(s apiextensionsv1.JSONSchemaProps, path []string) bool {
	for _, p := range path {
		if s.Items != nil && s.Items.Schema != nil {
			s = *s.Items.Schema
		}
		next, ok := s.Properties[p]
		if !ok {
			return false
		}
		s = next
	}
	return true
}

// runtimeCopy deep-copies a JSON-like object (pruning changes it).
func runtimeCopy(obj map[string]any) map[string]any {
	b, _ := json.Marshal(obj)
	out := map[string]any{}
	_ = utiljson.Unmarshal(b, &out)
	return out
}

// decode reads YAML as the API server reads JSON: whole numbers as int64, which integer fields need.
func decode(b []byte) (map[string]any, error) {
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	return out, utiljson.Unmarshal(j, &out)
}
