package admissioncheck

import (
	"strings"
	"testing"
	"testing/fstest"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/ambientlab/labrun-operator/config"
)

// served is p as an API server returns it: the defaulted fields filled in.
func served(p admissionv1.ValidatingAdmissionPolicy) *admissionv1.ValidatingAdmissionPolicy {
	p = *p.DeepCopy()
	defaultPolicySpec(&p.Spec)
	return &p
}

func TestShippedAreConfigDefaults(t *testing.T) {
	g := NewWithT(t)
	s, err := LoadShipped("labrun-system")
	g.Expect(err).NotTo(HaveOccurred())
	var names []string
	for _, p := range s.Policies {
		names = append(names, p.Name)
	}
	// The policies named in the issue at least; whatever else config/admission ships comes along by itself.
	g.Expect(names).To(ContainElements("labrun-requester-rights", "labrun-schedule-requester-rights",
		"labrun-mesh-marks", "labrun-status-writes", "labrun-manager-limits"))
	g.Expect(s.Bindings).To(HaveLen(len(s.Policies)))
	g.Expect(s.policy(managerLimits)).To(Equal("labrun-manager-limits"))

	// Installed elsewhere (a Helm release namespace), the manager's identity and parameters follow.
	other, err := LoadShipped("platform")
	g.Expect(err).NotTo(HaveOccurred())
	for _, b := range other.Bindings {
		if b.Spec.ParamRef != nil {
			g.Expect(b.Spec.ParamRef.Namespace).To(Equal("platform"), b.Name)
		}
	}
	for _, p := range other.Policies {
		raw := p.Spec.String()
		g.Expect(raw).NotTo(ContainSubstring("labrun-system"), p.Name)
		if strings.Contains(raw, "system:serviceaccount:") {
			g.Expect(raw).To(ContainSubstring("system:serviceaccount:platform:labrun-controller-manager"), p.Name)
		}
	}
}

func TestLoadShippedRefusesAConfigWithoutPolicies(t *testing.T) {
	files := fstest.MapFS{
		"default/kustomization.yaml": {Data: []byte("namespace: x\nresources:\n- cm.yaml\n")},
		"default/cm.yaml":            {Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n")},
	}
	_, err := loadShipped(files, "x")
	NewWithT(t).Expect(err).To(MatchError(ContainSubstring("config/default installs no ValidatingAdmissionPolicy")))
}

func TestComparePolicy(t *testing.T) {
	s, err := LoadShipped("labrun-system")
	if err != nil {
		t.Fatal(err)
	}
	shipped := s.Policies[0]
	ignore := admissionv1.Ignore
	cases := []struct {
		name string
		live func() *admissionv1.ValidatingAdmissionPolicy
		want string // "" none
	}{
		{"as served", func() *admissionv1.ValidatingAdmissionPolicy { return served(shipped) }, ""},
		{"missing", func() *admissionv1.ValidatingAdmissionPolicy { return nil }, shipped.Name + " is missing"},
		{"being deleted", func() *admissionv1.ValidatingAdmissionPolicy {
			p := served(shipped)
			p.DeletionTimestamp = &metav1.Time{}
			return p
		}, shipped.Name + " is being deleted"},
		{"failure policy Ignore", func() *admissionv1.ValidatingAdmissionPolicy {
			p := served(shipped)
			p.Spec.FailurePolicy = &ignore
			return p
		}, shipped.Name + " differs from the shipped one in spec.failurePolicy"},
		{"a validation dropped, a condition added", func() *admissionv1.ValidatingAdmissionPolicy {
			p := served(shipped)
			p.Spec.Validations = p.Spec.Validations[1:]
			p.Spec.MatchConditions = append(p.Spec.MatchConditions, admissionv1.MatchCondition{Name: "never", Expression: "false"})
			return p
		}, shipped.Name + " differs from the shipped one in spec.matchConditions, spec.validations"},
		{"a namespace selector", func() *admissionv1.ValidatingAdmissionPolicy {
			p := served(shipped)
			p.Spec.MatchConstraints.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"x": "y"}}
			return p
		}, shipped.Name + " differs from the shipped one in spec.matchConstraints"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := comparePolicy(shipped, tc.live())
			if tc.want == "" {
				NewWithT(t).Expect(got).To(BeEmpty())
				return
			}
			NewWithT(t).Expect(got).To(ConsistOf(Problem("ValidatingAdmissionPolicy " + tc.want)))
		})
	}
}

func TestCompareBinding(t *testing.T) {
	shipped := admissionv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: "labrun-x"},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: "labrun-x",
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny}}}
	cases := []struct {
		name   string
		modify func(*admissionv1.ValidatingAdmissionPolicyBinding)
		want   string
	}{
		{"as shipped", func(*admissionv1.ValidatingAdmissionPolicyBinding) {}, ""},
		{"audit only", func(b *admissionv1.ValidatingAdmissionPolicyBinding) {
			b.Spec.ValidationActions = []admissionv1.ValidationAction{admissionv1.Audit}
		}, "labrun-x differs from the shipped one in spec.validationActions"},
		{"another policy", func(b *admissionv1.ValidatingAdmissionPolicyBinding) { b.Spec.PolicyName = "other" },
			"labrun-x differs from the shipped one in spec.policyName"},
		{"narrowed to a namespace", func(b *admissionv1.ValidatingAdmissionPolicyBinding) {
			b.Spec.MatchResources = &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": "nowhere"}}}
		}, "labrun-x differs from the shipped one in spec.matchResources"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			live := shipped.DeepCopy()
			tc.modify(live)
			got := compareBinding(shipped, live)
			if tc.want == "" {
				NewWithT(t).Expect(got).To(BeEmpty())
				return
			}
			NewWithT(t).Expect(got).To(ConsistOf(Problem("ValidatingAdmissionPolicyBinding " + tc.want)))
		})
	}
	NewWithT(t).Expect(compareBinding(shipped, nil)).To(ConsistOf(Problem("ValidatingAdmissionPolicyBinding labrun-x is missing")))
}

// TestShippedReadsAsWritten: a policy's CEL reads back from the rendered config/default exactly as written in
// config/admission (folded scalars included), or every installed policy would look altered.
func TestShippedReadsAsWritten(t *testing.T) {
	g := NewWithT(t)
	s, err := LoadShipped("labrun-system")
	g.Expect(err).NotTo(HaveOccurred())
	raw, err := config.Files.ReadFile("admission/marks_policy.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	written := admissionv1.ValidatingAdmissionPolicy{}
	g.Expect(yaml.Unmarshal([]byte(strings.Split(string(raw), "\n---\n")[0]), &written)).To(Succeed())
	var got *admissionv1.ValidatingAdmissionPolicy
	for i := range s.Policies {
		if s.Policies[i].Name == "labrun-"+written.Name {
			got = &s.Policies[i]
		}
	}
	g.Expect(got).NotTo(BeNil())
	g.Expect(got.Spec.Variables).To(Equal(written.Spec.Variables))
	g.Expect(got.Spec.Validations).To(Equal(written.Spec.Validations))
}
