package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// Strict is the mode a PeerAuthentication is always restored to.
const Strict = "STRICT"

// Permissive is the mode the peer-authentication lab sets for its window.
const Permissive = "PERMISSIVE"

// desiredSpec is what restore writes: the original spec, with a PeerAuthentication's mode STRICT.
func desiredSpec(orig labsv1.JournalEntry) (map[string]any, error) {
	spec := map[string]any{}
	if orig.Spec != nil && len(orig.Spec.Raw) > 0 && string(orig.Spec.Raw) != "null" {
		if err := json.Unmarshal(orig.Spec.Raw, &spec); err != nil {
			return nil, fmt.Errorf("decoding the journaled spec of %s: %w", RefOf(orig), err)
		}
	}
	if orig.Kind == KindPeerAuthentication {
		if err := unstructured.SetNestedField(spec, Strict, "mtls", "mode"); err != nil {
			return nil, err
		}
	}
	return spec, nil
}

// Restore puts the original back: spec (PeerAuthentication with mode STRICT), labels and annotations exactly as
// journaled. An object deleted meanwhile is created again: orig comes only from a trusted record, which holds
// only objects this run snapshotted right before changing them. Idempotent.
func Restore(ctx context.Context, c client.Client, orig labsv1.JournalEntry) error {
	if orig.Created {
		return removeCreated(ctx, c, orig)
	}
	ref := RefOf(orig)
	spec, err := desiredSpec(orig)
	if err != nil {
		return err
	}
	// istiod writes policies' status too: a conflict means "read again".
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u := newObject(ref)
		err := c.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, u)
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading %s: %w", ref, err)
		}
		missing := apierrors.IsNotFound(err)
		if missing {
			u = newObject(ref)
		}
		u.Object["spec"] = spec
		u.SetLabels(maps.Clone(orig.Labels))
		u.SetAnnotations(maps.Clone(orig.Annotations))
		if missing {
			return client.IgnoreAlreadyExists(c.Create(ctx, u))
		}
		if err := c.Update(ctx, u); err != nil {
			return fmt.Errorf("restoring %s: %w", ref, err)
		}
		return nil
	})
}

// Verify reads the object back and checks it is restored: spec as desired, no run's marks.
func Verify(ctx context.Context, r client.Reader, orig labsv1.JournalEntry) error {
	if orig.Created {
		return verifyRemoved(ctx, r, orig)
	}
	ref := RefOf(orig)
	want, err := desiredSpec(orig)
	if err != nil {
		return err
	}
	u := newObject(ref)
	if err := r.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, u); err != nil {
		return fmt.Errorf("reading back %s: %w", ref, err)
	}
	got, _ := u.Object["spec"].(map[string]any)
	if got == nil {
		got = map[string]any{}
	}
	if !reflect.DeepEqual(normalize(got), normalize(want)) {
		return fmt.Errorf("%s read back with a spec other than the original", ref)
	}
	if _, marked := u.GetLabels()[LabelChangedBy]; marked {
		return fmt.Errorf("%s still carries the run's mark", ref)
	}
	return nil
}

// normalize makes numbers comparable across JSON round trips (int64 from the API, float64 from the journal).
func normalize(m map[string]any) any {
	raw, _ := json.Marshal(m)
	var out any
	_ = json.Unmarshal(raw, &out)
	return out
}

// Mode reads a PeerAuthentication's current mTLS mode ("" when unset).
func Mode(ctx context.Context, r client.Reader, ref Ref) (string, error) {
	u := newObject(ref)
	if err := r.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, u); err != nil {
		return "", fmt.Errorf("reading %s: %w", ref, err)
	}
	mode, _, _ := unstructured.NestedString(u.Object, "spec", "mtls", "mode")
	return mode, nil
}

// Interference tells whether someone else changed the object away from the run's change: the run's mark is
// gone, or (for a PeerAuthentication) the mode differs from the one the run set, or an object the run created
// is gone or changed. "" means no interference.
func Interference(ctx context.Context, r client.Reader, e labsv1.JournalEntry, runUID, wantMode string) (string, error) {
	ref := RefOf(e)
	u := newObject(ref)
	if err := r.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, u); err != nil {
		if apierrors.IsNotFound(err) {
			return ref.String() + " was deleted by someone else during the step", nil
		}
		return "", err
	}
	if e.Created {
		return createdInterference(u, e), nil
	}
	if u.GetLabels()[LabelChangedBy] != runUID {
		return ref.String() + " was changed by someone else during the step (the run's change is gone)", nil
	}
	if mode, _, _ := unstructured.NestedString(u.Object, "spec", "mtls", "mode"); wantMode != "" && mode != wantMode {
		return fmt.Sprintf("%s mode was changed to %q by someone else during the step", ref, mode), nil
	}
	return "", nil
}

// RestorePending puts back every object of rec not restored yet from the record alone, saving the record after
// each, so a manager that dies midway leaves only what is still pending to the next one.
func RestorePending(ctx context.Context, c client.Client, reader client.Reader, records Store, rec *Record) error {
	for _, e := range rec.Pending() {
		log.FromContext(ctx).Info("Restoring mesh object left changed", "object", RefOf(*e).String())
		if err := Restore(ctx, c, *e); err != nil {
			return err
		}
		// Restored only once read back so: a write that did not take (a temporary object someone's finalizer
		// still holds, say) is tried again, never recorded as done.
		if err := Verify(ctx, reader, *e); err != nil {
			return err
		}
		e.Restored, e.Change = true, ""
		if err := records.Save(ctx, rec); err != nil {
			return err
		}
	}
	return nil
}
