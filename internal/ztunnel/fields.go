package ztunnel

import (
	"maps"
	"slices"
)

// Field is one key=value of a log line's fields.
type Field struct {
	Key, Value string
}

// Fields are a line's key=value pairs, one per key, in the order they were read. A line carries up to seventeen
// and a reader keeps thousands of lines: a slice sized to its line takes less than half of what a map does
// (bench-load: the kept lines' maps were half the manager's heap with 100 runs at once), and looking a key up
// among seventeen interned keys is as fast.
type Fields []Field

// FieldsOf returns m's pairs sorted by key.
func FieldsOf(m map[string]string) Fields {
	out := make(Fields, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, Field{k, m[k]})
	}
	return out
}

// Get returns the value under key, or "".
func (f Fields) Get(key string) string {
	v, _ := f.Lookup(key)
	return v
}

// Lookup returns the value under key and whether the key is there.
func (f Fields) Lookup(key string) (string, bool) {
	if i := f.index(key); i >= 0 {
		return f[i].Value, true
	}
	return "", false
}

// With returns a copy of f with key set to value: replaced where it is, appended otherwise. f is left as it was
// (entries copied from one another share their fields).
func (f Fields) With(key, value string) Fields {
	return slices.Clone(f).set(key, value)
}

// set sets key to value in place, or appends it.
func (f Fields) set(key, value string) Fields {
	if i := f.index(key); i >= 0 {
		f[i].Value = value
		return f
	}
	return append(f, Field{key, value})
}

// Without returns a copy of f without the given keys.
func (f Fields) Without(keys ...string) Fields {
	out := make(Fields, 0, len(f))
	for _, kv := range f {
		if !slices.Contains(keys, kv.Key) {
			out = append(out, kv)
		}
	}
	return out
}

// Map returns the pairs as a map.
func (f Fields) Map() map[string]string {
	m := make(map[string]string, len(f))
	for _, kv := range f {
		m[kv.Key] = kv.Value
	}
	return m
}

func (f Fields) index(key string) int {
	for i := range f {
		if f[i].Key == key {
			return i
		}
	}
	return -1
}

// take removes key and returns its value.
func (f *Fields) take(key string) (string, bool) {
	i := f.index(key)
	if i < 0 {
		return "", false
	}
	v := (*f)[i].Value
	*f = slices.Delete(*f, i, i+1)
	return v, true
}
