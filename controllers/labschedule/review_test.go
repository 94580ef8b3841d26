package labschedule_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/sandbox/sandboxtest"
	suite "github.com/ambientlab/labrun-operator/operator/operatortest"
)

// reviews keeps the SubjectAccessReviews the manager asks for.
type reviews struct {
	next http.RoundTripper
	mu   sync.Mutex
	asks []string // verb resource namespace of each review
}

func (r *reviews) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/subjectaccessreviews") && req.Body != nil {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		// The manager's client speaks protobuf to the API server for built-in kinds.
		obj, _, err := protobuf.NewSerializer(scheme.Scheme, scheme.Scheme).Decode(body, nil, nil)
		if sar, ok := obj.(*authorizationv1.SubjectAccessReview); err == nil && ok && sar.Spec.ResourceAttributes != nil {
			a := sar.Spec.ResourceAttributes
			r.mu.Lock()
			r.asks = append(r.asks, a.Verb+" "+a.Resource+" "+a.Namespace)
			r.mu.Unlock()
		}
	}
	return r.next.RoundTrip(req)
}

// count is how many reviews were asked for, and how many rights one review asks about.
func (r *reviews) count() (asks, rights int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	distinct := map[string]bool{}
	for _, a := range r.asks {
		distinct[a] = true
	}
	return len(r.asks), len(distinct)
}

// TestScheduleReviewsItsAuthorOncePerRun: the schedule acts with its author's rights of today, so it asks about
// them before each run it creates; the passes its runs' progress wakes it for do not ask again (within a
// minute). Without that, each run cost a review per phase it went through.
func TestScheduleReviewsItsAuthorOncePerRun(t *testing.T) {
	g := NewWithT(t)
	rec := &reviews{}
	cfg := rest.CopyConfig(suite.SB.ManagerConfig())
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { rec.next = rt; return rec })
	sandboxtest.RunManager(t, suite.NewManager(t, cfg, suite.Options()))

	ls := suite.NewSchedule("@every 2s")
	log := watchRuns(t, ls)
	suite.CreateSchedule(t, ls)
	g.Eventually(func() int { return finishedRuns(log) }).WithTimeout(60*time.Second).WithPolling(100*time.Millisecond).
		Should(BeNumerically(">=", 3), "three runs finished")
	asks, rights := rec.count()
	created := len(log.names()) // seen after the reviews were counted: a run reviewed is created, or about to be
	g.Expect(rights).To(BeNumerically(">", 0))
	t.Logf("%d runs created, %d SubjectAccessReviews of %d rights", created, asks, rights)
	// One review per run created, one at the schedule's first look, and one a minute at most besides.
	g.Expect(asks).To(BeNumerically("<=", (created+2)*rights), "reviews: %d for %d runs", asks/rights, created)
}

// finishedRuns is how many of the runs seen ended.
func finishedRuns(l *runLog) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, p := range l.seen {
		if p == labsv1.PhaseSucceeded || p == labsv1.PhaseFailed {
			n++
		}
	}
	return n
}
