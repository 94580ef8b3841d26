package mesh

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// SetMode sets the PeerAuthentication's mTLS mode (e.g. PERMISSIVE), keeping the rest of its spec.
func SetMode(ctx context.Context, c client.Client, orig labsv1.JournalEntry, owner Owner, mode string) error {
	return change(ctx, c, orig, owner, func(u *unstructured.Unstructured) error {
		return unstructured.SetNestedField(u.Object, mode, "spec", "mtls", "mode")
	})
}

// SetAside takes an AuthorizationPolicy out of force without deleting it: its selector then matches no workload,
// which for ztunnel is the same as no policy, while the object keeps the annotations that let it be restored.
func SetAside(ctx context.Context, c client.Client, orig labsv1.JournalEntry, owner Owner) error {
	return change(ctx, c, orig, owner, func(u *unstructured.Unstructured) error {
		u.Object["spec"] = map[string]any{
			"selector": map[string]any{"matchLabels": map[string]any{SetAsideLabel: owner.UID}},
		}
		return nil
	})
}

// change applies mutate to the live object and marks it with its owner and deadline (for people: the original is
// in the run's trusted record). Idempotent.
func change(ctx context.Context, c client.Client, orig labsv1.JournalEntry, owner Owner, mutate func(*unstructured.Unstructured) error) error {
	ref := RefOf(orig)
	// istiod writes policies' status too: a conflict means "read again", not failure.
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u := newObject(ref)
		if err := c.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, u); err != nil {
			return fmt.Errorf("reading %s: %w", ref, err)
		}
		if uid, ok := u.GetLabels()[LabelChangedBy]; ok && uid != owner.UID {
			return &ErrChangedByOther{Ref: ref, Owner: u.GetAnnotations()[labsv1.AnnotationOwner]}
		}
		if err := mutate(u); err != nil {
			return err
		}
		setMap(u, u.GetLabels, u.SetLabels, LabelChangedBy, owner.UID)
		setMap(u, u.GetAnnotations, u.SetAnnotations, labsv1.AnnotationOwner, owner.key())
		setMap(u, u.GetAnnotations, u.SetAnnotations, labsv1.AnnotationRestoreBy, owner.RestoreBy)
		if err := c.Update(ctx, u); err != nil {
			return fmt.Errorf("changing %s: %w", ref, err)
		}
		return nil
	})
}

func setMap(_ *unstructured.Unstructured, get func() map[string]string, set func(map[string]string), k, v string) {
	m := get()
	if m == nil {
		m = map[string]string{}
	}
	m[k] = v
	set(m)
}
