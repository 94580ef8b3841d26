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
// It stops early on SIGINT/SIGTERM, so in-process callers should use Run instead.
func Main(args []string, stdout io.Writer) int {
	// A pod being deleted gets SIGTERM; stop probing and still write the result the controller is waiting for.
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
	// The controller reads the result from the pod status; failing to write it is worth a word but does not
	// change what the probe saw.
	if cfg.terminationLog != "" {
		if err := os.WriteFile(cfg.terminationLog, line, 0o644); err != nil {
			fmt.Fprintf(stderr, "probe: writing termination log: %v\n", err)
		}
	}
	if r.Matched {
		return ExitMatched
	}
	return ExitNotMatched
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	var expect string
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.opts.URL, "url", "", "URL to request (required)")
	fs.StringVar(&expect, "expect", "", "expected outcome: allowed or denied (required)")
	fs.DurationVar(&cfg.opts.Timeout, "timeout", DefaultTimeout, "timeout of each request")
	fs.DurationVar(&cfg.opts.Settle, "settle", 30*time.Second, "total time to wait until the expectation holds (0: one attempt)")
	fs.IntVar(&cfg.opts.Count, "count", DefaultCount, "requests that must all match once the expectation holds")
	fs.DurationVar(&cfg.opts.Interval, "interval", DefaultInterval, "pause between attempts while the expectation does not hold")
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
	case o.URL == "":
		return errors.New("--url is required")
	case checkURL(o.URL) != nil:
		return fmt.Errorf("--url: %w", checkURL(o.URL))
	case o.Expect == "":
		return errors.New("--expect is required (allowed or denied)")
	case validate(o.Expect) != nil:
		return fmt.Errorf("--expect: %w", validate(o.Expect))
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
