package controllers

import (
	"errors"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// stalledError ends the run: the input or the cluster is wrong and retrying would not change it.
type stalledError struct {
	reason string
	msg    string
}

func (e *stalledError) Error() string { return e.msg }

func stalled(reason, format string, args ...any) error {
	return &stalledError{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// refusedForGood tells whether the API server refused a request for good: a 4xx other than a conflict, a missing
// object, a timeout or throttling (RBAC, admission denials, invalid objects, refused selectors). Retrying would
// not change it: the step ends in Error with the server's message and the run restores and ends.
func refusedForGood(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	code := int(status.Status().Code)
	switch code {
	case http.StatusConflict, http.StatusNotFound, http.StatusRequestTimeout, http.StatusTooManyRequests:
		return false
	}
	return code >= 400 && code < 500
}
