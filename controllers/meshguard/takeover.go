package meshguard

import (
	"context"
	"math"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ambientlab/labrun-operator/internal/mesh"
)

// Takeover is the first thing a manager does once it leads (or starts, without leader election): every trusted
// record that still has pending changes was left by a manager that is gone, since this one has changed nothing
// yet. Those changes are restored at once, before any run resumes, and the record is marked Interrupted so its
// run ends (Failed, mesh restored) instead of carrying on as if the mesh were still weakened. Until the pass is
// done, Wait holds the watchdog and Gate holds the LabRun reconciler. Runs with nothing pending (between two
// exposure windows) are left to resume.
type Takeover struct {
	client  client.Client
	records mesh.Store
	done    chan struct{}
}

// NewTakeover returns the pass over records; add it to the manager (it needs leader election) and make the
// reconcilers wait for it.
func NewTakeover(c client.Client, records mesh.Store) *Takeover {
	return &Takeover{client: c, records: records, done: make(chan struct{})}
}

// NeedLeaderElection: the pass runs when this manager becomes leader, with the controllers, never on a standby.
func (t *Takeover) NeedLeaderElection() bool { return true }

// Start runs the pass, then opens the gate. The pass is repeated with backoff only while the records cannot be
// listed: no run may resume before every record has been seen.
func (t *Takeover) Start(ctx context.Context) error {
	log := ctrl.Log.WithName("takeover")
	ctx = ctrl.LoggerInto(ctx, log)
	backoff := wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: math.MaxInt32, Cap: 10 * time.Second}
	err := wait.ExponentialBackoffWithContext(ctx, backoff, func(ctx context.Context) (bool, error) {
		if err := t.pass(ctx); err != nil {
			log.Error(err, "Reading the trusted records to restore what a previous manager left changed; retrying")
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return nil // stopping: the gate stays shut and waiting reconcilers return with their context
	}
	close(t.done)
	return nil
}

func (t *Takeover) pass(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx)
	recs, undecodable, err := t.records.List(ctx)
	if err != nil {
		return err
	}
	for _, err := range undecodable {
		log.Error(err, "Skipping a trusted record that cannot be decoded: nothing can be restored from it")
	}
	for _, rec := range recs {
		if len(rec.Pending()) == 0 {
			continue
		}
		// Marked with the first save, so a record is never seen restored but not interrupted.
		if rec.Interrupted == nil {
			now := metav1.Now()
			rec.Interrupted = &now
		}
		log.Info("Taking over a run that a previous manager left with the mesh changed", "run", rec.Run.String())
		if err := mesh.RestorePending(ctx, t.client, t.records.Reader, t.records, rec); err != nil {
			// What is still pending is left to the run's own restore (if the record is marked, the run ends and
			// restores; if not, it resumes with the mesh still weakened, as it is) or to the watchdog if the run
			// is gone. Holding every other run back for this one would keep those from restoring too.
			log.Error(err, "Restoring at takeover failed; the run or the watchdog retries", "run", rec.Run.String())
		}
	}
	return nil
}

// Wait returns once the pass is done, or with the context's error. A nil Takeover has nothing to wait for.
func (t *Takeover) Wait(ctx context.Context) error {
	if t == nil {
		return nil
	}
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Gate returns a reader that waits for the pass before its first read. The LabRun reconciler reads each run
// through it before acting on it, so no run resumes before what a previous manager left changed is back.
func (t *Takeover) Gate(r client.Reader) client.Reader { return gatedReader{Reader: r, takeover: t} }

type gatedReader struct {
	client.Reader
	takeover *Takeover
}

func (g gatedReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := g.takeover.Wait(ctx); err != nil {
		return err
	}
	return g.Reader.Get(ctx, key, obj, opts...)
}

func (g gatedReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := g.takeover.Wait(ctx); err != nil {
		return err
	}
	return g.Reader.List(ctx, list, opts...)
}
