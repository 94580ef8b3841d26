package ztunnel

import "testing"

func TestParsedFieldsAreKeptAtTheirSize(t *testing.T) {
	e, err := ParseLine(`2025-01-01T00:00:00.000000Z	info	access	connection complete	src.addr=10.0.0.1:40000 src.workload="a" dst.addr=10.0.0.2:15008 direction="outbound" src.workload="b"`)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Fields) != 4 || cap(e.Fields) != len(e.Fields) {
		t.Errorf("fields %v: len %d cap %d, want 4 and 4", e.Fields, len(e.Fields), cap(e.Fields))
	}
	if got := e.Fields.Get(FieldSrcWorkload); got != "b" {
		t.Errorf("a repeated key reads %q, want the last value %q", got, "b")
	}
	if _, ok := e.Fields.Lookup(FieldError); ok {
		t.Errorf("Lookup found a key the line does not have")
	}
}

func TestWithLeavesTheOriginal(t *testing.T) {
	orig := FieldsOf(map[string]string{FieldError: "x", FieldDirection: "inbound"})
	copied := Entry{Fields: orig}
	copied.Fields = copied.Fields.With(FieldError, "y").With(FieldDstWorkload, "w")
	if orig.Get(FieldError) != "x" || len(orig) != 2 {
		t.Errorf("With changed the fields it was called on: %v", orig)
	}
	if copied.Fields.Get(FieldError) != "y" || copied.Fields.Get(FieldDstWorkload) != "w" {
		t.Errorf("With did not set: %v", copied.Fields)
	}
	if got := copied.Fields.Without(FieldError).Map(); len(got) != 2 || got[FieldError] != "" {
		t.Errorf("Without(error) = %v", got)
	}
}
