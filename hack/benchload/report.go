package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// report prints the cases side by side, the API requests of each and the profiles' top entries, and writes the
// same to summary.txt under the output directory.
func (b *bench) report(stdout io.Writer, c config, results []result) error {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "bench-load %s: sandbox propagation %s, pod start %s; manager as its own process (leader election off)\n\n",
		time.Now().Format(time.RFC3339), c.propagationDelay, c.podStartLatency)
	var alone time.Duration
	for _, r := range results {
		if r.n == 1 {
			alone = r.wall
		}
	}
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "runs\tsucceeded\twall\twall/run\tvs one alone\tmean create→end\tmax create→end\tpeak RSS\tRSS at end\tAPI requests\tpods/log reads\t")
	for _, r := range results {
		perRun := r.wall / time.Duration(r.n)
		ratio := "-"
		if alone > 0 {
			ratio = fmt.Sprintf("%.2fx", float64(perRun)/float64(alone))
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%d\t\n", r.n, r.succeeded, round(r.wall), round(perRun), ratio,
			round(r.meanLatency), round(r.maxLatency), mib(r.peakRSS), mib(r.endRSS), total(r.serverByVerb), r.logReads)
	}
	_ = tw.Flush()
	for _, r := range results {
		fmt.Fprintf(&buf, "\n%d run(s): phases %v; load average at the end %s\n", r.n, r.phases, r.load)
		if r.err != nil {
			fmt.Fprintf(&buf, "  NOT COMPLETE: %v\n", r.err)
		}
		fmt.Fprintf(&buf, "  API server, by verb (every client: the manager, the sandbox's node agent, istiod): %s\n", counts(r.serverByVerb))
		fmt.Fprintf(&buf, "  API server, busiest verb and resource: %s\n", counts(r.serverTop))
		fmt.Fprintf(&buf, "  the manager's own requests, by HTTP method: %s\n", counts(r.managerByMethod))
		if len(r.profiles) > 0 {
			b.profileTops(&buf, r)
		}
	}
	if _, err := stdout.Write(buf.Bytes()); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(b.out, "summary.txt"), buf.Bytes(), 0o644)
}

// profileTops summarises the case's profiles with go tool pprof -top, and keeps each full listing beside them.
func (b *bench) profileTops(w io.Writer, r result) {
	var cpu []string
	for _, p := range r.profiles {
		if strings.Contains(filepath.Base(p), "cpu-") {
			cpu = append(cpu, p)
		}
	}
	views := []struct {
		name, index string
		files       []string
	}{
		{"cpu", "", cpu},
		{"heap-peak-inuse", "inuse_space", pick(r.profiles, "-peak.")},
		{"heap-end-alloc", "alloc_space", pick(r.profiles, "-end.")},
	}
	for _, v := range views {
		if len(v.files) == 0 {
			continue
		}
		args := []string{"tool", "pprof", "-top", "-nodecount=25"}
		if v.index != "" {
			args = append(args, "-sample_index="+v.index)
		}
		out, err := exec.Command("go", append(append(args, b.bin), v.files...)...).CombinedOutput()
		path := filepath.Join(b.out, fmt.Sprintf("pprof-%d-%s.txt", r.n, v.name))
		_ = os.WriteFile(path, out, 0o644)
		if err != nil {
			fmt.Fprintf(w, "  %s: go tool pprof: %v\n", v.name, err)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		fmt.Fprintf(w, "  %s (%s, top 15 of %s):\n", v.name, strings.Join(base(v.files), " "), path)
		for _, l := range lines[:min(len(lines), 23)] {
			fmt.Fprintf(w, "    %s\n", l)
		}
	}
}

func pick(files []string, part string) []string {
	return slices.DeleteFunc(slices.Clone(files), func(f string) bool { return !strings.Contains(filepath.Base(f), part) })
}

func base(files []string) []string {
	if len(files) > 3 {
		return []string{fmt.Sprintf("%d files", len(files))}
	}
	out := make([]string, 0, len(files))
	for _, f := range files {
		out = append(out, filepath.Base(f))
	}
	return out
}

func counts(cs []count) string {
	parts := make([]string, 0, len(cs))
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s %.0f", c.name, c.n))
	}
	return strings.Join(parts, ", ")
}

func round(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
