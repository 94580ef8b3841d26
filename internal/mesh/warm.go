package mesh

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// A LabSchedule's Verify runs share warm observers and fixtures: one observer per node per caller, its attacker
// ServiceAccount and its non-mesh namespace stay between runs, so a steady-state run creates no pod. What the
// schedule keeps, and which runs may use it, is in one trusted record per schedule, a ConfigMap in the
// operator's namespace beside the runs' records, written only by the manager. A run's ownerReference or label
// proves nothing (a tenant can write them); only a run the schedule controller created and listed here may use
// the schedule's observers.
const (
	// LabelWarmRecord marks the ConfigMaps that hold schedules' warm records.
	LabelWarmRecord = "labs.ambientlab.io/warm-record"
	warmKey         = "warm.json"
	warmPrefix      = "labrun-warm-"
	// maxWarmRuns bounds the runs a warm record lists: a schedule keeps few runs in history, and only an active
	// one is ever looked up.
	maxWarmRuns = 20
)

// Warm is what a schedule keeps between its runs and who may use it.
type Warm struct {
	// Schedule is the LabSchedule, as its controller saw it.
	Schedule RunRef `json:"schedule"`
	// Runs are the UIDs of the runs the schedule controller created, newest last.
	Runs []string `json:"runs,omitempty"`
	// ArmedBy is the run that holds the warm observers now: one run at a time arms them.
	ArmedBy *RunRef `json:"armedBy,omitempty"`
	// Pods are the warm observers, as the API server returned them at creation.
	Pods []PodRecord `json:"pods,omitempty"`
	// Namespaces are the namespaces that hold the schedule's warm observers, arm ConfigMaps and attacker
	// ServiceAccount; NonMeshNamespace is its non-mesh namespace. Cleanup looks there when the schedule is gone.
	Namespaces       []string `json:"namespaces,omitempty"`
	NonMeshNamespace string   `json:"nonMeshNamespace,omitempty"`
	// Arms are the arm ConfigMaps (namespace/name) the schedule's runs write.
	Arms []string `json:"arms,omitempty"`

	resourceVersion string
}

// Lists tells whether the schedule controller created the run with this UID.
func (w *Warm) Lists(uid string) bool { return slices.Contains(w.Runs, uid) }

// AddRun lists a run the schedule created.
func (w *Warm) AddRun(uid string) {
	if w.Lists(uid) {
		return
	}
	w.Runs = append(w.Runs, uid)
	if len(w.Runs) > maxWarmRuns {
		w.Runs = w.Runs[len(w.Runs)-maxWarmRuns:]
	}
}

// AddNamespace notes a namespace that holds something of the schedule's.
func (w *Warm) AddNamespace(ns string) {
	if ns != "" && !slices.Contains(w.Namespaces, ns) {
		w.Namespaces = append(w.Namespaces, ns)
	}
}

// Pod returns the record of the warm observer namespace/name, or nil.
func (w *Warm) Pod(namespace, name string) *PodRecord {
	for i := range w.Pods {
		if w.Pods[i].Namespace == namespace && w.Pods[i].Name == name {
			return &w.Pods[i]
		}
	}
	return nil
}

// PutPod adds or replaces the record of a warm observer.
func (w *Warm) PutPod(p PodRecord) {
	w.ForgetPod(p.Namespace, p.Name)
	w.Pods = append(w.Pods, p)
}

// ForgetPod drops the record of a warm observer.
func (w *Warm) ForgetPod(namespace, name string) bool {
	n := len(w.Pods)
	w.Pods = slices.DeleteFunc(w.Pods, func(p PodRecord) bool { return p.Namespace == namespace && p.Name == name })
	return len(w.Pods) != n
}

// WarmName is the ConfigMap name of a schedule's warm record.
func WarmName(scheduleUID string) string { return warmPrefix + scheduleUID }

// WarmStore keeps warm records as ConfigMaps in the operator's namespace, read from the API server (never a
// cache: a stale ArmedBy would let two runs arm the same observers).
type WarmStore struct {
	Client    client.Client
	Reader    client.Reader
	Namespace string
}

// Get returns the schedule's warm record, or nil.
func (s WarmStore) Get(ctx context.Context, scheduleUID string) (*Warm, error) {
	cm := &corev1.ConfigMap{}
	err := s.Reader.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: WarmName(scheduleUID)}, cm)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the warm record of schedule %s: %w", scheduleUID, err)
	}
	return decodeWarm(cm)
}

// List returns every warm record; those that cannot be decoded are left out.
func (s WarmStore) List(ctx context.Context) ([]*Warm, error) {
	cms := &corev1.ConfigMapList{}
	if err := s.Reader.List(ctx, cms, client.InNamespace(s.Namespace), client.MatchingLabels{LabelWarmRecord: "true"}); err != nil {
		return nil, fmt.Errorf("listing the warm records: %w", err)
	}
	var out []*Warm
	for i := range cms.Items {
		if w, err := decodeWarm(&cms.Items[i]); err == nil {
			out = append(out, w)
		}
	}
	return out, nil
}

func decodeWarm(cm *corev1.ConfigMap) (*Warm, error) {
	w := &Warm{}
	if err := json.Unmarshal([]byte(cm.Data[warmKey]), w); err != nil {
		return nil, fmt.Errorf("decoding the warm record %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	if uid, _ := strings.CutPrefix(cm.Name, warmPrefix); w.Schedule.UID == "" || uid != w.Schedule.UID {
		return nil, fmt.Errorf("the warm record %s/%s names schedule %q, not the schedule of its name", cm.Namespace, cm.Name, w.Schedule.UID)
	}
	w.resourceVersion = cm.ResourceVersion
	return w, nil
}

// Save creates or updates the record, conditional on the version read.
func (s WarmStore) Save(ctx context.Context, w *Warm) error {
	raw, err := json.Marshal(w)
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: s.Namespace, Name: WarmName(w.Schedule.UID), ResourceVersion: w.resourceVersion,
			Labels:      map[string]string{LabelWarmRecord: "true", labsv1.LabelWarm: w.Schedule.UID},
			Annotations: map[string]string{labsv1.AnnotationOwner: w.Schedule.String()},
		},
		Data: map[string]string{warmKey: string(raw)},
	}
	if w.resourceVersion == "" {
		err = s.Client.Create(ctx, cm)
	} else {
		err = s.Client.Update(ctx, cm)
	}
	if err != nil {
		return fmt.Errorf("writing the warm record of schedule %s: %w", w.Schedule, err)
	}
	w.resourceVersion = cm.ResourceVersion
	return nil
}

// Update reads the schedule's record (a new one for schedule when there is none), applies change and saves it,
// again from a fresh read when another writer got there first. change returns false to save nothing. It
// returns the record as saved (or as read, when nothing changed).
func (s WarmStore) Update(ctx context.Context, schedule RunRef, change func(*Warm) (bool, error)) (*Warm, error) {
	var out *Warm
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		w, err := s.Get(ctx, schedule.UID)
		if err != nil {
			return err
		}
		if w == nil {
			w = &Warm{Schedule: schedule}
		}
		out = w
		changed, err := change(w)
		if err != nil || !changed {
			return err
		}
		err = s.Save(ctx, w)
		if apierrors.IsAlreadyExists(err) {
			return apierrors.NewConflict(corev1.Resource("configmaps"), WarmName(schedule.UID), err)
		}
		return err
	})
	return out, err
}

// Delete removes the schedule's record; a missing one counts as deleted.
func (s WarmStore) Delete(ctx context.Context, scheduleUID string) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: WarmName(scheduleUID)}}
	if err := s.Client.Delete(ctx, cm); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting the warm record of schedule %s: %w", scheduleUID, err)
	}
	return nil
}

// NonMeshNamespace is the non-mesh namespace of a run, or of a schedule's warm observers, by UID.
func NonMeshNamespace(uid string) string {
	sum := sha256.Sum256([]byte(uid))
	return "labrun-non-mesh-" + hex.EncodeToString(sum[:])[:10]
}

// ArmName is the arm ConfigMap of a schedule's warm observers of one caller (key), in the caller's namespace.
func ArmName(scheduleUID, key string) string {
	sum := sha256.Sum256([]byte(scheduleUID + "/" + key))
	return ArmPrefix + hex.EncodeToString(sum[:])[:10]
}

// ArmPrefix begins every arm ConfigMap's name (the manager's admission policy lets it write no other ConfigMap
// outside its namespace).
const ArmPrefix = "labrun-arm-"

// AddArm notes an arm ConfigMap (namespace/name) the schedule's runs write.
func (w *Warm) AddArm(namespace, name string) bool {
	ref := namespace + "/" + name
	if slices.Contains(w.Arms, ref) {
		return false
	}
	w.Arms = append(w.Arms, ref)
	return true
}

// SweepWarm deletes what a schedule kept, by the names and UIDs its warm record gives: its warm observers, arm
// ConfigMaps, attacker ServiceAccounts and non-mesh namespace. Then the record goes.
func (s WarmStore) SweepWarm(ctx context.Context, w *Warm) error {
	uid := w.Schedule.UID
	for _, p := range w.Pods {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name}}
		puid := types.UID(p.UID)
		if err := s.Client.Delete(ctx, pod, client.Preconditions{UID: &puid}); client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("deleting warm observer %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	for _, ref := range w.Arms {
		ns, name, _ := strings.Cut(ref, "/")
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if err := s.Client.Delete(ctx, cm); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting arm ConfigMap %s: %w", ref, err)
		}
	}
	var objs []client.Object
	for _, ns := range w.Namespaces {
		objs = append(objs, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: AttackerServiceAccount(uid)}})
	}
	if w.NonMeshNamespace != "" {
		objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.NonMeshNamespace}})
	}
	for _, obj := range objs {
		if err := DeleteLabelled(ctx, s.Client, s.Reader, uid, obj); err != nil {
			return err
		}
	}
	return s.Delete(ctx, uid)
}
