package steps

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// evidenceLogs is the part of Env an evidence step uses, answering from fixed lines.
type evidenceLogs struct {
	now     time.Time
	entries []ztunnel.Entry
	err     error
}

func (e evidenceLogs) Now() time.Time                                                { return e.now }
func (e evidenceLogs) DeadlineAfter(_ *labsv1.LabRun, d time.Duration) time.Duration { return d }
func (e evidenceLogs) EvidenceWait() time.Duration                                   { return 5 * time.Second }
func (e evidenceLogs) Criteria(context.Context, *labsv1.LabRun, labsv1.LabName, *labs.Evidence, time.Time) (ztunnel.Criteria, error) {
	return ztunnel.Criteria{SrcNamespace: "default"}, nil
}

// ReadZtunnel stops, as the reader does, once the lines read are enough (one line a "pod").
func (e evidenceLogs) ReadZtunnel(_ context.Context, _ *labsv1.LabRun, _ *labsv1.StepResult, _ time.Time, enough func([]ztunnel.Entry) bool) ([]ztunnel.Entry, error) {
	for i := range e.entries {
		if enough != nil && enough(e.entries[:i+1]) {
			return e.entries[:i+1], e.err
		}
	}
	return e.entries, e.err
}

// TestEvidenceNotHeldInFullIsNoFinding: lines the reader holds prove what they show, but a line not found in a
// window the reader did not hold in full (ztunnel.Incomplete) may be among those dropped: the step errs, it does
// not fail the mesh. Unreachable logs err too; a window held in full without the line fails.
func TestEvidenceNotHeldInFullIsNoFinding(t *testing.T) {
	raw, err := os.ReadFile("../../../shared/fixtures/ztunnel-access-logs.txt")
	if err != nil {
		t.Fatal(err)
	}
	var line ztunnel.Entry
	for _, l := range strings.Split(string(raw), "\n") {
		if e, err := ztunnel.ParseLine(l); err == nil && e.Fields.Get(ztunnel.FieldSrcNamespace) == "default" {
			line = e
			break
		}
	}
	if line.Fields.Get(ztunnel.FieldSrcNamespace) == "" {
		t.Fatal("no fixture line from namespace default")
	}
	start := line.Time.Add(-time.Minute)
	incomplete := &ztunnel.Incomplete{Pod: "istio-system/ztunnel-a", Node: "node-1", Since: start, Held: start.Add(30 * time.Second)}
	for _, tc := range []struct {
		name    string
		entries []ztunnel.Entry
		err     error
		want    labsv1.Verdict
		says    string
	}{
		{"held in part, the line among those held", []ztunnel.Entry{line}, incomplete, labsv1.VerdictPass, "Found 1 matching"},
		{"held in part, no line", nil, incomplete, labsv1.VerdictError, "not read in full"},
		{"held in full, no line", nil, nil, labsv1.VerdictFail, "Found 0 of 1"},
		// The probe step ended at start+10s: a read that reached start+20s holds every line its attempts wrote, even
		// though it has not caught up with the log's end.
		{"read up to past the probe step, no line", nil, &ztunnel.Incomplete{Since: start, ReadTo: start.Add(20 * time.Second)},
			labsv1.VerdictFail, "Found 0 of 1"},
		{"read only up to inside the probe step, no line", nil, &ztunnel.Incomplete{Since: start, ReadTo: start.Add(5 * time.Second)},
			labsv1.VerdictError, "not read in full"},
		{"unreachable", nil, errors.New("connection refused"), labsv1.VerdictError, "unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := &labsv1.LabRun{Status: labsv1.LabRunStatus{StartTime: &metav1.Time{Time: start},
				Steps: []labsv1.StepResult{{Lab: labsv1.LabMTLS, Name: "probe", StartTime: &metav1.MicroTime{Time: start},
					CompletionTime: &metav1.MicroTime{Time: start.Add(10 * time.Second)}}}}}
			st := &labsv1.StepResult{StartTime: &metav1.MicroTime{Time: start}}
			step := labs.Step{Lab: labsv1.LabMTLS, Name: "evidence", Kind: labs.KindEvidence, Evidence: &labs.Evidence{Since: "probe"}}
			env := evidenceLogs{now: start.Add(time.Minute), entries: tc.entries, err: tc.err}
			out, err := evidenceExecutor{env}.Execute(context.Background(), &Input{Run: run, Step: step, Result: st,
				Plan: []labs.Step{{Lab: labsv1.LabMTLS, Name: "probe", Kind: labs.KindProbe}, step}})
			if err != nil {
				t.Fatal(err)
			}
			if out.Verdict != tc.want || !strings.Contains(out.Message, tc.says) {
				t.Errorf("%s: %q; want %s saying %q", out.Verdict, out.Message, tc.want, tc.says)
			}
		})
	}
}
