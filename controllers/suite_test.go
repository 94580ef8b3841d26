package controllers_test

import (
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/internal/sandbox/sandboxtest"
	"github.com/ambientlab/labrun-operator/operator/operatortest"
)

// TestMain starts one sandbox for the package (operatortest.Main); the names below are the package's short
// names for what every black-box test package under controllers/ shares.
func TestMain(m *testing.M) {
	operatortest.Main(m, func() { sb, k8s = operatortest.SB, operatortest.K8s })
}

// Set by TestMain once the sandbox is up.
var (
	sb  *sandbox.Sandbox
	k8s client.WithWatch
)

const (
	testDelay       = operatortest.TestDelay
	testProbeImage  = operatortest.TestProbeImage
	unpullableImage = operatortest.UnpullableImage
)

var (
	peerAuthRef, policyRef = operatortest.PeerAuthRef, operatortest.PolicyRef
	runCounter             = &operatortest.Counter

	readMesh           = operatortest.ReadMesh
	managerOptions     = operatortest.Options
	startManager       = operatortest.Start
	runManager         = sandboxtest.RunManager
	newRun             = operatortest.NewRun
	create             = operatortest.Create
	deleteAndWait      = operatortest.DeleteAndWait
	finished           = operatortest.Finished
	expectMeshAsFound  = operatortest.ExpectMeshAsFound
	leftovers          = operatortest.Leftovers
	stepOf             = operatortest.StepOf
	slowPropagation    = operatortest.SlowPropagation
	waitPropagated     = operatortest.WaitPropagated
	waitForMode        = operatortest.WaitForMode
	temporaryPeerAuths = operatortest.TemporaryPeerAuths
	secondBackend      = operatortest.SecondBackend

	asUser                  = operatortest.AsUser
	grant                   = operatortest.Grant
	rule                    = operatortest.Rule
	ensureTenantNamespace   = operatortest.EnsureTenantNamespace
	grantFootprintReads     = operatortest.GrantFootprintReads
	kstatusOf               = operatortest.KstatusOf
	notPassed               = operatortest.NotPassed
	expectInterrupted       = operatortest.ExpectInterrupted
	addPolicy               = operatortest.AddPolicy
	expectNoLock            = operatortest.ExpectNoLock
	waitForPlaintextVerdict = operatortest.WaitForPlaintextVerdict
	addPeerAuthentication   = operatortest.AddPeerAuthentication
	shortSettle             = operatortest.ShortSettle
	crashAt                 = operatortest.CrashAt
	measureCrashExposure    = operatortest.MeasureCrashExposure
)

const tenantNamespace = operatortest.TenantNamespace
