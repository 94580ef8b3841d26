package policyaudit_test

import (
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ambientlab/labrun-operator/internal/sandbox"
	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// TestMain starts the package's one sandbox (with the real istiod): the policy audit's tests run beside the
// other packages'.
func TestMain(m *testing.M) { suite.Main(m, func() { sb, k8s = suite.SB, suite.K8s }) }

var (
	sb  *sandbox.Sandbox
	k8s client.WithWatch
)
