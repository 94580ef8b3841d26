// Package guarantee_test holds the black-box tests of the LabRun controller's two guarantees, on their own sandbox
// so that they run beside the controllers package's: the mesh is put back on every path (restore_test.go) and runs
// that change the mesh take its lock one at a time (lock_test.go).
package guarantee_test

import (
	"testing"

	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

func TestMain(m *testing.M) { suite.Main(m, nil) }
