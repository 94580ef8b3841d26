package probe

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMainWritesResultToStdoutAndTerminationLog(t *testing.T) {
	target := closedPortURL(t)
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
	if r.URL != target || r.Observed != "denied" || !r.Matched || r.ExitCode != 7 || r.Reason != "refused" ||
		r.HTTPCode != 0 || r.Attempts != 1 {
		t.Errorf("result = %+v, want one matched refusal of %s", r, target)
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
	code := run(t.Context(), []string{"--url", closedPortURL(t), "--expect", "denied", "--settle", "0",
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
