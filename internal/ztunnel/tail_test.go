package ztunnel

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func TestCursorFresh(t *testing.T) {
	l := func(ms int, text string) LogLine { return LogLine{Time: at(ms), Text: text} }
	for _, tc := range []struct {
		name  string
		c     cursor
		lines []LogLine
		want  []string
		next  cursor
	}{
		{"first read keeps all", cursor{}, []LogLine{l(0, "a"), l(500, "b")}, []string{"a", "b"}, cursor{at(500), 1}},
		{"the second again is dropped", cursor{at(500), 1}, []LogLine{l(0, "a"), l(500, "b"), l(700, "c")},
			[]string{"c"}, cursor{at(700), 1}},
		{"lines stamped alike: only the unseen", cursor{at(500), 2}, []LogLine{l(500, "a"), l(500, "b"), l(500, "c")},
			[]string{"c"}, cursor{at(500), 3}},
		{"nothing new", cursor{at(700), 1}, []LogLine{l(0, "a"), l(700, "c")}, nil, cursor{at(700), 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, next := tc.c.fresh(tc.lines)
			if !slices.Equal(texts(got), tc.want) || next != tc.next {
				t.Errorf("fresh = %v, %+v; want %v, %+v", texts(got), next, tc.want, tc.next)
			}
		})
	}
}

func TestSplitPage(t *testing.T) {
	raw := "2026-05-01T10:00:00.5Z one\n2026-05-01T10:00:01Z two words\nno-stamp\n2026-05-01T10:00:02Z cut sho"
	got := splitPage([]byte(raw), true)
	want := []LogLine{{at(500), "one"}, {at(1000), "two words"}, {at(1000), "no-stamp"}}
	if !slices.Equal(got, want) {
		t.Errorf("cut page: %v, want %v", got, want)
	}
	if got := splitPage([]byte("2026-05-01T10:00:02Z whole"), false); !slices.Equal(got, []LogLine{{at(2000), "whole"}}) {
		t.Errorf("whole page: %v", got)
	}
	if got := splitPage([]byte("2026-05-01T10:00:02Z no newline within the limit"), true); got != nil {
		t.Errorf("a page with no complete line: %v", got)
	}
}

// fakeLog serves a log like kubelet behind pods/log: lines stamped at or after sinceTime's second, each
// "<RFC3339Nano> <text>\n", cut at limit bytes. It counts what it served.
type fakeLog struct {
	lines  []LogLine
	limit  int
	served []string // the lines of every page, in order
	pages  int
}

func (f *fakeLog) page(_ context.Context, since time.Time, scale int64) ([]LogLine, bool, error) {
	f.pages++
	var b strings.Builder
	for _, l := range f.lines {
		if !since.IsZero() && l.Time.Before(since) {
			continue
		}
		b.WriteString(l.Time.Format(time.RFC3339Nano) + " " + l.Text + "\n")
	}
	raw := b.String()
	limit := f.limit * int(max(scale, 1))
	cut := f.limit > 0 && len(raw) >= limit
	if cut {
		raw = raw[:limit]
	}
	lines := splitPage([]byte(raw), cut)
	f.served = append(f.served, texts(lines)...)
	return lines, cut, nil
}

func (f *fakeLog) add(ms int, texts ...string) {
	for _, s := range texts {
		f.lines = append(f.lines, LogLine{Time: at(ms), Text: s})
	}
}

// newTail keeps lines as they are and notes each one it parses.
func newTail() (*tail[string], *[]string) {
	parsed := &[]string{}
	return &tail[string]{parse: func(s string) (string, bool) { *parsed = append(*parsed, s); return s, true }}, parsed
}

func TestTailReadsOnlyWhatIsNew(t *testing.T) {
	ctx := context.Background()
	f := &fakeLog{}
	f.add(100, "a")
	f.add(1900, "b", "c") // two lines stamped alike
	tl, parsed := newTail()
	got, err := tl.read(ctx, f.page, time.Time{}, at(2000))
	if err != nil || !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("first read: %v, %v", got, err)
	}
	f.served, *parsed = nil, nil
	f.add(1900, "d") // stamped like the last line read
	f.add(2500, "e")
	got, err = tl.read(ctx, f.page, time.Time{}, at(2600))
	if err != nil || !slices.Equal(got, []string{"a", "b", "c", "d", "e"}) {
		t.Fatalf("second read: %v, %v", got, err)
	}
	// The page asked from the last line's second, so it carried b and c again, but nothing before it; only the
	// new lines were parsed and kept.
	if !slices.Equal(f.served, []string{"b", "c", "d", "e"}) {
		t.Errorf("second read fetched %v", f.served)
	}
	if !slices.Equal(*parsed, []string{"d", "e"}) {
		t.Errorf("second read parsed %v", *parsed)
	}
	if got, _ := tl.read(ctx, f.page, at(1200), at(2700)); !slices.Equal(got, []string{"b", "c", "d", "e"}) {
		t.Errorf("a window from 1.2s is one from 1s, as sinceTime's: %v", got)
	}
}

func TestTailPagesThroughALongLog(t *testing.T) {
	f := &fakeLog{limit: 400}
	var want []string
	for i := range 100 {
		s := fmt.Sprintf("line-%03d", i)
		f.add(i*100, s) // ten lines a second, 33 bytes each: a page holds about a second
		want = append(want, s)
	}
	tl, parsed := newTail()
	var got []string
	for range 5 { // a read catches up by at most maxPagesPerRead pages; the next goes on
		var err error
		if got, err = tl.read(context.Background(), f.page, time.Time{}, at(10000)); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("read %d lines, want %d: %v", len(got), len(want), got)
	}
	if !slices.Equal(*parsed, want) {
		t.Errorf("parsed %d lines, want each once", len(*parsed))
	}
}

func TestTailSkipsASecondLongerThanAPage(t *testing.T) {
	f := &fakeLog{limit: 100}
	for i := range 20 {
		f.add(0, fmt.Sprintf("burst-%02d", i)) // 20 lines in one second: more than a page
	}
	f.add(1000, "after")
	tl, _ := newTail()
	got, held, err := tl.appendSince(context.Background(), nil, f.page, at(0), at(2000))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, "after") || len(got) >= 21 {
		t.Errorf("got %v: want the burst's first page and the line after it", got)
	}
	if f.pages > maxPagesPerRead {
		t.Errorf("%d pages", f.pages)
	}
	// The window over the skipped second is said to be held only from the second after it.
	if !held.from.Equal(at(1000)) {
		t.Errorf("held from %v, want %v: the burst's second was not read in full", held.from, at(1000))
	}
	// A window after the skipped second is whole.
	if _, held, err := tl.appendSince(context.Background(), nil, f.page, at(1000), at(2000)); err != nil || !held.whole() {
		t.Errorf("a window after the gap: held %v, %v; want it whole", held, err)
	}
}

// A log that grows faster than a read pages through it: the window is said to be read only up to where the reads
// stopped, until they catch up.
func TestTailSaysWhenItHasNotCaughtUp(t *testing.T) {
	ctx := context.Background()
	f := &fakeLog{limit: 100} // about three lines a page
	for i := range 20 * maxPagesPerRead {
		f.add(i*1000, fmt.Sprintf("line-%04d", i)) // one line a second: each page ends inside a later second
	}
	tl, _ := newTail()
	now := at(20 * maxPagesPerRead * 1000)
	_, held, err := tl.appendSince(ctx, nil, f.page, at(0), now)
	if err != nil {
		t.Fatal(err)
	}
	if held.to.IsZero() || !held.from.IsZero() {
		t.Fatalf("after one read: held %+v; want read only up to where the read stopped", held)
	}
	for range 20 {
		if _, held, err = tl.appendSince(ctx, nil, f.page, at(0), now); err != nil {
			t.Fatal(err)
		}
		if held.whole() {
			return
		}
	}
	t.Errorf("never caught up: held %+v", held)
}

// A window of more lines than maxKept is answered with the newest and said to be held only from the oldest kept;
// a window that fits is whole.
func TestTailSaysWhenAWindowIsNotHeldInFull(t *testing.T) {
	ctx := context.Background()
	f := &fakeLog{}
	n := maxKept + 500
	for i := range n {
		f.add(i*10, fmt.Sprintf("line-%05d", i)) // a hundred lines a second
	}
	tl, _ := newTail()
	got, held, err := tl.appendSince(ctx, nil, f.page, at(0), at(n*10+1000))
	if err != nil {
		t.Fatal(err)
	}
	if !held.from.After(at(0)) || len(got) > maxKept {
		t.Fatalf("%d lines held from %v: want at most %d, held from after the window's start", len(got), held.from, maxKept)
	}
	// The newest second is held in full.
	if _, held, err := tl.appendSince(ctx, nil, f.page, at((n-100)*10).Truncate(time.Second).Add(time.Second), at(n*10+1000)); err != nil || !held.whole() {
		t.Errorf("a window within what is kept: held %v, %v; want it whole", held, err)
	}
}

// A second longer than a page but not than maxPageScale pages is read whole, in a larger page.
func TestTailReadsABurstInALargerPage(t *testing.T) {
	f := &fakeLog{limit: 100}
	var want []string
	for i := range 10 {
		s := fmt.Sprintf("burst-%02d", i)
		f.add(0, s) // 10 lines of 33 bytes in one second: three pages, one page of four times the limit
		want = append(want, s)
	}
	f.add(1000, "after")
	want = append(want, "after")
	tl, _ := newTail()
	got, err := tl.read(context.Background(), f.page, time.Time{}, at(2000))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want every line of the burst and the one after it", got)
	}
}

func TestTailKeepsWhatIsAskedFor(t *testing.T) {
	ctx := context.Background()
	f := &fakeLog{}
	f.add(0, "old")
	tl, parsed := newTail()
	if _, err := tl.read(ctx, f.page, at(0), at(500)); err != nil {
		t.Fatal(err)
	}
	// Two minutes later a window from the start is still asked for: kept, not fetched again.
	f.add(120_000, "new")
	*parsed = nil
	if got, _ := tl.read(ctx, f.page, at(0), at(120_500)); !slices.Equal(got, []string{"old", "new"}) {
		t.Errorf("old window: %v", got)
	}
	if !slices.Equal(*parsed, []string{"new"}) {
		t.Errorf("parsed again: %v", *parsed)
	}
	// Once no one asked for it for keepFor, a newer window lets the old lines go...
	if got, _ := tl.read(ctx, f.page, at(120_000), at(200_000)); !slices.Equal(got, []string{"new"}) {
		t.Errorf("new window: %v", got)
	}
	if len(tl.lines) != 1 {
		t.Errorf("kept %d lines, want 1", len(tl.lines))
	}
	// ...and asking for them again reads them again.
	*parsed = nil
	if got, _ := tl.read(ctx, f.page, at(0), at(200_100)); !slices.Equal(got, []string{"old", "new"}) || !slices.Contains(*parsed, "old") {
		t.Errorf("old window again: %v, parsed %v", got, *parsed)
	}
}

func texts(lines []LogLine) []string {
	var out []string
	for _, l := range lines {
		out = append(out, l.Text)
	}
	return out
}

func TestTailUnderItsBound(t *testing.T) {
	ctx := context.Background()
	f := &fakeLog{}
	n := maxKept + 500
	for i := range n {
		f.add(i*10, fmt.Sprintf("line-%05d", i)) // a hundred lines a second
	}
	tl, parsed := newTail()
	got, err := tl.read(ctx, f.page, time.Time{}, at(n*10+1000))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) > maxKept || got[len(got)-1] != fmt.Sprintf("line-%05d", n-1) {
		t.Fatalf("kept %d lines ending %q: want at most %d, the newest", len(got), got[len(got)-1], maxKept)
	}
	// The same old window again, with new lines: they are fetched and parsed, the old ones are not read again
	// only to be dropped again; the window gets the newest lines kept.
	f.add(n*10+1500, "new")
	*parsed = nil
	got, err = tl.read(ctx, f.page, time.Time{}, at(n*10+2000))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(*parsed, []string{"new"}) {
		t.Errorf("parsed %d lines again, want only the new one", len(*parsed))
	}
	if len(got) > maxKept || got[len(got)-1] != "new" {
		t.Errorf("kept %d lines ending %q", len(got), got[len(got)-1])
	}
}

// A read's window is found by search; a line stamped before its predecessor (a clock stepped back) is neither
// lost nor allowed to hide the lines after it.
func TestTailWindowsWithAStampThatStepsBack(t *testing.T) {
	ctx := context.Background()
	f := &fakeLog{}
	f.add(1100, "a")
	f.add(3100, "b")
	f.add(2100, "c") // the clock stepped back a second
	f.add(4100, "d")
	tl, _ := newTail()
	for _, tc := range []struct {
		since int
		want  []string
	}{
		{0, []string{"a", "b", "c", "d"}},
		{2000, []string{"b", "c", "d"}},
		{3000, []string{"b", "c", "d"}},
		{4000, []string{"d"}},
		{5000, nil},
	} {
		got, err := tl.read(ctx, f.page, at(tc.since), at(4500))
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("since %dms: %v, %v; want %v", tc.since, got, err, tc.want)
		}
	}
}

// TestTailHeldServesOnlyAFreshRead: what a read fetched is served again without a request only while that read,
// which reached the log's end, is recent enough, and only for a window the tail holds whole.
func TestTailHeldServesOnlyAFreshRead(t *testing.T) {
	ctx := context.Background()
	tl, _ := newTail()
	if _, ok := tl.heldSince(time.Time{}, at(0), at(100)); ok {
		t.Fatal("a tail never read served lines")
	}
	f := &fakeLog{}
	f.add(100, "a")
	f.add(1500, "b")
	if _, err := tl.read(ctx, f.page, at(0), at(2000)); err != nil {
		t.Fatal(err)
	}
	f.add(2100, "c") // logged after the read: not held
	got, ok := tl.heldSince(at(1000), at(1800), at(2200))
	if !ok || !slices.Equal(got, []string{"b"}) {
		t.Errorf("a read at 2s, asked fresh from 1.8s: %v, %v", got, ok)
	}
	if _, ok := tl.heldSince(at(1000), at(2050), at(2200)); ok {
		t.Error("a read at 2s served as fresh from 2.05s")
	}
	// The window begins before what the tail holds: only a read can answer.
	tl.mu.Lock()
	tl.from = at(1000)
	tl.mu.Unlock()
	if _, ok := tl.heldSince(at(0), at(1800), at(2200)); ok {
		t.Error("served a window the tail does not hold whole")
	}
	// A read that stopped short of the log's end is not fresh.
	g := &fakeLog{limit: 40}
	for i := range 100 {
		g.add(i*10, fmt.Sprintf("line-%03d", i))
	}
	long, _ := newTail()
	if _, err := long.read(ctx, g.page, time.Time{}, at(3000)); err != nil {
		t.Fatal(err)
	}
	if _, ok := long.heldSince(time.Time{}, at(0), at(3100)); ok {
		t.Error("served a tail whose last read is behind the log")
	}
}
