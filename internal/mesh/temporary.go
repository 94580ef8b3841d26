package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"strconv"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// A narrow scope weakens through a temporary PeerAuthentication the run creates and deletes, instead of changing
// the mesh-wide one: workload level (a selector for exactly the target's pods, only the target's container ports
// PERMISSIVE) or namespace level. Istio gives a workload the mode of its most specific PeerAuthentication
// (workload > namespace > mesh; ISTIO-FACTS.md), so every other workload keeps its own.

// TemporaryPeerAuthentication is the journal entry of the PeerAuthentication a run will create: name, spec and
// the run's marks. selector nil means namespace level (mode PERMISSIVE); otherwise workload level with the given
// container ports PERMISSIVE and the rest STRICT.
func TemporaryPeerAuthentication(namespace, name string, selector map[string]string, ports []int32, owner Owner,
	now metav1.Time) (labsv1.JournalEntry, error) {
	spec := map[string]any{"mtls": map[string]any{"mode": "PERMISSIVE"}}
	if selector != nil {
		levels := map[string]any{}
		for _, p := range ports {
			levels[strconv.Itoa(int(p))] = map[string]any{"mode": "PERMISSIVE"}
		}
		spec = map[string]any{
			"selector":      map[string]any{"matchLabels": toAny(selector)},
			"mtls":          map[string]any{"mode": Strict},
			"portLevelMtls": levels,
		}
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return labsv1.JournalEntry{}, err
	}
	return labsv1.JournalEntry{
		Kind: KindPeerAuthentication, Namespace: namespace, Name: name, Created: true,
		Spec:   &apiextensionsv1.JSON{Raw: raw},
		Labels: map[string]string{LabelChangedBy: owner.UID},
		Annotations: map[string]string{labsv1.AnnotationOwner: owner.key(),
			labsv1.AnnotationRestoreBy: owner.RestoreBy},
		RecordedAt: now,
	}, nil
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Create makes the temporary object of a Created entry. Idempotent: the run's own object already there is fine;
// an object of that name without the run's mark is someone else's, and is left alone.
func Create(ctx context.Context, c client.Client, e labsv1.JournalEntry) error {
	ref := RefOf(e)
	u := newObject(ref)
	spec := map[string]any{}
	if err := json.Unmarshal(e.Spec.Raw, &spec); err != nil {
		return fmt.Errorf("decoding the spec of %s: %w", ref, err)
	}
	u.Object["spec"] = spec
	u.SetLabels(maps.Clone(e.Labels))
	u.SetAnnotations(maps.Clone(e.Annotations))
	err := c.Create(ctx, u)
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	live := newObject(ref)
	if err := c.Get(ctx, client.ObjectKeyFromObject(live), live); err != nil {
		return fmt.Errorf("reading %s: %w", ref, err)
	}
	if !ours(live, e) {
		return fmt.Errorf("%s already exists and is not this run's: choose another scope or remove it", ref)
	}
	return nil
}

// ours tells whether the live object carries the run mark the entry was created with.
func ours(u *unstructured.Unstructured, e labsv1.JournalEntry) bool {
	uid := e.Labels[LabelChangedBy]
	return uid != "" && u.GetLabels()[LabelChangedBy] == uid
}

// removeCreated deletes the run's temporary object; one that is gone, or that is not the run's, is done. Any
// finalizer on it is removed first: the run created it with none, and someone else's finalizer would keep it, weakened,
// after the delete (a deleted object is still in force until it is gone).
func removeCreated(ctx context.Context, c client.Client, e labsv1.JournalEntry) error {
	ref := RefOf(e)
	u := newObject(ref)
	if err := c.Get(ctx, client.ObjectKeyFromObject(u), u); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !ours(u, e) {
		return nil
	}
	if len(u.GetFinalizers()) > 0 {
		u.SetFinalizers(nil)
		if err := c.Update(ctx, u); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("removing the finalizers someone put on %s: %w", ref, err)
		}
	}
	if u.GetDeletionTimestamp() != nil {
		return nil // being deleted, and nothing holds it any more
	}
	uid := u.GetUID()
	err := c.Delete(ctx, u, client.Preconditions{UID: &uid})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing %s: %w", ref, err)
	}
	return nil
}

// verifyRemoved reads back that the run's temporary object is gone.
func verifyRemoved(ctx context.Context, r client.Reader, e labsv1.JournalEntry) error {
	u := newObject(RefOf(e))
	if err := r.Get(ctx, client.ObjectKeyFromObject(u), u); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("reading back %s: %w", RefOf(e), err)
	}
	if ours(u, e) {
		if u.GetDeletionTimestamp() != nil {
			return fmt.Errorf("%s, which the run created, is being deleted but still there (finalizers %v)", RefOf(e), u.GetFinalizers())
		}
		return fmt.Errorf("%s, which the run created, is still there", RefOf(e))
	}
	return nil
}

// createdInterference: the temporary object must still be there, the run's, with the spec it was created with.
func createdInterference(u *unstructured.Unstructured, e labsv1.JournalEntry) string {
	ref := RefOf(e)
	if !ours(u, e) {
		return ref.String() + ", which the run created, lost the run's mark: someone else changed it during the step"
	}
	want := map[string]any{}
	_ = json.Unmarshal(e.Spec.Raw, &want)
	got, _ := u.Object["spec"].(map[string]any)
	if !reflect.DeepEqual(normalize(got), normalize(want)) {
		return ref.String() + ", which the run created, was changed by someone else during the step"
	}
	return ""
}
