package labschedule

import (
	"fmt"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/conditions"
)

// Reasons of a LabSchedule's conditions.
const (
	reasonInvalidSchedule = "InvalidSchedule"
	reasonSuspended       = "Suspended"
	reasonNoRunYet        = "NoRunYet"
	reasonLastRunFailed   = "LastRunFailed"
	// reasonAuthorLacksRight: the schedule's author no longer has a right its runs need (author.go).
	reasonAuthorLacksRight = "AuthorLacksRight"
)

// authorRecheck is how often a schedule stalled by its author's rights looks at them again.
const authorRecheck = time.Minute

// maxFailedSteps bounds RunSummary.FailedSteps (the CRD allows 20).
const maxFailedSteps = 20

// scheduleRuns are a schedule's runs, sorted by creation (oldest first).
type scheduleRuns struct {
	active, succeeded, failed []*labsv1.LabRun
}

// sortRuns splits runs into active and finished ones; runs being deleted (Replace, pruning) are neither: they
// are on their way out.
func sortRuns(items []labsv1.LabRun) scheduleRuns {
	var out scheduleRuns
	sort.SliceStable(items, func(i, j int) bool {
		a, b := items[i].CreationTimestamp, items[j].CreationTimestamp
		if a.Equal(&b) {
			return items[i].Name < items[j].Name
		}
		return a.Before(&b)
	})
	for i := range items {
		run := &items[i]
		switch {
		case !run.DeletionTimestamp.IsZero():
		case run.Status.Phase == labsv1.PhaseSucceeded:
			out.succeeded = append(out.succeeded, run)
		case run.Status.Phase == labsv1.PhaseFailed:
			out.failed = append(out.failed, run)
		default:
			out.active = append(out.active, run)
		}
	}
	return out
}

// lastFinished is the finished run that ended last (nil if none). Times have the API's one-second resolution, so
// runs that ended in the same second are ordered by creation, then name: the later one counts as last.
func (s scheduleRuns) lastFinished() *labsv1.LabRun {
	var last *labsv1.LabRun
	for _, run := range append(append([]*labsv1.LabRun{}, s.succeeded...), s.failed...) {
		if last == nil || endedAfter(run, last) {
			last = run
		}
	}
	return last
}

func endedAfter(a, b *labsv1.LabRun) bool {
	if ea, eb := endTime(a), endTime(b); !ea.Equal(eb) {
		return ea.After(eb)
	}
	if ca, cb := a.CreationTimestamp, b.CreationTimestamp; !ca.Equal(&cb) {
		return cb.Before(&ca)
	}
	return a.Name > b.Name
}

func endTime(run *labsv1.LabRun) time.Time {
	if run.Status.CompletionTime != nil {
		return run.Status.CompletionTime.Time
	}
	return run.CreationTimestamp.Time
}

// lastSuccess is when the last successful run ended (nil if none is left).
func (s scheduleRuns) lastSuccess() *metav1.Time {
	var last *metav1.Time
	for _, run := range s.succeeded {
		t := metav1.NewTime(endTime(run))
		if last == nil || t.After(last.Time) {
			last = &t
		}
	}
	return last
}

// summarizeRun is the schedule's copy of a finished run's outcome.
func summarizeRun(run *labsv1.LabRun) *labsv1.RunSummary {
	return &labsv1.RunSummary{Name: run.Name, Phase: run.Status.Phase, Summary: run.Status.Summary,
		FailedSteps: failedSteps(run.Status.Steps), CompletionTime: run.Status.CompletionTime}
}

// failedSteps names the steps that did not pass as <lab>/<step>, with @<node> when exactly one node failed: the
// name an alert or a person acts on.
func failedSteps(steps []labsv1.StepResult) []string {
	var out []string
	for _, st := range steps {
		if st.Verdict != labsv1.VerdictFail && st.Verdict != labsv1.VerdictError {
			continue
		}
		name := fmt.Sprintf("%s/%s", st.Lab, st.Name)
		if node := soleFailingNode(st.Coverage); node != "" {
			name += "@" + node
		}
		if out = append(out, name); len(out) == maxFailedSteps {
			break
		}
	}
	return out
}

// soleFailingNode is the node of a step's coverage that did not pass, when there is exactly one.
func soleFailingNode(coverage []labsv1.NodeResult) string {
	nodes := map[string]bool{}
	for _, c := range coverage {
		if c.Verdict != labsv1.VerdictPass {
			nodes[c.Node] = true
		}
	}
	if len(nodes) != 1 {
		return ""
	}
	for n := range nodes {
		return n
	}
	return ""
}

// scheduleConditions is the pure part of the schedule's kstatus conditions. invalid is why the schedule cannot
// run (empty if it can), reason its condition reason. Ready says whether the last finished run succeeded;
// Reconciling holds until the first run finished; Stalled only for a schedule that cannot run.
func scheduleConditions(ls *labsv1.LabSchedule, reason, invalid string) (ready, reconciling, stalled *metav1.Condition) {
	if invalid != "" {
		return conditions.New(labsv1.ConditionReady, metav1.ConditionFalse, reason, invalid), nil,
			conditions.New(labsv1.ConditionStalled, metav1.ConditionTrue, reason, invalid)
	}
	last := ls.Status.LastRun
	switch {
	case last != nil && last.Phase == labsv1.PhaseFailed:
		ready = conditions.New(labsv1.ConditionReady, metav1.ConditionFalse, reasonLastRunFailed,
			fmt.Sprintf("LabRun %s failed: %d of %d steps failed, %d errored", last.Name, last.Summary.Failed,
				last.Summary.Total, last.Summary.Errored))
	case last != nil:
		ready = conditions.New(labsv1.ConditionReady, metav1.ConditionTrue, labsv1.ReasonSucceeded,
			fmt.Sprintf("LabRun %s succeeded: %d of %d steps passed", last.Name, last.Summary.Passed, last.Summary.Total))
	case ls.Spec.Suspend != nil && *ls.Spec.Suspend:
		ready = conditions.New(labsv1.ConditionReady, metav1.ConditionUnknown, reasonSuspended, "suspended before any run finished")
	default:
		msg := "waiting for the first run to finish"
		if len(ls.Status.Active) == 0 && ls.Status.NextScheduleTime != nil {
			msg = "no run yet: the first is due at " + ls.Status.NextScheduleTime.UTC().Format(time.RFC3339)
		}
		msg += fmt.Sprintf(" (`kubectl labrun schedule run %s` runs one now)", ls.Name)
		ready = conditions.New(labsv1.ConditionReady, metav1.ConditionUnknown, reasonNoRunYet, msg)
		reconciling = conditions.New(labsv1.ConditionReconciling, metav1.ConditionTrue, reasonNoRunYet, msg)
	}
	return ready, reconciling, nil
}

// setScheduleConditions writes the conditions, keeping Reconciling and Stalled only while True.
func setScheduleConditions(ls *labsv1.LabSchedule, reason, invalid string, now time.Time) {
	ready, reconciling, stalled := scheduleConditions(ls, reason, invalid)
	conditions.Apply(&ls.Status.Conditions, ls.Generation, now, ready, reconciling, stalled)
}
