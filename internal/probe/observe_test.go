package probe

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// switchable serves 200 until deny is set, then resets every new connection, as ztunnel does once a
// denying policy reached it.
func switchable(t *testing.T) (*scriptedServer, *atomic.Bool) {
	t.Helper()
	var deny atomic.Bool
	srv := startScripted(t, func(int) int {
		if deny.Load() {
			return actReset
		}
		return http.StatusOK
	})
	return srv, &deny
}

// checkTransition asserts that attempts are in time order, paced by at least interval, and show allowed 200s
// followed by denied resets and nothing else.
func checkTransition(t *testing.T, attempts []Attempt, interval time.Duration) {
	t.Helper()
	firstDenied := slices.IndexFunc(attempts, func(a Attempt) bool { return a.Observed == "denied" })
	if firstDenied < 1 {
		t.Fatalf("attempts = %+v, want allowed ones and then denied ones", attempts)
	}
	for i, a := range attempts {
		w := Attempt{Time: a.Time, Observed: "allowed", HTTPCode: 200, Reason: "http"}
		if i >= firstDenied {
			w = Attempt{Time: a.Time, Observed: "denied", ExitCode: 56, Reason: "reset", Error: a.Error}
			if !strings.Contains(a.Error, "reset") {
				t.Errorf("attempt %d error = %q, want the reset", i, a.Error)
			}
		}
		if a != w {
			t.Errorf("attempt %d = %+v, want %+v", i, a, w)
		}
		if a.Time.IsZero() || a.Time.Location() != time.UTC {
			t.Errorf("attempt %d time = %v, want a UTC start time", i, a.Time)
		}
		if i > 0 && a.Time.Sub(attempts[i-1].Time) < interval {
			t.Errorf("attempt %d started %v after the previous one, want at least the interval %v",
				i, a.Time.Sub(attempts[i-1].Time), interval)
		}
	}
}

// awaitConnection waits, with a bound, until the server accepted a connection.
func (s *scriptedServer) awaitConnection(t *testing.T) {
	t.Helper()
	select {
	case <-s.acceptedCh:
	case <-time.After(2 * time.Second):
		t.Fatal("no attempt reached the server")
	}
}

func TestObserveSeesTransition(t *testing.T) {
	srv, deny := switchable(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	const interval = 20 * time.Millisecond
	seen := make(chan Attempt, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Observe(ctx, Options{URL: srv.url(), Timeout: time.Second, Interval: interval}, func(a Attempt) { seen <- a })
	}()

	var attempts []Attempt
	timeout := time.After(15 * time.Second)
	for running := true; running; {
		select {
		case a := <-seen:
			attempts = append(attempts, a)
			switch {
			case len(attempts) == 3 && !slices.ContainsFunc(attempts, func(a Attempt) bool { return a.Observed != "allowed" }):
				deny.Store(true) // the mesh change
			case a.Observed == "denied" && len(attempts) >= 5:
				cancel() // the controller deletes the pod once it has seen enough
			}
		case <-done:
			running = false
		case <-timeout:
			t.Fatal("Observe did not return")
		}
	}
	for len(seen) > 0 { // Observe returned: nothing more comes
		attempts = append(attempts, <-seen)
	}
	checkTransition(t, attempts, interval)
	if got := int(srv.accepted.Load()); got < len(attempts) {
		t.Errorf("server accepted %d connections for %d attempts, want a fresh one each", got, len(attempts))
	}
}

func TestObserveCallsEachURLInTurn(t *testing.T) {
	allowed, _ := statusServer(t, always(http.StatusOK))
	refused := "http://127.0.0.1:1/get" // nothing listens on port 1
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var attempts []Attempt
	Observe(ctx, Options{URL: allowed.URL + "/get", URLs: []string{refused}, Timeout: time.Second, Interval: 5 * time.Millisecond,
		Settle: 10 * time.Second}, func(a Attempt) {
		if attempts = append(attempts, a); len(attempts) == 6 {
			cancel()
		}
	})
	if len(attempts) != 6 {
		t.Fatalf("got %d attempts, want 6", len(attempts))
	}
	for i, a := range attempts {
		want, observed := allowed.URL+"/get", "allowed"
		if i%2 == 1 {
			want, observed = refused, "error" // a closed port is not the mesh's refusal
		}
		if a.URL != want || a.Observed != observed {
			t.Errorf("attempt %d called %q and saw %s, want %q and %s", i, a.URL, a.Observed, want, observed)
		}
	}
	if _, err := ParseArgs([]string{"--url=http://a/", "--url=http://b/", "--expect=allowed"}); err == nil {
		t.Error("a one-shot probe accepted two URLs")
	}
}

func TestObserveStopsWhenBudgetRunsOut(t *testing.T) {
	srv, conns := statusServer(t, always(http.StatusOK))
	const budget, interval = 300 * time.Millisecond, 20 * time.Millisecond
	// Only a bound: a budget that does not end the observation fails the elapsed check below.
	ctx, cancel := context.WithTimeout(t.Context(), budget+5*time.Second)
	defer cancel()
	var attempts []Attempt
	start := time.Now()
	Observe(ctx, Options{URL: srv.URL, Settle: budget, Interval: interval}, func(a Attempt) {
		attempts = append(attempts, a)
	})
	elapsed := time.Since(start)

	if elapsed < budget-interval || elapsed > budget+time.Second {
		t.Errorf("Observe returned after %v, want about the budget %v", elapsed, budget)
	}
	if len(attempts) < 3 || int(conns.Load()) != len(attempts) {
		t.Fatalf("%d attempts, %d connections; want several, one connection each", len(attempts), conns.Load())
	}
	for i, a := range attempts {
		if a.Observed != "allowed" || a.HTTPCode != 200 || a.Error != "" {
			t.Errorf("attempt %d = %+v, want an allowed 200", i, a)
		}
		// Observe's budget starts before its first attempt, so no attempt may start a budget after that one.
		if a.Time.Before(start) || !a.Time.Before(attempts[0].Time.Add(budget)) {
			t.Errorf("attempt %d started at %v, want within the budget from %v", i, a.Time, attempts[0].Time)
		}
	}
}

func TestObserveDoesNotEmitAnAttemptCutByCancel(t *testing.T) {
	srv := startScripted(t, always(actSilent))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var emitted atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		Observe(ctx, Options{URL: srv.url(), Timeout: time.Minute}, func(Attempt) { emitted.Add(1) })
	}()
	srv.awaitConnection(t)
	cancel()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Observe did not return after its context ended")
	}
	if n := emitted.Load(); n != 0 {
		t.Errorf("emitted %d attempts, want none: the only one was cut short by the observer's end", n)
	}
}

func TestObserveOutcomes(t *testing.T) {
	forbidden, _ := statusServer(t, always(http.StatusForbidden))
	tests := []struct {
		name string
		url  string
		want Attempt
	}{
		{"403, the workload's answer", forbidden.URL, Attempt{Observed: "workload-denied", HTTPCode: 403, Reason: "http"}},
		{"refused, not the mesh's", closedPortURL(t), Attempt{Observed: "error", ExitCode: 7, Reason: "refused"}},
		{"dns", "http://probe-target.invalid/get", Attempt{Observed: "error", ExitCode: 6, Reason: "dns"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []Attempt
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			// A budget shorter than the interval: exactly one attempt.
			Observe(ctx, Options{URL: tc.url, Timeout: time.Second, Settle: time.Millisecond, Interval: time.Second},
				func(a Attempt) { got = append(got, a) })
			if len(got) != 1 {
				t.Fatalf("attempts = %+v, want one", got)
			}
			a := got[0]
			if (a.Error != "") != (tc.want.HTTPCode == 0) {
				t.Errorf("error = %q, want one exactly when there was no HTTP response", a.Error)
			}
			a.Time, a.Error = time.Time{}, ""
			if a != tc.want {
				t.Errorf("attempt = %+v, want %+v", a, tc.want)
			}
		})
	}
}

func TestAttemptJSON(t *testing.T) {
	at := time.Date(2025, 3, 1, 10, 0, 0, 123456789, time.UTC)
	line, err := json.Marshal(Attempt{Time: at, Observed: "allowed", HTTPCode: 200, Reason: "http"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"t":"2025-03-01T10:00:00.123456789Z","observed":"allowed","httpCode":200,"exitCode":0,"reason":"http"}`
	if string(line) != want {
		t.Errorf("JSON = %s, want %s", line, want)
	}
}

func TestParseAttempts(t *testing.T) {
	t1 := time.Date(2025, 3, 1, 10, 0, 0, 1, time.UTC)
	t2 := t1.Add(100 * time.Millisecond)
	a1 := Attempt{Time: t1, Observed: "allowed", HTTPCode: 200, Reason: "http"}
	a2 := Attempt{Time: t2, Observed: "denied", ExitCode: 56, Reason: "reset", Error: "read: connection reset by peer"}
	line := func(a Attempt) string {
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		name string
		log  string
		want []Attempt
	}{
		{"empty", "", nil},
		{"in order", line(a1) + "\n" + line(a2) + "\n", []Attempt{a1, a2}},
		{"no final newline", line(a1) + "\n" + line(a2), []Attempt{a1, a2}},
		{"blank lines and CRLF", "\n" + line(a1) + "\r\n\n  \n" + line(a2) + "\r\n", []Attempt{a1, a2}},
		{"other output", "probe: starting\n" + line(a1) + "\n[1,2]\nnull\n\"text\"\n" + line(a2) + "\n", []Attempt{a1, a2}},
		{"a one-shot Result is not an attempt", `{"url":"http://x","observed":"allowed","attempts":1}` + "\n" + line(a1), []Attempt{a1}},
		{"a Summary is not an attempt", line(a1) + "\n" + `{"attempts":1}` + "\n", []Attempt{a1}},
		{"line cut by limitBytes", line(a1) + "\n" + line(a2)[:30], []Attempt{a1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseAttempts([]byte(tc.log)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseAttempts = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestObserverArgsRoundTrip(t *testing.T) {
	const url = "http://backend.demo.svc:80/get"
	tests := []struct {
		name     string
		in, want Options
	}{
		{"full",
			Options{Observe: true, URL: url, Expect: ExpectDenied, Timeout: 2 * time.Second, Settle: 90 * time.Second, Interval: 250 * time.Millisecond},
			Options{Observe: true, URL: url, Expect: ExpectDenied, Timeout: 2 * time.Second, Settle: 90 * time.Second, Interval: 250 * time.Millisecond, Count: DefaultCount}},
		{"several URLs",
			Options{Observe: true, URL: url, URLs: []string{"http://10.244.2.2:80/get", "http://10.244.3.2:80/get"}, Timeout: time.Second, Settle: time.Minute, Interval: 50 * time.Millisecond},
			Options{Observe: true, URL: url, URLs: []string{"http://10.244.2.2:80/get", "http://10.244.3.2:80/get"}, Timeout: time.Second, Settle: time.Minute, Interval: 50 * time.Millisecond, Count: DefaultCount}},
		{"no expectation, default interval",
			Options{Observe: true, URL: url, Timeout: time.Second, Settle: time.Minute},
			Options{Observe: true, URL: url, Timeout: time.Second, Settle: time.Minute, Interval: DefaultInterval, Count: DefaultCount}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := Args(tc.in)
			if args[0] != "probe" || !slices.Contains(args, "--observe") {
				t.Errorf("args = %q, want `probe --observe ...`", args)
			}
			got, err := ParseArgs(args)
			if err != nil {
				t.Fatalf("ParseArgs(%q): %v", args, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseArgs(Args(o)) = %+v, want %+v", got, tc.want)
			}
		})
	}
	if oneShot := Args(Options{URL: url, Expect: ExpectAllowed}); slices.Contains(oneShot, "--observe") {
		t.Errorf("one-shot args %q carry --observe", oneShot)
	}
}

func TestObserverPod(t *testing.T) {
	o := Options{Observe: true, URL: "http://backend.demo.svc:80/get", Timeout: 2 * time.Second, Settle: 2 * time.Minute}
	pod := Pod(PodRequest{Name: "observer", Namespace: "demo", ServiceAccount: "frontend", Image: "img", Options: o})
	oneShot := Pod(PodRequest{Name: "observer", Namespace: "demo", ServiceAccount: "frontend", Image: "img",
		Options: Options{URL: o.URL, Expect: ExpectAllowed, Timeout: o.Timeout, Settle: o.Settle}})

	c := pod.Spec.Containers
	if len(c) != 1 || !reflect.DeepEqual(c[0].Command, []string{"/manager"}) || c[0].Args[0] != "probe" {
		t.Fatalf("containers = %+v, want one running /manager probe", c)
	}
	if want := int64((o.Settle + 2*o.Timeout + time.Minute) / time.Second); *pod.Spec.ActiveDeadlineSeconds != want {
		t.Errorf("activeDeadlineSeconds = %d, want the budget plus grace, %d", *pod.Spec.ActiveDeadlineSeconds, want)
	}
	// Same shape as a one-shot probe pod: only the arguments differ.
	oneShot.Spec.Containers[0].Args = c[0].Args
	if !reflect.DeepEqual(pod, oneShot) {
		t.Errorf("observer pod differs from a one-shot probe pod beyond its args:\n%+v\n%+v", pod, oneShot)
	}
}
