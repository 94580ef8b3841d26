// Package cachefilter is what the managers' caches leave out of what they keep (StripUnread).
package cachefilter

import (
	"strings"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// ownAnnotationPrefix is the operator's annotations' prefix: the only annotations it reads on what it caches
// (labs.ambientlab.io/owner, restore-by, the schedule author's and the mesh lock's).
var ownAnnotationPrefix = labsv1.GroupVersion.Group + "/"

// StripUnread is the managers' cache transform (cache.Options.DefaultTransform): what the operator never
// reads is not kept in memory, whoever wrote it and however large. Every object loses its managedFields (an
// Update of a cached object without them leaves the API server's as they are). The kinds whose metadata others
// write (tenants' policies, pods, LabRuns and LabSchedules; DaemonSets; any metadata-only object) also lose every
// annotation outside labs.ambientlab.io/: a tenant's thousand policies with 200 KiB annotations each cost the
// cache their names and labels, not 200 MB (controllers/hostile_sizes_test.go).
//
// The operator writes those kinds back only by patch (a merge patch of two stripped copies leaves the dropped
// annotations alone), server-side apply or unstructured objects, which the client reads live: never Update one
// read from the cache, or the annotations left out here would be removed from the object.
func StripUnread(obj any) (any, error) {
	o, ok := obj.(metav1.Object)
	if !ok {
		return obj, nil
	}
	o.SetManagedFields(nil)
	switch obj.(type) {
	case *corev1.Pod, *securityv1.PeerAuthentication, *securityv1.AuthorizationPolicy, *appsv1.DaemonSet,
		*labsv1.LabRun, *labsv1.LabSchedule, *metav1.PartialObjectMetadata:
		o.SetAnnotations(ownAnnotations(o.GetAnnotations()))
	}
	return obj, nil
}

// ownAnnotations keeps the operator's annotations (nil when none is left).
func ownAnnotations(in map[string]string) map[string]string {
	var out map[string]string
	for k, v := range in {
		if strings.HasPrefix(k, ownAnnotationPrefix) {
			if out == nil {
				out = make(map[string]string, len(in))
			}
			out[k] = v
		}
	}
	return out
}
