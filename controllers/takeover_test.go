package controllers_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/operator"
)

var errKilled = errors.New("killed")

// crash is a fault that kills a manager at the first mutation point starting with point: the pass is cut short
// there, and so is every later one, as nothing more runs in a dead process.
type crash struct {
	point string
	once  sync.Once
	at    time.Time // when it struck; read only after done is closed
	done  chan struct{}
}

func crashAt(point string) *crash { return &crash{point: point, done: make(chan struct{})} }

func (c *crash) fault(p string) error {
	select {
	case <-c.done:
		return errKilled
	default:
	}
	if !strings.HasPrefix(p, c.point) {
		return nil
	}
	c.once.Do(func() {
		c.at = time.Now()
		close(c.done)
	})
	return errKilled
}

// haOptions run a replica of a two-replica deployment with the given Lease timings. The Lease is kept on stop,
// as a crashed process keeps it.
func haOptions(lease, renew, retry time.Duration, fault func(string) error) operator.Options {
	o := managerOptions()
	o.LeaderElection, o.LeaderElectionNS = true, sandbox.OperatorNamespace
	o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = lease, renew, retry
	o.KeepLeaseOnStop, o.Fault = true, fault
	return o
}

// newManager builds a manager as main.go does, on cfg (the manager's identity), without starting it.
func newManager(tb testing.TB, cfg *rest.Config, o operator.Options) ctrl.Manager {
	tb.Helper()
	mgr, err := operator.NewManager(cfg, o)
	if err != nil {
		tb.Fatal(err)
	}
	return mgr
}

// TestTakeoverRestoresAtOnceAndEndsTheRun: the leader dies right after making the mesh PERMISSIVE, without
// releasing its Lease; a warm standby takes the Lease over once it expires and, before its reconciler resumes
// anything, restores the mesh from the trusted record. The run ends Failed, its set-permissive step saying the
// manager was replaced (had the reconciler resumed first, that step would have passed). The mesh is STRICT
// again within the Lease duration plus the standby's polling (the target: LeaseDuration + 2 s).
func TestTakeoverRestoresAtOnceAndEndsTheRun(t *testing.T) {
	const lease = 2 * time.Second
	exposure := measureCrashExposure(t, lease, 1500*time.Millisecond, 200*time.Millisecond) // logs the figure
	NewWithT(t).Expect(exposure).To(BeNumerically("<=", lease+2*time.Second))
}

// measureCrashExposure runs a leader and a warm standby (started, caches synced, waiting for the Lease) with
// the given leader-election timings, kills the leader right after it made the PeerAuthentication PERMISSIVE
// (the Lease is not released, as after a crash), and returns the time from the kill until no PeerAuthentication
// is PERMISSIVE any more. It checks the run then ends as an interrupted run must, with the mesh as found.
func measureCrashExposure(tb testing.TB, leaseDuration, renewDeadline, retryPeriod time.Duration) time.Duration {
	tb.Helper()
	g := NewWithT(tb)
	kill := crashAt("after-change:peer-authentication/set-permissive")
	leader := newManager(tb, sb.ManagerConfig(), haOptions(leaseDuration, renewDeadline, retryPeriod, kill.fault))
	stopLeader := runManager(tb, leader)
	// A Lease kept by an earlier test's manager expires first.
	g.Eventually(leader.Elected()).WithTimeout(time.Minute).Should(BeClosed())
	o := haOptions(leaseDuration, renewDeadline, retryPeriod, nil)
	o.KeepLeaseOnStop = false // released when the test ends: the next measurement need not wait for it
	standby := newManager(tb, sb.ManagerConfig(), o)
	stopStandby := runManager(tb, standby)
	g.Expect(standby.GetCache().WaitForCacheSync(context.Background())).To(BeTrue())

	run := newRun(labsv1.LabPeerAuthentication)
	create(tb, run)
	g.Eventually(kill.done).WithTimeout(time.Minute).Should(BeClosed())
	elected := make(chan time.Duration, 1)
	go func() { <-standby.Elected(); elected <- time.Since(kill.at) }()
	stopLeader()
	g.Expect(weakenedPeerAuths(tb)).NotTo(BeEmpty(), "the leader died with the mesh weakened")
	g.Eventually(func() []string { return weakenedPeerAuths(tb) }).
		WithTimeout(leaseDuration + time.Minute).WithPolling(5 * time.Millisecond).Should(BeEmpty())
	exposure := time.Since(kill.at)
	tb.Logf("lease %s/%s/%s: leader killed with the mesh PERMISSIVE; the standby led %s later, STRICT again after %s",
		leaseDuration, renewDeadline, retryPeriod, (<-elected).Round(time.Millisecond), exposure.Round(time.Millisecond))
	done := finished(tb, run)
	expectInterrupted(tb, done)
	// Nothing ran after the kill: had the standby's reconciler resumed before restoring, set-permissive would
	// have passed and the steps after it run.
	i := slices.IndexFunc(done.Status.Steps, func(st labsv1.StepResult) bool { return st.Name == "set-permissive" })
	g.Expect(done.Status.Steps[i:]).To(HaveEach(HaveField("Message", HaveSuffix(msgInterrupted))), notPassed(done))
	deleteAndWait(tb, run)
	expectMeshAsFound(tb)
	stopStandby() // the next measurement starts with the Lease free
	return exposure
}

// TestTakeoverLeavesARunBetweenWindowsToResume: a manager that dies when the run has restored what it changed
// (between the peer-authentication lab's window and the authorization-policy lab's) leaves nothing pending: the
// next manager resumes the run, which opens its next window and succeeds.
func TestTakeoverLeavesARunBetweenWindowsToResume(t *testing.T) {
	g := NewWithT(t)
	o := managerOptions()
	o.Fault = func(p string) error {
		if strings.HasPrefix(p, "after-change:peer-authentication/set-permissive") {
			// STRICT now takes 3 s to reach ztunnel: the run waits in non-mesh-denied-again, the record clear.
			sb.Dataplane.SetPropagationDelay(3 * time.Second)
		}
		return nil
	}
	t.Cleanup(func() {
		sb.Dataplane.SetPropagationDelay(testDelay)
		waitPropagated(t, 3*time.Second)
	})
	stop := startManager(t, o)
	run := newRun(labsv1.LabPeerAuthentication, labsv1.LabAuthorizationPolicy)
	create(t, run)
	g.Eventually(func(g Gomega) []labsv1.StepResult {
		cur := &labsv1.LabRun{}
		g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(run), cur)).To(Succeed())
		return cur.Status.Steps
	}).WithTimeout(60 * time.Second).WithPolling(10 * time.Millisecond).Should(ContainElement(And(
		HaveField("Name", "restore-strict"), HaveField("Verdict", labsv1.VerdictPass))))
	stop()
	sb.Dataplane.SetPropagationDelay(testDelay)
	startManager(t, managerOptions())
	done := finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), notPassed(done))
	deleteAndWait(t, run)
	expectMeshAsFound(t)
}

// TestTakeoverDoesNotWaitForARecordItCannotRestore: a trusted record whose restore the API server refuses for
// good (here an original that is no longer a valid object) is logged and left to the watchdog: it holds no run
// back.
func TestTakeoverDoesNotWaitForARecordItCannotRestore(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	records := mesh.Store{Client: k8s, Reader: k8s, Namespace: sandbox.OperatorNamespace}
	bad := &mesh.Record{Run: mesh.RunRef{Namespace: sandbox.DemoNamespace, Name: "gone", UID: "unrestorable"},
		TargetNamespace: sandbox.DemoNamespace, Entries: []labsv1.JournalEntry{{
			Kind: mesh.KindAuthorizationPolicy, Namespace: sandbox.DemoNamespace, Name: "unrestorable",
			Spec: &apiextensionsv1.JSON{Raw: []byte(`{"action":"NOT-AN-ACTION"}`)}, RecordedAt: metav1.Now()}}}
	g.Expect(records.Save(ctx, bad)).To(Succeed())
	t.Cleanup(func() { _ = records.Delete(ctx, bad) })
	startManager(t, managerOptions())
	run := newRun(labsv1.LabPeerAuthentication)
	create(t, run)
	done := finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), notPassed(done))
	rec, err := records.Get(ctx, bad.Run.UID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rec.Pending()).To(HaveLen(1), "refused, and still there for the watchdog to retry")
	g.Expect(records.Delete(ctx, bad)).To(Succeed())
	deleteAndWait(t, run)
	expectMeshAsFound(t)
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
	cfg := sb.ManagerConfig()
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
	o := haOptions(lease, renew, retry, nil)
	o.KeepLeaseOnStop = false
	leader := newManager(tb, countedConfig(&lr, &lw), o)
	stopLeader := runManager(tb, leader)
	defer stopLeader()
	g.Eventually(leader.Elected()).WithTimeout(time.Minute).Should(BeClosed())
	standby := newManager(tb, countedConfig(&sr, &sw), o)
	stopStandby := runManager(tb, standby)
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
// idle leader and of a warm standby over a fixed window, and the crash exposure (measureCrashExposure: from
// the leader's death with the mesh PERMISSIVE until it is STRICT again). main.go's defaults come from this
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
				samples = append(samples, measureCrashExposure(b, c.lease, c.renew, c.retry))
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
