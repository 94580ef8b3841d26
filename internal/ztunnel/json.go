package ztunnel

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Keys of the JSON format that map to Entry's head rather than to Fields.
const (
	jsonTime    = "time"
	jsonLevel   = "level"
	jsonScope   = "scope"
	jsonTarget  = "target" // tracing's own name for scope, accepted as an alias
	jsonMessage = "message"
)

func parseJSON(line string) (Entry, error) {
	obj, err := decodeObject(line)
	if err != nil {
		return Entry{}, err
	}
	var e Entry
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		flatten(&e.Fields, intern(k), obj[k])
	}
	e.Fields = slices.Clip(e.Fields)
	if err := liftHead(&e); err != nil {
		return Entry{}, err
	}
	if !levels[e.Level] {
		return Entry{}, fmt.Errorf("%w: json without a log level", ErrNotLogLine)
	}
	return e, nil
}

// decodeObject keeps numbers as json.Number so byte counts are not rounded
// through float64.
func decodeObject(line string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotLogLine, err)
	}
	return obj, nil
}

// flatten stores v under key, joining nested objects with dots so that a
// nested {"src":{"addr":…}} lands on the same key as the dotted "src.addr".
func flatten(dst *Fields, key string, v any) {
	switch v := v.(type) {
	case nil:
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			flatten(dst, intern(key+"."+k), v[k])
		}
	case string:
		*dst = dst.set(key, fieldValue(key, []byte(v)))
	case json.Number:
		*dst = dst.set(key, decimal(v))
	case bool:
		*dst = dst.set(key, strconv.FormatBool(v))
	default:
		b, _ := json.Marshal(v) // arrays of decoded JSON values always marshal
		*dst = dst.set(key, string(b))
	}
}

// decimal renders a JSON number as plain decimal text, never exponent form,
// so it compares equal to the same value read from the text format.
func decimal(n json.Number) string {
	if _, err := n.Int64(); err == nil {
		return n.String()
	}
	f, err := n.Float64()
	if err != nil {
		return n.String()
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// liftHead moves the head keys out of Fields into their Entry slots.
func liftHead(e *Entry) error {
	if ts, ok := e.Fields.take(jsonTime); ok {
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return fmt.Errorf("ztunnel json time: %w", err)
		}
		e.Time = t
	}
	level, _ := e.Fields.take(jsonLevel)
	e.Level = intern(strings.ToLower(level))
	target, _ := e.Fields.take(jsonTarget)
	e.Scope, _ = e.Fields.take(jsonScope)
	if e.Scope == "" {
		e.Scope = target
	}
	e.Message, _ = e.Fields.take(jsonMessage)
	e.Scope, e.Message = intern(e.Scope), intern(e.Message)
	return nil
}
