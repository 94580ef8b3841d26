package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// The JUnit XML shape Jenkins' JUnit plugin, GitLab and most CI test reporters read (Ant/Surefire): one
// <testsuite> per lab and one <testcase> per step, classname the lab, so a CI page groups steps by lab. A step
// with per-policy verdicts (the policy audit) is followed by one <testcase> per policy.

// JUnitSuites is the document root.
type JUnitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []JUnitSuite `xml:"testsuite"`
}

// JUnitSuite is one lab.
type JUnitSuite struct {
	Name       string           `xml:"name,attr"`
	Tests      int              `xml:"tests,attr"`
	Failures   int              `xml:"failures,attr"`
	Errors     int              `xml:"errors,attr"`
	Skipped    int              `xml:"skipped,attr"`
	Time       string           `xml:"time,attr"`
	Timestamp  string           `xml:"timestamp,attr,omitempty"`
	Properties *JUnitProperties `xml:"properties,omitempty"`
	Cases      []JUnitCase      `xml:"testcase"`
}

// JUnitProperties holds name/value pairs.
type JUnitProperties struct {
	Properties []JUnitProperty `xml:"property"`
}

// JUnitProperty is one name/value pair.
type JUnitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// JUnitCase is one step, or one policy a step audited.
type JUnitCase struct {
	Name       string           `xml:"name,attr"`
	Classname  string           `xml:"classname,attr"`
	Time       string           `xml:"time,attr"`
	Properties *JUnitProperties `xml:"properties,omitempty"`
	Failure    *JUnitResult     `xml:"failure,omitempty"`
	Error      *JUnitResult     `xml:"error,omitempty"`
	Skipped    *JUnitResult     `xml:"skipped,omitempty"`
	SystemOut  string           `xml:"system-out,omitempty"`
}

// JUnitResult is a failure, error or skip: a one-line message, a type, and details as text.
type JUnitResult struct {
	Message string `xml:"message,attr,omitempty"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// JUnit builds the JUnit document of a run.
func JUnit(run *labsv1.LabRun) JUnitSuites {
	doc := JUnitSuites{Name: run.Namespace + "/" + run.Name}
	var total time.Duration
	for _, lab := range byLab(run.Status.Steps) {
		suite, d := junitSuite(run, lab)
		total += d
		doc.Suites = append(doc.Suites, suite)
		doc.Tests += suite.Tests
		doc.Failures += suite.Failures
		doc.Errors += suite.Errors
		doc.Skipped += suite.Skipped
	}
	doc.Time = seconds(total)
	return doc
}

func junitSuite(run *labsv1.LabRun, lab labSteps) (JUnitSuite, time.Duration) {
	suite := JUnitSuite{Name: string(lab.Lab), Properties: runProperties(run)}
	var total time.Duration
	var first *time.Time
	for _, st := range lab.Steps {
		for _, c := range append([]JUnitCase{junitCase(st)}, policyCases(st)...) {
			suite.Tests++
			switch {
			case c.Failure != nil:
				suite.Failures++
			case c.Error != nil:
				suite.Errors++
			case c.Skipped != nil:
				suite.Skipped++
			}
			suite.Cases = append(suite.Cases, c)
		}
		total += duration(st)
		if st.StartTime != nil && (first == nil || st.StartTime.Time.Before(*first)) {
			t := st.StartTime.Time
			first = &t
		}
	}
	suite.Time = seconds(total)
	if first != nil {
		suite.Timestamp = first.UTC().Format("2006-01-02T15:04:05")
	}
	return suite, total
}

// runProperties say what ran, so a CI page shows the run's mode, scope and whether the mesh was put back.
func runProperties(run *labsv1.LabRun) *JUnitProperties {
	restored, _ := MeshRestored(run)
	return &JUnitProperties{Properties: []JUnitProperty{
		{Name: "labrun", Value: run.Namespace + "/" + run.Name},
		{Name: "mode", Value: string(run.Spec.Mode)},
		{Name: "scope", Value: string(run.Spec.Scope)},
		{Name: "phase", Value: string(run.Status.Phase)},
		{Name: "meshRestored", Value: restored},
	}}
}

func junitCase(st labsv1.StepResult) JUnitCase {
	c := JUnitCase{Name: st.Name, Classname: string(st.Lab), Time: seconds(duration(st)), Properties: stepProperties(st),
		SystemOut: strings.Join(st.Evidence, "\n")}
	switch st.Verdict {
	case labsv1.VerdictFail:
		c.Failure = &JUnitResult{Message: verdictMessage(st), Type: string(st.Verdict), Text: details(st)}
	case labsv1.VerdictError:
		c.Error = &JUnitResult{Message: verdictMessage(st), Type: string(st.Verdict), Text: details(st)}
	case labsv1.VerdictSkipped:
		c.Skipped = &JUnitResult{Message: st.Message}
	case labsv1.VerdictPending, labsv1.VerdictRunning:
		// The run had not finished when the report was made: the step did not get a verdict.
		c.Skipped = &JUnitResult{Message: "no verdict yet (" + string(st.Verdict) + ")"}
	}
	return c
}

// policyCases are a step's per-policy cases, named <lab>/<kind> <namespace>/<name>, taking no time of their own:
// NotEnforced fails (the reason, istiod's word and the probes in the body), NoEffect and Untestable are skipped
// with the reason, Enforced and EnforcedDifferently pass with the reason, istiod's word and the probes as output.
func policyCases(st labsv1.StepResult) []JUnitCase {
	out := make([]JUnitCase, 0, len(st.Policies))
	for _, p := range st.Policies {
		c := JUnitCase{Name: string(st.Lab) + "/" + PolicyName(p), Classname: string(st.Lab), Time: seconds(0),
			Properties: policyProperties(st, p)}
		switch p.Verdict {
		case labsv1.PolicyNotEnforced:
			c.Failure = &JUnitResult{Message: policyMessage(p), Type: string(p.Verdict), Text: policyDetails(p)}
		case labsv1.PolicyNoEffect, labsv1.PolicyUntestable:
			c.Skipped = &JUnitResult{Message: policyMessage(p)}
			c.SystemOut = policyDetails(p)
		case labsv1.PolicyEnforced, labsv1.PolicyEnforcedDifferently:
			c.SystemOut = policyDetails(p)
		default: // the API admits no other verdict; one that got there anyway is not a pass
			c.Error = &JUnitResult{Message: fmt.Sprintf("unknown policy verdict %q", p.Verdict), Type: string(p.Verdict),
				Text: policyDetails(p)}
		}
		out = append(out, c)
	}
	return out
}

// policyProperties name the step that audited the policy, and the policy.
func policyProperties(st labsv1.StepResult, p labsv1.PolicyResult) *JUnitProperties {
	return &JUnitProperties{Properties: []JUnitProperty{
		{Name: "step", Value: st.Name},
		{Name: "kind", Value: p.Kind},
		{Name: "policy", Value: p.Policy},
		{Name: "verdict", Value: string(p.Verdict)},
	}}
}

// stepProperties: what was expected and observed, the mesh change, and one property per node of the coverage.
func stepProperties(st labsv1.StepResult) *JUnitProperties {
	p := &JUnitProperties{}
	add := func(name, value string) {
		if value != "" {
			p.Properties = append(p.Properties, JUnitProperty{Name: name, Value: value})
		}
	}
	add("expected", st.Expected)
	add("observed", st.Observed)
	add("verdict", string(st.Verdict))
	add("change", st.Change)
	add("settle", Settle(st))
	if st.HTTPCode != nil {
		add("httpCode", strconv.Itoa(int(*st.HTTPCode)))
	}
	if st.ExitCode != nil {
		add("exitCode", strconv.Itoa(int(*st.ExitCode)))
	}
	if st.Attempts > 0 {
		add("attempts", strconv.Itoa(int(st.Attempts)))
	}
	for _, n := range st.Coverage {
		add("coverage."+strings.ToLower(string(n.Role))+"."+n.Node, CoverageLine(n))
	}
	// Where the evidence came from: one property per ztunnel pod whose log was read.
	for _, s := range st.EvidenceSources {
		add("evidenceSource", SourceLine(s))
	}
	if len(p.Properties) == 0 {
		return nil
	}
	return p
}

// verdictMessage is the one line a CI page shows for a failed step.
func verdictMessage(st labsv1.StepResult) string {
	if st.Message != "" {
		return st.Message
	}
	return fmt.Sprintf("expected %s, observed %s", st.Expected, orNone(st.Observed))
}

// details: expected and observed, then the nodes that failed, for the failure's body.
func details(st labsv1.StepResult) string {
	lines := []string{"expected: " + st.Expected, "observed: " + orNone(st.Observed)}
	for _, n := range st.Coverage {
		if Failing(n.Verdict) {
			lines = append(lines, "node: "+CoverageLine(n))
		}
	}
	return strings.Join(lines, "\n")
}

func orNone(s string) string {
	if s == "" {
		return "(nothing)"
	}
	return s
}

func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }

// WriteJUnit writes the run's JUnit XML document, with the XML header.
func WriteJUnit(w io.Writer, run *labsv1.LabRun) error {
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(JUnit(run)); err != nil {
		return fmt.Errorf("writing the JUnit report of LabRun %s/%s: %w", run.Namespace, run.Name, err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}
