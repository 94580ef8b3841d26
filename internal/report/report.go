// Package report renders a finished (or running) LabRun for the tools people feed results to: JUnit XML for CI
// (Jenkins, GitLab, GitHub test reporters), a JSON document for scripts, and Markdown for pull requests and chat.
// Every renderer reads only the LabRun it is given; none talks to the API server.
package report

import (
	"fmt"
	"io"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// Format names an output format.
type Format string

// The formats Write knows.
const (
	FormatJUnit    Format = "junit"
	FormatJSON     Format = "json"
	FormatMarkdown Format = "markdown"
)

// Formats lists the formats, for flag help and errors.
var Formats = []Format{FormatJUnit, FormatJSON, FormatMarkdown}

// Write renders run in format to w.
func Write(w io.Writer, run *labsv1.LabRun, format Format) error {
	switch format {
	case FormatJUnit:
		return WriteJUnit(w, run)
	case FormatJSON:
		return WriteJSON(w, run)
	case FormatMarkdown:
		return WriteMarkdown(w, run)
	}
	return fmt.Errorf("unknown report format %q: use one of %v", format, Formats)
}

// labSteps groups a run's steps by lab, labs in the order they ran (the order of status.steps, which is the
// order of spec.labs).
type labSteps struct {
	Lab   labsv1.LabName
	Steps []labsv1.StepResult
}

func byLab(steps []labsv1.StepResult) []labSteps {
	var out []labSteps
	index := map[labsv1.LabName]int{}
	for _, st := range steps {
		i, ok := index[st.Lab]
		if !ok {
			i = len(out)
			index[st.Lab] = i
			out = append(out, labSteps{Lab: st.Lab})
		}
		out[i].Steps = append(out[i].Steps, st)
	}
	return out
}

// duration is how long a step took; zero when it has not both started and ended.
func duration(st labsv1.StepResult) time.Duration {
	if st.StartTime == nil || st.CompletionTime == nil {
		return 0
	}
	if d := st.CompletionTime.Sub(st.StartTime.Time); d > 0 {
		return d
	}
	return 0
}

// Settle formats a step's settle time ("" when none was measured).
func Settle(st labsv1.StepResult) string {
	if st.Settle == nil {
		return ""
	}
	return st.Settle.Duration.Round(time.Millisecond).String()
}

// MeshRestored returns the MeshRestored condition's status ("Unknown" when absent) and message.
func MeshRestored(run *labsv1.LabRun) (string, string) {
	c := meta.FindStatusCondition(run.Status.Conditions, labsv1.ConditionMeshRestored)
	if c == nil {
		return "Unknown", ""
	}
	return string(c.Status), c.Message
}

// CoverageLine describes what one node saw, e.g. "Destination node-2 backend-0 (10.0.0.7:80): Fail, observed
// allowed (HTTP 200), 3 attempts".
func CoverageLine(n labsv1.NodeResult) string {
	s := string(n.Role) + " " + n.Node
	if n.Endpoint != "" {
		s += " " + n.Endpoint
	}
	s += ": " + string(n.Verdict)
	if n.Observed != "" {
		s += ", observed " + n.Observed
	}
	if n.Attempts > 0 {
		s += fmt.Sprintf(", %d attempts", n.Attempts)
	}
	return s
}

// SourceLine names a ztunnel pod whose log a step read, e.g. "istio-system/ztunnel-abcde on node-2".
func SourceLine(s labsv1.EvidenceSource) string {
	line := s.Namespace + "/" + s.Pod
	if s.Node != "" {
		line += " on " + s.Node
	}
	return line
}

// Failing tells whether a verdict counts against the run.
func Failing(v labsv1.Verdict) bool { return v == labsv1.VerdictFail || v == labsv1.VerdictError }
