package controllers

import (
	"fmt"
	"time"
)

// waitingError stops a pass until a watched event (or, at the latest, the deadline) resumes it.
type waitingError struct {
	what  string
	after time.Duration
}

func (e *waitingError) Error() string { return "waiting for " + e.what }

func waitFor(what string, deadline time.Duration) error {
	if deadline <= 0 {
		deadline = time.Second
	}
	return &waitingError{what: what, after: deadline}
}

// stalledError ends the run: the input or the cluster is wrong and retrying would not change it.
type stalledError struct {
	reason string
	msg    string
}

func (e *stalledError) Error() string { return e.msg }

func stalled(reason, format string, args ...any) error {
	return &stalledError{reason: reason, msg: fmt.Sprintf(format, args...)}
}
