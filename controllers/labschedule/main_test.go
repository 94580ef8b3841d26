package labschedule_test

import (
	"testing"

	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// TestMain starts the package's one sandbox: the LabSchedule tests drive the manager on it as a user would.
func TestMain(m *testing.M) { suite.Main(m, nil) }
