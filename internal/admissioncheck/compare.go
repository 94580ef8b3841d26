package admissioncheck

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Problem is one way the installed policies differ from the shipped ones, naming the object.
type Problem string

// comparePolicy says how the installed policy (nil: not found) differs from the shipped one.
func comparePolicy(shipped admissionv1.ValidatingAdmissionPolicy, live *admissionv1.ValidatingAdmissionPolicy) []Problem {
	what := "ValidatingAdmissionPolicy " + shipped.Name
	if live == nil {
		return []Problem{Problem(what + " is missing")}
	}
	if live.DeletionTimestamp != nil {
		return []Problem{Problem(what + " is being deleted")}
	}
	want := *shipped.Spec.DeepCopy()
	defaultPolicySpec(&want)
	return differ(what, want, live.Spec)
}

// compareBinding says how the installed binding (nil: not found) differs from the shipped one: a binding that
// only warns or audits (validationActions without Deny), or matches fewer objects, is not the shipped one.
func compareBinding(shipped admissionv1.ValidatingAdmissionPolicyBinding, live *admissionv1.ValidatingAdmissionPolicyBinding) []Problem {
	what := "ValidatingAdmissionPolicyBinding " + shipped.Name
	if live == nil {
		return []Problem{Problem(what + " is missing")}
	}
	if live.DeletionTimestamp != nil {
		return []Problem{Problem(what + " is being deleted")}
	}
	want := *shipped.Spec.DeepCopy()
	defaultBindingSpec(&want)
	return differ(what, want, live.Spec)
}

// compareObject says how the installed object (nil: not found) of kind named name differs from want, the
// shipped spec with the API server's defaults filled in.
func compareObject(kind, name string, want, live any, deleting bool, found bool) []Problem {
	what := kind + " " + name
	switch {
	case !found:
		return []Problem{Problem(what + " is missing")}
	case deleting:
		return []Problem{Problem(what + " is being deleted")}
	}
	return differ(what, want, live)
}

func compareMutatingPolicy(shipped admissionv1.MutatingAdmissionPolicy, live *admissionv1.MutatingAdmissionPolicy) []Problem {
	want := *shipped.Spec.DeepCopy()
	if want.FailurePolicy == nil {
		fail := admissionv1.Fail
		want.FailurePolicy = &fail
	}
	if want.MatchConstraints != nil {
		defaultMatchResources(want.MatchConstraints)
	}
	if live == nil {
		return compareObject("MutatingAdmissionPolicy", shipped.Name, want, nil, false, false)
	}
	return compareObject("MutatingAdmissionPolicy", shipped.Name, want, live.Spec, live.DeletionTimestamp != nil, true)
}

func compareMutatingBinding(shipped admissionv1.MutatingAdmissionPolicyBinding, live *admissionv1.MutatingAdmissionPolicyBinding) []Problem {
	want := *shipped.Spec.DeepCopy()
	if want.MatchResources != nil {
		defaultMatchResources(want.MatchResources)
	}
	if live == nil {
		return compareObject("MutatingAdmissionPolicyBinding", shipped.Name, want, nil, false, false)
	}
	return compareObject("MutatingAdmissionPolicyBinding", shipped.Name, want, live.Spec, live.DeletionTimestamp != nil, true)
}

// differ names the top-level spec fields in which live differs from want (both as the API server serves them).
func differ(what string, want, live any) []Problem {
	w, err := asMap(want)
	if err != nil {
		return []Problem{Problem(fmt.Sprintf("%s: cannot compare: %v", what, err))}
	}
	l, err := asMap(live)
	if err != nil {
		return []Problem{Problem(fmt.Sprintf("%s: cannot compare: %v", what, err))}
	}
	var fields []string
	for k := range union(w, l) {
		if !reflect.DeepEqual(w[k], l[k]) {
			fields = append(fields, "spec."+k)
		}
	}
	if len(fields) == 0 {
		return nil
	}
	sort.Strings(fields)
	return []Problem{Problem(fmt.Sprintf("%s differs from the shipped one in %s", what, strings.Join(fields, ", ")))}
}

func asMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	return m, json.Unmarshal(b, &m)
}

func union(a, b map[string]any) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// defaultPolicySpec fills what the API server defaults in a ValidatingAdmissionPolicy (admissionregistration/v1
// defaulting), so a shipped policy compares equal to the same policy read back from a cluster.
func defaultPolicySpec(s *admissionv1.ValidatingAdmissionPolicySpec) {
	if s.FailurePolicy == nil {
		fail := admissionv1.Fail
		s.FailurePolicy = &fail
	}
	if s.MatchConstraints != nil {
		defaultMatchResources(s.MatchConstraints)
	}
}

func defaultBindingSpec(s *admissionv1.ValidatingAdmissionPolicyBindingSpec) {
	if s.MatchResources != nil {
		defaultMatchResources(s.MatchResources)
	}
}

func defaultMatchResources(m *admissionv1.MatchResources) {
	if m.MatchPolicy == nil {
		equivalent := admissionv1.Equivalent
		m.MatchPolicy = &equivalent
	}
	if m.NamespaceSelector == nil {
		m.NamespaceSelector = &metav1.LabelSelector{}
	}
	if m.ObjectSelector == nil {
		m.ObjectSelector = &metav1.LabelSelector{}
	}
	for _, rules := range [][]admissionv1.NamedRuleWithOperations{m.ResourceRules, m.ExcludeResourceRules} {
		for i := range rules {
			if rules[i].Scope == nil {
				all := admissionv1.AllScopes
				rules[i].Scope = &all
			}
		}
	}
}
