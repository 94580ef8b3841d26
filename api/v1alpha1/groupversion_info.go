// Package v1alpha1 contains the LabRun API: a declarative run of the Istio ambient-mode security labs.
// +kubebuilder:object:generate=true
// +groupName=labs.ambientlab.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the LabRun API.
	GroupVersion = schema.GroupVersion{Group: "labs.ambientlab.io", Version: "v1alpha1"}

	// SchemeBuilder registers the LabRun types with a runtime scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the LabRun types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
