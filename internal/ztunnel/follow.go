package ztunnel

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"time"
)

// Streaming (LogReader.Stream): instead of asking pods/log for a container's new lines at every read, one
// follow=true request per container delivers them as the runtime writes them, into the same tail the page reads
// fill. The tail's cursor is the last line it holds; the stream keeps its own position in the log, so neither a
// page nor the stream adds a line the other one added.
//
// A read is served from what the tail holds, with no request, while the tail is known to hold every line written
// up to streamFresh before the read: the stream delivered a line stamped that recently, or a page read that recent
// reached the end of the log. Otherwise (a quiet log, a stream that lags, broke or is still opening) the read pages
// as before. A stream that ended, or that still has not delivered a line a page found streamFresh before, is
// opened again from the cursor. A stream is only ever opened by a read of its tail, so it reads the pod the read
// was about.
//
// Why it is off by default (measured with hack/benchload -fleet 3,300 on the sandbox): it pays where a container
// is read again and again (on three nodes a scheduled run's steady state makes no pods/log request instead of
// about 50), and costs at fleet scale. Pages read a window when a step asks and no faster than maxPagesPerRead a
// read; a stream parses every line a node's ztunnel logs, and at 300 nodes the endpoints' ztunnels log thousands of
// observer lines a second (the parsed ztunnel lines held at the heap's peak were three times those of pages), while
// an observer is read about once a step, so its stream is opened after the only read that needed it.

// Limits of the streams.
const (
	// streamFresh bounds how old the newest line a tail is known to hold may be for a read to be served from
	// the stream without a request: a read served so misses no line written more than streamFresh before it (in
	// practice the stream delivers within milliseconds). The manager's clock and the nodes' are taken to agree
	// far closer than this (steps.ClockTolerance). A quiet log is checked by a page read at most this often.
	streamFresh = 500 * time.Millisecond
	// streamRetry is how long a tail whose stream ended waits before opening another, doubled at every stream
	// that ends within streamRetryMax of opening (a container that stopped: kubelet ends its stream at once),
	// up to streamRetryMax. Its reads page meanwhile.
	streamRetry    = time.Second
	streamRetryMax = time.Minute
	// streamBuffer is each stream's read buffer (a longer line is read in pieces): a ztunnel line is one or two
	// KiB, and a manager may hold a thousand streams.
	streamBuffer = 4 << 10
	// streamBatch bounds the lines a stream parses before it adds them to its tail, so that a burst does not hold
	// the tail's reads back for long.
	streamBatch = 256
)

// followFunc opens a container's log as a stream (follow=true, timestamps=true) from the given second (zero:
// from its start).
type followFunc func(ctx context.Context, since time.Time) (io.ReadCloser, error)

// follower is a tail's open stream. Its fields are guarded by the tail's mutex.
type follower struct {
	cancel  context.CancelFunc
	started time.Time
	open    bool      // its response began
	pos     cursor    // the last line it delivered: where it is in the log
	lastAt  time.Time // the runtime's stamp of that line
	idle    *time.Timer
	// A line a page read found before the stream delivered it (its stamp), and when: a stream that has not
	// delivered it streamFresh later stalled.
	owed, owedAt time.Time
}

// streamGroup holds a reader's streams: their context, which Close cancels, and their goroutines, which Close
// waits for.
type streamGroup struct {
	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed bool
}

// spawn runs fn in a goroutine of the group with a context of its own; false once the group is closed.
func (g *streamGroup) spawn(fn func(ctx context.Context)) (context.CancelFunc, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, false
	}
	if g.ctx == nil {
		g.ctx, g.cancel = context.WithCancel(context.Background())
	}
	ctx, cancel := context.WithCancel(g.ctx)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer cancel()
		fn(ctx)
	}()
	return cancel, true
}

// close ends every stream and waits for their goroutines; no stream opens after it.
func (g *streamGroup) close() {
	g.mu.Lock()
	g.closed = true
	if g.cancel != nil {
		g.cancel()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// streamed is one line a stream delivered, parsed before it is added (outside the tail's lock).
type streamed[T any] struct {
	at      time.Time
	v       T
	ok      bool // parse kept it
	dropped bool // longer than a stream line may be: not read
}

// current tells whether the tail may serve a read at now from what it holds: its stream is open and the tail is
// known to hold every line written up to streamFresh before now. t.mu must be held.
func (t *tail[T]) current(now time.Time) bool {
	f := t.stream
	if f == nil || !f.open {
		return false
	}
	fresh := now.Add(-streamFresh)
	return !f.lastAt.Before(fresh) || !t.behind && !t.heldTo.Before(fresh)
}

// checkStream: after a page read that found lines from first on, while f was the tail's stream, ends f when it
// stalled: it still owes a line an earlier page found streamFresh ago or more (it delivers in order, in
// milliseconds when well). A stream that ends so is opened again from the cursor after streamRetry. t.mu must be
// held.
func (t *tail[T]) checkStream(f *follower, first, now time.Time) {
	if f == nil || t.stream != f {
		return
	}
	if !f.owed.IsZero() && !f.lastAt.Before(f.owed) {
		f.owed = time.Time{} // delivered since
	}
	switch {
	case f.owed.IsZero() && !first.IsZero():
		f.owed, f.owedAt = first, now
	case !f.owed.IsZero() && now.Sub(f.owedAt) >= streamFresh:
		t.streamFailed(now)
	}
}

// startStream opens a stream from the cursor when the tail streams, has none, and is not waiting to retry.
// t.mu must be held.
func (t *tail[T]) startStream(now time.Time) {
	if t.follow == nil || t.streams == nil || t.stream != nil || now.Before(t.retryAt) {
		return
	}
	f := &follower{started: now}
	since, open := t.cur.from(t.from), t.follow
	cancel, ok := t.streams.spawn(func(ctx context.Context) { t.run(ctx, f, open, since) })
	if !ok {
		return
	}
	f.cancel = cancel
	t.stream = f
	after := t.idleAfter
	if after <= 0 {
		after = forgetAfter
	}
	f.idle = time.AfterFunc(after, func() { t.closeIfIdle(f, after) })
}

// stopStream ends the tail's stream, if any. t.mu must be held.
func (t *tail[T]) stopStream() {
	if f := t.stream; f != nil {
		t.stream = nil
		f.cancel()
		f.idle.Stop()
	}
}

// closeIfIdle ends the stream f and forgets the tail when no one read it for after (the tail would be forgotten
// at the next lookup: without one, nothing else frees it); else it looks again when that would be so.
func (t *tail[T]) closeIfIdle(f *follower, after time.Duration) {
	t.mu.Lock()
	if t.stream != f {
		t.mu.Unlock()
		return
	}
	if idle := time.Since(t.used); idle < after {
		f.idle.Reset(after - idle)
		t.mu.Unlock()
		return
	}
	t.stopStream()
	forget := t.forget
	t.mu.Unlock()
	if forget != nil {
		forget()
	}
}

// run is a stream's goroutine: it opens the stream and adds what it delivers to the tail until the stream ends,
// the tail stops it or the reader closes.
func (t *tail[T]) run(ctx context.Context, f *follower, open followFunc, since time.Time) {
	body, err := open(ctx, since)
	if err != nil {
		t.ended(f)
		return
	}
	defer body.Close()
	if !t.opened(f) {
		return
	}
	br := bufio.NewReaderSize(body, streamBuffer)
	limit := t.maxLine
	if limit <= 0 {
		limit = DefaultLimitBytes * maxPageScale
	}
	var batch []streamed[T]
	var last time.Time
	for {
		line, dropped, err := readLine(br, limit)
		if err == nil {
			// A line with no stamp (none should come) gets its predecessor's, as in a page.
			at, text := last, line
			if stamp, rest, ok := bytes.Cut(line, []byte{' '}); ok {
				if ts, perr := time.Parse(time.RFC3339Nano, string(stamp)); perr == nil {
					at, text = ts.UTC(), rest
				}
			}
			last = at
			l := streamed[T]{at: at, dropped: dropped}
			if !dropped {
				l.v, l.ok = t.parse(string(text))
			}
			batch = append(batch, l)
		}
		// A partial line at the stream's end is not a line: the next read pages it from the cursor.
		if err != nil || br.Buffered() == 0 || len(batch) >= streamBatch {
			if !t.deliver(f, batch, time.Now()) {
				return
			}
			clear(batch) // the lines are the tail's now, or dropped
			batch = batch[:0]
		}
		if err != nil {
			t.ended(f)
			return
		}
	}
}

// readLine reads one line without its newline; a line longer than limit is read through and reported dropped,
// without its text.
func readLine(br *bufio.Reader, limit int) (line []byte, dropped bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if !dropped {
			if len(line)+len(chunk) > limit+1 {
				dropped, line = true, line[:0]
				// Keep the stamp: it says which second the dropped line was in.
				if i := bytes.IndexByte(chunk, ' '); i > 0 {
					line = append(line, chunk[:i+1]...)
				}
			} else {
				line = append(line, chunk...)
			}
		}
		switch {
		case err == nil:
			return bytes.TrimSuffix(line, []byte{'\n'}), dropped, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, false, err
		}
	}
}

// opened marks f's response begun; false when the tail no longer wants it.
func (t *tail[T]) opened(f *follower) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stream != f {
		return false
	}
	f.open = true
	return true
}

// deliver adds what f delivered past the tail's cursor; false when the tail no longer wants f.
func (t *tail[T]) deliver(f *follower, batch []streamed[T], now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stream != f {
		return false
	}
	if len(batch) == 0 {
		return true
	}
	for _, l := range batch {
		next := f.pos.advance(l.at)
		// New: the stream stood where the tail's cursor does (it delivered the last line held), or it went past
		// it. Behind the cursor, a page read added the line already.
		if f.pos == t.cur || t.cur.before(next) {
			switch {
			case l.dropped:
				// Like a second skipped unread (catchUp): a window over it is not held in full.
				t.gap = later(t.gap, l.at.Truncate(time.Second).Add(time.Second))
			case l.ok:
				t.keep(l.at, l.v)
			}
			t.cur = next
		}
		f.pos, f.lastAt = next, l.at
	}
	t.evict(now)
	return true
}

// ended forgets the stream f, which ended by itself (EOF, an error, the pod gone).
func (t *tail[T]) ended(f *follower) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stream == f {
		t.streamFailed(time.Now())
	}
}

// streamFailed ends the tail's stream, which ended or lags, and sets when the tail may open another. t.mu must be
// held.
func (t *tail[T]) streamFailed(now time.Time) {
	f := t.stream
	if f == nil {
		return
	}
	t.stopStream()
	if now.Sub(f.started) >= streamRetryMax {
		t.retry = streamRetry
	} else {
		t.retry = min(max(2*t.retry, streamRetry), streamRetryMax)
	}
	t.retryAt = now.Add(t.retry)
}
