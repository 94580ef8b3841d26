package ztunnel

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// Evidence robustness: the testdata/access-* fixtures are one debug-level
// session in four spellings (text and JSON, ztunnel before and from 1.31),
// testdata/policy-rejections.* the refusals a rejection criterion must accept.
// Each fixture line's comment names the real line it is based on.

// accessFixtures hold the same lines in the same order; only the format and
// the presence of src.cluster/dst.cluster differ.
var accessFixtures = []string{
	"testdata/access-1.30.txt",
	"testdata/access-1.31.txt",
	"testdata/access-1.30.json",
	"testdata/access-1.31.json",
}

// Lines of the access fixtures, 1-based in file order, named by their comments.
const (
	a1OpenedOut = iota + 1
	a2OpenedIn
	a3CompleteIn
	a4CompleteOut
	b1OpenedOut
	b2OpenedIn
	b3DeniedIn
	b4DeniedOut
	c1OpenedIn
	c2DeniedIn
	d1FailedIn
	e1OpenedOut
	e2TimeoutOut
	accessLines = e2TimeoutOut
)

// Lines of the policy-rejection fixtures, 1-based in file order.
const (
	r1DenyAttacker = iota + 1
	r2DenyUntrusted
	r3StaticStrict
	r4ConvertedPeerAuthentication
	r5NoneAllowed
	r6OldForm
	r7Client401
	n1Opened
	n2Allowed
	n3Timeout
	rejectionLines = n3Timeout
)

const (
	frontendPod    = "frontend-6d9f7c8b5-x2k4p"
	attackerPod    = "attacker-probe-7f2kq"
	trustDomain    = "cluster.local"
	staticStrict   = "explicitly denied by: istio-system/istio_converted_static_strict"
	convertedPAPre = "explicitly denied by: demo/converted_peer_authentication_"
)

var (
	frontendID = SPIFFEID(trustDomain, "demo", "frontend")
	attackerID = SPIFFEID(trustDomain, "demo", "attacker")
	backendID  = SPIFFEID(trustDomain, "demo", "backend")
)

// parseFixture parses a fixture file and insists that every line that is not
// a comment became an entry: Parse skips what it cannot read, which would
// otherwise let a broken fixture pass every "never matches" assertion.
func parseFixture(t *testing.T, path string, want int) []Entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	entries, err := Parse(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != want || len(entries) != want {
		t.Fatalf("%s: %d lines parsed into %d entries, want %d", path, len(lines), len(entries), want)
	}
	return entries
}

// fixtureLogLines returns a fixture's log lines (comments dropped), 1-based.
func fixtureLogLines(t *testing.T, path string) []string {
	t.Helper()
	lines := []string{""}
	for _, l := range strings.Split(readFile(t, path), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}

// openedLine spells the message out rather than reuse the package's constant,
// so a typo there cannot make the test agree with it.
func openedLine(e Entry) bool { return e.Message == "connection opened" }

// checkMatch asserts that Match returns exactly the fixture lines want
// (1-based), in order.
func checkMatch(t *testing.T, entries []Entry, c Criteria, want []int) {
	t.Helper()
	line := make(map[string]int, len(entries))
	for i, e := range entries {
		line[FormatText(e)] = i + 1
	}
	var got []int
	for _, e := range Match(entries, c) {
		if openedLine(e) {
			t.Errorf("Match counted a connection opened line: %s", FormatText(e))
		}
		got = append(got, line[FormatText(e)])
	}
	if !slices.Equal(got, want) {
		t.Errorf("matched lines %v, want %v", got, want)
	}
}

// TestMatchNeverCountsConnectionOpened runs the same criteria over all four
// spellings of the session, so it also shows that *.cluster fields and the
// JSON format change nothing about which lines are evidence.
func TestMatchNeverCountsConnectionOpened(t *testing.T) {
	base := parseFixture(t, accessFixtures[0], accessLines)
	first, last := base[0].Time, base[accessLines-1].Time
	yes, no := true, false
	allOutcomes := []int{a3CompleteIn, a4CompleteOut, b3DeniedIn, b4DeniedOut, c2DeniedIn, d1FailedIn, e2TimeoutOut}
	tests := []struct {
		name string
		c    Criteria
		want []int
	}{
		{name: "zero criteria", want: allOutcomes},
		{name: "window only, whole session", c: Criteria{Since: first, Until: last}, want: allOutcomes},
		{name: "since only", c: Criteria{Since: first}, want: allOutcomes},
		{name: "window around connection A", c: Criteria{Since: base[a1OpenedOut-1].Time, Until: base[a4CompleteOut-1].Time},
			want: []int{a3CompleteIn, a4CompleteOut}},
		{name: "window holding only opened lines", c: Criteria{Until: base[a2OpenedIn-1].Time}},
		{name: "window holding only E's opened line", c: Criteria{Since: base[e1OpenedOut-1].Time, Until: base[e1OpenedOut-1].Time}},
		{name: "inbound", c: Criteria{Direction: "inbound"}, want: []int{a3CompleteIn, b3DeniedIn, c2DeniedIn, d1FailedIn}},
		{name: "outbound", c: Criteria{Direction: "outbound"}, want: []int{a4CompleteOut, b4DeniedOut, e2TimeoutOut}},
		{name: "no error", c: Criteria{PolicyRejected: &no}, want: []int{a3CompleteIn, a4CompleteOut}},
		{name: "policy rejected", c: Criteria{PolicyRejected: &yes}, want: []int{b3DeniedIn, b4DeniedOut, c2DeniedIn}},
		{name: "src identity", c: Criteria{SrcIdentity: frontendID}, want: []int{a3CompleteIn, a4CompleteOut, e2TimeoutOut}},
		{name: "dst identity", c: Criteria{DstIdentity: backendID},
			want: []int{a3CompleteIn, a4CompleteOut, b3DeniedIn, b4DeniedOut, e2TimeoutOut}},
		{name: "dst service", c: Criteria{DstService: "backend.demo"},
			want: []int{a3CompleteIn, a4CompleteOut, b3DeniedIn, b4DeniedOut, c2DeniedIn, e2TimeoutOut}},
		{name: "hbone", c: Criteria{HBONE: true}, want: []int{a3CompleteIn, a4CompleteOut, b3DeniedIn, b4DeniedOut, e2TimeoutOut}},
		{name: "no src identity", c: Criteria{NoSrcIdentity: true}, want: []int{c2DeniedIn, d1FailedIn}},
		{name: "src workload", c: Criteria{SrcWorkload: frontendPod}, want: []int{a3CompleteIn, a4CompleteOut, e2TimeoutOut}},
		{name: "src workload in its namespace", c: Criteria{SrcWorkload: frontendPod, SrcNamespace: "demo"},
			want: []int{a3CompleteIn, a4CompleteOut, e2TimeoutOut}},
		{name: "the same pod name in another namespace", c: Criteria{SrcWorkload: frontendPod, SrcNamespace: "tenant"}},
		// D1, an early "connection failed", names no workload or namespace.
		{name: "src namespace", c: Criteria{SrcNamespace: "outside"}, want: []int{c2DeniedIn}},
		{name: "dst namespace", c: Criteria{DstNamespace: "demo", PolicyRejected: &yes}, want: []int{b3DeniedIn, b4DeniedOut, c2DeniedIn}},
		{name: "another dst namespace", c: Criteria{DstNamespace: "tenant"}},
		{name: "error contains", c: Criteria{ErrorContains: "deadline has elapsed"}, want: []int{e2TimeoutOut}},
		// The criteria the controller builds for the lab guide's evidence steps.
		{name: "lab mtls outbound-identity", c: Criteria{Since: first, Until: last, Direction: "outbound",
			SrcIdentity: frontendID, SrcWorkload: frontendPod, PolicyRejected: &no}, want: []int{a4CompleteOut}},
		{name: "lab mtls inbound-identity", c: Criteria{Since: first, Until: last, Direction: "inbound",
			SrcIdentity: frontendID, SrcWorkload: frontendPod, DstIdentity: backendID, PolicyRejected: &no}, want: []int{a3CompleteIn}},
		{name: "lab hbone-tunnel", c: Criteria{Since: first, Until: last, Direction: "inbound", SrcIdentity: frontendID,
			SrcWorkload: frontendPod, DstIdentity: backendID, HBONE: true, PolicyRejected: &no}, want: []int{a3CompleteIn}},
		{name: "lab rejection-logged", c: Criteria{Since: first, Until: last, Direction: "inbound",
			SrcIdentity: attackerID, SrcWorkload: attackerPod, PolicyRejected: &yes}, want: []int{b3DeniedIn}},
		{name: "lab strict-rejection-logged", c: Criteria{Since: first, Until: last, Direction: "inbound",
			NoSrcIdentity: true, PolicyRejected: &yes, ErrorAnyOf: []string{staticStrict, convertedPAPre}}, want: []int{c2DeniedIn}},
		{name: "probe denial lookup", c: Criteria{Since: first, Direction: "inbound", SrcWorkload: attackerPod,
			PolicyRejected: &yes}, want: []int{b3DeniedIn}},
	}
	for _, path := range accessFixtures {
		entries := parseFixture(t, path, accessLines)
		for _, tt := range tests {
			t.Run(path+"/"+tt.name, func(t *testing.T) {
				checkMatch(t, entries, tt.c, tt.want)
			})
		}
	}
}

// describe builds the narrowest criteria e satisfies, field by field.
func describe(e Entry) Criteria {
	c := Criteria{Since: e.Time, Until: e.Time, Direction: e.Direction(), SrcIdentity: e.SrcIdentity(),
		DstIdentity: e.DstIdentity(), DstService: e.DstService(), HBONE: e.IsHBONE(),
		NoSrcIdentity: e.SrcIdentity() == "", SrcWorkload: e.Fields.Get("src.workload"), ErrorContains: e.Error()}
	rejected := e.IsPolicyRejection()
	if rejected || e.Error() == "" {
		c.PolicyRejected = &rejected
	}
	return c
}

// An opened line is not evidence even for criteria written to fit it exactly,
// while every complete and failed line is found by the criteria that fit it.
func TestMatchRejectsOpenedLineFittingCriteria(t *testing.T) {
	for _, path := range slices.Concat(accessFixtures, []string{"testdata/policy-rejections.txt", "testdata/policy-rejections.json"}) {
		want := accessLines
		if strings.Contains(path, "rejections") {
			want = rejectionLines
		}
		for i, e := range parseFixture(t, path, want) {
			t.Run(fmt.Sprintf("%s/line %d", path, i+1), func(t *testing.T) {
				c := describe(e)
				got := Match([]Entry{e}, c)
				switch {
				case openedLine(e):
					if e.Level != "debug" || e.IsAccess() {
						t.Errorf("opened line: level %q, IsAccess %v; want debug, false", e.Level, e.IsAccess())
					}
					for name, c := range map[string]Criteria{"fitting": c, "zero": {}, "window": {Since: e.Time, Until: e.Time}} {
						if len(Match([]Entry{e}, c)) != 0 {
							t.Errorf("%s criteria matched %s", name, FormatText(e))
						}
					}
				case !e.IsAccess():
					t.Errorf("%q at %s is neither opened nor an access record", e.Message, e.Level)
				case len(got) != 1:
					t.Errorf("fitting criteria %+v did not match %s", c, FormatText(e))
				}
			})
		}
	}
}

func withoutCluster(e Entry) Entry {
	e.Fields = e.Fields.Without("src.cluster", "dst.cluster")
	return e
}

// ztunnel 1.31 added src.cluster and dst.cluster; a line with them must read
// as the same connection as the line without, in both formats.
func TestClusterFieldsParseLikeLinesWithout(t *testing.T) {
	var sets [][]Entry
	for _, path := range accessFixtures {
		sets = append(sets, parseFixture(t, path, accessLines))
	}
	old, cur, oldJSON, curJSON := sets[0], sets[1], sets[2], sets[3]
	for i := range old {
		t.Run(FormatText(old[i])[:40], func(t *testing.T) {
			sameEntry(t, oldJSON[i], old[i])
			sameEntry(t, curJSON[i], cur[i])
			sameEntry(t, withoutCluster(cur[i]), old[i])
			for _, k := range []string{"src.cluster", "dst.cluster"} {
				if _, ok := old[i].Fields.Lookup(k); ok {
					t.Errorf("pre-1.31 line has %s", k)
				}
				// log_early_deny prints no cluster, in 1.31 too.
				if want := "Kubernetes"; cur[i].Message != "connection failed" && cur[i].Fields.Get(k) != want {
					t.Errorf("Fields[%q] = %q, want %q", k, cur[i].Fields.Get(k), want)
				}
			}
			if got, want := readings(cur[i]), readings(old[i]); got != want {
				t.Errorf("with *.cluster the entry reads %v, without %v", got, want)
			}
		})
	}
}

// readings is everything evidence reads from an entry.
func readings(e Entry) [15]any {
	return [15]any{e.Time.UnixNano(), e.Level, e.Scope, e.Message, e.Direction(), e.SrcIdentity(), e.DstIdentity(),
		e.DstAddr(), e.HBONEAddr(), e.DstService(), e.Error(), e.IsAccess(), e.IsHBONE(), e.IsMTLS(), e.IsPolicyRejection()}
}

// FormatText writes *.cluster where ztunnel does, so the sandbox's lines can
// stand in for 1.31 ones as well as older ones.
func TestFormatTextReproducesClusterFixtures(t *testing.T) {
	for _, path := range []string{"testdata/access-1.30.txt", "testdata/access-1.31.txt", "testdata/policy-rejections.txt"} {
		lines := fixtureLogLines(t, path)
		for _, line := range lines[1:] {
			if got := FormatText(mustParse(t, line)); got != line {
				t.Errorf("%s: FormatText mismatch\n got: %q\nwant: %q", path, got, line)
			}
		}
	}
}

// A criterion that only asks for a policy rejection must not care which
// policy ztunnel names: with several matching DENY policies the name is not
// deterministic (ISTIO-FACTS.md), and older ztunnel names none.
func TestRejectionMatchesWhicheverPolicyIsNamed(t *testing.T) {
	text := parseFixture(t, "testdata/policy-rejections.txt", rejectionLines)
	js := parseFixture(t, "testdata/policy-rejections.json", rejectionLines)
	for i := range text {
		sameEntry(t, js[i], text[i])
	}
	start := text[0].Time
	yes, no := true, false
	inbound := []int{r1DenyAttacker, r2DenyUntrusted, r3StaticStrict, r4ConvertedPeerAuthentication, r5NoneAllowed, r6OldForm}
	tests := []struct {
		name string
		c    Criteria
		want []int
	}{
		{name: "rejected, nothing else", c: Criteria{PolicyRejected: &yes}, want: slices.Concat(inbound, []int{r7Client401})},
		{name: "lab rejection-logged", c: Criteria{Since: start, Until: start.Add(time.Minute), Direction: "inbound",
			SrcIdentity: attackerID, SrcWorkload: attackerPod, PolicyRejected: &yes}, want: inbound},
		{name: "probe denial lookup", c: Criteria{Since: start, Direction: "inbound", SrcWorkload: attackerPod,
			PolicyRejected: &yes}, want: inbound},
		{name: "client side", c: Criteria{Direction: "outbound", PolicyRejected: &yes}, want: []int{r7Client401}},
		{name: "allowed excludes every refusal and the opened line", c: Criteria{SrcWorkload: attackerPod, PolicyRejected: &no},
			want: []int{n2Allowed}},
	}
	for _, tt := range tests {
		t.Run("text/"+tt.name, func(t *testing.T) { checkMatch(t, text, tt.c, tt.want) })
		t.Run("json/"+tt.name, func(t *testing.T) { checkMatch(t, js, tt.c, tt.want) })
	}
	// Line by line, so one refusal form cannot hide behind another.
	rejected := Criteria{Direction: "inbound", SrcWorkload: attackerPod, PolicyRejected: &yes}
	for i, e := range text {
		n := i + 1
		want := n <= r6OldForm
		if got := len(Match([]Entry{e}, rejected)) == 1; got != want {
			t.Errorf("line %d (%s): rejection criterion matched = %v, want %v", n, e.Error(), got, want)
		}
	}
}
