package ztunnel

import "unique"

// A node's ztunnel repeats the same keys, identities, workloads, namespaces and addresses line after line, and a
// reader keeps thousands of parsed lines (tail.go): the parser keeps each such string once (unique), so a kept
// line costs its map and the few values that belong to its connection alone, not a copy of the whole text
// (bench-load: the parsed lines of 30 runs at once were two thirds of the manager's heap at its peak).

// perConnection are the fields whose values differ from one connection to the next: interning them would only
// add a handle per line.
var perConnection = map[string]bool{FieldSrcAddr: true, "bytes_sent": true, "bytes_recv": true, "duration": true}

// intern returns the one copy of s.
func intern(s string) string { return unique.Make(s).Value() }

// fieldKey returns the one copy of a field key.
func fieldKey(k []byte) string { return unique.Make(string(k)).Value() }

// fieldValue returns v as kept under key: the one copy of a value lines share, a copy of its own otherwise.
func fieldValue(key string, v []byte) string {
	if perConnection[key] {
		return string(v)
	}
	return unique.Make(string(v)).Value()
}
