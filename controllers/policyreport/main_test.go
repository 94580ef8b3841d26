package policyreport_test

import (
	"testing"

	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// TestMain starts the package's one sandbox: the PolicyReport test installs the PolicyReport CRD on it while the
// manager runs.
func TestMain(m *testing.M) { suite.Main(m, nil) }
