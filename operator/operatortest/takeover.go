package operatortest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/internal/sandbox/sandboxtest"
	"github.com/ambientlab/labrun-operator/operator"
)

// ErrKilled is what a mutation point returns in a manager the test killed there.
var ErrKilled = errors.New("killed")

// Crash is a fault that kills a manager at the first mutation point starting with point: the pass is cut short
// there, and so is every later one, as nothing more runs in a dead process. Set Fault as the manager's
// Options.Fault.
type Crash struct {
	point string
	once  sync.Once
	At    time.Time     // when it struck; read only after Done is closed
	Done  chan struct{} // closed when it struck
}

// CrashAt is a Crash at the first mutation point starting with point.
func CrashAt(point string) *Crash { return &Crash{point: point, Done: make(chan struct{})} }

// Fault is the Crash as an Options.Fault.
func (c *Crash) Fault(p string) error {
	select {
	case <-c.Done:
		return ErrKilled
	default:
	}
	if !strings.HasPrefix(p, c.point) {
		return nil
	}
	c.once.Do(func() {
		c.At = time.Now()
		close(c.Done)
	})
	return ErrKilled
}

// HAOptions run a replica of a two-replica deployment with the given Lease timings. The Lease is kept on stop,
// as a crashed process keeps it.
func HAOptions(lease, renew, retry time.Duration, fault func(string) error) operator.Options {
	o := Options()
	o.LeaderElection, o.LeaderElectionNS = true, sandbox.OperatorNamespace
	o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = lease, renew, retry
	o.KeepLeaseOnStop, o.Fault = true, fault
	return o
}

// MeasureCrashExposure runs a leader and a warm standby (started, caches synced, waiting for the Lease) with
// the given leader-election timings, kills the leader right after it made the PeerAuthentication PERMISSIVE
// (the Lease is not released, as after a crash), and returns the time from the kill until no PeerAuthentication
// is PERMISSIVE any more. It checks the run then ends as an interrupted run must, with the mesh as found.
func MeasureCrashExposure(tb testing.TB, leaseDuration, renewDeadline, retryPeriod time.Duration) time.Duration {
	tb.Helper()
	g := NewWithT(tb)
	kill := CrashAt("after-change:peer-authentication/set-permissive")
	leader := NewManager(tb, SB.ManagerConfig(), HAOptions(leaseDuration, renewDeadline, retryPeriod, kill.Fault))
	stopLeader := sandboxtest.RunManager(tb, leader)
	// A Lease kept by an earlier test's manager expires first.
	g.Eventually(leader.Elected()).WithTimeout(time.Minute).Should(BeClosed())
	o := HAOptions(leaseDuration, renewDeadline, retryPeriod, nil)
	o.KeepLeaseOnStop = false // released when the test ends: the next measurement need not wait for it
	standby := NewManager(tb, SB.ManagerConfig(), o)
	stopStandby := sandboxtest.RunManager(tb, standby)
	g.Expect(standby.GetCache().WaitForCacheSync(context.Background())).To(BeTrue())

	run := NewRun(labsv1.LabPeerAuthentication)
	Create(tb, run)
	g.Eventually(kill.Done).WithTimeout(time.Minute).Should(BeClosed())
	elected := make(chan time.Duration, 1)
	go func() { <-standby.Elected(); elected <- time.Since(kill.At) }()
	stopLeader()
	g.Expect(WeakenedPeerAuths(tb)).NotTo(BeEmpty(), "the leader died with the mesh weakened")
	g.Eventually(func() []string { return WeakenedPeerAuths(tb) }).
		WithTimeout(leaseDuration + time.Minute).WithPolling(5 * time.Millisecond).Should(BeEmpty())
	exposure := time.Since(kill.At)
	tb.Logf("lease %s/%s/%s: leader killed with the mesh PERMISSIVE; the standby led %s later, STRICT again after %s",
		leaseDuration, renewDeadline, retryPeriod, (<-elected).Round(time.Millisecond), exposure.Round(time.Millisecond))
	done := Finished(tb, run)
	ExpectInterrupted(tb, done)
	// Nothing ran after the kill: had the standby's reconciler resumed before restoring, set-permissive would
	// have passed and the steps after it run.
	i := slices.IndexFunc(done.Status.Steps, func(st labsv1.StepResult) bool { return st.Name == "set-permissive" })
	g.Expect(done.Status.Steps[i:]).To(HaveEach(HaveField("Message", HaveSuffix(MsgInterrupted))), NotPassed(done))
	DeleteAndWait(tb, run)
	ExpectMeshAsFound(tb)
	stopStandby() // the next measurement starts with the Lease free
	return exposure
}
