// Package admissioncheck proves that the admission policies holding the operator's trust boundary are installed
// as shipped and enforced: every ValidatingAdmissionPolicy and binding config/default installs (rendered at run
// time from the manifests embedded in the binary, so a policy added to config/admission is covered without code
// changes) must be on the cluster with the shipped spec, and a server-side dry run the manager expects to be
// refused must be refused by the shipped policy that limits the manager itself. The manager's Lab runs, which
// weaken the mesh on a requester's behalf, wait while that is not so.
package admissioncheck

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/ambientlab/labrun-operator/config"
)

// defaultDir is the kustomization that installs the operator (as `kubectl apply -k config/default`); the Helm
// chart is generated from it (internal/chart) and installs the same policies under the same names.
const defaultDir = "default"

// Shipped are the admission policies and bindings the operator ships, as installed for one namespace.
type Shipped struct {
	Policies []admissionv1.ValidatingAdmissionPolicy
	Bindings []admissionv1.ValidatingAdmissionPolicyBinding
	// MutatingPolicies and MutatingBindings stamp what the validating ones then rely on (a schedule's author).
	MutatingPolicies []admissionv1.MutatingAdmissionPolicy
	MutatingBindings []admissionv1.MutatingAdmissionPolicyBinding
}

// LoadShipped renders the embedded config/default and returns its admission policies and bindings for an
// operator installed in namespace. config/default names its namespace in the policies' CEL (the manager's
// ServiceAccount) and in parameter references; installed elsewhere (Helm's release namespace), those read
// namespace instead, as the chart generator writes them.
func LoadShipped(namespace string) (*Shipped, error) {
	return loadShipped(config.Files, namespace)
}

func loadShipped(files fs.FS, namespace string) (*Shipped, error) {
	objs, defaultNS, err := render(files)
	if err != nil {
		return nil, err
	}
	s := &Shipped{}
	for _, raw := range objs {
		var meta struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(raw, &meta); err != nil {
			return nil, err
		}
		if namespace != "" && defaultNS != "" && namespace != defaultNS {
			raw = []byte(strings.ReplaceAll(string(raw), defaultNS, namespace))
		}
		switch meta.Kind {
		case "ValidatingAdmissionPolicy":
			p := admissionv1.ValidatingAdmissionPolicy{}
			if err := yaml.UnmarshalStrict(raw, &p); err != nil {
				return nil, fmt.Errorf("reading a shipped ValidatingAdmissionPolicy: %w", err)
			}
			s.Policies = append(s.Policies, p)
		case "ValidatingAdmissionPolicyBinding":
			b := admissionv1.ValidatingAdmissionPolicyBinding{}
			if err := yaml.UnmarshalStrict(raw, &b); err != nil {
				return nil, fmt.Errorf("reading a shipped ValidatingAdmissionPolicyBinding: %w", err)
			}
			s.Bindings = append(s.Bindings, b)
		case "MutatingAdmissionPolicy":
			p := admissionv1.MutatingAdmissionPolicy{}
			if err := yaml.UnmarshalStrict(raw, &p); err != nil {
				return nil, fmt.Errorf("reading a shipped MutatingAdmissionPolicy: %w", err)
			}
			s.MutatingPolicies = append(s.MutatingPolicies, p)
		case "MutatingAdmissionPolicyBinding":
			b := admissionv1.MutatingAdmissionPolicyBinding{}
			if err := yaml.UnmarshalStrict(raw, &b); err != nil {
				return nil, fmt.Errorf("reading a shipped MutatingAdmissionPolicyBinding: %w", err)
			}
			s.MutatingBindings = append(s.MutatingBindings, b)
		}
	}
	if len(s.Policies) == 0 || len(s.Bindings) == 0 {
		return nil, fmt.Errorf("config/%s installs no ValidatingAdmissionPolicy or no binding", defaultDir)
	}
	return s, nil
}

// render runs kustomize over config/default in memory; it returns each object as JSON and the namespace the
// kustomization installs into.
func render(files fs.FS) ([][]byte, string, error) {
	mem := filesys.MakeFsInMemory()
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		return mem.WriteFile(path.Join("/", p), b)
	})
	if err != nil {
		return nil, "", fmt.Errorf("reading the embedded config: %w", err)
	}
	kustomization, err := fs.ReadFile(files, path.Join(defaultDir, "kustomization.yaml"))
	if err != nil {
		return nil, "", err
	}
	var k struct {
		Namespace string `json:"namespace"`
	}
	if err := yaml.Unmarshal(kustomization, &k); err != nil {
		return nil, "", fmt.Errorf("reading config/%s/kustomization.yaml: %w", defaultDir, err)
	}
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, path.Join("/", defaultDir))
	if err != nil {
		return nil, "", fmt.Errorf("rendering config/%s: %w", defaultDir, err)
	}
	var out [][]byte
	for _, r := range resources.Resources() {
		// As JSON from kustomize's map, as the sandbox applies it: kyaml's YAML output of folded (>-) scalars
		// with more-indented lines does not read back to the same string.
		m, err := r.Map()
		if err != nil {
			return nil, "", err
		}
		b, err := json.Marshal(m)
		if err != nil {
			return nil, "", err
		}
		out = append(out, b)
	}
	return out, k.Namespace, nil
}
