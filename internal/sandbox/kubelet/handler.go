package kubelet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// logHandler serves kubelet's log and health endpoints from a LogStore.
type logHandler struct {
	store *LogStore
	// done ends follow streams when the server closes: net/http does not cancel request contexts on Close
	// until it notices the dropped connection, and Close must not wait for that.
	done <-chan struct{}
}

// newMux routes kubelet's paths; the API server calls /containerLogs for pods/log.
func newMux(store *LogStore, done <-chan struct{}) *http.ServeMux {
	h := &logHandler{store: store, done: done}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", h.containerLogs)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok")
	})
	return mux
}

// containerLogs answers GET /containerLogs/{namespace}/{pod}/{container} with kubelet's status codes and messages.
func (h *logHandler) containerLogs(w http.ResponseWriter, r *http.Request) {
	ns, pod, container := r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container")
	opts, err := parseLogOptions(r.URL.Query(), time.Now())
	if err != nil {
		http.Error(w, "invalid request: "+err.Error(), http.StatusBadRequest)
		return
	}
	lines, changed, err := h.store.read(ns, pod, container, 0)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	if opts.previous {
		// Simulated containers never restart, so there is no previous instance; kubelet answers 400 then.
		msg := fmt.Sprintf("previous terminated container %q in pod %q not found", container, pod)
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	out := newLogWriter(w, opts)
	if err := out.write(tail(lines, opts.tailLines)); err != nil || !opts.follow {
		return
	}
	// Send the headers even when no line matched yet: the API server waits for them before it answers its
	// client, so a quiet container would otherwise hold kubectl logs -f at connect.
	if err := out.rc.Flush(); err != nil {
		return
	}
	h.follow(r.Context(), out, ns, pod, container, len(lines), changed)
}

// follow writes lines appended after the first next ones until the client goes away, the server closes, the
// byte limit is reached or the pod is removed (kubelet ends the stream when the container goes away).
func (h *logHandler) follow(ctx context.Context, out *logWriter, ns, pod, container string, next int, changed <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.done:
			return
		case <-changed:
		}
		lines, ch, err := h.store.read(ns, pod, container, next)
		if err != nil {
			return
		}
		next, changed = next+len(lines), ch
		if err := out.write(lines); err != nil {
			return
		}
	}
}

// tail keeps the last n lines; n < 0 keeps all. Kubelet applies tailLines before sinceTime, so this runs first.
func tail(lines []LogLine, n int64) []LogLine {
	if n < 0 || n >= int64(len(lines)) {
		return lines
	}
	return lines[int64(len(lines))-n:]
}

// errLimitReached stops writing once limitBytes bytes went out.
var errLimitReached = errors.New("limitBytes reached")

// logWriter formats lines as kubelet does and enforces since and limitBytes.
type logWriter struct {
	w          http.ResponseWriter
	rc         *http.ResponseController
	opts       logOptions
	remaining  int64 // bytes left under limitBytes; -1: no limit
	flushLines bool  // follow streams flush every line so that the client sees it at once
}

func newLogWriter(w http.ResponseWriter, opts logOptions) *logWriter {
	return &logWriter{w: w, rc: http.NewResponseController(w), opts: opts, remaining: opts.limitBytes, flushLines: opts.follow}
}

// write sends the lines not older than since; it returns errLimitReached or the connection's error when done.
func (lw *logWriter) write(lines []LogLine) error {
	for _, l := range lines {
		if l.Time.Before(lw.opts.since) {
			continue
		}
		if err := lw.writeLine(l); err != nil {
			return err
		}
	}
	return nil
}

// writeLine sends one line, cut short at the byte limit like kubelet's LimitWriter.
func (lw *logWriter) writeLine(l LogLine) error {
	b := []byte(l.Text + "\n")
	if lw.opts.timestamps {
		b = []byte(l.Time.Format(time.RFC3339Nano) + " " + l.Text + "\n")
	}
	full := lw.remaining >= 0 && int64(len(b)) >= lw.remaining
	if full {
		b = b[:lw.remaining]
	}
	if _, err := lw.w.Write(b); err != nil {
		return err
	}
	if lw.remaining >= 0 {
		lw.remaining -= int64(len(b))
	}
	if lw.flushLines {
		if err := lw.rc.Flush(); err != nil {
			return err
		}
	}
	if full {
		return errLimitReached
	}
	return nil
}
