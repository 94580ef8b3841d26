package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// ErrChangedByOther is returned when the object already carries another run's change: journaling it would
// record a weakened state as the original.
type ErrChangedByOther struct {
	Ref   Ref
	Owner string
}

func (e *ErrChangedByOther) Error() string {
	return fmt.Sprintf("%s carries the mark of a change by LabRun %q; its original is not available", e.Ref, e.Owner)
}

// Snapshot reads the object live and returns its journal entry: spec, labels and annotations as found. An object
// that carries a run's mark is refused: its live state may be weakened, so it is no original. A run that
// restarts after its change finds the original in its trusted record and never snapshots again.
func Snapshot(ctx context.Context, r client.Reader, ref Ref, now metav1.Time) (labsv1.JournalEntry, error) {
	u := newObject(ref)
	if err := r.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, u); err != nil {
		return labsv1.JournalEntry{}, fmt.Errorf("reading %s: %w", ref, err)
	}
	if _, changed := u.GetLabels()[LabelChangedBy]; changed {
		return labsv1.JournalEntry{}, &ErrChangedByOther{Ref: ref, Owner: u.GetAnnotations()[labsv1.AnnotationOwner]}
	}
	spec, err := json.Marshal(u.Object["spec"])
	if err != nil {
		return labsv1.JournalEntry{}, err
	}
	return labsv1.JournalEntry{
		Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name,
		Spec: &apiextensionsv1.JSON{Raw: spec}, Labels: maps.Clone(u.GetLabels()),
		Annotations: maps.Clone(u.GetAnnotations()), RecordedAt: now,
	}, nil
}

// Find returns the run's journal entry for ref, or nil.
func Find(journal []labsv1.JournalEntry, ref Ref) *labsv1.JournalEntry {
	for i := range journal {
		if RefOf(journal[i]) == ref {
			return &journal[i]
		}
	}
	return nil
}

// OriginalMode is the PeerAuthentication mode recorded in a journal entry ("" when unset).
func OriginalMode(e labsv1.JournalEntry) string {
	var spec struct {
		Mtls *struct {
			Mode string `json:"mode"`
		} `json:"mtls"`
	}
	if e.Spec == nil || json.Unmarshal(e.Spec.Raw, &spec) != nil || spec.Mtls == nil {
		return ""
	}
	return spec.Mtls.Mode
}
