package probe

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Exit statuses of Main.
const (
	ExitMatched    = 0
	ExitNotMatched = 1
	ExitUsage      = 2
)

// DefaultTerminationLog is where kubelet reads a container's termination message from.
const DefaultTerminationLog = "/dev/termination-log"

// Main runs `manager probe`: args are the flags after the command name. It writes one JSON line of Result to
// stdout and to the termination log, and returns ExitMatched, ExitNotMatched or ExitUsage (0 for --help).
// With --observe it writes one JSON line of Attempt per attempt instead, as it happens, and a Summary to the
// termination log, and returns 0 when the budget ran out or it was stopped.
// It stops early on SIGINT/SIGTERM, so in-process callers should use Run or Observe instead.
func Main(args []string, stdout io.Writer) int {
	// A pod being deleted gets SIGTERM; stop probing and still write the result the controller is waiting for.
	// An observer's pod is deleted by the controller when it has seen enough: that is its normal end.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, args, stdout, os.Stderr)
}

// config is Options plus what only the command needs.
type config struct {
	opts           Options
	terminationLog string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "probe: %v\n", err)
		return ExitUsage
	}
	if cfg.opts.Observe {
		return observe(ctx, cfg, stdout, stderr)
	}
	r := Run(ctx, cfg.opts)
	line, err := json.Marshal(r)
	if err != nil {
		fmt.Fprintf(stderr, "probe: encoding result: %v\n", err)
		return ExitNotMatched
	}
	line = append(line, '\n')
	if _, err := stdout.Write(line); err != nil {
		fmt.Fprintf(stderr, "probe: writing result to stdout: %v\n", err)
	}
	writeTerminationLog(cfg.terminationLog, line, stderr)
	if r.Matched {
		return ExitMatched
	}
	return ExitNotMatched
}

// observe streams one JSON Attempt per line to stdout, each written (and flushed) as soon as it is known: the
// controller reads the container log while the observer runs.
func observe(ctx context.Context, cfg config, stdout, stderr io.Writer) int {
	if cfg.opts.ArmFile != "" && cfg.opts.LoadArm == nil {
		cfg.opts.LoadArm = reportingArmFile(cfg.opts.ArmFile, stderr)
	}
	n, failed := 0, false
	Observe(ctx, cfg.opts, func(a Attempt) {
		n++
		line, _ := json.Marshal(a) // an Attempt has no value json cannot encode
		if err := writeLine(stdout, append(line, '\n')); err != nil && !failed {
			failed = true // once is enough: stdout stays broken
			fmt.Fprintf(stderr, "probe: writing attempt to stdout: %v\n", err)
		}
	})
	summary, _ := json.Marshal(Summary{Attempts: n})
	writeTerminationLog(cfg.terminationLog, append(summary, '\n'), stderr)
	return 0
}

// reportingArmFile reads the arm at path, as Observe would, and writes an error that stops the observer from
// reading its arm to stderr: once, not at every attempt, until the file reads well again.
func reportingArmFile(path string, stderr io.Writer) func() (Arm, error) {
	last := ""
	return func() (Arm, error) {
		arm, err := readArmFile(path)
		switch {
		case err == nil:
			last = ""
		case err.Error() != last:
			last = err.Error()
			fmt.Fprintf(stderr, "probe: reading arm (idle until it reads): %v\n", err)
		}
		return arm, err
	}
}

// writeLine writes line in one call and flushes a buffered writer, so that a log reader sees whole lines.
func writeLine(w io.Writer, line []byte) error {
	if _, err := w.Write(line); err != nil {
		return err
	}
	if f, ok := w.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return nil
}

// writeTerminationLog writes what kubelet puts in the container's terminated status. The controller reads the
// result from there; failing to write it is worth a word but does not change what the probe saw.
func writeTerminationLog(path string, line []byte, stderr io.Writer) {
	if path == "" {
		return
	}
	if err := os.WriteFile(path, line, 0o644); err != nil {
		fmt.Fprintf(stderr, "probe: writing termination log: %v\n", err)
	}
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	var expect string
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Func("url", "URL to request (required unless --arm); an observer takes it more than once and calls each in turn", func(v string) error {
		if cfg.opts.URL == "" {
			cfg.opts.URL = v
			return nil
		}
		cfg.opts.URLs = append(cfg.opts.URLs, v)
		return nil
	})
	fs.StringVar(&expect, "expect", "", "expected outcome: allowed or denied (required unless --observe)")
	fs.BoolVar(&cfg.opts.Observe, "observe", false, "keep probing and print every attempt as a JSON line until --settle runs out or SIGTERM")
	fs.DurationVar(&cfg.opts.Timeout, "timeout", DefaultTimeout, "timeout of each request")
	fs.DurationVar(&cfg.opts.Settle, "settle", 30*time.Second, "total time to wait until the expectation holds (0: one attempt); with --observe, the total observation time (0: until stopped)")
	fs.IntVar(&cfg.opts.Count, "count", DefaultCount, "requests that must all match once the expectation holds")
	fs.DurationVar(&cfg.opts.Interval, "interval", DefaultInterval, "pause between attempts while the expectation does not hold; with --observe, after every attempt")
	fs.StringVar(&cfg.opts.ArmFile, "arm", "", "with --observe, a JSON arm file read before every attempt: its URLs replace --url, and while it is missing or expired the observer is idle")
	fs.StringVar(&cfg.terminationLog, "termination-log", DefaultTerminationLog, "file to write the result to (empty: none)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	cfg.opts.Expect = Expectation(expect)
	return cfg, checkConfig(cfg, fs.Args())
}

func checkConfig(cfg config, rest []string) error {
	o := cfg.opts
	switch {
	case len(rest) > 0:
		return fmt.Errorf("unexpected arguments %q", rest)
	case o.ArmFile != "" && !o.Observe:
		return errors.New("--arm is only for an observer (--observe)")
	case o.ArmFile != "" && (o.URL != "" || len(o.URLs) > 0):
		return errors.New("--arm and --url exclude each other: a warm observer calls the URLs of its arm")
	case o.URL == "" && o.ArmFile == "":
		return errors.New("--url is required")
	case o.ArmFile == "" && checkURL(o.URL) != nil:
		return fmt.Errorf("--url: %w", checkURL(o.URL))
	case len(o.URLs) > 0 && !o.Observe:
		return errors.New("--url may be given more than once only with --observe")
	case o.Expect == "" && !o.Observe:
		return errors.New("--expect is required (allowed or denied)")
	case o.Expect != "" && validate(o.Expect) != nil:
		return fmt.Errorf("--expect: %w", validate(o.Expect))
	case badURL(o.URLs) != nil:
		return fmt.Errorf("--url: %w", badURL(o.URLs))
	case o.Timeout <= 0:
		return fmt.Errorf("--timeout must be positive, got %s", o.Timeout)
	case o.Settle < 0:
		return fmt.Errorf("--settle must not be negative, got %s", o.Settle)
	case o.Count < 1:
		return fmt.Errorf("--count must be at least 1, got %d", o.Count)
	case o.Interval <= 0:
		return fmt.Errorf("--interval must be positive, got %s", o.Interval)
	}
	return nil
}

// badURL is the first error of checkURL among urls.
func badURL(urls []string) error {
	for _, u := range urls {
		if err := checkURL(u); err != nil {
			return fmt.Errorf("%s: %w", u, err)
		}
	}
	return nil
}

// checkURL refuses what would only fail later, at every attempt, as an "error" outcome.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme must be http or https, got %q", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("host is missing")
	}
	return nil
}
