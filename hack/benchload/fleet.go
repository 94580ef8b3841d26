package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

// Fleet mode (`make bench-fleet`, issue 20): for each node count, a sandbox of that many nodes with the target's
// replicas spread over them, the manager binary as its own process, and one Verify run of every lab, then a second
// the first two runs of a LabSchedule with the same template: its first run creates the schedule's warm observers,
// its second is the steady state, which only arms them. Each row: wall time, pods created, API requests by verb (the API server's apiserver_request_total),
// bytes written to LabRuns (apiserver_request_body_size_bytes), the manager's CPU seconds, peak heap and peak RSS.

// fleetRow is one run's figures at one node count.
type fleetRow struct {
	nodes      int
	run        string // "first" or "second"
	phase      labsv1.Phase
	passed     int32
	steps      int
	wall       time.Duration
	podsMade   float64
	byVerb     []count
	writes     []count // POST, PUT, PATCH and DELETE requests by resource
	requests   float64
	runBytes   float64
	cpu        time.Duration
	peakHeap   int64
	peakRSS    int64
	statusSize int
	slowest    string // the run's slowest steps, and when its first step began
	err        error
}

func runFleet(ctx context.Context, c config, b *bench, stdout io.Writer) error {
	var rows []fleetRow
	for _, n := range c.fleet {
		fmt.Fprintf(stdout, "Fleet: %d node(s), %d replicas...\n", n, c.replicas)
		got, err := b.fleetCase(ctx, c, n)
		rows = append(rows, got...)
		if err != nil {
			fmt.Fprintf(stdout, "  %d nodes: %v\n", n, err)
		}
		for _, r := range got {
			fmt.Fprintf(stdout, "  %s run: %s in %s, %.0f pods created, %.0f API requests\n", r.run, r.phase, round(r.wall), r.podsMade, r.requests)
		}
		if ctx.Err() != nil {
			break
		}
	}
	var sb strings.Builder
	w := io.MultiWriter(stdout, &sb)
	fmt.Fprintf(w, "\nbench-fleet %s: a one-off Verify run of every lab, then a LabSchedule's first two; %d replicas, coverage %s, settle %s, sandbox propagation %s; manager as its own process\n\n",
		time.Now().UTC().Format(time.RFC3339), c.replicas, c.coverage, c.settle, c.propagationDelay)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "nodes\trun\tphase\tpassed\twall\tpods created\tAPI requests\tbytes to LabRuns\tstatus size\tmanager CPU\tpeak heap\tpeak RSS\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d/%d\t%s\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\t\n", r.nodes, r.run, r.phase, r.passed, r.steps,
			round(r.wall), r.podsMade, r.requests, kib(int64(r.runBytes)), kib(int64(r.statusSize)), r.cpu.Round(10*time.Millisecond),
			mib(r.peakHeap), mib(r.peakRSS))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	for _, r := range rows {
		verbs := make([]string, 0, len(r.byVerb))
		for _, v := range r.byVerb {
			verbs = append(verbs, fmt.Sprintf("%s %.0f", v.name, v.n))
		}
		fmt.Fprintf(w, "  %d nodes, %s run, API server by verb: %s\n", r.nodes, r.run, strings.Join(verbs, ", "))
		writes := make([]string, 0, len(r.writes))
		for _, c := range r.writes {
			writes = append(writes, fmt.Sprintf("%s %.0f", c.name, c.n))
		}
		fmt.Fprintf(w, "    writes (%.0f): %s\n", total(r.writes), strings.Join(writes, ", "))
		if r.slowest != "" {
			fmt.Fprintf(w, "    time: %s\n", r.slowest)
		}
		if r.err != nil {
			fmt.Fprintf(w, "  %d nodes, %s run: %v\n", r.nodes, r.run, r.err)
		}
	}
	return os.WriteFile(filepath.Join(c.out, "fleet.txt"), []byte(sb.String()), 0o644)
}

// fleetCase starts a sandbox of n nodes and a manager on it, and runs the Verify run twice.
func (b *bench) fleetCase(ctx context.Context, c config, n int) ([]fleetRow, error) {
	startCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	sb, err := sandbox.Start(startCtx, sandbox.Options{PropagationDelay: orNone(c.propagationDelay),
		PodStartLatency: c.podStartLatency, Progress: io.Discard, Nodes: n, Replicas: c.replicas})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("starting the sandbox: %w", err)
	}
	defer func() { _ = sb.Stop() }()
	kubeconfig, err := writeManagerKubeconfig(sb, b.out)
	if err != nil {
		return nil, err
	}
	fb := &bench{sb: sb, bin: b.bin, kubeconfig: kubeconfig, out: b.out, root: b.root}
	m, err := startManager(ctx, b.bin, kubeconfig, filepath.Join(b.out, fmt.Sprintf("manager-fleet-%d.log", n)))
	if err != nil {
		return nil, err
	}
	defer m.stop()
	var rows []fleetRow
	run, err := fb.verifyRun(fmt.Sprintf("fleet-%d", n), c.settle)
	if err != nil {
		return nil, err
	}
	run.Spec.Probe.Coverage = labsv1.Coverage(c.coverage)
	r, err := fb.measure(ctx, m, n, "one-off", func(ctx context.Context, w *watcher) (string, time.Duration, error) {
		start := time.Now()
		if err := fb.sb.Client.Create(ctx, run); err != nil {
			return "", 0, err
		}
		_, e, err := w.waitFor(ctx, func(name string) bool { return name == run.Name })
		return run.Name, e.at.Sub(start), err
	}, c.perRunTimeout+time.Duration(n)*time.Second)
	rows = append(rows, r)
	if err != nil {
		return rows, err
	}
	// A schedule of the same run, due every second but suspended as soon as a run of it is seen (and resumed for
	// the next): its first run, then its second, the steady state. Suspended, it does not wake at every due time
	// while its run goes on, as a schedule due every 15 minutes would not.
	ls := &labsv1.LabSchedule{ObjectMeta: metav1.ObjectMeta{Namespace: run.Namespace, Name: fmt.Sprintf("fleet-%d-schedule", n)},
		Spec: labsv1.LabScheduleSpec{Schedule: "@every 1s", Template: labsv1.LabRunTemplate{Spec: *run.Spec.DeepCopy()}}}
	suspend := func(ctx context.Context, on bool) error {
		patch := client.MergeFrom(ls.DeepCopy())
		ls.Spec.Suspend = ptrTo(on)
		return fb.sb.Client.Patch(ctx, ls, patch)
	}
	seen := map[string]bool{}
	for i, which := range []string{"scheduled 1st", "scheduled 2nd"} {
		r, err := fb.measure(ctx, m, n, which, func(ctx context.Context, w *watcher) (string, time.Duration, error) {
			var err error
			if i == 0 {
				err = fb.sb.Client.Create(ctx, ls)
			} else {
				err = suspend(ctx, false)
			}
			if err != nil {
				return "", 0, err
			}
			mine := func(name string) bool { return strings.HasPrefix(name, ls.Name+"-") && !seen[name] }
			name, created, err := w.waitSeen(ctx, mine)
			if err != nil {
				return "", 0, err
			}
			seen[name] = true
			if err := suspend(ctx, true); err != nil {
				return name, 0, err
			}
			_, e, err := w.waitFor(ctx, func(n string) bool { return n == name })
			if err != nil {
				return name, 0, err
			}
			// From when the watch first saw it (the API server stamps its creation only to the second), to when
			// it was seen to end.
			return name, e.at.Sub(created), nil
		}, c.perRunTimeout+time.Duration(n)*time.Second)
		rows = append(rows, r)
		if err != nil {
			return rows, err
		}
	}
	return rows, nil
}

func ptrTo[T any](v T) *T { return &v }

// measure runs one case (start it and wait for its run to end: which run, and its wall time) and measures it: the
// API server's requests and bytes to LabRuns, the manager's CPU and peak heap and RSS, the run's status.
func (b *bench) measure(ctx context.Context, m *manager, n int, which string,
	run func(context.Context, *watcher) (string, time.Duration, error), timeout time.Duration) (fleetRow, error) {
	r := fleetRow{nodes: n, run: which}
	before, err := b.serverCounts(ctx)
	if err != nil {
		return r, err
	}
	bytesBefore, err := b.labRunBytes(ctx)
	if err != nil {
		return r, err
	}
	cpuBefore := m.cpu()
	heapCtx, stopHeap := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.peakHeap = m.peakHeap(heapCtx) }()
	// A heap profile at the peak of RSS: heap-<nodes>0<1|2|3>-peak.pb.gz (go tool pprof -top -sample_index=inuse_space).
	go func() {
		defer wg.Done()
		m.heapAtPeak(heapCtx, b.out, n*10+map[string]int{"one-off": 1, "scheduled 1st": 2, "scheduled 2nd": 3}[which])
	}()
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	w := newWatcher(runCtx, b.sb.Client, sandbox.DemoNamespace)
	name, wall, waitErr := run(runCtx, w)
	w.stop()
	cancel()
	r.wall = wall
	stopHeap()
	wg.Wait()
	r.cpu = m.cpu() - cpuBefore
	r.peakRSS, _ = m.rss()
	after, err := b.serverCounts(ctx)
	if err != nil {
		return r, err
	}
	bytesAfter, err := b.labRunBytes(ctx)
	if err != nil {
		return r, err
	}
	r.runBytes = bytesAfter - bytesBefore
	r.byVerb, _, _ = serverFigures(before, after)
	r.requests = total(r.byVerb)
	for _, c := range diff(before, after) {
		if verb, _, _ := strings.Cut(c.name, " "); verb == "POST" || verb == "PUT" || verb == "PATCH" || verb == "DELETE" {
			r.writes = append(r.writes, c)
		}
	}
	r.podsMade = after["POST pods"] - before["POST pods"]
	done := &labsv1.LabRun{}
	if name != "" {
		if err := b.sb.Client.Get(ctx, client.ObjectKey{Namespace: sandbox.DemoNamespace, Name: name}, done); err == nil {
			r.phase = done.Status.Phase
			r.passed, r.steps = done.Status.Summary.Passed, len(done.Status.Steps)
			if raw, err := yaml.Marshal(done.Status); err == nil {
				r.statusSize = len(raw)
				// The run's status, for a closer look: status-<nodes>-<run>.yaml.
				_ = os.WriteFile(filepath.Join(b.out, fmt.Sprintf("status-%d-%s.yaml", n, strings.ReplaceAll(which, " ", "-"))), raw, 0o644)
			}
			r.slowest = stepTimes(done)
		}
	}
	r.err = waitErr
	return r, waitErr
}

// verifyRun is the sample LabRun in Verify mode with every lab and the given settle timeout.
func (b *bench) verifyRun(name string, settle time.Duration) (*labsv1.LabRun, error) {
	raw, err := os.ReadFile(filepath.Join(b.root, "config", "samples", "labs_v1alpha1_labrun.yaml"))
	if err != nil {
		return nil, err
	}
	run := &labsv1.LabRun{}
	if err := yaml.UnmarshalStrict(raw, run); err != nil {
		return nil, fmt.Errorf("reading the sample: %w", err)
	}
	run.Name, run.Spec.Mode, run.Spec.Labs = name, labsv1.ModeVerify, nil
	run.Spec.Probe.SettleTimeout = &metav1.Duration{Duration: settle}
	return run, nil
}

// labRunBytes is what clients have written to LabRuns and their status so far (the API server's request body
// sizes).
func (b *bench) labRunBytes(ctx context.Context) (float64, error) {
	raw, err := b.scrape(ctx)
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, s := range parseSamples(raw, "apiserver_request_body_size_bytes_sum") {
		if s.labels["resource"] == "labruns.labs.ambientlab.io" || s.labels["resource"] == "labruns" {
			sum += s.value
		}
	}
	return sum, nil
}

// cpu is the manager process's user and system CPU time so far (/proc/PID/stat, in clock ticks of 10 ms).
func (m *manager) cpu() time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: the fields that count come after it.
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// peakHeap samples the manager's heap in use (go_memstats_heap_inuse_bytes) every 250 ms until ctx ends and
// returns the highest.
func (m *manager) peakHeap(ctx context.Context) int64 {
	var peak int64
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		if v, ok := m.gauge("go_memstats_heap_inuse_bytes"); ok {
			peak = max(peak, int64(v))
		}
		select {
		case <-ctx.Done():
			return peak
		case <-t.C:
		}
	}
}

func kib(b int64) string { return fmt.Sprintf("%.1f KiB", float64(b)/1024) }

// stepTimes says when a run's first step began (from its creation) and which of its steps took longest.
func stepTimes(run *labsv1.LabRun) string {
	type took struct {
		name string
		d    time.Duration
	}
	var all []took
	var first time.Time
	for _, st := range run.Status.Steps {
		if st.StartTime == nil || st.CompletionTime == nil {
			continue
		}
		if first.IsZero() || st.StartTime.Time.Before(first) {
			first = st.StartTime.Time
		}
		all = append(all, took{string(st.Lab) + "/" + st.Name, st.CompletionTime.Sub(st.StartTime.Time)})
	}
	if len(all) == 0 {
		return ""
	}
	sort.Slice(all, func(i, j int) bool { return all[i].d > all[j].d })
	parts := []string{fmt.Sprintf("first step %s into the second the run was created in", round(first.Sub(run.CreationTimestamp.Time)))}
	for _, t := range all[:min(len(all), 6)] {
		parts = append(parts, fmt.Sprintf("%s %s", t.name, round(t.d)))
	}
	return strings.Join(parts, ", ")
}
