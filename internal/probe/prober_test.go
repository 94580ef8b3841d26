package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Script answers for scriptedServer: what to do with the n-th accepted connection (0-based).
const (
	actReset  = 0  // reset at once, as ztunnel does with a denied connection
	actSilent = -1 // accept and never answer
)

// scriptedServer is a raw loopback listener, so tests control exactly what each connection meets.
type scriptedServer struct {
	ln       net.Listener
	accepted atomic.Int32
	// acceptedCh gets each connection's index, for tests that must act after the server saw an attempt.
	acceptedCh chan int
	wg         sync.WaitGroup
	mu         sync.Mutex
	held       []net.Conn
}

// startScripted serves script(n): actReset, actSilent or an HTTP status to answer.
func startScripted(t *testing.T, script func(n int) int) *scriptedServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptedServer{ln: ln, acceptedCh: make(chan int, 1000)}
	s.wg.Add(1)
	go s.acceptLoop(script)
	t.Cleanup(s.close)
	return s
}

func (s *scriptedServer) url() string { return "http://" + s.ln.Addr().String() + "/get" }

func (s *scriptedServer) acceptLoop(script func(n int) int) {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		n := int(s.accepted.Add(1)) - 1
		select {
		case s.acceptedCh <- n:
		default:
		}
		s.wg.Add(1)
		go s.handle(conn, script(n))
	}
}

func (s *scriptedServer) handle(conn net.Conn, act int) {
	defer s.wg.Done()
	switch act {
	case actReset:
		_ = conn.(*net.TCPConn).SetLinger(0)
		_ = conn.Close()
	case actSilent:
		s.mu.Lock()
		s.held = append(s.held, conn)
		s.mu.Unlock()
	default:
		defer conn.Close()
		if _, err := http.ReadRequest(bufio.NewReader(conn)); err != nil {
			return
		}
		_, _ = fmt.Fprintf(conn, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
			act, http.StatusText(act))
	}
}

func (s *scriptedServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for _, c := range s.held {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// statusServer answers every request with code and counts the connections it accepted.
func statusServer(t *testing.T, code func(n int) int) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns, requests atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code(int(requests.Add(1)) - 1))
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func always(code int) func(int) int { return func(int) int { return code } }

// closedPortURL returns a loopback URL on which nothing listens.
func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr + "/get"
}

// want is the part of a Result a test checks.
type want struct {
	observed string
	matched  bool
	httpCode int
	exitCode int
	reason   string
	attempts int
}

func checkResult(t *testing.T, r Result, w want) {
	t.Helper()
	got := want{r.Observed, r.Matched, r.HTTPCode, r.ExitCode, r.Reason, r.Attempts}
	if got != w {
		t.Errorf("result = %+v, want %+v (firstError %q, lastError %q)", got, w, r.FirstError, r.LastError)
	}
	if r.EndTime.Before(r.StartTime) {
		t.Errorf("endTime %v before startTime %v", r.EndTime, r.StartTime)
	}
}

func TestRunOutcomes(t *testing.T) {
	ok, _ := statusServer(t, always(http.StatusOK))
	forbidden, _ := statusServer(t, always(http.StatusForbidden))
	unauthorized, _ := statusServer(t, always(http.StatusUnauthorized))
	broken, _ := statusServer(t, always(http.StatusInternalServerError))
	redirect, _ := statusServer(t, always(http.StatusFound))
	reset := startScripted(t, always(actReset))
	silent := startScripted(t, always(actSilent))

	tests := []struct {
		name   string
		url    string
		expect Expectation
		want   want
	}{
		{"200 is allowed", ok.URL, ExpectAllowed, want{"allowed", true, 200, 0, "http", 1}},
		{"302 is not followed", redirect.URL, ExpectAllowed, want{"allowed", true, 302, 0, "http", 1}},
		{"403 is the workload's answer, not the mesh's", forbidden.URL, ExpectDenied, want{"workload-denied", false, 403, 0, "http", 1}},
		{"401 is the workload's answer, not the mesh's", unauthorized.URL, ExpectDenied, want{"workload-denied", false, 401, 0, "http", 1}},
		{"500 is an error", broken.URL, ExpectDenied, want{"error", false, 500, 0, "http", 1}},
		{"reset is denied", reset.url(), ExpectDenied, want{"denied", true, 0, 56, "reset", 1}},
		{"refused is not the mesh's refusal", closedPortURL(t), ExpectDenied, want{"error", false, 0, 7, "refused", 1}},
		{"silence is a timeout, not the mesh's refusal", silent.url(), ExpectDenied, want{"error", false, 0, 28, "timeout", 1}},
		{"200 when denied expected", ok.URL, ExpectDenied, want{"allowed", false, 200, 0, "http", 1}},
		{"reset when allowed expected", reset.url(), ExpectAllowed, want{"denied", false, 0, 56, "reset", 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			r := Run(t.Context(), Options{URL: tc.url, Expect: tc.expect, Timeout: 200 * time.Millisecond})
			checkResult(t, r, tc.want)
			if r.URL != tc.url || r.Expect != string(tc.expect) {
				t.Errorf("url/expect = %q/%q, want %q/%q", r.URL, r.Expect, tc.url, tc.expect)
			}
			if elapsed := time.Since(start); elapsed > time.Second {
				t.Errorf("single attempt took %v", elapsed)
			}
		})
	}
}

func TestRunDNSFailure(t *testing.T) {
	// .invalid never resolves (RFC 6761), so this needs no network beyond the local resolver.
	r := Run(t.Context(), Options{URL: "http://probe-target.invalid/get", Expect: ExpectDenied, Timeout: time.Second})
	checkResult(t, r, want{"error", false, 0, 6, "dns", 1})
}

func TestRunDNSFailureFromDialer(t *testing.T) {
	dial := func(context.Context, string, string) (net.Conn, error) {
		return nil, &net.DNSError{Err: "no such host", Name: "backend.demo", IsNotFound: true}
	}
	r := Run(t.Context(), Options{URL: "http://backend.demo/get", Expect: ExpectAllowed, DialContext: dial})
	checkResult(t, r, want{"error", false, 0, 6, "dns", 1})
	if !strings.Contains(r.LastError, "no such host") {
		t.Errorf("lastError = %q, want the DNS error", r.LastError)
	}
}

func TestRunSettlesAfterResets(t *testing.T) {
	const resets = 3
	srv := startScripted(t, func(n int) int {
		if n < resets {
			return actReset
		}
		return http.StatusOK
	})
	r := Run(t.Context(), Options{URL: srv.url(), Expect: ExpectAllowed, Timeout: time.Second,
		Settle: 2 * time.Second, Interval: 10 * time.Millisecond})

	checkResult(t, r, want{"allowed", true, 200, 0, "http", resets + 1})
	if got := srv.accepted.Load(); got != resets+1 {
		t.Errorf("server accepted %d connections, want one per attempt (%d)", got, resets+1)
	}
	if !strings.Contains(r.FirstError, "reset") || !strings.Contains(r.LastError, "reset") {
		t.Errorf("firstError %q / lastError %q, want the resets", r.FirstError, r.LastError)
	}
	if r.SettleSeconds <= 0 || r.SettleSeconds >= 2 {
		t.Errorf("settleSeconds = %v, want the time the resets took", r.SettleSeconds)
	}
}

func TestRunCountUsesFreshConnections(t *testing.T) {
	srv, conns := statusServer(t, always(http.StatusOK))
	r := Run(t.Context(), Options{URL: srv.URL, Expect: ExpectAllowed, Count: 3})

	checkResult(t, r, want{"allowed", true, 200, 0, "http", 3})
	if got := conns.Load(); got != 3 {
		t.Errorf("server saw %d connections, want 3", got)
	}
	if r.SettleSeconds >= 1 || r.FirstError != "" || r.LastError != "" {
		t.Errorf("settleSeconds %v, errors %q/%q; want about 0 and none for a first-time match",
			r.SettleSeconds, r.FirstError, r.LastError)
	}
}

func TestRunCountStopsAtFirstMismatch(t *testing.T) {
	srv, _ := statusServer(t, func(n int) int {
		if n == 0 {
			return http.StatusOK
		}
		return http.StatusForbidden
	})
	r := Run(t.Context(), Options{URL: srv.URL, Expect: ExpectAllowed, Count: 3, Settle: time.Second})

	checkResult(t, r, want{"workload-denied", false, 403, 0, "http", 2})
	if !strings.Contains(r.LastError, "403") {
		t.Errorf("lastError = %q, want the unexpected 403", r.LastError)
	}
}

func TestRunNeverSettles(t *testing.T) {
	srv := startScripted(t, always(actReset))
	settle := 300 * time.Millisecond
	r := Run(t.Context(), Options{URL: srv.url(), Expect: ExpectAllowed, Timeout: time.Second,
		Settle: settle, Interval: 20 * time.Millisecond})

	if r.Matched || r.Observed != "denied" || r.Reason != "reset" || r.ExitCode != 56 {
		t.Errorf("result = %+v, want an unmatched reset", r)
	}
	if r.Attempts < 2 || int(srv.accepted.Load()) != r.Attempts {
		t.Errorf("attempts = %d, server accepted %d; want several, one connection each", r.Attempts, srv.accepted.Load())
	}
	if r.FirstError == "" || r.LastError == "" {
		t.Errorf("firstError %q / lastError %q, want both set", r.FirstError, r.LastError)
	}
	if r.SettleSeconds < settle.Seconds() || r.SettleSeconds > 1.5 {
		t.Errorf("settleSeconds = %v, want about the whole budget %v", r.SettleSeconds, settle)
	}
}

func TestRunStopsWhenContextEnds(t *testing.T) {
	srv := startScripted(t, always(actReset))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan Result, 1)
	go func() {
		done <- Run(ctx, Options{URL: srv.url(), Expect: ExpectAllowed, Settle: time.Minute, Interval: time.Second})
	}()

	select {
	case <-srv.acceptedCh:
	case <-time.After(2 * time.Second):
		t.Fatal("no attempt reached the server")
	}
	cancel()
	select {
	case r := <-done:
		if r.Matched {
			t.Errorf("result matched after cancellation: %+v", r)
		}
	case <-time.After(time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestRunUsesDialContext(t *testing.T) {
	srv, conns := statusServer(t, always(http.StatusOK))
	var mu sync.Mutex
	var dialed []string
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, network, srv.Listener.Addr().String())
	}
	// The name does not resolve: only the override can reach the server.
	r := Run(t.Context(), Options{URL: "http://backend.demo.invalid:8000/get", Expect: ExpectAllowed,
		Count: 2, DialContext: dial})

	checkResult(t, r, want{"allowed", true, 200, 0, "http", 2})
	mu.Lock()
	defer mu.Unlock()
	if len(dialed) != 2 || dialed[0] != "backend.demo.invalid:8000" {
		t.Errorf("dialed %q, want backend.demo.invalid:8000 once per attempt", dialed)
	}
	if conns.Load() != 2 {
		t.Errorf("server saw %d connections, want 2", conns.Load())
	}
}

func TestRunInvalidExpectation(t *testing.T) {
	srv, conns := statusServer(t, always(http.StatusOK))
	r := Run(t.Context(), Options{URL: srv.URL, Expect: "maybe"})
	checkResult(t, r, want{"error", false, 0, 1, "error", 0})
	if conns.Load() != 0 || !strings.Contains(r.LastError, "maybe") {
		t.Errorf("connections %d, lastError %q; want no request and a clear error", conns.Load(), r.LastError)
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	wrap := func(err error) error {
		return &url.Error{Op: "Get", URL: "http://x", Err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)}}
	}
	tests := []struct {
		name       string
		err        error
		wantReason string
		wantCode   int
	}{
		{"no error", nil, "http", 0},
		{"reset", wrap(syscall.ECONNRESET), "reset", 56},
		{"broken pipe", wrap(syscall.EPIPE), "reset", 56},
		{"reset as text", errors.New("read: connection reset by peer"), "reset", 56},
		{"refused", wrap(syscall.ECONNREFUSED), "refused", 7},
		{"net timeout", wrap(timeoutErr{}), "timeout", 28},
		{"deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), "timeout", 28},
		{"dns", &url.Error{Op: "Get", URL: "http://x", Err: &net.DNSError{Err: "no such host", IsNotFound: true}}, "dns", 6},
		{"dns timeout", &net.DNSError{Err: "i/o timeout", IsTimeout: true}, "dns", 6},
		{"eof", &url.Error{Op: "Get", URL: "http://x", Err: io.EOF}, "empty-reply", 52},
		{"unexpected eof", fmt.Errorf("body: %w", io.ErrUnexpectedEOF), "empty-reply", 52},
		{"other", errors.New("tls: bad certificate"), "error", 1},
		{"canceled", context.Canceled, "error", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reason, code := Classify(tc.err)
			if reason != tc.wantReason || code != tc.wantCode {
				t.Errorf("Classify(%v) = %q, %d; want %q, %d", tc.err, reason, code, tc.wantReason, tc.wantCode)
			}
		})
	}
}
