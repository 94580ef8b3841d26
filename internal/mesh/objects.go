// Package mesh changes the mesh's security objects for a run and puts them back: it journals the original
// before a change, weakens (PeerAuthentication mode, AuthorizationPolicy set aside), restores exactly (with
// PeerAuthentication STRICT always), verifies by reading back, and serialises runs with a Lease.
//
// Objects are handled as unstructured so the spec written back is byte-for-byte the spec that was read.
package mesh

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// Kinds the runs change.
const (
	KindPeerAuthentication  = "PeerAuthentication"
	KindAuthorizationPolicy = "AuthorizationPolicy"
)

// Annotations and labels on a changed object. The original annotation lets the watchdog restore it even when
// its LabRun (and the journal in its status) is gone.
const (
	AnnotationOriginal = "labs.ambientlab.io/original"
	LabelChangedBy     = "labs.ambientlab.io/changed-by"
	// SetAsideLabel selects no workload: a set-aside AuthorizationPolicy points its selector at it.
	SetAsideLabel = "labs.ambientlab.io/set-aside"
)

// GVK of a kind, at the storage version (security.istio.io/v1 from Istio 1.28, ISTIO-FACTS.md).
func GVK(kind string) schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: "security.istio.io", Version: "v1", Kind: kind}
}

// Ref names one mesh object.
type Ref struct {
	Kind, Namespace, Name string
}

func (r Ref) String() string { return fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name) }

// RefOf is the object a journal entry describes.
func RefOf(e labsv1.JournalEntry) Ref { return Ref{Kind: e.Kind, Namespace: e.Namespace, Name: e.Name} }

func newObject(ref Ref) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(GVK(ref.Kind))
	u.SetNamespace(ref.Namespace)
	u.SetName(ref.Name)
	return u
}

// Owner is the run changing an object.
type Owner struct {
	Namespace, Name, UID string
	RestoreBy            string // RFC 3339
}

func (o Owner) key() string { return o.Namespace + "/" + o.Name }

// originalOf decodes the journal entry a changed object carries in its annotation.
func originalOf(u *unstructured.Unstructured) (labsv1.JournalEntry, bool) {
	raw, ok := u.GetAnnotations()[AnnotationOriginal]
	if !ok {
		return labsv1.JournalEntry{}, false
	}
	var e labsv1.JournalEntry
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		return labsv1.JournalEntry{}, false
	}
	return e, true
}
