package steps

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/probe"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// Judging a probe step from its observer's attempts: an observer is a probe pod per caller and destination,
// started before anything is weakened, that keeps calling and logs every attempt with its time (`manager probe
// --observe`). A step judges the attempts in its own time range (Window).

// ClockTolerance is how far apart the nodes' clocks (the observers' attempt times) and the manager's (when a
// change was applied) may be. An attempt counts as after a change only when it started at least this long after
// it; an outcome that began more than this long before the change began before it.
const ClockTolerance = 100 * time.Millisecond

// TamperPrefix begins the reason a step gives when its observer is not the pod the run created.
const TamperPrefix = "observer tampered with: "

// Window is the part of an observer's log a step may count.
type Window struct {
	From     time.Time // attempts count from here (the step's start, or the last change plus the tolerance)
	Change   time.Time // for a step that observes a change: when it was applied
	SettleBy time.Time
}

// Judgement is what a step makes of the observer's attempts.
type Judgement struct {
	Pass, Early  bool
	Counted      int
	First        probe.Attempt  // the first counted attempt
	Last         *probe.Attempt // the newest attempt
	SegmentStart time.Time      // when the newest run of one outcome began
	Change       time.Time
}

// Described is the newest attempt in the lab guide's words ("nothing" before any).
func (j Judgement) Described() string {
	if j.Last == nil {
		return "nothing"
	}
	return DescribeAttempt(*j.Last)
}

// Settle is how long the outcome took: from the change it observes to the first attempt that saw it, else from
// the step's start to the first counted attempt.
func (j Judgement) Settle(start time.Time) time.Duration {
	if j.First.Time.IsZero() {
		return 0
	}
	from := start
	at := j.First.Time
	if !j.Change.IsZero() {
		from, at = j.Change, j.SegmentStart
	}
	return max(at.Sub(from), 0).Round(time.Millisecond)
}

// Judge reads attempts (in time order) for a step that expects want, count times in a row, in window w. The
// newest attempts must show want; for a step that observes a change, the run of want must have begun no earlier
// than the change (within the clock tolerance) - else it is early - and count attempts of it must have started
// after the change plus the tolerance.
func Judge(attempts []probe.Attempt, want probe.Expectation, count int, w Window) Judgement {
	j := Judgement{Change: w.Change}
	if len(attempts) == 0 {
		return j
	}
	j.Last = &attempts[len(attempts)-1]
	start := len(attempts) - 1
	for start > 0 && attempts[start-1].Observed == j.Last.Observed {
		start--
	}
	j.SegmentStart = attempts[start].Time
	if j.Last.Observed != string(want) {
		return j
	}
	if !w.Change.IsZero() && j.SegmentStart.Before(w.Change.Add(-ClockTolerance)) {
		j.Early = true
		return j
	}
	for _, a := range attempts[start:] {
		if a.Time.Before(w.From) {
			continue
		}
		if j.Counted == 0 {
			j.First = a
		}
		j.Counted++
	}
	j.Pass = j.Counted >= count
	return j
}

// CountedFrom is where a step's attempts start to count: right after the last mesh change before it (plus the
// clock tolerance), else from the observer's first attempt. The mesh has been in the state the step judges since
// then; the newest attempt must still show it.
func CountedFrom(change time.Time) time.Time {
	if change.IsZero() {
		return change
	}
	return change.Add(ClockTolerance)
}

// ChangeBefore is when the last mesh change before step in the plan was applied (zero when none ran).
func ChangeBefore(run *labsv1.LabRun, plan []labs.Step, step labs.Step) time.Time {
	var at time.Time
	for i, s := range plan {
		if s.ID() == step.ID() {
			break
		}
		if c := run.Status.Steps[i].CompletionTime; s.Mutates() && c != nil {
			at = c.Time
		}
	}
	return at
}

// BlocksWindow: an observer that cannot run for this reason leaves its steps unobserved. Only a bystander with
// nothing to call is skipped without one.
func BlocksWindow(step labs.Step, reason string) bool {
	return !step.Bystander || strings.HasPrefix(reason, "probe pod refused") || strings.HasPrefix(reason, TamperPrefix) ||
		strings.HasPrefix(reason, "observer pod ")
}

// PerNode tells whether a step probes from every node to every endpoint: Verify mode's probe steps (which change
// nothing, so any number of observers is safe; the Lab mode's windows keep one observer per caller).
func PerNode(run *labsv1.LabRun, step labs.Step) bool {
	return run.Spec.Mode == labsv1.ModeVerify && step.Kind == labs.KindProbe && !step.Bystander
}

// Stamp is a time of day as steps' messages show it.
func Stamp(t time.Time) string { return t.UTC().Format("15:04:05.000") }

// DescribeAttempt puts an attempt in the lab guide's words, as Describe does for a one-shot probe.
func DescribeAttempt(a probe.Attempt) string {
	return Describe(probe.Result{Observed: a.Observed, HTTPCode: a.HTTPCode, ExitCode: a.ExitCode, Reason: a.Reason})
}

// Describe puts a probe result in the words of the lab guide: "allowed (HTTP 200)",
// "denied (connection reset, curl 56)".
func Describe(res probe.Result) string {
	if res.Observed == probe.ObservedWorkloadDenied {
		return fmt.Sprintf("answered by the workload, not refused by the mesh (HTTP %d)", res.HTTPCode)
	}
	if res.ExitCode == 0 {
		return fmt.Sprintf("%s (HTTP %d)", res.Observed, res.HTTPCode)
	}
	words := map[string]string{"reset": "connection reset", "refused": "connection refused", "timeout": "timeout",
		"dns": "DNS failure", "empty-reply": "empty reply"}
	w := words[res.Reason]
	if w == "" {
		w = res.Reason
	}
	return fmt.Sprintf("%s (%s, curl %d)", res.Observed, w, res.ExitCode)
}

// MaxEvidenceLine is the MaxLength of each of status.steps[].evidence: a log line longer than that (a tenant's
// names and addresses end up in ztunnel's lines) is cut short, so that it never makes the status write fail.
const MaxEvidenceLine = 2048

// EvidenceLine is a log line as status.steps[].evidence keeps it: at most MaxEvidenceLine bytes, cut at a rune
// boundary and marked with "…" when longer.
func EvidenceLine(s string) string {
	if len(s) <= MaxEvidenceLine {
		return s
	}
	const mark = "…"
	cut := MaxEvidenceLine - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// Lines are the first n entries as evidence lines.
func Lines(entries []ztunnel.Entry, n int) []string {
	var out []string
	for i, e := range entries {
		if i == n {
			break
		}
		out = append(out, EvidenceLine(ztunnel.FormatText(e)))
	}
	return out
}

// PlanStep is the catalogue's step lab/name of the run's plan (zero when absent).
func PlanStep(plan []labs.Step, lab labsv1.LabName, name string) labs.Step {
	for _, s := range plan {
		if s.Lab == lab && s.Name == name {
			return s
		}
	}
	return labs.Step{Lab: lab, Name: name}
}

// StepStart is when the run's step lab/name started (zero when it has not).
func StepStart(run *labsv1.LabRun, lab labsv1.LabName, name string) time.Time {
	for _, st := range run.Status.Steps {
		if st.Lab == lab && st.Name == name && st.StartTime != nil {
			return st.StartTime.Time
		}
	}
	return time.Time{}
}

// StepEnd is when the named step of lab ended (zero if it has not).
func StepEnd(run *labsv1.LabRun, lab labsv1.LabName, name string) time.Time {
	for _, st := range run.Status.Steps {
		if st.Lab == lab && st.Name == name && st.CompletionTime != nil {
			return st.CompletionTime.Time
		}
	}
	return time.Time{}
}

// LogsUnread is the message of a step that could not read the ztunnel lines it needs: unreachable, or not held in
// full (ztunnel.Incomplete), when a line it did not find may be among those dropped.
func LogsUnread(err error) string {
	if ztunnel.IsIncomplete(err) {
		return "ztunnel logs not read in full, so a line not found proves nothing: " + err.Error()
	}
	return "ztunnel logs unreachable: " + err.Error()
}
