package meshguard_test

import (
	"testing"

	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// TestMain starts the package's one sandbox: the mesh guard's tests kill the manager on it and watch the next
// one restore the mesh.
func TestMain(m *testing.M) { suite.Main(m, nil) }
