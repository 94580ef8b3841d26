package kubelet

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2021, 5, 1, 10, 0, 0, 0, time.UTC)

// newTestStore holds ns/p/c with lines "one".."four" one second apart from t0.
func newTestStore() *LogStore {
	s := NewLogStore()
	for i, text := range []string{"one", "two", "three", "four"} {
		s.AppendAt("ns", "p", "c", t0.Add(time.Duration(i)*time.Second), text)
	}
	return s
}

func newTestHandler(t *testing.T, store *LogStore) *httptest.Server {
	t.Helper()
	done := make(chan struct{})
	srv := httptest.NewServer(newMux(store, done))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func TestContainerLogsQuery(t *testing.T) {
	srv := newTestHandler(t, newTestStore())
	tests := []struct{ name, query, want string }{
		{"all", "", "one\ntwo\nthree\nfour\n"},
		{"tailLines", "tailLines=2", "three\nfour\n"},
		{"tailLines zero", "tailLines=0", ""},
		{"tailLines beyond", "tailLines=10", "one\ntwo\nthree\nfour\n"},
		{"sinceTime inclusive", "sinceTime=2021-05-01T10:00:02Z", "three\nfour\n"},
		{"sinceTime future", "sinceTime=2030-01-01T00:00:00Z", ""},
		{"tail before since", "tailLines=3&sinceTime=2021-05-01T10:00:03Z", "four\n"},
		{"timestamps", "tailLines=1&timestamps=true", "2021-05-01T10:00:03Z four\n"},
		{"limitBytes cuts", "limitBytes=6", "one\ntw"},
		{"limitBytes exact", "limitBytes=8", "one\ntwo\n"},
		{"limitBytes counts timestamps", "timestamps=true&limitBytes=22", "2021-05-01T10:00:00Z o"},
		{"sinceSeconds long ago", "sinceSeconds=1", ""},
		{"follow stops at limit", "follow=true&limitBytes=4", "one\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, h := get(t, srv.URL+"/containerLogs/ns/p/c?"+tt.query)
			if code != http.StatusOK || body != tt.want {
				t.Errorf("got %d %q, want 200 %q", code, body, tt.want)
			}
			if ct := h.Get("Content-Type"); ct != "text/plain" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestContainerLogsSinceSecondsRecent(t *testing.T) {
	store := NewLogStore()
	store.AppendAt("ns", "p", "c", time.Now().Add(-time.Hour), "old")
	store.Append("ns", "p", "c", "new")
	srv := newTestHandler(t, store)
	if _, body, _ := get(t, srv.URL+"/containerLogs/ns/p/c?sinceSeconds=60"); body != "new\n" {
		t.Errorf("got %q", body)
	}
}

func TestContainerLogsErrors(t *testing.T) {
	store := newTestStore()
	store.AddContainer("ns", "quiet", "c")
	srv := newTestHandler(t, store)
	tests := []struct {
		name, path string
		code       int
		msg        string
	}{
		{"unknown pod", "/containerLogs/ns/nope/c", 404, `pod "nope" does not exist`},
		{"unknown namespace", "/containerLogs/other/p/c", 404, `pod "p" does not exist`},
		{"unknown container", "/containerLogs/ns/p/nope", 404, `container "nope" not found in pod "p"`},
		{"previous", "/containerLogs/ns/p/c?previous=true", 400, `previous terminated container "c" in pod "p" not found`},
		{"negative tail", "/containerLogs/ns/p/c?tailLines=-1", 400, "tailLines: Invalid value: -1"},
		{"zero limit", "/containerLogs/ns/p/c?limitBytes=0", 400, "limitBytes: Invalid value: 0"},
		{"zero sinceSeconds", "/containerLogs/ns/p/c?sinceSeconds=0", 400, "sinceSeconds: Invalid value: 0"},
		{"both since", "/containerLogs/ns/p/c?sinceSeconds=5&sinceTime=2021-05-01T10:00:00Z", 400, "at most one of"},
		{"bad sinceTime", "/containerLogs/ns/p/c?sinceTime=yesterday", 400, "sinceTime: Invalid value"},
		{"bad bool", "/containerLogs/ns/p/c?follow=maybe", 400, "follow: Invalid value"},
		{"bad int", "/containerLogs/ns/p/c?tailLines=x", 400, "tailLines: Invalid value"},
		{"quiet container", "/containerLogs/ns/quiet/c", 200, ""},
		{"healthz", "/healthz", 200, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, _ := get(t, srv.URL+tt.path)
			if code != tt.code || !strings.Contains(body, tt.msg) || (tt.msg == "" && body != "") {
				t.Errorf("got %d %q, want %d containing %q", code, body, tt.code, tt.msg)
			}
		})
	}
}

func TestContainerLogsMethodNotAllowed(t *testing.T) {
	srv := newTestHandler(t, newTestStore())
	resp, err := http.Post(srv.URL+"/containerLogs/ns/p/c", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST got %d", resp.StatusCode)
	}
}

// openFollow starts a follow request and returns a line reader; the request ends with the test.
func openFollow(t *testing.T, url string) (*bufio.Reader, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	stop := func() { cancel(); resp.Body.Close() }
	t.Cleanup(stop)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("follow got %d", resp.StatusCode)
	}
	return bufio.NewReader(resp.Body), stop
}

func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading followed line: %v (got %q)", err, line)
	}
	return line
}

func TestContainerLogsFollow(t *testing.T) {
	store := newTestStore()
	srv := newTestHandler(t, store)
	r, _ := openFollow(t, srv.URL+"/containerLogs/ns/p/c?follow=true&tailLines=1&timestamps=true")
	if got := readLine(t, r); got != "2021-05-01T10:00:03Z four\n" {
		t.Errorf("first line %q", got)
	}
	// The headers and the tail arrived, so the handler is now following; this line is new to it.
	store.AppendAt("ns", "p", "c", t0.Add(time.Minute), "five")
	if got := readLine(t, r); got != "2021-05-01T10:01:00Z five\n" {
		t.Errorf("followed line %q", got)
	}
	// A line older than sinceTime is filtered in follow mode as well; the next one shows it was skipped.
	store.AppendAt("ns", "p", "c", t0.Add(2*time.Minute), "six")
	if got := readLine(t, r); got != "2021-05-01T10:02:00Z six\n" {
		t.Errorf("followed line %q", got)
	}
}

func TestContainerLogsFollowQuietContainerSendsHeaders(t *testing.T) {
	store := NewLogStore()
	store.AddContainer("ns", "p", "c")
	srv := newTestHandler(t, store)
	// openFollow returns only once the headers arrived, although no line exists yet.
	r, _ := openFollow(t, srv.URL+"/containerLogs/ns/p/c?follow=true")
	store.Append("ns", "p", "c", "hello")
	if got := readLine(t, r); got != "hello\n" {
		t.Errorf("got %q", got)
	}
}

func TestContainerLogsFollowSince(t *testing.T) {
	store := newTestStore()
	srv := newTestHandler(t, store)
	r, _ := openFollow(t, srv.URL+"/containerLogs/ns/p/c?follow=true&sinceTime=2021-05-01T10:00:03Z")
	if got := readLine(t, r); got != "four\n" {
		t.Errorf("first line %q", got)
	}
	store.AppendAt("ns", "p", "c", t0, "backdated")
	store.AppendAt("ns", "p", "c", t0.Add(time.Hour), "fresh")
	if got := readLine(t, r); got != "fresh\n" {
		t.Errorf("got %q, want the backdated line skipped", got)
	}
}

func TestContainerLogsFollowEndsWhenPodRemoved(t *testing.T) {
	store := newTestStore()
	srv := newTestHandler(t, store)
	r, _ := openFollow(t, srv.URL+"/containerLogs/ns/p/c?follow=true&tailLines=1")
	readLine(t, r)
	store.RemovePod("ns", "p")
	if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
		t.Errorf("after removal got %q, %v; want a clean end of stream", rest, err)
	}
}
