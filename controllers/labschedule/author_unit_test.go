package labschedule

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

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
