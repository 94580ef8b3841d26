package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"time"
)

// Attempt is one request of an observer: when it started, what it saw. An observer writes one JSON Attempt
// per line to its log, so that whoever reads the log sees when a mesh change reached the data plane.
type Attempt struct {
	// Time is when the attempt started (RFC3339Nano in JSON, UTC).
	Time time.Time `json:"t"`
	// URL is the URL called, set by an observer that calls more than one and by a warm observer.
	URL string `json:"url,omitempty"`
	// Arm is the token of the arm the attempt was made under (a warm observer's run), empty otherwise.
	Arm string `json:"arm,omitempty"`
	// Observed is "allowed", "denied" or "error", the same words as Result.Observed.
	Observed string `json:"observed"`
	// HTTPCode is the HTTP status, 0 when there was no HTTP response (curl's 000).
	HTTPCode int `json:"httpCode"`
	// ExitCode is the exit code curl would have returned, as in Result.
	ExitCode int `json:"exitCode"`
	// Reason is "http", "reset", "refused", "timeout", "dns", "empty-reply" or "error".
	Reason string `json:"reason"`
	// Error is the attempt's error, truncated like Result's errors; empty on an HTTP response.
	Error string `json:"error,omitempty"`
}

// Summary is what an observer reports when its budget ran out: the termination message of its container.
type Summary struct {
	// Attempts counts the attempts emitted.
	Attempts int `json:"attempts"`
}

// Observe probes o.URL on a fresh connection every o.Interval (the pause after each attempt; each attempt
// bounded by o.Timeout) until ctx ends or o.Settle, the total observation budget, runs out (0: until ctx
// ends), calling emit for each attempt in order. o.Expect and o.Count are not used.
//
// No attempt starts after the budget ran out, but one in flight gets its full Timeout. An attempt cut short
// because ctx ended is not emitted: what stopped it was the observer's end, not the mesh.
//
// With more than one URL (o.URL, then o.URLs) it calls them in turn, one per attempt, and each Attempt names
// its URL.
//
// A warm observer (o.LoadArm or o.ArmFile set) ignores o.URL and o.URLs: it loads its Arm before every attempt
// and calls the arm's URLs while it is armed, and makes no attempt while it is idle (see Arm).
func Observe(ctx context.Context, o Options, emit func(Attempt)) {
	o = withDefaults(o)
	if load := armLoader(o); load != nil {
		observeArmed(ctx, o, load, emit)
		return
	}
	urls := append([]string{o.URL}, o.URLs...)
	deadline := time.Now().Add(o.Settle)
	for i := 0; ; i++ {
		one := o
		one.URL = urls[i%len(urls)]
		out := attempt(ctx, one)
		if ctx.Err() != nil {
			return
		}
		a := newAttempt(out)
		if len(urls) > 1 {
			a.URL = one.URL
		}
		emit(a)
		if o.Settle > 0 && time.Until(deadline) <= o.Interval {
			return // the next attempt would start after the budget
		}
		// Timers fire late under load: check the budget again rather than start an attempt past it.
		if !pause(ctx, o.Interval) || (o.Settle > 0 && !time.Now().Before(deadline)) {
			return
		}
	}
}

func newAttempt(out outcome) Attempt {
	return Attempt{
		Time: out.started.UTC(), Observed: out.observed, HTTPCode: out.httpCode, ExitCode: out.exitCode,
		Reason: out.reason,
		// An observer expects nothing, so only an error is worth a text; the HTTP status speaks for itself.
		Error: describe(out, true),
	}
}

// ParseAttempts reads an observer's log, one JSON Attempt per line, in order. Blank lines and lines that are
// not an Attempt (other output, a line cut short by limitBytes) are skipped.
func ParseAttempts(log []byte) []Attempt {
	var attempts []Attempt
	for _, line := range bytes.Split(log, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var a Attempt
		if err := json.Unmarshal(line, &a); err != nil || a.Time.IsZero() || a.Observed == "" {
			continue
		}
		attempts = append(attempts, a)
	}
	return attempts
}
