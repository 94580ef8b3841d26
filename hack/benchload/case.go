package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

type bench struct {
	sb                         *sandbox.Sandbox
	bin, kubeconfig, out, root string
}

// result is one case's figures.
type result struct {
	n, ended, succeeded     int
	err                     error  // the case did not complete: ran out of time, or failed to measure
	load                    string // /proc/loadavg when the case ended: the machine is shared
	phases                  map[labsv1.Phase]int
	wall                    time.Duration
	meanLatency, maxLatency time.Duration // from each run's create to its end
	peakRSS, endRSS         int64         // bytes
	rssFile, rssAnon, goSys int64         // at the end: file-backed and anonymous RSS, the Go runtime's sys bytes
	serverByVerb, serverTop []count       // the API server's requests during the case (everyone's)
	managerByMethod         []count       // the manager's own, from its client metrics
	logReads                int64         // get pods/log at the API server: the manager's log reads
	profiles                []string      // the files go tool pprof summarised
}

// runCase starts a fresh manager (its VmHWM is then this case's), applies n copies of the sample at once, waits
// for all of them to end, and deletes them before the manager stops (their finalizers are its).
func (b *bench) runCase(ctx context.Context, n int, profile bool, timeout time.Duration) (result, error) {
	r := result{n: n, phases: map[labsv1.Phase]int{}}
	m, err := startManager(ctx, b.bin, b.kubeconfig, filepath.Join(b.out, fmt.Sprintf("manager-%d.log", n)))
	if err != nil {
		return r, err
	}
	defer m.stop()
	before, err := b.serverCounts(ctx)
	if err != nil {
		return r, err
	}
	managerBefore, err := m.clientCounts()
	if err != nil {
		return r, err
	}
	caseCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if profile {
		wg.Add(1)
		go func() { defer wg.Done(); r.profiles = m.profile(caseCtx, b.out, n) }()
	}
	runs, err := b.sample(n)
	if err != nil {
		cancel()
		return r, err
	}
	start := time.Now()
	ended, waitErr := b.applyAndWait(ctx, runs, timeout)
	r.wall = time.Since(start)
	cancel()
	wg.Wait()
	r.summarise(runs, ended, start)
	r.peakRSS, r.endRSS = m.rss()
	r.rssFile, r.rssAnon, r.goSys = m.memoryParts()
	if raw, err := os.ReadFile("/proc/loadavg"); err == nil {
		r.load = strings.Join(strings.Fields(string(raw))[:3], " ")
	}
	after, err := b.serverCounts(ctx)
	if err != nil {
		return r, err
	}
	managerAfter, err := m.clientCounts()
	if err != nil {
		return r, err
	}
	r.serverByVerb, r.serverTop, r.logReads = serverFigures(before, after)
	r.managerByMethod = diff(managerBefore, managerAfter)
	if err := b.saveRuns(ctx, n); err != nil {
		return r, err
	}
	if err := b.deleteRuns(ctx, runs); err != nil {
		return r, err
	}
	return r, waitErr
}

// sample is n copies of config/samples' LabRun, each with its own name.
func (b *bench) sample(n int) ([]*labsv1.LabRun, error) {
	raw, err := os.ReadFile(filepath.Join(b.root, "config", "samples", "labs_v1alpha1_labrun.yaml"))
	if err != nil {
		return nil, err
	}
	runs := make([]*labsv1.LabRun, 0, n)
	for i := range n {
		run := &labsv1.LabRun{}
		if err := yaml.UnmarshalStrict(raw, run); err != nil {
			return nil, fmt.Errorf("reading the sample: %w", err)
		}
		run.Name = fmt.Sprintf("load-%d-%03d", n, i)
		runs = append(runs, run)
	}
	return runs, nil
}

// applyAndWait creates the runs at once (a few at a time, as many teams pressing "run" would) and returns when
// each ended, keyed by name, as seen by a watch.
func (b *bench) applyAndWait(ctx context.Context, runs []*labsv1.LabRun, timeout time.Duration) (map[string]end, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	w := newWatcher(ctx, b.sb.Client, sandbox.DemoNamespace)
	defer w.stop()
	sem := make(chan struct{}, 8)
	errs := make(chan error, len(runs))
	for _, run := range runs {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- b.sb.Client.Create(ctx, run)
		}()
	}
	for range runs {
		if err := <-errs; err != nil {
			return nil, fmt.Errorf("creating a LabRun: %w", err)
		}
	}
	names := make([]string, 0, len(runs))
	for _, run := range runs {
		names = append(names, run.Name)
	}
	return w.waitAll(ctx, names)
}

// summarise counts the phases and the latencies of the runs that ended.
func (r *result) summarise(runs []*labsv1.LabRun, ended map[string]end, start time.Time) {
	var total time.Duration
	for _, run := range runs {
		phase := labsv1.Phase("(not ended)")
		if e, ok := ended[run.Name]; ok {
			phase = e.phase
			l := e.at.Sub(start)
			total += l
			r.maxLatency = max(r.maxLatency, l)
		}
		r.phases[phase]++
	}
	r.succeeded, r.ended = r.phases[labsv1.PhaseSucceeded], len(ended)
	if len(ended) > 0 {
		r.meanLatency = total / time.Duration(len(ended))
	}
}

// saveRuns writes the case's LabRuns, status included, to runs-N.yaml under -out: each step's start and
// completion times show where a case's time went (who held the lock when, and the gaps between).
func (b *bench) saveRuns(ctx context.Context, n int) error {
	list := &labsv1.LabRunList{}
	if err := b.sb.Client.List(ctx, list, client.InNamespace(sandbox.DemoNamespace)); err != nil {
		return err
	}
	raw, err := yaml.Marshal(list)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(b.out, fmt.Sprintf("runs-%d.yaml", n)), raw, 0o644)
}

// deleteRuns deletes the runs and waits until they are gone.
func (b *bench) deleteRuns(ctx context.Context, runs []*labsv1.LabRun) error {
	for _, run := range runs {
		if err := b.sb.Client.Delete(ctx, run); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	return wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		list := &labsv1.LabRunList{}
		if err := b.sb.Client.List(ctx, list, client.InNamespace(sandbox.DemoNamespace)); err != nil {
			return false, nil
		}
		return len(list.Items) == 0, nil
	})
}
