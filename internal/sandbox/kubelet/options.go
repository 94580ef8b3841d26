package kubelet

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// logOptions are kubelet's containerLogs query parameters, decoded and validated.
type logOptions struct {
	follow     bool
	previous   bool
	timestamps bool
	tailLines  int64     // -1: all lines
	limitBytes int64     // -1: no limit
	since      time.Time // zero: from the start
}

// parseLogOptions decodes the query like kubelet does (the PodLogOptions parameters) and applies the API's
// validation, so that direct callers get the same 400s the API server would give; now anchors sinceSeconds.
func parseLogOptions(q url.Values, now time.Time) (logOptions, error) {
	o := logOptions{tailLines: -1, limitBytes: -1}
	var err error
	if o.follow, err = boolParam(q, "follow"); err != nil {
		return o, err
	}
	if o.previous, err = boolParam(q, "previous"); err != nil {
		return o, err
	}
	if o.timestamps, err = boolParam(q, "timestamps"); err != nil {
		return o, err
	}
	if err = o.parseLimits(q); err != nil {
		return o, err
	}
	err = o.parseSince(q, now)
	return o, err
}

// parseLimits reads tailLines and limitBytes.
func (o *logOptions) parseLimits(q url.Values) error {
	tail, ok, err := intParam(q, "tailLines")
	if err != nil {
		return err
	}
	if ok && tail < 0 {
		return invalid("tailLines", tail, "must be greater than or equal to 0")
	}
	if ok {
		o.tailLines = tail
	}
	limit, ok, err := intParam(q, "limitBytes")
	if err != nil {
		return err
	}
	if ok && limit < 1 {
		return invalid("limitBytes", limit, "must be greater than 0")
	}
	if ok {
		o.limitBytes = limit
	}
	return nil
}

// parseSince reads sinceSeconds or sinceTime, which exclude each other.
func (o *logOptions) parseSince(q url.Values, now time.Time) error {
	seconds, hasSeconds, err := intParam(q, "sinceSeconds")
	if err != nil {
		return err
	}
	sinceTime := q.Get("sinceTime")
	switch {
	case hasSeconds && sinceTime != "":
		return errors.New("sinceSeconds: Forbidden: at most one of sinceTime or sinceSeconds may be specified")
	case hasSeconds && seconds < 1:
		return invalid("sinceSeconds", seconds, "must be greater than 0")
	case hasSeconds:
		o.since = now.Add(-time.Duration(seconds) * time.Second)
	case sinceTime != "":
		t, err := time.Parse(time.RFC3339, sinceTime)
		if err != nil {
			return fmt.Errorf("sinceTime: Invalid value: %q: must be an RFC3339 time", sinceTime)
		}
		o.since = t
	}
	return nil
}

func invalid(field string, value int64, detail string) error {
	return fmt.Errorf("%s: Invalid value: %d: %s", field, value, detail)
}

// boolParam reads an optional boolean; absent is false.
func boolParam(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: Invalid value: %q: must be a boolean", name, v)
	}
	return b, nil
}

// intParam reads an optional integer, saying whether it was present.
func intParam(q url.Values, name string) (int64, bool, error) {
	v := q.Get(name)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s: Invalid value: %q: must be an integer", name, v)
	}
	return n, true, nil
}
