package kubelet

import (
	"testing"
	"time"
)

func TestLogStore(t *testing.T) {
	s := NewLogStore()
	if s.Lines("ns", "p", "c") != nil {
		t.Error("unknown container has lines")
	}
	s.AddContainer("ns", "p", "c")
	if l := s.Lines("ns", "p", "c"); l == nil || len(l) != 0 {
		t.Errorf("declared container: %v", l)
	}
	local := time.Date(2026, 5, 1, 12, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	s.AppendAt("ns", "p", "c", local, "a\nb\n")
	before := time.Now()
	s.Append("ns", "p", "c", "c")
	lines := s.Lines("ns", "p", "c")
	if len(lines) != 3 || lines[0].Text != "a" || lines[1].Text != "b" || lines[2].Text != "c" {
		t.Fatalf("lines %v", lines)
	}
	if lines[0].Time.Location() != time.UTC || !lines[0].Time.Equal(local) {
		t.Errorf("time %v not kept in UTC", lines[0].Time)
	}
	if lines[2].Time.Before(before.Truncate(time.Second)) || lines[2].Time.Location() != time.UTC {
		t.Errorf("Append time %v", lines[2].Time)
	}
	lines[0].Text = "changed"
	if s.Lines("ns", "p", "c")[0].Text != "a" {
		t.Error("Lines shares the store's slice")
	}
	s.RemovePod("ns", "p")
	if s.Lines("ns", "p", "c") != nil {
		t.Error("removed pod still has lines")
	}
}

func TestLogStoreWakesFollowers(t *testing.T) {
	s := NewLogStore()
	s.AddContainer("ns", "p", "c")
	_, changed, err := s.read("ns", "p", "c", 0)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
		t.Fatal("woken before any append")
	default:
	}
	s.Append("ns", "p", "c", "x")
	<-changed // closed by the append; blocks (and times the test out) otherwise
	lines, _, _ := s.read("ns", "p", "c", 1)
	if len(lines) != 0 {
		t.Errorf("read from the end: %v", lines)
	}
	if lines, _, _ := s.read("ns", "p", "c", 5); len(lines) != 0 {
		t.Errorf("read past the end: %v", lines)
	}
}
