package ztunnel

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"
)

const (
	fixturePath     = "testdata/ztunnel-access-logs.txt"
	fixtureJSONPath = "testdata/ztunnel-access-log-line1.json"
)

// fixtureLines returns the log lines of the fixture file, 1-based as the
// fixture's header numbers them (index 0 is unused).
func fixtureLines(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(fixturePath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := []string{""}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 5 {
		t.Fatalf("fixture has %d log lines, want 4", len(lines)-1)
	}
	return lines
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimRight(string(b), "\n")
}

func mustParse(t *testing.T, line string) Entry {
	t.Helper()
	e, err := ParseLine(line)
	if err != nil {
		t.Fatalf("ParseLine(%q): %v", line, err)
	}
	return e
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// sameEntry compares entries with time.Equal, since a parsed and a
// constructed time may carry different locations for the same instant.
func sameEntry(t *testing.T, got, want Entry) {
	t.Helper()
	if !got.Time.Equal(want.Time) {
		t.Errorf("Time = %v, want %v", got.Time, want.Time)
	}
	if got.Level != want.Level || got.Scope != want.Scope || got.Message != want.Message {
		t.Errorf("head = %q/%q/%q, want %q/%q/%q", got.Level, got.Scope, got.Message, want.Level, want.Scope, want.Message)
	}
	if len(got.Fields) != len(want.Fields) {
		t.Errorf("got %d fields %v, want %d %v", len(got.Fields), got.Fields, len(want.Fields), want.Fields)
	}
	for _, kv := range want.Fields {
		k, v := kv.Key, kv.Value
		if got.Fields.Get(k) != v {
			t.Errorf("Fields[%q] = %q, want %q", k, got.Fields.Get(k), v)
		}
	}
}
