// Package scheme registers the kinds the operator, the sandbox and the tools read and write: Kubernetes' own,
// LabRun and its kin, and Istio's security API.
package scheme

import (
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// New returns a scheme with every kind the operator reads and writes.
func New() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, labsv1.AddToScheme, securityv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}
