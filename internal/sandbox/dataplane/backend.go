package dataplane

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// backend is the application every allowed connection reaches: a small
// httpbin look-alike, because the lab guide probes httpbin paths (/get,
// /status/<code>).
type backend struct {
	ln     net.Listener
	srv    *http.Server
	served chan struct{}
	conns  sync.WaitGroup // one per connection the server is handling
}

// startBackend serves on a loopback port. origin maps a request's RemoteAddr
// to the client IP /get reports.
func startBackend(origin func(remoteAddr string) string) (*backend, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &backend{ln: ln, served: make(chan struct{})}
	b.srv = &http.Server{
		Handler:           newBackendMux(origin),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState:         b.track,
	}
	go func() {
		defer close(b.served)
		_ = b.srv.Serve(ln) // always ErrServerClosed or a listener error after close
	}()
	return b, nil
}

// track counts the server's connection goroutines so close can wait for
// them: http.Server.Close does not.
func (b *backend) track(_ net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		b.conns.Add(1)
	case http.StateClosed, http.StateHijacked:
		b.conns.Done()
	}
}

func (b *backend) addr() string { return b.ln.Addr().String() }

// close stops the server, drops its connections and waits until every
// goroutine it started has ended.
func (b *backend) close() error {
	err := b.srv.Close()
	<-b.served
	b.conns.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func newBackendMux(origin func(string) string) *http.ServeMux {
	mux := http.NewServeMux()
	// "GET" also matches HEAD; other methods get 405, as from httpbin.
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) { serveGet(w, r, origin) })
	mux.HandleFunc("/status/{code}", serveStatus)
	return mux
}

// getResponse is httpbin's /get body.
type getResponse struct {
	Args    map[string]string `json:"args"`
	Headers map[string]string `json:"headers"`
	Origin  string            `json:"origin"`
	URL     string            `json:"url"`
}

func serveGet(w http.ResponseWriter, r *http.Request, origin func(string) string) {
	body := getResponse{
		Args:    flatten(r.URL.Query()),
		Headers: flatten(r.Header),
		Origin:  origin(r.RemoteAddr),
		URL:     "http://" + r.Host + r.URL.RequestURI(),
	}
	// net/http moves Host out of the header map; httpbin shows it.
	body.Headers["Host"] = r.Host
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(body) // a failed write means the client went away
}

// serveStatus answers with the status in the path, like httpbin's
// /status/<code>; codes outside 200–599 are a bad request.
func serveStatus(w http.ResponseWriter, r *http.Request) {
	code, err := strconv.Atoi(r.PathValue("code"))
	if err != nil || code < 200 || code > 599 {
		http.Error(w, "invalid status code", http.StatusBadRequest)
		return
	}
	w.WriteHeader(code)
}

// flatten joins repeated values the way they travel on one header line.
func flatten(values map[string][]string) map[string]string {
	out := make(map[string]string, len(values))
	for k, v := range values {
		out[k] = strings.Join(v, ",")
	}
	return out
}
