package ztunnel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/go-logfmt/logfmt"
)

// ErrNotLogLine is returned by ParseLine for input that is not a ztunnel log
// line, so callers scanning mixed output can tell noise from corrupt lines.
var ErrNotLogLine = errors.New("not a ztunnel log line")

// maxLineBytes bounds a single line; access lines are a few hundred bytes,
// but a generous cap keeps one pathological line from aborting a whole Parse.
const maxLineBytes = 1 << 20

var (
	// kubectlPrefix is what `kubectl logs --prefix` prepends to every line.
	kubectlPrefix = regexp.MustCompile(`^\[pod/[^/\]\s]+/[^\]\s]+\]\s*`)
	// tailStart finds the first key=value token, where the logfmt fields begin.
	// Head columns (time, level, target, message) never contain '='.
	tailStart = regexp.MustCompile(`(?:^|[\t ])[A-Za-z_][A-Za-z0-9_.\-]*=`)
)

var levels = map[string]bool{"trace": true, "debug": true, "info": true, "warn": true, "warning": true, "error": true}

// ParseLine parses one ztunnel log line in either the text or the JSON
// format. A `kubectl logs --prefix` pod prefix is stripped first. It returns
// an error wrapping ErrNotLogLine when the line has no ztunnel shape.
func ParseLine(line string) (Entry, error) {
	line = strings.TrimSpace(line)
	if strings.HasPrefix(line, "[pod/") {
		line = strings.TrimSpace(kubectlPrefix.ReplaceAllString(line, ""))
	}
	if line == "" {
		return Entry{}, fmt.Errorf("%w: empty", ErrNotLogLine)
	}
	if line[0] == '{' {
		return parseJSON(line)
	}
	return parseText(line)
}

// Parse reads ztunnel log output, e.g. a saved `kubectl logs` dump. Blank
// lines, '#' comments and lines that are not log lines are skipped rather
// than reported, because real log captures interleave unrelated output; only
// read failures are returned.
func Parse(r io.Reader) ([]Entry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), maxLineBytes)
	var entries []Entry
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if e, err := ParseLine(line); err == nil {
			entries = append(entries, e)
		}
	}
	return entries, sc.Err()
}

func parseText(line string) (Entry, error) {
	head, tail := splitTail(line)
	e, err := parseHead(head)
	if err != nil {
		return Entry{}, err
	}
	if e.Fields, err = parseFields(tail); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// splitTail separates the head columns from the logfmt fields.
func splitTail(line string) (head, tail string) {
	loc := tailStart.FindStringIndex(line)
	if loc == nil {
		return line, ""
	}
	start := loc[0]
	if line[start] == '\t' || line[start] == ' ' {
		start++
	}
	return strings.TrimSpace(line[:start]), line[start:]
}

// parseHead reads "[time] level target message". Columns are located by
// content rather than by separator because ztunnel output is found with both
// tabs and runs of spaces, and the message itself contains single spaces.
func parseHead(head string) (Entry, error) {
	var e Entry
	if head == "" {
		return e, nil
	}
	rest := head
	// Loop so a `kubectl logs --timestamps` stamp in front of ztunnel's own
	// is tolerated; the last one is ztunnel's and wins.
	for {
		tok, after := nextToken(rest)
		t, err := time.Parse(time.RFC3339Nano, tok)
		if err != nil {
			break
		}
		e.Time, rest = t, after
	}
	tok, rest := nextToken(rest)
	if !levels[strings.ToLower(tok)] {
		return Entry{}, fmt.Errorf("%w: no level in %q", ErrNotLogLine, head)
	}
	e.Level = intern(strings.ToLower(tok))
	e.Scope, rest = nextToken(rest)
	e.Scope, e.Message = intern(e.Scope), intern(rest)
	return e, nil
}

// nextToken splits off the first whitespace-delimited word.
func nextToken(s string) (tok, rest string) {
	s = strings.TrimLeft(s, " \t")
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

// parseFields decodes the logfmt tail; a bare key is kept with an empty value, a repeated key keeps its last value.
// The pairs are gathered on the stack and kept in a slice of exactly the line's size.
func parseFields(tail string) (Fields, error) {
	var buf [24]Field // ztunnel's access lines carry up to 17
	fields := Fields(buf[:0])
	dec := logfmt.NewDecoderSize(strings.NewReader(tail), len(tail)+1)
	for dec.ScanRecord() {
		for dec.ScanKeyval() {
			k := fieldKey(dec.Key())
			fields = fields.set(k, fieldValue(k, dec.Value()))
		}
	}
	if err := dec.Err(); err != nil {
		return nil, fmt.Errorf("ztunnel fields: %w", err)
	}
	return append(make(Fields, 0, len(fields)), fields...), nil
}
