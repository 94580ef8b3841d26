package controllers

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers/steps"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/probe"
)

// An observer's log is the record of what a caller saw, so the pod that writes it must be the one the run
// created: its UID is in the run's trusted record (written right after the API server accepted the pod), its
// spec is the one the operator wrote (probe.Digest), and its container is the one first seen running, never
// restarted. A name, or a label value, proves nothing: a tenant may delete the observer and create her own under
// its name, or swap a pod's image, wherever admission does not stop her.

// trustedRecord is the run's trusted record, saved first if it is new: observers are recorded in it as they are
// created.
func (r *LabRunReconciler) trustedRecord(ctx context.Context, run *labsv1.LabRun) (*mesh.Record, error) {
	rec, err := r.recordOrNew(ctx, run)
	if err != nil || rec.Stored() {
		return rec, err
	}
	if err := r.Records.Save(ctx, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// observerBook is where observers are recorded as created: the run's trusted record, or, for warm observers,
// its schedule's warm record (labrun_warm.go).
type observerBook interface {
	// lookup returns the record of the observer namespace/name, or nil.
	lookup(namespace, name string) *mesh.PodRecord
	// ownerUID is the value of labsv1.LabelLabRun on the observers the book's owner creates.
	ownerUID() string
	// put records a pod just created; forget drops one about to be replaced; seen records its container.
	put(ctx context.Context, p mesh.PodRecord) error
	forget(ctx context.Context, namespace, name string) error
	seen(ctx context.Context, namespace, name, containerID string) error
	// flush writes what seen left unwritten (a batch book: one write for a fleet's observers, not one each).
	flush(ctx context.Context) error
}

// runBook records a run's own observers in its trusted record. A batch book (batch non-nil) keeps the pods created
// and the containers seen in the record in memory until flush (or the next forget, which writes the record whole).
type runBook struct {
	r     *LabRunReconciler
	rec   *mesh.Record
	batch *bool // dirty: a container seen is not written yet
}

func (b runBook) lookup(ns, name string) *mesh.PodRecord { return b.rec.Pod(ns, name) }
func (b runBook) ownerUID() string                       { return b.rec.Run.UID }

func (b runBook) put(ctx context.Context, p mesh.PodRecord) error {
	b.rec.PutPod(p)
	if b.batch != nil {
		// Written at flush: a pod created but not recorded when a pass ends early is not proven, and the next pass
		// replaces it (trustObserver).
		*b.batch = true
		return nil
	}
	return b.save(ctx)
}

func (b runBook) forget(ctx context.Context, ns, name string) error {
	if !b.rec.ForgetPod(ns, name) {
		return nil
	}
	return b.save(ctx)
}

func (b runBook) seen(ctx context.Context, ns, name, containerID string) error {
	b.rec.Pod(ns, name).ContainerID = containerID
	if b.batch != nil {
		*b.batch = true
		return nil
	}
	return b.save(ctx)
}

func (b runBook) save(ctx context.Context) error {
	if err := b.r.Records.Save(ctx, b.rec); err != nil {
		return err
	}
	if b.batch != nil {
		*b.batch = false
	}
	return nil
}

func (b runBook) flush(ctx context.Context) error {
	if b.batch == nil || !*b.batch {
		return nil
	}
	return b.save(ctx)
}

// warmBook records a schedule's warm observers in its warm record, read once per pass; the pods created and the
// containers seen are written together at flush, a pod forgotten at once.
type warmBook struct {
	r       *LabRunReconciler
	w       *mesh.Warm
	pending map[[2]string]string // namespace, name → container seen, not written yet
	created []mesh.PodRecord     // pods created, not written yet
}

// warmBookOf reads the schedule's warm record.
func (r *LabRunReconciler) warmBookOf(ctx context.Context, k keeper) (*warmBook, error) {
	w, err := r.warmStore().Get(ctx, k.uid)
	if err != nil {
		return nil, err
	}
	if w == nil {
		return nil, fmt.Errorf("the warm record of LabSchedule %s is gone", k.schedule)
	}
	return &warmBook{r: r, w: w}, nil
}

func (b *warmBook) lookup(ns, name string) *mesh.PodRecord {
	for i := range b.created {
		if b.created[i].Namespace == ns && b.created[i].Name == name {
			return &b.created[i]
		}
	}
	return b.w.Pod(ns, name)
}

func (b *warmBook) ownerUID() string { return b.w.Schedule.UID }

func (b *warmBook) update(ctx context.Context, change func(*mesh.Warm) bool) error {
	w, err := b.r.warmStore().Update(ctx, b.w.Schedule, func(w *mesh.Warm) (bool, error) { return change(w), nil })
	if err == nil {
		b.w = w
	}
	return err
}

func (b *warmBook) put(_ context.Context, p mesh.PodRecord) error {
	b.created = append(b.created, p)
	return nil
}

func (b *warmBook) forget(ctx context.Context, ns, name string) error {
	b.created = slices.DeleteFunc(b.created, func(p mesh.PodRecord) bool { return p.Namespace == ns && p.Name == name })
	delete(b.pending, [2]string{ns, name})
	return b.update(ctx, func(w *mesh.Warm) bool { return w.ForgetPod(ns, name) })
}

func (b *warmBook) seen(_ context.Context, ns, name, containerID string) error {
	if b.pending == nil {
		b.pending = map[[2]string]string{}
	}
	b.pending[[2]string{ns, name}] = containerID
	return nil
}

func (b *warmBook) flush(ctx context.Context) error {
	if len(b.pending) == 0 && len(b.created) == 0 {
		return nil
	}
	err := b.update(ctx, func(w *mesh.Warm) bool {
		changed := len(b.created) > 0
		for _, p := range b.created {
			w.PutPod(p)
		}
		for k, id := range b.pending {
			if p := w.Pod(k[0], k[1]); p != nil && p.ContainerID == "" {
				p.ContainerID, changed = id, true
			}
		}
		return changed
	})
	if err == nil {
		b.pending, b.created = nil, nil
	}
	return err
}

// trustObserver returns pod when it is one of the book's observers, unchanged. An observer an earlier pass created
// but could not record is not proven: it is deleted (nil, "", nil: the caller creates it again once it is gone).
// Anything else is tampering: the reason names it.
func (r *LabRunReconciler) trustObserver(ctx context.Context, b observerBook, pod *corev1.Pod) (*corev1.Pod, string, error) {
	pr := b.lookup(pod.Namespace, pod.Name)
	if pr == nil && pod.Labels[labsv1.LabelProbe] == "true" && pod.Labels[labsv1.LabelLabRun] == b.ownerUID() {
		if !pod.DeletionTimestamp.IsZero() {
			return nil, "", nil // being replaced
		}
		ctrl.LoggerFrom(ctx).Info("Replacing an observer the run did not record", "pod", klog.KObj(pod))
		uid := pod.UID
		if err := r.Delete(ctx, pod, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
			return nil, "", fmt.Errorf("deleting unrecorded observer pod %s: %w", klog.KObj(pod), err)
		}
		return nil, "", nil
	}
	if pr == nil {
		return nil, fmt.Sprintf("%spod %s has the name of this run's observer, but the run did not create it",
			steps.TamperPrefix, klog.KObj(pod)), nil
	}
	if pr.UID != string(pod.UID) {
		return nil, fmt.Sprintf("%spod %s is not the observer the run created (uid %s): it was deleted and created "+
			"again by someone else (uid %s)", steps.TamperPrefix, klog.KObj(pod), pr.UID, pod.UID), nil
	}
	if why := probe.Tampering(pod, pr.Digest, pr.ContainerID); why != "" {
		return nil, fmt.Sprintf("%spod %s: %s", steps.TamperPrefix, klog.KObj(pod), why), nil
	}
	if id := probe.ContainerID(pod); pr.ContainerID == "" && id != "" {
		if err := b.seen(ctx, pod.Namespace, pod.Name, id); err != nil {
			return nil, "", err
		}
	}
	return pod, "", nil
}

// ownRecord is what a book records of an observer the API server accepted: its UID and the digest of its spec.
func ownRecord(pod *corev1.Pod) mesh.PodRecord {
	return mesh.PodRecord{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID), Digest: probe.Digest(pod)}
}

// replaceObserver deletes an observer that ended, forgetting it first: the pod that replaces it is recorded anew.
func (r *LabRunReconciler) replaceObserver(ctx context.Context, b observerBook, pod *corev1.Pod) error {
	if err := b.forget(ctx, pod.Namespace, pod.Name); err != nil {
		return err
	}
	if err := r.Delete(ctx, pod); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting observer pod: %w", err)
	}
	return nil
}

// ownPods leaves out of pods those the run created (by UID in its trusted record), never a pod for a label.
func ownPods(rec *mesh.Record, pods []corev1.Pod) []corev1.Pod {
	if rec == nil {
		return pods
	}
	out := pods[:0:0]
	for _, p := range pods {
		if !rec.OwnsPod(string(p.UID)) {
			out = append(out, p)
		}
	}
	return out
}
