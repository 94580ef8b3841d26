// Package mesh changes the mesh's security objects for a run and puts them back: it journals the original
// before a change, weakens (PeerAuthentication mode, AuthorizationPolicy set aside), restores exactly (with
// PeerAuthentication STRICT always), verifies by reading back, and serialises runs with a Lease.
//
// Objects are handled as unstructured so the spec written back is byte-for-byte the spec that was read.
package mesh

import (
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

// Marks on a changed object, for people and for the manager's cache. They are never instructions: what to put
// back comes from the trusted record (record.go). Only the manager's ServiceAccount may write labs.ambientlab.io/
// marks on Istio policies (config/admission).
const (
	LabelChangedBy = "labs.ambientlab.io/changed-by"
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
