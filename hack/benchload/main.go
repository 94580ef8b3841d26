// Command benchload measures many LabRuns at once (`make bench-load`, issue 18), or with -fleet one Verify run on
// sandboxes of many nodes (`make bench-fleet`, fleet.go): it starts the sandbox, runs the
// manager binary as its own process under its ServiceAccount (leader election off, pprof on), applies N copies
// of the sample LabRun at once for each N of -n (same target, scope Workload, each with its own name), waits for
// all of them and prints how many Succeeded, the wall time, the time per run against one alone, the manager's peak
// RSS (VmHWM) and the API requests, the API server's by verb and the manager's own by HTTP method. For the
// -profile-n case it also saves CPU profiles over the whole case and heap profiles at the peak of RSS and at the
// end, with `go tool pprof -top` summaries, under -out.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/controlplane"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

type config struct {
	counts           []int
	fleet            []int // fleet mode: node counts
	replicas         int
	coverage         string // fleet mode: spec.probe.coverage
	settle           time.Duration
	out              string
	profileN         int
	propagationDelay time.Duration
	podStartLatency  time.Duration
	perRunTimeout    time.Duration
}

func main() {
	c, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchload:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchload:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("benchload", flag.ContinueOnError)
	counts := fs.String("n", "1,30,100", "How many LabRuns to apply at once, one case per number (comma-separated)")
	fleet := fs.String("fleet", "", "Fleet mode instead: one Verify run of every lab (twice) on a sandbox of each of these node counts (comma-separated, e.g. 3,30,100,300)")
	fs.IntVar(&c.replicas, "replicas", 2, "Fleet mode: the target's replicas, spread over the nodes")
	fs.StringVar(&c.coverage, "coverage", string(labsv1.CoveragePairs), "Fleet mode: the runs' spec.probe.coverage (Pairs or Matrix)")
	fs.DurationVar(&c.settle, "settle", 5*time.Second, "Fleet mode: the runs' settle timeout")
	fs.StringVar(&c.out, "out", "bin/bench-load", "Directory for the manager binary, its logs, the profiles and summary.txt")
	fs.IntVar(&c.profileN, "profile-n", 30, "The case whose CPU and heap profiles are saved (0: none)")
	fs.DurationVar(&c.propagationDelay, "propagation-delay", 500*time.Millisecond, "The sandbox's policy propagation delay (the sandbox command's default)")
	fs.DurationVar(&c.podStartLatency, "pod-start-latency", 0, "How long a pod takes to start in the sandbox")
	fs.DurationVar(&c.perRunTimeout, "per-run-timeout", time.Minute, "A case may take 2m plus this per run before it is given up")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var err error
	if c.counts, err = numbers("-n", *counts); err != nil {
		return c, err
	}
	if *fleet != "" {
		if c.fleet, err = numbers("-fleet", *fleet); err != nil {
			return c, err
		}
	}
	return c, nil
}

// numbers reads a comma-separated list of positive numbers.
func numbers(flagName, list string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s: %q is not a positive number", flagName, s)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(ctx context.Context, c config, stdout io.Writer) error {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	if !filepath.IsAbs(c.out) {
		c.out = filepath.Join(root, c.out)
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	bin := filepath.Join(c.out, "manager")
	fmt.Fprintf(stdout, "Building the manager into %s...\n", bin)
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building the manager: %w", err)
	}
	if len(c.fleet) > 0 {
		return runFleet(ctx, c, &bench{bin: bin, out: c.out, root: root}, stdout)
	}
	startCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	sb, err := sandbox.Start(startCtx, sandbox.Options{PropagationDelay: orNone(c.propagationDelay),
		PodStartLatency: c.podStartLatency, Progress: os.Stderr})
	cancel()
	if err != nil {
		return fmt.Errorf("starting the sandbox: %w", err)
	}
	defer func() { _ = sb.Stop() }()
	kubeconfig, err := writeManagerKubeconfig(sb, c.out)
	if err != nil {
		return err
	}
	b := &bench{sb: sb, bin: bin, kubeconfig: kubeconfig, out: c.out, root: root}
	var results []result
	for _, n := range c.counts {
		fmt.Fprintf(stdout, "Case: %d LabRun(s) at once...\n", n)
		r, err := b.runCase(ctx, n, n == c.profileN, 2*time.Minute+time.Duration(n)*c.perRunTimeout)
		if err != nil {
			// Report what was measured; a case that ran out of time says so in its row.
			r.err = err
			fmt.Fprintf(stdout, "  %d runs at once: %v\n", n, err)
		}
		fmt.Fprintf(stdout, "  %d ended (%d Succeeded) in %s, peak RSS %s; at the end RSS %s = file-backed %s + anonymous %s, Go runtime sys %s\n",
			r.ended, r.succeeded, round(r.wall), mib(r.peakRSS), mib(r.endRSS), mib(r.rssFile), mib(r.rssAnon), mib(r.goSys))
		results = append(results, r)
		if ctx.Err() != nil {
			break
		}
	}
	return b.report(stdout, c, results)
}

func orNone(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
