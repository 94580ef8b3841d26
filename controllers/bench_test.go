package controllers_test

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/operator"
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

// profile is a setting of the sandbox a full run is measured in.
type profile struct {
	name                  string
	podStart, propagation time.Duration
}

// profiles: instant (pods start and policy reaches ztunnel as soon as istiod has it) and cluster-like (2 s pod
// start, 500 ms propagation, issue 10's measurement).
var profiles = []profile{{name: "instant"}, {name: "cluster-like", podStart: 2 * time.Second, propagation: 500 * time.Millisecond}}

// figures are one profile's averages over its runs.
type figures struct {
	wall, exposure                time.Duration
	podSeconds                    float64
	pods                          int32
	writes, events                int64
	settle                        map[string]time.Duration
	settleOrder                   []string
	latencyMean, latencyP95, lmax time.Duration
}

// BenchmarkFullRun runs all five labs on the sandbox in each profile and prints the figures side by side: wall
// time, exposure (seconds, pods, pod-seconds), the manager's API writes, each probe step's settle (for a step
// that observes a change, the time from the change to the first attempt that saw it), and the crash exposure: a
// leader killed while the mesh is weakened, until a warm standby has it STRICT again.
func BenchmarkFullRun(b *testing.B) {
	results := map[string]figures{}
	for _, p := range profiles {
		b.Run(p.name, func(b *testing.B) { results[p.name] = fullRuns(b, p) })
	}
	if len(results) != len(profiles) {
		return
	}
	row := func(name string, f func(figures) string) {
		fmt.Printf("%-40s", name)
		for _, p := range profiles {
			fmt.Printf(" %14s", f(results[p.name]))
		}
		fmt.Println()
	}
	fmt.Println()
	fmt.Printf("%-40s", "full five-lab run (mean per run)")
	for _, p := range profiles {
		fmt.Printf(" %14s", p.name)
	}
	fmt.Println()
	row("wall", func(f figures) string { return f.wall.Round(time.Millisecond).String() })
	row("exposure", func(f figures) string { return f.exposure.Round(time.Millisecond).String() })
	row("pods weakened (at most at once)", func(f figures) string { return fmt.Sprint(f.pods) })
	row("exposure pod-seconds", func(f figures) string { return fmt.Sprintf("%.2f", f.podSeconds) })
	row("API writes (+ events), last run", func(f figures) string { return fmt.Sprintf("%d (+%d)", f.writes, f.events) })
	row("step-to-step latency mean / p95", func(f figures) string {
		return f.latencyMean.Round(time.Millisecond).String() + " / " + f.latencyP95.Round(time.Millisecond).String()
	})
	for _, step := range results[profiles[0].name].settleOrder {
		row("settle "+step, func(f figures) string { return f.settle[step].Round(time.Millisecond).String() })
	}
	// The crash exposure depends on leader election, not on the profile: the manager's default timings.
	var crash time.Duration
	b.Run("crash", func(b *testing.B) {
		crash = 0 // the benchmark calls this again with a larger b.N
		for i := 0; i < b.N; i++ {
			crash += measureCrashExposure(b, 6*time.Second, 4*time.Second, time.Second)
		}
		crash /= time.Duration(b.N)
	})
	fmt.Printf("%-40s %14s  (leader killed while weakened → STRICT again; lease 6s/4s/1s, warm standby)\n",
		"crash exposure", crash.Round(time.Millisecond))
}

// fullRuns measures b.N full runs in profile p.
func fullRuns(b *testing.B, p profile) figures {
	sb.Dataplane.SetPropagationDelay(p.propagation)
	sb.SetPodStartLatency(p.podStart)
	b.Cleanup(func() {
		sb.Dataplane.SetPropagationDelay(testDelay)
		sb.SetPodStartLatency(0)
	})
	var writes, events atomic.Int64
	cfg := sb.ManagerConfig()
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return writeCounter{next: rt, writes: &writes, events: &events}
	})
	mgr, err := operator.NewManager(cfg, managerOptions())
	if err != nil {
		b.Fatal(err)
	}
	stop := runManager(b, mgr)
	defer stop()
	f := figures{settle: map[string]time.Duration{}}
	var latencies []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		writes.Store(0)
		events.Store(0)
		run := newRun(labsv1.AllLabs...)
		start := time.Now()
		create(b, run)
		done := finished(b, run)
		f.wall += time.Since(start)
		if done.Status.Phase != labsv1.PhaseSucceeded {
			b.Fatalf("run did not succeed: %s", notPassed(done))
		}
		x := done.Status.Exposure
		f.exposure += x.Duration.Duration
		ps, _ := strconv.ParseFloat(x.PodSeconds, 64)
		f.podSeconds += ps
		f.pods = max(f.pods, x.Pods)
		for j, st := range done.Status.Steps {
			if j > 0 {
				latencies = append(latencies, st.StartTime.Sub(done.Status.Steps[j-1].CompletionTime.Time))
			}
			if st.Settle != nil {
				id := string(st.Lab) + "/" + st.Name
				if _, seen := f.settle[id]; !seen {
					f.settleOrder = append(f.settleOrder, id)
				}
				f.settle[id] += st.Settle.Duration
			}
		}
		b.StopTimer()
		deleteAndWait(b, run)
		b.StartTimer()
	}
	n := time.Duration(b.N)
	f.wall, f.exposure, f.podSeconds = f.wall/n, f.exposure/n, f.podSeconds/float64(b.N)
	for k := range f.settle {
		f.settle[k] /= n
	}
	f.writes, f.events = writes.Load(), events.Load()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	for _, l := range latencies {
		f.latencyMean += l
	}
	f.latencyMean /= time.Duration(len(latencies))
	f.latencyP95, f.lmax = latencies[len(latencies)*95/100], latencies[len(latencies)-1]
	b.ReportMetric(f.wall.Seconds(), "wall-s/run")
	b.ReportMetric(f.exposure.Seconds(), "exposure-s/run")
	b.ReportMetric(f.podSeconds, "exposure-pod-s/run")
	b.ReportMetric(float64(f.writes), "api-writes/last-run")
	return f
}
