package cachefilter

import (
	"testing"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

func TestStripUnread(t *testing.T) {
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: "x", Labels: map[string]string{"app": "x"},
			Annotations: map[string]string{
				labsv1.AnnotationOwner: "demo/run", labsv1.AnnotationAuthor: "mia",
				"kubectl.kubernetes.io/last-applied-configuration": "{...}", "example.com/blob": "xxxx",
				"labs.ambientlab.io.example.com/lookalike": "not ours",
			},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}
	}
	ours := sets.New(labsv1.AnnotationOwner, labsv1.AnnotationAuthor)
	all := sets.KeySet(meta().Annotations)
	for _, tc := range []struct {
		name string
		obj  runtime.Object
		want sets.Set[string] // annotations kept
	}{
		{"pod", &corev1.Pod{ObjectMeta: meta()}, ours},
		{"PeerAuthentication", &securityv1.PeerAuthentication{ObjectMeta: meta()}, ours},
		{"AuthorizationPolicy", &securityv1.AuthorizationPolicy{ObjectMeta: meta()}, ours},
		{"policy metadata", &metav1.PartialObjectMetadata{ObjectMeta: meta()}, ours},
		{"LabRun", &labsv1.LabRun{ObjectMeta: meta()}, ours},
		{"LabSchedule", &labsv1.LabSchedule{ObjectMeta: meta()}, ours},
		// Kinds only the operator or administrators write keep their annotations; managedFields go everywhere.
		{"ConfigMap", &corev1.ConfigMap{ObjectMeta: meta()}, all},
		{"Lease", &coordinationv1.Lease{ObjectMeta: meta()}, all},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := StripUnread(tc.obj)
			if err != nil {
				t.Fatal(err)
			}
			o := out.(metav1.Object)
			if got := sets.KeySet(o.GetAnnotations()); !got.Equal(tc.want) {
				t.Errorf("annotations kept: %v, want %v", sets.List(got), sets.List(tc.want))
			}
			if o.GetManagedFields() != nil {
				t.Errorf("managedFields kept: %v", o.GetManagedFields())
			}
			if o.GetLabels()["app"] != "x" || o.GetName() != "x" {
				t.Errorf("name or labels changed: %s %v", o.GetName(), o.GetLabels())
			}
		})
	}
	t.Run("no annotation left is nil", func(t *testing.T) {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"example.com/a": "b"}}}
		if _, err := StripUnread(pod); err != nil || pod.Annotations != nil {
			t.Errorf("annotations %v, error %v", pod.Annotations, err)
		}
	})
	t.Run("not an object", func(t *testing.T) {
		if out, err := StripUnread("tombstone"); out != "tombstone" || err != nil {
			t.Errorf("got %v, %v", out, err)
		}
	})
}
