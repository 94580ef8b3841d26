package labschedule

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// TestAuthorRightsMatchRequesterPolicy keeps the rights a schedule checks for its author before each run the same
// as those config/admission/requester_policy.yaml (and schedule_policy.yaml) check for a LabRun's requester: a
// check added to the policy and not here would let a schedule go on with a right its author lost.
func TestAuthorRightsMatchRequesterPolicy(t *testing.T) {
	check := regexp.MustCompile(`authorizer\.group\('([^']*)'\)\.resource\('([^']*)'\)(?:\.subresource\('([^']*)'\))?` +
		`(?:\.namespace\([^)]*\))?(?:\.name\([^)]*\))?\.check\('([^']*)'\)`)
	want := map[string]bool{}
	for _, file := range []string{"requester_policy.yaml", "schedule_policy.yaml"} {
		raw, err := os.ReadFile("../../config/admission/" + file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range check.FindAllStringSubmatch(string(raw), -1) {
			want[m[4]+" "+m[1]+"/"+m[2]+"/"+m[3]] = true
		}
	}
	got := map[string]bool{}
	for _, spec := range []labsv1.LabRunSpec{
		{Labs: labsv1.AllLabs, Scope: labsv1.ScopeMesh, Probe: labsv1.ProbeSpec{Image: "example/probe:1"},
			Mesh: labsv1.MeshSpec{PeerAuthentication: "default", AuthorizationPolicy: &labsv1.ObjectRef{Name: "p"}}},
		{Labs: labsv1.AllLabs, Scope: labsv1.ScopeWorkload},
		{Labs: []labsv1.LabName{labsv1.LabPolicyAudit}, Audit: &labsv1.AuditSpec{Namespaces: []string{"demo", "team-b"}}},
	} {
		for _, r := range authorRights(&spec, "demo", mesh.Config{}.WithDefaults()) {
			got[r.verb+" "+r.group+"/"+r.resource+"/"+r.subresource] = true
		}
	}
	keys := func(m map[string]bool) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	if strings.Join(keys(got), "\n") != strings.Join(keys(want), "\n") {
		t.Errorf("rights checked before a schedule's run:\n%s\nwant those the admission policies check:\n%s",
			strings.Join(keys(got), "\n"), strings.Join(keys(want), "\n"))
	}
	if len(want) < 10 {
		t.Errorf("found only %d checks in the policies: %v", len(want), keys(want))
	}
}

// TestAuthorRightsOfThePolicyAudit: the policy-audit lab, in either mode, needs its author to list both kinds of
// policy and create pods in every audited namespace (the target's when spec.audit names none), and to create the
// attacker ServiceAccount and the non-mesh namespace, as requester_policy.yaml checks.
func TestAuthorRightsOfThePolicyAudit(t *testing.T) {
	common := []string{
		"create labruns.labs.ambientlab.io in namespace demo (the schedule creates them for its author)",
		"create pods in namespace team-a (the probe pods run there as ServiceAccount frontend)",
		"create serviceaccounts in namespace team-a (the policy-audit lab creates the attacker ServiceAccount there)",
		"get pods/log in namespace istio-system (the labs read ztunnel access logs there)",
		"create namespaces in all namespaces (the policy-audit lab creates one for its non-mesh client)",
	}
	reads := func(ns string) []string {
		return []string{
			"list authorizationpolicies.security.istio.io in namespace " + ns + " (the policy-audit lab reads and proves the policies there)",
			"list peerauthentications.security.istio.io in namespace " + ns + " (the policy-audit lab reads and proves the policies there)",
		}
	}
	calls := func(ns string) string {
		return "create pods in namespace " + ns + " (the policy-audit lab's probe pods run there as the ServiceAccounts its policies name)"
	}
	cases := []struct {
		name  string
		mode  labsv1.Mode
		audit *labsv1.AuditSpec
		want  []string
	}{
		{"the target's namespace by default", labsv1.ModeLab, nil, slices.Concat(common, reads("team-a"))},
		{"an empty list is the default too", labsv1.ModeVerify, &labsv1.AuditSpec{}, slices.Concat(common, reads("team-a"))},
		{"each namespace named, pods where the target's do not cover them", labsv1.ModeVerify,
			&labsv1.AuditSpec{Namespaces: []string{"shop", "team-a"}},
			slices.Concat(common, reads("shop"), []string{calls("shop")}, reads("team-a"))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := &labsv1.LabRunSpec{Labs: []labsv1.LabName{labsv1.LabPolicyAudit}, Mode: tc.mode, Audit: tc.audit,
				Target: labsv1.TargetSpec{Namespace: "team-a"}, Client: labsv1.ClientSpec{ServiceAccount: "frontend"}}
			var got []string
			for _, r := range authorRights(spec, "demo", mesh.Config{}.WithDefaults()) {
				got = append(got, fmt.Sprintf("%s (%s)", r, r.why))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("rights:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
	// The authorization-policy and peer-authentication labs keep their own reasons when the audit runs with them.
	spec := &labsv1.LabRunSpec{Labs: []labsv1.LabName{labsv1.LabPolicyAudit, labsv1.LabAuthorizationPolicy, labsv1.LabPeerAuthentication},
		Mode: labsv1.ModeVerify}
	var whys []string
	for _, r := range authorRights(spec, "demo", mesh.Config{}.WithDefaults()) {
		whys = append(whys, r.why)
	}
	for _, want := range []string{"the authorization-policy lab creates the attacker ServiceAccount there",
		"the peer-authentication lab creates one for its non-mesh client"} {
		if !slices.Contains(whys, want) {
			t.Errorf("reasons %q do not include %q", whys, want)
		}
	}
}

// TestAuditSlotsCheckEveryNamespace: a messageExpression may not call the authorizer, so the requester policies
// check the audited namespaces one slot at a time, each refusal naming its slot's namespace. Every slot the API
// allows (spec.audit.namespaces' maxItems) must have its three checks, each check and its message reading the
// same slot.
func TestAuditSlotsCheckEveryNamespace(t *testing.T) {
	var crd struct {
		Spec struct {
			Versions []struct {
				Schema struct {
					OpenAPIV3Schema struct {
						Properties map[string]struct {
							Properties map[string]struct {
								Properties map[string]struct {
									MaxItems *int `json:"maxItems"`
								} `json:"properties"`
							} `json:"properties"`
						} `json:"properties"`
					} `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	raw, err := os.ReadFile("../../config/crd/bases/labs.ambientlab.io_labruns.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		t.Fatal(err)
	}
	maxItems := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["audit"].Properties["namespaces"].MaxItems
	if maxItems == nil {
		t.Fatal("spec.audit.namespaces has no maxItems")
	}
	slot := regexp.MustCompile(`auditSlots\[(\d+)\]`)
	for _, file := range []string{"requester_policy.yaml", "schedule_policy.yaml"} {
		t.Run(file, func(t *testing.T) {
			raw, err := os.ReadFile("../../config/admission/" + file)
			if err != nil {
				t.Fatal(err)
			}
			policy := &admissionv1.ValidatingAdmissionPolicy{}
			if err := yaml.UnmarshalStrict([]byte(strings.Split(string(raw), "\n---\n")[0]), policy); err != nil {
				t.Fatal(err)
			}
			for _, v := range policy.Spec.Variables {
				if v.Name == "auditSlots" && strings.Count(v.Expression, "''") != *maxItems {
					t.Errorf("auditSlots pads to %d slots, want %d: %s", strings.Count(v.Expression, "''"), *maxItems, v.Expression)
				}
			}
			checks := map[int][]string{}
			for _, v := range policy.Spec.Validations {
				seen := map[string]bool{}
				for _, m := range slot.FindAllStringSubmatch(v.Expression+v.MessageExpression, -1) {
					seen[m[1]] = true
				}
				if len(seen) == 0 {
					continue
				}
				if len(seen) > 1 {
					t.Errorf("a validation reads several slots: %s", v.Expression)
					continue
				}
				var i int
				for s := range seen {
					i, _ = strconv.Atoi(s) // the pattern matched digits
				}
				ns := fmt.Sprintf("namespace(variables.auditSlots[%d])", i)
				if !strings.Contains(v.Expression, ns) || !strings.Contains(v.MessageExpression, fmt.Sprintf("in namespace ' + variables.auditSlots[%d]", i)) {
					t.Errorf("slot %d: the check or its message names another namespace: %s / %s", i, v.Expression, v.MessageExpression)
				}
				check := regexp.MustCompile(`resource\('([^']*)'\).*\.check\('([^']*)'\)`).FindStringSubmatch(v.Expression)
				if check == nil {
					t.Errorf("slot %d: no authorizer check in %s", i, v.Expression)
					continue
				}
				checks[i] = append(checks[i], check[2]+" "+check[1])
			}
			want := []string{"list authorizationpolicies", "list peerauthentications", "create pods"}
			for i := range *maxItems {
				if !slices.Equal(checks[i], want) {
					t.Errorf("slot %d checks %q, want %q", i, checks[i], want)
				}
			}
			if len(checks) != *maxItems {
				t.Errorf("%d slots checked, want %d", len(checks), *maxItems)
			}
		})
	}
}

func TestParseQuotedList(t *testing.T) {
	for in, want := range map[string][]string{
		``:                                    nil,
		`"system:authenticated"`:              {"system:authenticated"},
		`"a,b","c\"d","e\\f","g\nh","\u00e9"`: {"a,b", `c"d`, `e\f`, "g\nh", "é"},
	} {
		got, err := parseQuotedList(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("parseQuotedList(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`a`, `"a"b`, `"a",`, `"a`} {
		if _, err := parseQuotedList(bad); err == nil {
			t.Errorf("parseQuotedList(%q) parsed", bad)
		}
	}
}
