package kubelet

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
)

// startServer starts a Server and returns a client that trusts only its certificate.
func startServer(t *testing.T, store *LogStore) (*Server, *http.Client) {
	t.Helper()
	s := NewServer(store)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CertificatePEM()) {
		t.Fatal("CertificatePEM is not a PEM certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return s, &http.Client{Transport: tr}
}

func TestServerTLS(t *testing.T) {
	store := newTestStore()
	s, client := startServer(t, store)
	if s.Port() == 0 {
		t.Fatal("no port")
	}
	// The certificate must verify for both names the API server or a user might dial.
	for _, host := range []string{"127.0.0.1", "localhost"} {
		resp, err := client.Get(fmt.Sprintf("https://%s:%d/containerLogs/ns/p/c?tailLines=1", host, s.Port()))
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != "four\n" {
			t.Errorf("%s: got %d %q", host, resp.StatusCode, b)
		}
	}
	if err := s.Start(); err == nil {
		t.Error("second Start succeeded")
	}
}

func TestServerCloseEndsFollowAndLeavesNoGoroutine(t *testing.T) {
	store := newTestStore()
	s, client := startServer(t, store)
	resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/containerLogs/ns/p/c?follow=true&tailLines=1", s.Port()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if line := readLine(t, r); line != "four\n" {
		t.Fatalf("got %q", line)
	}
	// The stream is open and its handler waits for lines; Close must end it and wait for it.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); err != nil {
		t.Logf("stream ended with %v", err) // a cut connection is fine, a hang is not
	}
	if leaked := serverGoroutines(); leaked != "" {
		t.Errorf("goroutines left after Close:\n%s", leaked)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestServerCloseBeforeStart(t *testing.T) {
	s := NewServer(NewLogStore())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s.Port() != 0 || s.Start() == nil {
		t.Error("a closed server started")
	}
}

// serverGoroutines returns the stacks of goroutines serving HTTP or running this package's server code. Close
// waits for all of them, so none may be left when it returns; no other test server runs concurrently.
func serverGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "net/http.(*conn).serve") || strings.Contains(g, "net/http.(*Server).Serve") ||
			strings.Contains(g, "kubelet.(*logHandler)") {
			leaked = append(leaked, g)
		}
	}
	return strings.Join(leaked, "\n\n")
}
