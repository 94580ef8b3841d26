package bundle

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// description is the CSV's long description (Markdown, shown by OperatorHub and the OpenShift console).
const description = `The LabRun operator turns the Istio ambient-mode security labs into Kubernetes objects. A **LabRun** runs
the five labs against the live mesh (mTLS between ztunnels, PeerAuthentication STRICT vs PERMISSIVE, L4
AuthorizationPolicy by SPIFFE identity, the ambient footprint, HBONE tunnels in ztunnel's logs), records every
step's expected and observed result in its status, and always leaves the mesh as found: STRICT, with the
AuthorizationPolicy in place, whatever fails. In **Verify** mode it changes nothing and proves the protections
hold on every node. A **LabSchedule** runs LabRuns on a cron schedule and when the mesh's policies change.

**Install into namespace labrun-system** (the suggested namespace): the admission policies name the manager's
ServiceAccount there. OLM cannot install admission policies, which hold the operator's trust boundary (a LabRun is
admitted only if its requester could make each change itself); apply them as a cluster administrator from the
repository's bundle/extra/admission-policies.yaml. Until they exist the manager holds Lab runs; Verify runs go on.

Needs Kubernetes 1.36 or later and Istio in ambient mode (istiod, istio-cni, ztunnel).`

// clusterServiceVersion builds the CSV from config/default's objects.
func clusterServiceVersion(root string, o Options, deployment *unstructured.Unstructured, crds, objs []*unstructured.Unstructured) (map[string]any, error) {
	examples, err := almExamples(root)
	if err != nil {
		return nil, err
	}
	var owned []any
	for _, crd := range crds {
		owned = append(owned, ownedCRD(crd))
	}
	depSpec, _, _ := unstructured.NestedMap(deployment.Object, "spec")
	sa, _, _ := unstructured.NestedString(depSpec, "template", "spec", "serviceAccountName")
	perms, clusterPerms := permissions(objs, sa)
	return map[string]any{
		"apiVersion": "operators.coreos.com/v1alpha1",
		"kind":       "ClusterServiceVersion",
		"metadata": map[string]any{
			"name": Package + ".v" + Version,
			"annotations": map[string]any{
				"alm-examples":   examples,
				"capabilities":   Capability,
				"categories":     "Security,Networking",
				"containerImage": o.Image,
				"description":    "Runs the Istio ambient-mode security labs as LabRuns and proves, on a schedule, that the mesh's protections hold",
				"repository":     "https://github.com/ambientlab/labrun-operator",
				"support":        "https://github.com/ambientlab/labrun-operator/issues",
				"operatorframework.io/suggested-namespace": "labrun-system",
			},
		},
		"spec": map[string]any{
			"displayName":    "LabRun Operator",
			"description":    description,
			"version":        Version,
			"minKubeVersion": MinKubeVersion,
			"maturity":       "alpha",
			"provider":       map[string]any{"name": "ambientlab", "url": "https://github.com/ambientlab/labrun-operator"},
			"links": []any{
				map[string]any{"name": "Source", "url": "https://github.com/ambientlab/labrun-operator"},
				map[string]any{"name": "Documentation", "url": "https://github.com/ambientlab/labrun-operator/blob/main/README.md"},
			},
			"keywords": []any{"istio", "ambient", "ztunnel", "mtls", "security", "verification"},
			// The admission policies name the manager's ServiceAccount in labrun-system and the manager acts on
			// every namespace that opts in: one instance per cluster, watching all namespaces.
			"installModes": []any{
				map[string]any{"type": "OwnNamespace", "supported": false},
				map[string]any{"type": "SingleNamespace", "supported": false},
				map[string]any{"type": "MultiNamespace", "supported": false},
				map[string]any{"type": "AllNamespaces", "supported": true},
			},
			"customresourcedefinitions": map[string]any{"owned": owned},
			"install": map[string]any{
				"strategy": "deployment",
				"spec": map[string]any{
					"deployments": []any{map[string]any{
						"name":  deployment.GetName(),
						"label": toAny(deployment.GetLabels()),
						"spec":  depSpec,
					}},
					"permissions":        perms,
					"clusterPermissions": clusterPerms,
				},
			},
			"relatedImages": []any{map[string]any{"name": "manager", "image": o.Image}},
		},
	}, nil
}

// permissions are the rules of the Roles and ClusterRoles bound to the ServiceAccount sa, as OLM wants them:
// namespaced rules (granted in the install namespace) and cluster rules.
func permissions(objs []*unstructured.Unstructured, sa string) (ns, cluster []any) {
	var nsRules, clusterRules []any
	for _, b := range objs {
		if b.GetKind() != "RoleBinding" && b.GetKind() != "ClusterRoleBinding" {
			continue
		}
		subjects, _, _ := unstructured.NestedSlice(b.Object, "subjects")
		ours := false
		for _, s := range subjects {
			m, _ := s.(map[string]any)
			ours = ours || (m["kind"] == "ServiceAccount" && m["name"] == sa)
		}
		if !ours {
			continue
		}
		ref, _, _ := unstructured.NestedStringMap(b.Object, "roleRef")
		for _, r := range objs {
			if r.GetKind() != ref["kind"] || r.GetName() != ref["name"] {
				continue
			}
			rules, _, _ := unstructured.NestedSlice(r.Object, "rules")
			if b.GetKind() == "RoleBinding" {
				nsRules = append(nsRules, rules...)
			} else {
				clusterRules = append(clusterRules, rules...)
			}
		}
	}
	return []any{map[string]any{"serviceAccountName": sa, "rules": nsRules}},
		[]any{map[string]any{"serviceAccountName": sa, "rules": clusterRules}}
}

// almExamples is the JSON array of config/samples' LabRuns and LabSchedules (the resources of its
// kustomization), as OperatorHub shows them.
func almExamples(root string) (string, error) {
	paths, err := filepath.Glob(filepath.Join(root, "config", "samples", "labs_*.yaml"))
	if err != nil {
		return "", err
	}
	sort.Strings(paths)
	var examples []any
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		obj := map[string]any{}
		if err := utilyaml.Unmarshal(b, &obj); err != nil {
			return "", fmt.Errorf("%s: %w", p, err)
		}
		examples = append(examples, obj)
	}
	b, err := json.MarshalIndent(examples, "", "  ")
	return string(b), err
}

// ownedCRD describes a CRD for the CSV: its kind and storage version, its description's first paragraph, a
// descriptor for each field of spec and status (the console's form and details), and what its runs create.
func ownedCRD(crd *unstructured.Unstructured) map[string]any {
	kind, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "kind")
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	var version string
	var schema map[string]any
	for _, v := range versions {
		m := v.(map[string]any)
		if m["storage"] == true {
			version, _ = m["name"].(string)
			schema, _, _ = unstructured.NestedMap(m, "schema", "openAPIV3Schema")
		}
	}
	desc, _ := schema["description"].(string)
	spec, _, _ := unstructured.NestedMap(schema, "properties", "spec", "properties")
	status, _, _ := unstructured.NestedMap(schema, "properties", "status", "properties")
	out := map[string]any{
		"name":              crd.GetName(),
		"version":           version,
		"kind":              kind,
		"displayName":       spaced(kind),
		"description":       firstParagraph(desc),
		"specDescriptors":   descriptors(spec, specXDescriptor),
		"statusDescriptors": descriptors(status, statusXDescriptor),
	}
	if res := resources[kind]; res != nil {
		out["resources"] = res
	}
	return out
}

// resources are the objects each kind's runs create or change (the console shows them under the resource).
var resources = map[string][]any{
	"LabRun": {
		map[string]any{"kind": "Pod", "version": "v1", "name": ""},
		map[string]any{"kind": "ServiceAccount", "version": "v1", "name": ""},
		map[string]any{"kind": "Namespace", "version": "v1", "name": ""},
		map[string]any{"kind": "ConfigMap", "version": "v1", "name": ""},
		map[string]any{"kind": "Lease", "version": "v1", "name": ""},
		map[string]any{"kind": "PeerAuthentication", "version": "v1", "name": ""},
		map[string]any{"kind": "AuthorizationPolicy", "version": "v1", "name": ""},
	},
	"LabSchedule": {map[string]any{"kind": "LabRun", "version": "v1alpha1", "name": ""}},
}

// descriptors has one descriptor per property, sorted by path, with the field's own first sentence.
func descriptors(props map[string]any, x func(string, map[string]any) []any) []any {
	paths := make([]string, 0, len(props))
	for p := range props {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var out []any
	for _, p := range paths {
		prop, _ := props[p].(map[string]any)
		desc, _ := prop["description"].(string)
		d := map[string]any{"path": p, "displayName": spaced(p), "description": firstSentence(desc)}
		if xd := x(p, prop); len(xd) > 0 {
			d["x-descriptors"] = xd
		}
		out = append(out, d)
	}
	return out
}

func specXDescriptor(_ string, prop map[string]any) []any {
	switch prop["type"] {
	case "boolean":
		return []any{"urn:alm:descriptor:com.tectonic.ui:booleanSwitch"}
	case "integer", "number":
		return []any{"urn:alm:descriptor:com.tectonic.ui:number"}
	case "string":
		if enum, ok := prop["enum"].([]any); ok {
			var out []any
			for _, e := range enum {
				out = append(out, fmt.Sprintf("urn:alm:descriptor:com.tectonic.ui:select:%v", e))
			}
			return out
		}
		return []any{"urn:alm:descriptor:com.tectonic.ui:text"}
	}
	return nil
}

func statusXDescriptor(path string, _ map[string]any) []any {
	switch path {
	case "phase":
		return []any{"urn:alm:descriptor:io.kubernetes.phase"}
	case "conditions":
		return []any{"urn:alm:descriptor:io.kubernetes.conditions"}
	case "message", "reason":
		return []any{"urn:alm:descriptor:io.kubernetes.phase:reason"}
	}
	return nil
}

// spaced is "Max Exposure" for maxExposure and "Lab Run" for LabRun.
func spaced(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i == 0 {
			r = unicode.ToUpper(r)
		} else if unicode.IsUpper(r) && !unicode.IsUpper(rune(s[i-1])) {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func firstParagraph(s string) string {
	p, _, _ := strings.Cut(s, "\n\n")
	return strings.Join(strings.Fields(p), " ")
}

func firstSentence(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}

func toAny(m map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}
