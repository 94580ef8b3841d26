package ztunnel

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"time"
)

// Reading a log through pods/log again and again would fetch and parse the same lines each time: sinceTime has a
// resolution of one second, and a step that waits for a line re-reads every few hundred milliseconds. So each
// container's log is read incrementally: a cursor remembers where the last read stopped, the next one asks from
// that second with the runtime's timestamps and drops what it already saw, and what was read is kept (parsed)
// for the callers that ask for a window of it. Bytes fetched and lines parsed grow with new lines, not with the
// log; what is kept is bounded by age and count.

// LogLine is one line of a container's log with the container runtime's timestamp (pods/log with timestamps=true).
type LogLine struct {
	Time time.Time
	Text string
}

// cursor is where the reads of one container's log stopped: the runtime timestamp of the last line read and how
// many lines carried that very timestamp (a runtime may stamp several lines alike).
type cursor struct {
	at time.Time
	n  int
}

// fresh drops from lines, in log order, those the cursor has already seen, and returns the rest and the cursor
// after them.
func (c cursor) fresh(lines []LogLine) ([]LogLine, cursor) {
	var out []LogLine
	seen := 0
	for _, l := range lines {
		if l.Time.Before(c.at) {
			continue
		}
		if l.Time.Equal(c.at) && seen < c.n {
			seen++
			continue
		}
		out = append(out, l)
	}
	next := c
	for _, l := range out {
		if l.Time.Equal(next.at) {
			next.n++
		} else {
			next = cursor{at: l.Time, n: 1}
		}
	}
	return out, next
}

// from is the sinceTime of the next read: the cursor's second (the API's resolution), or start before any line.
func (c cursor) from(start time.Time) time.Time {
	if c.at.IsZero() {
		return start
	}
	return c.at.Truncate(time.Second)
}

// pageFunc reads one page of a container's log from the given second (zero: from its start), of at most scale
// times the reader's byte limit: the complete lines, and whether the page was cut at the limit (more may follow).
type pageFunc func(ctx context.Context, since time.Time, scale int64) (lines []LogLine, cut bool, err error)

// splitPage turns a pods/log response with timestamps into lines. A page cut at the byte limit ends in a partial
// line, which is left for the next page; a line without a timestamp (none should come) gets its predecessor's.
func splitPage(raw []byte, cut bool) []LogLine {
	if cut {
		if i := bytes.LastIndexByte(raw, '\n'); i >= 0 {
			raw = raw[:i+1]
		} else {
			raw = nil
		}
	}
	var out []LogLine
	var last time.Time
	for len(raw) > 0 {
		line, rest, _ := bytes.Cut(raw, []byte{'\n'})
		raw = rest
		stamp, text, ok := bytes.Cut(line, []byte{' '})
		t, err := time.Parse(time.RFC3339Nano, string(stamp))
		if !ok || err != nil {
			out = append(out, LogLine{Time: last, Text: string(line)})
			continue
		}
		last = t.UTC()
		out = append(out, LogLine{Time: last, Text: string(text)})
	}
	return out
}

// Limits of what a container's tail keeps and reads.
const (
	// DefaultLimitBytes bounds one pods/log response (PodLogOptions.LimitBytes): the reader pages through a
	// longer log, so no response is held in full, whatever a container logs.
	DefaultLimitBytes = 1 << 20
	// maxPagesPerRead bounds one read's catching up; the next read goes on from there.
	maxPagesPerRead = 8
	// maxPageScale bounds how much larger than LimitBytes a page may be asked for: when one second of a log holds
	// more than a page (a node's ztunnel under a few hundred observers logs megabytes a second), the second is
	// asked for again in a page four times larger, and then skipped. 4 MiB with the default limit.
	maxPageScale = 4
	// keepFor is how long lines stay kept that no reader asks for: every reader's window begins at a step's
	// start or later, and a reader that keeps asking for an older window keeps it (a reader that comes back
	// later reads its window from the API again). 20 s: with 100 runs at once a minute of observer lines was the
	// largest thing the manager held.
	keepFor = 20 * time.Second
	// maxKept bounds the lines kept per container (a parsed ztunnel line takes about 2.5 KiB), whatever the
	// windows asked for; beyond it the oldest go. A window reaching back before what is kept is read from the API
	// again, unless lines were dropped for this bound within keepFor: then reading it again would only drop them
	// again, and the window gets the newest maxKept lines, said so (held, Incomplete): a step that does not find
	// its line among them ends in Error, not Fail, as the line may be among those not held. So does a window over a
	// second skipped unread (catchUp).
	maxKept = 10000
	// forgetAfter drops the tail of a container no one read for that long (a pod deleted or replaced).
	forgetAfter = 2 * time.Minute
)

// kept is a line as kept: its runtime time and what the tail's parse made of it.
type kept[T any] struct {
	at time.Time
	v  T
}

// tail is one container's log as read so far: every line from `from` on, parsed, and the cursor of the reads.
type tail[T any] struct {
	mu       sync.Mutex
	parse    func(text string) (T, bool)
	filled   bool
	from     time.Time // every line stamped at or after from (a whole second) is in lines
	cur      cursor
	lines    []kept[T]
	oldest   time.Time // the oldest window asked for lately, kept while asked for again within keepFor
	oldestAt time.Time
	capped   time.Time // when lines were last dropped for maxKept
	gap      time.Time // the end of the last second skipped unread (catchUp): lines before it may be missing
	behind   bool      // the last catchUp stopped at maxPagesPerRead with more to read
	caughtUp time.Time // when the last read that reached the log's end began
	used     time.Time
}

// read returns what the container logged since the given time (to the second, as pods/log's sinceTime), fetching
// only what was not read before.
func (t *tail[T]) read(ctx context.Context, page pageFunc, since, now time.Time) ([]T, error) {
	lines, _, err := t.appendSince(ctx, nil, page, since, now)
	return lines, err
}

// held says what of a window dst holds when it is not all there (zero: all of it). from: lines before it were
// dropped (for maxKept, or a second skipped unread). to: the reads have not caught up with the log yet (a log
// that grows faster than maxPagesPerRead pages a read), and lines after it are not read.
type held struct{ from, to time.Time }

func (h held) whole() bool { return h.from.IsZero() && h.to.IsZero() }

// appendSince is read appending to dst: a reader of many containers copies each line once, and says what of the
// window it holds.
func (t *tail[T]) appendSince(ctx context.Context, dst []T, page pageFunc, since, now time.Time) (_ []T, h held, _ error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	since = since.UTC().Truncate(time.Second)
	t.used = now
	if !t.filled || since.Before(t.from) && now.Sub(t.capped) > keepFor {
		// Never read, or asked for older lines than kept: read from since again.
		t.filled, t.from, t.cur, t.lines, t.gap = true, since, cursor{}, nil, time.Time{}
	}
	if t.oldestAt.IsZero() || !since.After(t.oldest) || now.Sub(t.oldestAt) > keepFor {
		t.oldest, t.oldestAt = since, now
	}
	if err := t.catchUp(ctx, page); err != nil {
		return dst, held{}, err
	}
	if !t.behind {
		t.caughtUp = now
	}
	t.evict(now)
	if from := later(t.from, t.gap); since.Before(from) {
		h.from = from
	}
	if t.behind {
		h.to = t.cur.at
	}
	// Lines are kept in log order, and the runtime's stamps do not go back: the first at or after since.
	i, _ := slices.BinarySearchFunc(t.lines, since, func(l kept[T], at time.Time) int { return l.at.Compare(at) })
	dst = slices.Grow(dst, len(t.lines)-i)
	for _, l := range t.lines[i:] {
		dst = append(dst, l.v)
	}
	return dst, h, nil
}

// heldSince returns, without reading, the lines since the given time (to the second) when the last read reached
// the log's end at or after fresh and every line since then is kept; ok is false otherwise.
func (t *tail[T]) heldSince(since, fresh, now time.Time) (_ []T, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	since = since.UTC().Truncate(time.Second)
	if !t.filled || t.behind || t.caughtUp.Before(fresh) || since.Before(later(t.from, t.gap)) {
		return nil, false
	}
	t.used = now
	i, _ := slices.BinarySearchFunc(t.lines, since, func(l kept[T], at time.Time) int { return l.at.Compare(at) })
	out := make([]T, 0, len(t.lines)-i)
	for _, l := range t.lines[i:] {
		out = append(out, l.v)
	}
	return out, true
}

// catchUp reads pages from the cursor until one is not cut at the byte limit, or maxPagesPerRead (then it is
// behind, and the next read goes on from there).
func (t *tail[T]) catchUp(ctx context.Context, page pageFunc) error {
	scale := int64(1)
	t.behind = true
	for range maxPagesPerRead {
		lines, cut, err := page(ctx, t.cur.from(t.from), scale)
		if err != nil {
			return err
		}
		fresh, next := t.cur.fresh(lines)
		for _, l := range fresh {
			if v, ok := t.parse(l.Text); ok {
				// Kept in order of their stamps, which reads search: a stamp earlier than its predecessor's (the
				// node's clock stepped back) is kept at its predecessor's.
				at := l.Time
				if n := len(t.lines); n > 0 && at.Before(t.lines[n-1].at) {
					at = t.lines[n-1].at
				}
				t.lines = append(t.lines, kept[T]{at: at, v: v})
			}
		}
		t.cur = next
		switch {
		case !cut:
			t.behind = false
			return nil
		case len(fresh) == 0 && scale < maxPageScale:
			// One second holds more than a page, and sinceTime cannot start inside it: ask for it in a larger page.
			scale = maxPageScale
		case len(fresh) == 0:
			// Not even the larger page holds the second: the rest of it is skipped, and a window over it is said
			// to be incomplete (held): a reader missing lines errs; it never passes or fails a step for them.
			t.cur, scale = cursor{at: t.cur.from(t.from).Add(time.Second)}, 1
			t.gap = t.cur.at
		default:
			scale = 1
		}
	}
	return nil
}

// evict forgets lines older than every window asked for within keepFor, and the oldest beyond maxKept.
func (t *tail[T]) evict(now time.Time) {
	keep := now.Add(-keepFor).Truncate(time.Second)
	if t.oldest.Before(keep) {
		keep = t.oldest
	}
	if keep.After(t.from) {
		t.from = keep
		t.dropBefore(keep)
	}
	if over := len(t.lines) - maxKept; over > 0 {
		// Every line of the last dropped one's second goes too: from stays a whole second.
		t.from = t.lines[over-1].at.Truncate(time.Second).Add(time.Second)
		t.dropBefore(t.from)
		t.capped = now
	}
}

// dropBefore forgets the lines stamped before at (the oldest come first). The array's front is reused once append
// outgrows what is left.
func (t *tail[T]) dropBefore(at time.Time) {
	i := 0
	for i < len(t.lines) && t.lines[i].at.Before(at) {
		i++
	}
	clear(t.lines[:i])
	t.lines = t.lines[i:]
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// idle: no one read this tail for forgetAfter (a tail being read is not idle).
func (t *tail[T]) idle(now time.Time) bool {
	if !t.mu.TryLock() {
		return false
	}
	defer t.mu.Unlock()
	return now.Sub(t.used) > forgetAfter
}
