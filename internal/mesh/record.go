package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// The trusted journal: one ConfigMap per run in the operator's own namespace, where only the manager's
// ServiceAccount may write (config/rbac grants tenants nothing there). It is the only source restore and the
// watchdog act on. A LabRun's status and the marks on policy objects are writable by tenants: they carry
// human-readable copies, never instructions.
const (
	// LabelRecord marks the ConfigMaps that hold trusted run records.
	LabelRecord = "labs.ambientlab.io/record"
	recordKey   = "record.json"
	// recordPrefix + run UID names a record.
	recordPrefix = "labrun-record-"
)

// RunRef names the run a record belongs to. It is copied from the LabRun when the record is created and never
// taken from anything a tenant can write afterwards.
type RunRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
}

func (r RunRef) String() string { return r.Namespace + "/" + r.Name }

// Record is what a run changed in the mesh and how to put it back, plus what it created, so that the run
// itself, a restarted manager or the watchdog can undo it.
type Record struct {
	Run RunRef `json:"run"`
	// TargetNamespace holds the run's probe pods and attacker ServiceAccount.
	TargetNamespace string `json:"targetNamespace"`
	// NonMeshNamespace is the run's own namespace outside the mesh.
	NonMeshNamespace string `json:"nonMeshNamespace,omitempty"`
	// RestoreBy is when everything must be back (the exposure window's start plus maxExposure); zero until
	// the first original is journaled.
	RestoreBy *metav1.Time `json:"restoreBy,omitempty"`
	// Entries are the originals, journaled before each change.
	Entries []labsv1.JournalEntry `json:"entries,omitempty"`
	// Interrupted is when a newly started or elected manager found changes of this run still pending (left by a
	// manager that is gone) and restored them at once; the run then ends instead of resuming.
	Interrupted *metav1.Time `json:"interrupted,omitempty"`
	// Keeper is the LabSchedule whose warm observers and fixtures the run uses instead of creating its own (see
	// Warm); nil when the run creates and removes its own. It is decided once (KeeperDecided), before the run's
	// first fixture or observer, and never changes after: every name the run uses depends on it.
	Keeper        *RunRef `json:"keeper,omitempty"`
	KeeperDecided bool    `json:"keeperDecided,omitempty"`
	// Pods are the probe pods the run created, as the API server returned them at creation. Only these are the
	// run's observers: a pod found under an observer's name is believed only if it is one of them, unchanged.
	Pods []PodRecord `json:"pods,omitempty"`

	resourceVersion string
}

// PodRecord is a probe pod as the run created it.
type PodRecord struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
	// Digest sums what makes the pod the operator's prober (see probe.Digest); it must never change.
	Digest string `json:"digest"`
	// ContainerID is the prober's container as first seen running; another one means the log is not the one
	// the run started.
	ContainerID string `json:"containerID,omitempty"`
}

// Pod returns the record of the probe pod namespace/name, or nil.
func (r *Record) Pod(namespace, name string) *PodRecord {
	for i := range r.Pods {
		if r.Pods[i].Namespace == namespace && r.Pods[i].Name == name {
			return &r.Pods[i]
		}
	}
	return nil
}

// PutPod adds or replaces the record of a probe pod (by namespace and name).
func (r *Record) PutPod(p PodRecord) {
	if old := r.Pod(p.Namespace, p.Name); old != nil {
		*old = p
		return
	}
	r.Pods = append(r.Pods, p)
}

// ForgetPod drops the record of a probe pod the run is about to replace.
func (r *Record) ForgetPod(namespace, name string) bool {
	n := len(r.Pods)
	r.Pods = slices.DeleteFunc(r.Pods, func(p PodRecord) bool { return p.Namespace == namespace && p.Name == name })
	return len(r.Pods) != n
}

// OwnsPod tells whether the pod with this UID is one the run created.
func (r *Record) OwnsPod(uid string) bool {
	return uid != "" && slices.ContainsFunc(r.Pods, func(p PodRecord) bool { return p.UID == uid })
}

// Stored tells whether the record was read from or written to the store.
func (r *Record) Stored() bool { return r.resourceVersion != "" }

// Find returns the record's entry for ref, or nil.
func (r *Record) Find(ref Ref) *labsv1.JournalEntry { return Find(r.Entries, ref) }

// Put adds or replaces the entry for its object.
func (r *Record) Put(e labsv1.JournalEntry) {
	if old := r.Find(RefOf(e)); old != nil {
		*old = e
		return
	}
	r.Entries = append(r.Entries, e)
}

// Pending lists the entries not restored yet.
func (r *Record) Pending() []*labsv1.JournalEntry {
	var out []*labsv1.JournalEntry
	for i := range r.Entries {
		if !r.Entries[i].Restored {
			out = append(out, &r.Entries[i])
		}
	}
	return out
}

// Overdue tells whether the record has unrestored entries past RestoreBy plus grace, and how long until then.
func (r *Record) Overdue(now time.Time, grace time.Duration) (bool, time.Duration) {
	if r.RestoreBy == nil || len(r.Pending()) == 0 {
		return false, 0
	}
	left := r.RestoreBy.Add(grace).Sub(now)
	return left <= 0, left
}

// Store keeps records as ConfigMaps in the operator's namespace. Reads go to the API server, not a cache: a
// stale record could repeat or skip a restore.
type Store struct {
	Client    client.Client
	Reader    client.Reader
	Namespace string
	// Memo, when set, keeps the record of a run whose pass is under way (Memo.Begin) as that pass last read or
	// wrote it, so the pass reads it from the API server once, not at every step.
	Memo *Memo
}

// Memo holds, for the runs in a pass, each one's record as last read from or written to the API server in that
// pass. A pass is the only writer of its run's record while it lasts but for the watchdog, which restores the
// record of a run that is gone or overdue; a pass that writes over it fails on the version it read, and the
// next pass reads afresh. Every Get decodes a record of its own, so a change a caller makes and does not save is
// not seen by the next Get. Safe for concurrent use.
type Memo struct {
	mu   sync.Mutex
	runs map[string]*memoEntry // run UID → what its pass knows, for the runs in a pass
}

type memoEntry struct {
	known bool
	cm    *corev1.ConfigMap // nil: no record
}

// Begin starts the pass of a run: its record is read from the API server at its first Get.
func (m *Memo) Begin(uid string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.runs == nil {
		m.runs = map[string]*memoEntry{}
	}
	m.runs[uid] = &memoEntry{}
}

// End ends the pass of a run: what it knew is forgotten.
func (m *Memo) End(uid string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.runs, uid)
}

// lookup returns what the pass of the run knows of its record: known false when nothing (or no pass).
func (m *Memo) lookup(uid string) (cm *corev1.ConfigMap, known bool) {
	if m == nil {
		return nil, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.runs[uid]; e != nil && e.known {
		return e.cm, true
	}
	return nil, false
}

// remember keeps cm (nil: none) as the run's record, if its pass is under way.
func (m *Memo) remember(uid string, cm *corev1.ConfigMap) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.runs[uid]; e != nil {
		e.known, e.cm = true, cm
	}
}

// forget makes the pass of the run read its record from the API server again.
func (m *Memo) forget(uid string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.runs[uid]; e != nil {
		e.known, e.cm = false, nil
	}
}

// RecordName is the ConfigMap name of a run's record.
func RecordName(uid string) string { return recordPrefix + uid }

// RecordUID is the run UID of a record's name.
func RecordUID(name string) (string, bool) {
	uid, ok := strings.CutPrefix(name, recordPrefix)
	return uid, ok && uid != ""
}

// Get returns the run's record, or nil when there is none.
func (s Store) Get(ctx context.Context, uid string) (*Record, error) {
	if cm, known := s.Memo.lookup(uid); known {
		if cm == nil {
			return nil, nil
		}
		return decodeRecord(cm)
	}
	cm := &corev1.ConfigMap{}
	err := s.Reader.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: RecordName(uid)}, cm)
	if apierrors.IsNotFound(err) {
		s.Memo.remember(uid, nil)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the trusted record of run %s: %w", uid, err)
	}
	s.Memo.remember(uid, cm)
	return decodeRecord(cm)
}

// List returns every stored record. Records that cannot be decoded are returned apart, as errors: nothing can be
// restored from them, and they must not hide the others.
func (s Store) List(ctx context.Context) (recs []*Record, undecodable []error, err error) {
	cms := &corev1.ConfigMapList{}
	if err := s.Reader.List(ctx, cms, client.InNamespace(s.Namespace), client.MatchingLabels{LabelRecord: "true"}); err != nil {
		return nil, nil, fmt.Errorf("listing the trusted records: %w", err)
	}
	for i := range cms.Items {
		rec, err := decodeRecord(&cms.Items[i])
		if err != nil {
			undecodable = append(undecodable, err)
			continue
		}
		recs = append(recs, rec)
	}
	return recs, undecodable, nil
}

func decodeRecord(cm *corev1.ConfigMap) (*Record, error) {
	rec := &Record{}
	if err := json.Unmarshal([]byte(cm.Data[recordKey]), rec); err != nil {
		return nil, fmt.Errorf("decoding the trusted record %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	if rec.Run.UID == "" || RecordName(rec.Run.UID) != cm.Name {
		return nil, fmt.Errorf("the trusted record %s/%s names run %q, not the run of its name", cm.Namespace, cm.Name, rec.Run.UID)
	}
	rec.resourceVersion = cm.ResourceVersion
	return rec, nil
}

// Save creates or updates the record. An update is conditional on the version read, so two writers (the run
// and the watchdog) never overwrite each other's progress silently.
func (s Store) Save(ctx context.Context, rec *Record) error {
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: s.Namespace, Name: RecordName(rec.Run.UID), ResourceVersion: rec.resourceVersion,
			Labels:      map[string]string{LabelRecord: "true", labsv1.LabelLabRun: rec.Run.UID},
			Annotations: map[string]string{labsv1.AnnotationOwner: rec.Run.String()},
		},
		Data: map[string]string{recordKey: string(raw)},
	}
	if rec.resourceVersion == "" {
		err = s.Client.Create(ctx, cm)
	} else {
		err = s.Client.Update(ctx, cm)
	}
	if err != nil {
		s.Memo.forget(rec.Run.UID)
		return fmt.Errorf("writing the trusted record of run %s: %w", rec.Run, err)
	}
	rec.resourceVersion = cm.ResourceVersion
	s.Memo.remember(rec.Run.UID, cm)
	return nil
}

// Delete removes the record once nothing is left to restore. A missing record counts as deleted.
func (s Store) Delete(ctx context.Context, rec *Record) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: RecordName(rec.Run.UID)}}
	if err := s.Client.Delete(ctx, cm); client.IgnoreNotFound(err) != nil {
		s.Memo.forget(rec.Run.UID)
		return fmt.Errorf("deleting the trusted record of run %s: %w", rec.Run, err)
	}
	s.Memo.remember(rec.Run.UID, nil)
	return nil
}

// Mirror copies the trusted record into the run's status, for people. Nothing reads it back.
func Mirror(run *labsv1.LabRun, rec *Record) {
	run.Status.Journal = nil
	for _, e := range rec.Entries {
		run.Status.Journal = append(run.Status.Journal, *e.DeepCopy())
	}
}
