// Package probe checks whether one HTTP request from the calling workload is allowed or denied by the mesh,
// the way a user would with curl, and reports the outcome in curl's words and exit codes.
//
// It runs inside a probe pod as `manager probe`, and in-process in the sandbox node agent, which routes the
// connection through its simulated ztunnel by setting Options.DialContext.
package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// Expectation is the outcome a probe waits for: the request is either let through or refused by the mesh.
type Expectation string

const (
	// ExpectAllowed expects an HTTP response with a status below 400.
	ExpectAllowed Expectation = "allowed"
	// ExpectDenied expects the mesh to refuse: ztunnel resets a connection it denies (curl 56), whether the
	// refusal is STRICT's or an AuthorizationPolicy's (ISTIO-FACTS.md, "What a client sees").
	ExpectDenied Expectation = "denied"
)

// Observed outcomes besides the two expectations.
const (
	// ObservedError is an outcome that is neither a mesh allow nor a mesh deny (DNS failure, HTTP 500, a
	// refused port, a timeout or an empty reply: ztunnel denies by resetting, so a hang or a closed port is not
	// its answer).
	ObservedError = "error"
	// ObservedWorkloadDenied is an HTTP 401 or 403: an answer, so the connection got through the mesh to
	// something that refused the request (the workload, or a waypoint's L7 policy), not ztunnel's L4 refusal.
	ObservedWorkloadDenied = "workload-denied"
)

// Defaults applied by Run when the matching Options field is zero.
const (
	DefaultTimeout  = 5 * time.Second
	DefaultInterval = 100 * time.Millisecond
	DefaultCount    = 1
)

// maxErrorLen keeps error texts short: kubelet truncates a termination message at 4096 bytes, which would cut
// the JSON result in half.
const maxErrorLen = 512

// Options describes one probe.
type Options struct {
	// URL is requested with GET; redirects are not followed.
	URL string
	// Expect is the outcome to wait for.
	Expect Expectation
	// Timeout bounds each request, connection included (default DefaultTimeout).
	Timeout time.Duration
	// Settle is the total budget to wait until the expectation holds; 0 means a single attempt. No attempt
	// starts after the budget ran out, but an attempt in flight gets its full Timeout.
	Settle time.Duration
	// Count is how many requests must all match once the expectation holds (default 1).
	Count int
	// Interval is the pause between attempts while the expectation does not hold yet (default
	// DefaultInterval). It bounds a poll; it is not a propagation sleep.
	Interval time.Duration
	// URLs are further URLs an observer calls in turn, after URL (each attempt logs which one it called): one
	// observer on a node covers every endpoint of the target.
	URLs []string
	// Observe makes the probe an observer (`manager probe --observe`, see Observe): it keeps probing for the
	// whole Settle budget and reports every attempt, with no expectation.
	Observe bool
	// ArmFile, when set, makes an observer a warm one (`--arm=PATH`): its targets are not URL and URLs but the
	// Arm in this JSON file, read before every attempt; a missing file is an idle arm. Pod sets it for a
	// PodRequest with an Arm.
	ArmFile string
	// LoadArm, when set, reads the arm instead of ArmFile (not a flag: the sandbox's node agent sets it to read
	// the ConfigMap the file would come from). An error counts as an idle arm.
	LoadArm func() (Arm, error)
	// DialContext, when set, replaces the network dialer (the sandbox uses it to route through its simulated
	// ztunnel with the pod's identity).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Result is what a probe saw. It is written as one JSON line to stdout and the termination log.
type Result struct {
	// URL is the probed URL.
	URL string `json:"url"`
	// Expect is the awaited outcome: "allowed" or "denied".
	Expect string `json:"expect"`
	// Observed is the outcome of the final attempt: "allowed", "denied" (reset by the mesh), "workload-denied"
	// (HTTP 401/403) or "error".
	Observed string `json:"observed"`
	// Matched is true when Observed equals Expect for the final attempt(s).
	Matched bool `json:"matched"`
	// HTTPCode is the HTTP status of the final attempt, 0 when there was no HTTP response (curl's 000).
	HTTPCode int `json:"httpCode"`
	// ExitCode is the exit code curl would have returned for the final attempt: 0 on an HTTP response, 56
	// reset, 7 refused, 28 timeout, 6 DNS, 52 empty reply, 1 other.
	ExitCode int `json:"exitCode"`
	// Reason is a short word for the final attempt: "http", "reset", "refused", "timeout", "dns",
	// "empty-reply" or "error".
	Reason string `json:"reason"`
	// Attempts counts the requests made, each on a fresh connection.
	Attempts int `json:"attempts"`
	// SettleSeconds is the time from the start until the attempt that first matched began, or the whole
	// run if the expectation never held.
	SettleSeconds float64 `json:"settleSeconds"`
	// FirstError is the first attempt's error, or unexpected HTTP status, if any.
	FirstError string `json:"firstError,omitempty"`
	// LastError is the last attempt's error, or unexpected HTTP status, if any.
	LastError string `json:"lastError,omitempty"`
	// StartTime is when the probe started.
	StartTime time.Time `json:"startTime"`
	// EndTime is when the probe finished.
	EndTime time.Time `json:"endTime"`
}

// outcome is what one attempt saw.
type outcome struct {
	started  time.Time
	observed string
	httpCode int
	exitCode int
	reason   string
	err      error
}

// Run probes o.URL until o.Expect holds or o.Settle runs out, then checks that o.Count requests in a row
// match. It never returns an error: every failure is part of the Result.
func Run(ctx context.Context, o Options) Result {
	o = withDefaults(o)
	r := Result{URL: o.URL, Expect: string(o.Expect), StartTime: time.Now()}
	held := false
	if err := validate(o.Expect); err != nil {
		r.Observed, r.ExitCode, r.Reason = ObservedError, 1, "error"
		r.FirstError, r.LastError = err.Error(), err.Error()
	} else {
		var first outcome
		if first, held = settle(ctx, o, &r); held {
			r.SettleSeconds = first.started.Sub(r.StartTime).Seconds()
			confirm(ctx, o, &r)
		}
	}
	r.EndTime = time.Now()
	if !held {
		r.SettleSeconds = r.EndTime.Sub(r.StartTime).Seconds()
	}
	return r
}

func validate(e Expectation) error {
	if e != ExpectAllowed && e != ExpectDenied {
		return fmt.Errorf("invalid expectation %q: want %q or %q", e, ExpectAllowed, ExpectDenied)
	}
	return nil
}

func withDefaults(o Options) Options {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Count <= 0 {
		o.Count = DefaultCount
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	return o
}

// settle polls until an attempt matches, the budget runs out or ctx ends. It returns the last outcome and
// whether it matched.
func settle(ctx context.Context, o Options, r *Result) (outcome, bool) {
	deadline := r.StartTime.Add(o.Settle)
	for {
		out := attempt(ctx, o)
		matched := out.observed == string(o.Expect)
		r.record(out, matched)
		if matched {
			return out, true
		}
		remaining := time.Until(deadline)
		if remaining <= 0 || !pause(ctx, min(o.Interval, remaining)) {
			return out, false
		}
	}
}

// confirm makes the Count-1 further requests; the first one that does not match decides the result.
func confirm(ctx context.Context, o Options, r *Result) {
	for i := 1; i < o.Count; i++ {
		out := attempt(ctx, o)
		matched := out.observed == string(o.Expect)
		r.record(out, matched)
		if !matched {
			return
		}
	}
}

// pause waits d, and reports false if ctx ended first.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// record makes out the result's current outcome.
func (r *Result) record(out outcome, matched bool) {
	r.Attempts++
	r.Observed, r.Matched = out.observed, matched
	r.HTTPCode, r.ExitCode, r.Reason = out.httpCode, out.exitCode, out.reason
	if text := describe(out, matched); text != "" {
		if r.FirstError == "" {
			r.FirstError = text
		}
		r.LastError = text
	}
}

// describe gives the text worth reporting for an attempt: its error (a reset is the expected denial, but its
// text is still what the user wants to see), or an HTTP status the probe did not expect.
func describe(out outcome, matched bool) string {
	text := ""
	switch {
	case out.err != nil:
		text = out.err.Error()
	case !matched:
		text = fmt.Sprintf("unexpected HTTP status %d %s", out.httpCode, http.StatusText(out.httpCode))
	}
	if len(text) > maxErrorLen {
		text = text[:maxErrorLen] + "..."
	}
	return text
}

// attempt makes one request on a connection of its own, so that every attempt meets the policy in force now
// rather than a connection authorised earlier.
func attempt(ctx context.Context, o Options) outcome {
	out := outcome{started: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	transport := newTransport(o.DialContext)
	defer transport.CloseIdleConnections()
	client := &http.Client{
		Transport: transport,
		// curl without -L reports the redirect itself.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.URL, nil)
	if err != nil {
		return fromError(out, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fromError(out, err)
	}
	_ = resp.Body.Close()
	out.httpCode, out.reason, out.observed = resp.StatusCode, "http", observeStatus(resp.StatusCode)
	return out
}

func newTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	// No proxy from the environment: the probe must leave from this pod, as the workload's own traffic does.
	return &http.Transport{Proxy: nil, DialContext: dial, DisableKeepAlives: true}
}

func fromError(out outcome, err error) outcome {
	out.err = err
	out.reason, out.exitCode = Classify(err)
	out.observed = observeReason(out.reason)
	return out
}

// observeStatus reads an HTTP status: any answer means the mesh let the connection through; a 401/403 is the
// refusal of whatever answered (the workload, or a waypoint), never ztunnel's.
func observeStatus(code int) string {
	switch {
	case code < 400:
		return string(ExpectAllowed)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return ObservedWorkloadDenied
	default:
		return ObservedError
	}
}

// observeReason reads a connection failure the way the mesh means it: ztunnel denies by resetting the
// connection (ISTIO-FACTS.md). A refused port, a hang or an empty reply come from elsewhere (no listener, a
// NetworkPolicy, the workload itself) and are not the mesh's refusal.
func observeReason(reason string) string {
	switch reason {
	case "reset":
		return string(ExpectDenied)
	default:
		return ObservedError
	}
}

// Classify maps an error from net/http to curl's word and exit code: "http" 0 for nil, "dns" 6, "refused" 7,
// "timeout" 28, "empty-reply" 52, "reset" 56, and "error" 1 for anything else.
func Classify(err error) (reason string, exitCode int) {
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case err == nil:
		return "http", 0
	// Before timeouts: a resolver timeout is still a DNS failure to curl.
	case errors.As(err, &dnsErr):
		return "dns", 6
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timeout", 28
	case isReset(err):
		return "reset", 56
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused", 7
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "empty-reply", 52
	default:
		return "error", 1
	}
}

// isReset also accepts a broken pipe, which a send only meets after the peer reset the connection, and the
// bare text, which a custom dialer's connection may return without an errno.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		strings.Contains(err.Error(), "connection reset by peer")
}
