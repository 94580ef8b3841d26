package probe

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMainWritesResultToStdoutAndTerminationLog(t *testing.T) {
	target := startScripted(t, always(actReset)).url() // ztunnel's refusal: a reset
	logPath := filepath.Join(t.TempDir(), "termination-log")
	var stdout bytes.Buffer

	code := Main([]string{"--url", target, "--expect", "denied", "--settle", "0", "--termination-log", logPath}, &stdout)

	if code != ExitMatched {
		t.Errorf("exit status = %d, want %d", code, ExitMatched)
	}
	if lines := strings.Count(stdout.String(), "\n"); lines != 1 || !strings.HasSuffix(stdout.String(), "\n") {
		t.Errorf("stdout = %q, want exactly one JSON line", stdout.String())
	}
	logged, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(logged, stdout.Bytes()) {
		t.Errorf("termination log %q differs from stdout %q", logged, stdout.String())
	}
	var r Result
	if err := json.Unmarshal(logged, &r); err != nil {
		t.Fatalf("termination log is not a JSON Result: %v", err)
	}
	if r.URL != target || r.Observed != "denied" || !r.Matched || r.ExitCode != 56 || r.Reason != "reset" ||
		r.HTTPCode != 0 || r.Attempts != 1 {
		t.Errorf("result = %+v, want one matched reset of %s", r, target)
	}
}

func TestMainNotMatched(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "termination-log")
	var stdout bytes.Buffer
	code := Main([]string{"--url", closedPortURL(t), "--expect", "allowed", "--settle", "0", "--termination-log", logPath}, &stdout)
	if code != ExitNotMatched {
		t.Errorf("exit status = %d, want %d", code, ExitNotMatched)
	}
	if !strings.Contains(stdout.String(), `"matched":false`) {
		t.Errorf("stdout = %q, want an unmatched result", stdout.String())
	}
}

func TestMainTerminationLogFailureKeepsResult(t *testing.T) {
	badPath := filepath.Join(t.TempDir(), "missing-dir", "termination-log")
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"--url", startScripted(t, always(actReset)).url(), "--expect", "denied", "--settle", "0",
		"--termination-log", badPath}, &stdout, &stderr)
	if code != ExitMatched {
		t.Errorf("exit status = %d, want %d despite the unwritable termination log", code, ExitMatched)
	}
	if !strings.Contains(stderr.String(), "termination log") || !strings.Contains(stdout.String(), `"matched":true`) {
		t.Errorf("stderr %q / stdout %q, want the write error reported and the result printed", stderr.String(), stdout.String())
	}
}

func TestMainBadFlags(t *testing.T) {
	url := "http://127.0.0.1:1/get"
	tests := []struct {
		name    string
		args    []string
		wantMsg string
	}{
		{"no flags", nil, "--url is required"},
		{"missing expect", []string{"--url", url}, "--expect is required"},
		{"unknown expectation", []string{"--url", url, "--expect", "maybe"}, "invalid expectation"},
		{"unknown flag", []string{"--url", url, "--expect", "denied", "--frobnicate"}, "frobnicate"},
		{"bad duration", []string{"--url", url, "--expect", "denied", "--timeout", "soon"}, "timeout"},
		{"zero timeout", []string{"--url", url, "--expect", "denied", "--timeout", "0s"}, "--timeout must be positive"},
		{"negative settle", []string{"--url", url, "--expect", "denied", "--settle", "-1s"}, "--settle must not be negative"},
		{"zero count", []string{"--url", url, "--expect", "denied", "--count", "0"}, "--count must be at least 1"},
		{"zero interval", []string{"--url", url, "--expect", "denied", "--interval", "0s"}, "--interval must be positive"},
		{"not http", []string{"--url", "ftp://host/x", "--expect", "denied"}, "scheme"},
		{"no host", []string{"--url", "http:///x", "--expect", "denied"}, "host"},
		{"stray argument", []string{"--url", url, "--expect", "denied", "extra"}, "unexpected arguments"},
		{"observe without url", []string{"--observe"}, "--url is required"},
		{"observe with unknown expectation", []string{"--observe", "--url", url, "--expect", "maybe"}, "invalid expectation"},
		{"observe with unknown flag", []string{"--observe", "--url", url, "--frobnicate"}, "frobnicate"},
		{"observe with negative budget", []string{"--observe", "--url", url, "--settle", "-1s"}, "--settle must not be negative"},
		{"arm without observe", []string{"--arm=/arm.json", "--expect", "allowed"}, "--arm is only for an observer"},
		{"arm with url", []string{"--observe", "--arm=/arm.json", "--url", url}, "--arm and --url exclude each other"},
		{"observe with zero interval", []string{"--observe", "--url", url, "--interval", "0s"}, "--interval must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tc.args, &stdout, &stderr)
			if code != ExitUsage {
				t.Errorf("exit status = %d, want %d", code, ExitUsage)
			}
			if !strings.Contains(stderr.String(), tc.wantMsg) {
				t.Errorf("stderr = %q, want it to mention %q", stderr.String(), tc.wantMsg)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want no result for bad flags", stdout.String())
			}
		})
	}
}

func TestMainBadFlagsThroughMain(t *testing.T) {
	if code := Main([]string{"--expect", "sometimes"}, &bytes.Buffer{}); code != ExitUsage {
		t.Errorf("exit status = %d, want %d", code, ExitUsage)
	}
}

func TestMainHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"-h"}, &stdout, &stderr); code != 0 {
		t.Errorf("exit status = %d, want 0 for help", code)
	}
	if !strings.Contains(stderr.String(), "-expect") {
		t.Errorf("stderr = %q, want the usage", stderr.String())
	}
}

// observeLines reads the command's stdout line by line as it is written, hands each parsed line to onLine,
// and returns everything read once the writer is closed.
func observeLines(t *testing.T, stdout io.Reader, onLine func(Attempt, []Attempt)) ([]byte, []Attempt) {
	t.Helper()
	var raw []byte
	var attempts []Attempt
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		raw = append(raw, append(sc.Bytes(), '\n')...)
		parsed := ParseAttempts(sc.Bytes())
		if len(parsed) != 1 {
			t.Errorf("stdout line %q is not one Attempt", sc.Text())
			continue
		}
		attempts = append(attempts, parsed[0])
		onLine(parsed[0], attempts)
	}
	if err := sc.Err(); err != nil {
		t.Errorf("reading stdout: %v", err)
	}
	return raw, attempts
}

func TestMainObserveStreamsTheTransition(t *testing.T) {
	srv, deny := switchable(t)
	logPath := filepath.Join(t.TempDir(), "termination-log")
	// The bound of the whole run: a transition that never shows ends it, and the checks below fail.
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	code := make(chan int, 1)
	var stderr bytes.Buffer // read after code arrives
	go func() {
		code <- run(ctx, []string{"--observe", "--url", srv.url(), "--interval", "20ms", "--settle", "0",
			"--termination-log", logPath}, pw, &stderr)
		_ = pw.Close()
	}()

	// Each line is read as soon as it is written: the pipe has no buffer.
	raw, attempts := observeLines(t, pr, func(a Attempt, sofar []Attempt) {
		switch {
		case len(sofar) == 3 && !slices.ContainsFunc(sofar, func(a Attempt) bool { return a.Observed != "allowed" }):
			deny.Store(true)
		case a.Observed == "denied" && len(sofar) >= 5:
			cancel() // as SIGTERM does when the controller deletes the pod
		}
	})

	if got := <-code; got != 0 || stderr.Len() > 0 {
		t.Errorf("exit status = %d, stderr %q; want 0 and nothing when stopped", got, stderr.String())
	}
	checkTransition(t, attempts, 20*time.Millisecond)
	if got := ParseAttempts(raw); !slices.Equal(got, attempts) {
		t.Errorf("ParseAttempts(stdout) = %+v, want the attempts as printed %+v", got, attempts)
	}
	checkSummary(t, logPath, len(attempts))
}

func checkSummary(t *testing.T, path string, attempts int) {
	t.Helper()
	logged, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s Summary
	if err := json.Unmarshal(logged, &s); err != nil || s.Attempts != attempts {
		t.Errorf("termination log = %q, want a summary of %d attempts", logged, attempts)
	}
}

func TestMainObserveEndsWithItsBudget(t *testing.T) {
	srv, _ := statusServer(t, always(200))
	logPath := filepath.Join(t.TempDir(), "termination-log")
	// Only a bound: a budget that does not end the observation fails the elapsed check below.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(ctx, []string{"--observe", "--url", srv.URL, "--settle", "300ms", "--interval", "20ms",
		"--termination-log", logPath}, &stdout, &stderr)

	if elapsed := time.Since(start); code != 0 || elapsed > 2*time.Second {
		t.Errorf("exit status = %d after %v (stderr %q), want 0 when the 300ms budget ran out", code, elapsed, stderr.String())
	}
	attempts := ParseAttempts(stdout.Bytes())
	if len(attempts) < 3 || len(attempts) != strings.Count(stdout.String(), "\n") {
		t.Fatalf("stdout = %q, want several lines, each one Attempt", stdout.String())
	}
	for i, a := range attempts {
		if a.Observed != "allowed" || a.HTTPCode != 200 || (i > 0 && !a.Time.After(attempts[i-1].Time)) {
			t.Errorf("attempt %d = %+v, want an allowed 200 after the previous one", i, a)
		}
	}
	checkSummary(t, logPath, len(attempts))
}

func TestMainObserveExitsOnSIGTERM(t *testing.T) {
	srv, _ := statusServer(t, always(200))
	logPath := filepath.Join(t.TempDir(), "termination-log")
	pr, pw := io.Pipe()
	code := make(chan int, 1)
	go func() {
		code <- Main([]string{"--observe", "--url", srv.URL, "--settle", "0", "--termination-log", logPath}, pw)
		_ = pw.Close()
	}()
	signalled := false
	// Main handles SIGTERM before it probes, so once a line came it is safe to send: the test process lives on.
	_, attempts := observeLines(t, pr, func(Attempt, []Attempt) {
		if !signalled {
			signalled = true
			if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
				t.Errorf("sending SIGTERM: %v", err)
			}
		}
	})
	select {
	case got := <-code:
		if got != 0 {
			t.Errorf("exit status = %d, want 0 on SIGTERM", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Main did not return after SIGTERM")
	}
	if len(attempts) == 0 {
		t.Fatal("no attempt printed")
	}
	checkSummary(t, logPath, len(attempts))
}
