package meshguard_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/internal/sandbox/sandboxtest"
	"github.com/ambientlab/labrun-operator/operator"
	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// TestTakeoverRestoresAtOnceAndEndsTheRun: the leader dies right after making the mesh PERMISSIVE, without
// releasing its Lease; a warm standby takes the Lease over once it expires and, before its reconciler resumes
// anything, restores the mesh from the trusted record. The run ends Failed, its set-permissive step saying the
// manager was replaced (had the reconciler resumed first, that step would have passed). The mesh is STRICT
// again within the Lease duration plus the standby's polling (the target: LeaseDuration + 2 s).
func TestTakeoverRestoresAtOnceAndEndsTheRun(t *testing.T) {
	const lease = 2 * time.Second
	exposure := suite.MeasureCrashExposure(t, lease, 1500*time.Millisecond, 200*time.Millisecond) // logs the figure
	NewWithT(t).Expect(exposure).To(BeNumerically("<=", lease+2*time.Second))
}

// TestStandbyReplicaTakesOver runs two replicas with leader election, as config/manager deploys them. The
// leader dies right after weakening the mesh, without releasing its Lease; the standby, started only then, takes
// over once the Lease expires, restores the mesh first and ends the run Failed with the mesh restored.
func TestStandbyReplicaTakesOver(t *testing.T) {
	g := NewWithT(t)
	ha := func(fault func(string) error) operator.Options {
		return suite.HAOptions(2*time.Second, 1500*time.Millisecond, 200*time.Millisecond, fault)
	}
	kill := suite.CrashAt("after-change:peer-authentication/set-permissive")
	leader := suite.Start(t, ha(kill.Fault))
	run := suite.NewRun(labsv1.LabPeerAuthentication)
	suite.Create(t, run)
	g.Eventually(kill.Done).WithTimeout(60 * time.Second).Should(BeClosed())
	suite.Start(t, ha(nil)) // the standby waits for the Lease
	leader()
	suite.ExpectInterrupted(t, suite.Finished(t, run))
	suite.DeleteAndWait(t, run)
	suite.ExpectMeshAsFound(t)
}

// TestTakeoverLeavesARunBetweenWindowsToResume: a manager that dies when the run has restored what it changed
// (between the peer-authentication lab's window and the authorization-policy lab's) leaves nothing pending: the
// next manager resumes the run, which opens its next window and succeeds.
func TestTakeoverLeavesARunBetweenWindowsToResume(t *testing.T) {
	g := NewWithT(t)
	o := suite.Options()
	o.Fault = func(p string) error {
		if strings.HasPrefix(p, "after-change:peer-authentication/set-permissive") {
			// STRICT now takes 3 s to reach ztunnel: the run waits in non-mesh-denied-again, the record clear.
			suite.SB.Dataplane.SetPropagationDelay(3 * time.Second)
		}
		return nil
	}
	t.Cleanup(func() {
		suite.SB.Dataplane.SetPropagationDelay(suite.TestDelay)
		suite.WaitPropagated(t, 3*time.Second)
	})
	stop := suite.Start(t, o)
	run := suite.NewRun(labsv1.LabPeerAuthentication, labsv1.LabAuthorizationPolicy)
	suite.Create(t, run)
	g.Eventually(func(g Gomega) []labsv1.StepResult {
		cur := &labsv1.LabRun{}
		g.Expect(suite.K8s.Get(context.Background(), client.ObjectKeyFromObject(run), cur)).To(Succeed())
		return cur.Status.Steps
	}).WithTimeout(60 * time.Second).WithPolling(10 * time.Millisecond).Should(ContainElement(And(
		HaveField("Name", "restore-strict"), HaveField("Verdict", labsv1.VerdictPass))))
	stop()
	suite.SB.Dataplane.SetPropagationDelay(suite.TestDelay)
	suite.Start(t, suite.Options())
	done := suite.Finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), suite.NotPassed(done))
	suite.DeleteAndWait(t, run)
	suite.ExpectMeshAsFound(t)
}

// TestTakeoverDoesNotWaitForARecordItCannotRestore: a trusted record whose restore the API server refuses for
// good (here an original that is no longer a valid object) is logged and left to the watchdog: it holds no run
// back.
func TestTakeoverDoesNotWaitForARecordItCannotRestore(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	records := mesh.Store{Client: suite.K8s, Reader: suite.K8s, Namespace: sandbox.OperatorNamespace}
	bad := &mesh.Record{Run: mesh.RunRef{Namespace: sandbox.DemoNamespace, Name: "gone", UID: "unrestorable"},
		TargetNamespace: sandbox.DemoNamespace, Entries: []labsv1.JournalEntry{{
			Kind: mesh.KindAuthorizationPolicy, Namespace: sandbox.DemoNamespace, Name: "unrestorable",
			Spec: &apiextensionsv1.JSON{Raw: []byte(`{"action":"NOT-AN-ACTION"}`)}, RecordedAt: metav1.Now()}}}
	g.Expect(records.Save(ctx, bad)).To(Succeed())
	t.Cleanup(func() { _ = records.Delete(ctx, bad) })
	suite.Start(t, suite.Options())
	run := suite.NewRun(labsv1.LabPeerAuthentication)
	suite.Create(t, run)
	done := suite.Finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), suite.NotPassed(done))
	rec, err := records.Get(ctx, bad.Run.UID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rec.Pending()).To(HaveLen(1), "refused, and still there for the watchdog to retry")
	g.Expect(records.Delete(ctx, bad)).To(Succeed())
	suite.DeleteAndWait(t, run)
	suite.ExpectMeshAsFound(t)
}

// requestCounter counts a client's API requests: reads (GET: gets, lists and watches) and writes.
type requestCounter struct {
	next          http.RoundTripper
	reads, writes *atomic.Int64
}

func (c requestCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet {
		c.reads.Add(1)
	} else {
		c.writes.Add(1)
	}
	return c.next.RoundTrip(req)
}

// countedConfig is the manager's identity with its requests counted.
func countedConfig(reads, writes *atomic.Int64) *rest.Config {
	cfg := suite.SB.ManagerConfig()
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return requestCounter{next: rt, reads: reads, writes: writes}
	})
	return cfg
}

// leaseCost is what an idle leader and a warm standby ask of the API server, per minute.
type leaseCost struct {
	leaderReads, leaderWrites, standbyReads, standbyWrites float64
}

// measureLeaderElectionCost runs an idle leader and a warm standby with the given timings for window and counts
// their API requests; nothing else runs, so what they send is leader election and its watches.
func measureLeaderElectionCost(tb testing.TB, lease, renew, retry, window time.Duration) leaseCost {
	tb.Helper()
	g := NewWithT(tb)
	var lr, lw, sr, sw atomic.Int64
	o := suite.HAOptions(lease, renew, retry, nil)
	o.KeepLeaseOnStop = false
	leader := suite.NewManager(tb, countedConfig(&lr, &lw), o)
	stopLeader := sandboxtest.RunManager(tb, leader)
	defer stopLeader()
	g.Eventually(leader.Elected()).WithTimeout(time.Minute).Should(BeClosed())
	standby := suite.NewManager(tb, countedConfig(&sr, &sw), o)
	stopStandby := sandboxtest.RunManager(tb, standby)
	defer stopStandby()
	g.Expect(standby.GetCache().WaitForCacheSync(context.Background())).To(BeTrue())
	g.Expect(leader.GetCache().WaitForCacheSync(context.Background())).To(BeTrue())
	for _, n := range []*atomic.Int64{&lr, &lw, &sr, &sw} {
		n.Store(0)
	}
	time.Sleep(window) // the measurement window itself, not a wait for something to happen
	perMinute := func(n *atomic.Int64) float64 { return float64(n.Load()) * float64(time.Minute) / float64(window) }
	return leaseCost{perMinute(&lr), perMinute(&lw), perMinute(&sr), perMinute(&sw)}
}

// BenchmarkLeaderElectionCost measures candidate leader-election timings: the API requests per minute of an
// idle leader and of a warm standby over a fixed window, and the crash exposure (suite.MeasureCrashExposure:
// from the leader's death with the mesh PERMISSIVE until it is STRICT again). main.go's defaults come from this
// table. Run it with -benchtime=1x (one exposure sample per candidate) or Nx for more samples.
func BenchmarkLeaderElectionCost(b *testing.B) {
	const window = 30 * time.Second
	candidates := []struct{ lease, renew, retry time.Duration }{
		{15 * time.Second, 10 * time.Second, 2 * time.Second}, // controller-runtime's defaults
		{8 * time.Second, 6 * time.Second, time.Second},
		{6 * time.Second, 4 * time.Second, time.Second},
		{4 * time.Second, 3 * time.Second, 500 * time.Millisecond},
	}
	for _, c := range candidates {
		b.Run(c.lease.String()+"/"+c.renew.String()+"/"+c.retry.String(), func(b *testing.B) {
			cost := measureLeaderElectionCost(b, c.lease, c.renew, c.retry, window)
			var samples []time.Duration
			for i := 0; i < b.N; i++ {
				samples = append(samples, suite.MeasureCrashExposure(b, c.lease, c.renew, c.retry))
			}
			var sum time.Duration
			for _, s := range samples {
				sum += s
			}
			mean := sum / time.Duration(len(samples))
			b.ReportMetric(cost.leaderWrites, "leader-writes/min")
			b.ReportMetric(cost.leaderReads, "leader-reads/min")
			b.ReportMetric(cost.standbyWrites+cost.standbyReads, "standby-req/min")
			b.ReportMetric(mean.Seconds(), "crash-exposure-s")
			b.Logf("lease %s renew %s retry %s: leader %.0f writes + %.0f reads /min, standby %.0f writes + %.0f reads /min, crash exposure %v (mean %s)",
				c.lease, c.renew, c.retry, cost.leaderWrites, cost.leaderReads, cost.standbyWrites, cost.standbyReads,
				samples, mean.Round(time.Millisecond))
		})
	}
}
