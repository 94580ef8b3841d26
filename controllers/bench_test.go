package controllers_test

import (
	"fmt"
	"net/http"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/operator"
)

// writeCounter counts the manager's API writes (anything but GET), Events apart.
type writeCounter struct {
	next           http.RoundTripper
	writes, events *atomic.Int64
}

func (c writeCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet {
		if isEvent(req.URL.Path) {
			c.events.Add(1)
		} else {
			c.writes.Add(1)
		}
	}
	return c.next.RoundTrip(req)
}

func isEvent(path string) bool {
	return len(path) > 7 && path[len(path)-7:] == "/events"
}

// BenchmarkFullRun runs all five labs on the sandbox with no simulated latency (policy changes reach the
// simulated ztunnel at once, pods start at once) and reports wall time, exposure, the manager's API writes and
// the reaction latency between one step's end and the next step's start.
func BenchmarkFullRun(b *testing.B) {
	sb.Dataplane.SetPropagationDelay(0)
	b.Cleanup(func() { sb.Dataplane.SetPropagationDelay(testDelay) })
	var writes, events atomic.Int64
	cfg := sb.ManagerConfig()
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return writeCounter{next: rt, writes: &writes, events: &events}
	})
	o := managerOptions()
	mgr, err := operator.NewManager(cfg, o)
	if err != nil {
		b.Fatal(err)
	}
	stop := runManager(b, mgr)
	defer stop()
	var wall, exposure time.Duration
	var latencies []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		writes.Store(0)
		events.Store(0)
		run := newRun(labsv1.AllLabs...)
		start := time.Now()
		create(b, run)
		done := finished(b, run)
		wall += time.Since(start)
		if done.Status.Phase != labsv1.PhaseSucceeded {
			b.Fatalf("run did not succeed: %s", done.Status.Message)
		}
		exposure += done.Status.Exposure.Duration.Duration
		for j := 1; j < len(done.Status.Steps); j++ {
			prev, cur := done.Status.Steps[j-1], done.Status.Steps[j]
			latencies = append(latencies, cur.StartTime.Sub(prev.CompletionTime.Time))
		}
		b.StopTimer()
		deleteAndWait(b, run)
		b.StartTimer()
	}
	n := float64(b.N)
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	mean := time.Duration(0)
	for _, l := range latencies {
		mean += l
	}
	mean /= time.Duration(len(latencies))
	p95 := latencies[len(latencies)*95/100]
	b.ReportMetric(wall.Seconds()/n, "wall-s/run")
	b.ReportMetric(exposure.Seconds()/n, "exposure-s/run")
	b.ReportMetric(float64(writes.Load()), "api-writes/last-run")
	b.ReportMetric(float64(events.Load()), "events/last-run")
	b.ReportMetric(float64(mean.Microseconds())/1000, "step-latency-mean-ms")
	b.ReportMetric(float64(p95.Microseconds())/1000, "step-latency-p95-ms")
	fmt.Printf("full five-lab run: wall %.2fs, exposure %.2fs, %d API writes (+%d events), step-to-step latency mean %s p95 %s max %s\n",
		wall.Seconds()/n, exposure.Seconds()/n, writes.Load(), events.Load(), mean.Round(time.Microsecond),
		p95.Round(time.Microsecond), latencies[len(latencies)-1].Round(time.Microsecond))
}
