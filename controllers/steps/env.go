package steps

import (
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/labs"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// Env is everything executors may use, implemented by the LabRun controller. Each executor holds only the part
// its kind needs (For).
type Env interface {
	Observers
	Evidence
	Fixtures
	Footprint
	Mesh
	Auditor
}

// Clock is what every executor has: the time, how long a wait may be within the run's budget, and the bound on
// re-reading logs for lines still being written.
type Clock interface {
	Now() time.Time
	// DeadlineAfter is the earliest of the run's exposure deadline and d from now: waits never outlive it.
	DeadlineAfter(run *labsv1.LabRun, d time.Duration) time.Duration
	// EvidenceWait bounds how long a step keeps re-reading logs for lines still being written.
	EvidenceWait() time.Duration
}

// Target reads the run's target: its Service and pods, and their effective mTLS modes.
type Target interface {
	TargetPods(ctx context.Context, run *labsv1.LabRun) (*corev1.Service, []corev1.Pod, error)
	TargetModes(ctx context.Context, run *labsv1.LabRun) ([]PodMode, error)
}

// PodMode is the effective mode of one target pod.
type PodMode struct {
	mesh.ModeDecision
	Pod string
}

// Observers are the probe pods that watch a step's outcome: the controller starts them before any window opens
// (no pod starts inside a weakened window), and a probe step judges the attempts they log.
type Observers interface {
	Clock
	Target
	// EnsureObserver is the step's observer pod (nil while it is being created); reason, when set, says why the
	// step can have none.
	EnsureObserver(ctx context.Context, run *labsv1.LabRun, step labs.Step) (pod *corev1.Pod, reason string, err error)
	// ObserverLog is an observer pod's log since the given time.
	ObserverLog(ctx context.Context, pod *corev1.Pod, since time.Time) ([]byte, error)
	// WaitObserver is the Waiting error of a step waiting for what its observer shows, within w.
	WaitObserver(run *labsv1.LabRun, what string, w Window) error
	// ObserveFleet judges a step that probes from every node, from every node's observer.
	ObserveFleet(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, step labs.Step) (Outcome, error)
	// Denial is what the destination ztunnel says about the observer pod's denied attempts since the given
	// time, to one of the dst pods (any pod of the target namespace when dst is nil).
	Denial(ctx context.Context, run *labsv1.LabRun, since time.Time, pod *corev1.Pod, dst []corev1.Pod) (Denial, error)
	// DeniedAsExpected tells whether who (from a ztunnel line) is the denier the step expects.
	DeniedAsExpected(run *labsv1.LabRun, denier labs.Denier, who string) bool
}

// Denial is the destination ztunnel's last policy-rejection line for a probe's pod, and who it names.
type Denial struct {
	Line *ztunnel.Entry
	Who  string
	// Sources are the ztunnel pods read.
	Sources []labsv1.EvidenceSource
}

// Evidence reads ztunnel's access logs.
type Evidence interface {
	Clock
	// Criteria are what the lines of an evidence step must match, since the given time.
	Criteria(ctx context.Context, run *labsv1.LabRun, lab labsv1.LabName, ev *labs.Evidence, since time.Time) (ztunnel.Criteria, error)
	// ReadZtunnel reads the ztunnel lines since the given time (and records on st which pods it read); when enough
	// is set, it may stop reading once the lines read are enough.
	ReadZtunnel(ctx context.Context, run *labsv1.LabRun, st *labsv1.StepResult, since time.Time, enough func([]ztunnel.Entry) bool) ([]ztunnel.Entry, error)
}

// Fixtures are the temporary objects a lab needs (the non-mesh namespace, the attacker ServiceAccount), labelled
// with the run.
type Fixtures interface {
	// CreateFixture creates f (an earlier pass's is kept) and names it.
	CreateFixture(ctx context.Context, run *labsv1.LabRun, f labs.Fixture) (name string, err error)
	// RemoveFixture removes f, only when it carries the run's label, or keeps a schedule's warm fixture for its
	// next run, and says which ("<name> removed").
	RemoveFixture(ctx context.Context, run *labsv1.LabRun, f labs.Fixture) (observed string, kept bool, err error)
}

// Footprint measures the ambient footprint; it reads only, and writes the run's footprint.
type Footprint interface {
	NoSidecars(ctx context.Context, run *labsv1.LabRun) (v labsv1.Verdict, observed, msg string, err error)
	ZtunnelUsage(ctx context.Context, run *labsv1.LabRun) (v labsv1.Verdict, observed, msg string, err error)
	SidecarEstimate(ctx context.Context, run *labsv1.LabRun) (v labsv1.Verdict, observed, msg string, err error)
}

// Mesh changes the mesh and puts it back, through the run's trusted record (what the run changed and how to put
// it back, kept where only the manager's ServiceAccount can write).
type Mesh interface {
	Clock
	Target
	// Writer writes mesh objects; Reader reads them live.
	Writer() client.Client
	// Records is the trusted record store.
	Records() mesh.Store
	// RecordOrNew is the run's trusted record, or a new one (not saved yet).
	RecordOrNew(ctx context.Context, run *labsv1.LabRun) (*mesh.Record, error)
	// PolicyRef is the AuthorizationPolicy the run sets aside; PermissiveRef the PeerAuthentication the
	// set-permissive step changes (Mesh scope) or creates (Workload, Namespace).
	PolicyRef(run *labsv1.LabRun) mesh.Ref
	PermissiveRef(run *labsv1.LabRun) mesh.Ref
	// PrepareEntry reads the original of ref (or, with create, builds the object the run creates); refused says
	// why the object cannot be journaled (nothing is changed then).
	PrepareEntry(ctx context.Context, run *labsv1.LabRun, rec *mesh.Record, ref mesh.Ref, create bool) (e labsv1.JournalEntry, refused string, err error)
	// PermissiveBlocked says why PERMISSIVE could not reach the target (a workload PeerAuthentication keeps it
	// STRICT), or "".
	PermissiveBlocked(ctx context.Context, run *labsv1.LabRun, e labsv1.JournalEntry) (string, error)
	// CountWeakened counts the pods a change weakens (a metric).
	CountWeakened(ctx context.Context, run *labsv1.LabRun, e labsv1.JournalEntry)
	// Journal adds e to the record and saves it (and the status copy) before anything is changed.
	Journal(ctx context.Context, run *labsv1.LabRun, rec *mesh.Record, e labsv1.JournalEntry) error
	// Owner is the mark a changed object carries: whose change it is and when it must be back.
	Owner(run *labsv1.LabRun, rec *mesh.Record) mesh.Owner
	// Interference says how someone else changed what the run changed, or "".
	Interference(ctx context.Context, run *labsv1.LabRun) string
	// MarkRestored reads a restored object back and records that it is back.
	MarkRestored(ctx context.Context, run *labsv1.LabRun, rec *mesh.Record, e *labsv1.JournalEntry) error
	// CloseExposureAt closes the run's exposure window at the given time.
	CloseExposureAt(run *labsv1.LabRun, at time.Time)
	// Fault is the fault-injection hook at a mesh mutation point: an error (wrapping ErrAborted) ends the pass
	// there as if the manager died.
	Fault(point string) error
	// Event records one Event on the run.
	Event(run *labsv1.LabRun, typ, reason, action, format string, args ...any)
}

// Waiting stops a pass until a watched event (or, at the latest, After) resumes it.
type Waiting struct {
	What  string
	After time.Duration
}

func (e *Waiting) Error() string { return "waiting for " + e.What }

// WaitFor is a Waiting error; a deadline of zero or less is a second.
func WaitFor(what string, deadline time.Duration) error {
	if deadline <= 0 {
		deadline = time.Second
	}
	return &Waiting{What: what, After: deadline}
}

// ErrAborted marks a pass cut short by fault injection: nothing more is written.
var ErrAborted = errors.New("pass aborted by fault injection")
