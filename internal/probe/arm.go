package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// Where a warm observer's pod mounts its arm (see PodRequest.Arm).
const (
	// ArmDir is the directory the arm's ConfigMap volume is mounted at in the probe container.
	ArmDir = "/var/run/labrun/arm"
	// ArmFileName is the file in ArmDir that holds the arm, as JSON.
	ArmFileName = "arm.json"
)

// Arm tells a warm observer what to call, for whom and until when. The manager writes it into a ConfigMap in
// the observer's namespace (one key per node), and the observer reads it before every attempt: a warm observer
// outlives the runs it serves, so its targets cannot be on its command line.
//
// An Arm is idle when it has no URLs or its Until has passed (the zero Arm is idle): the observer then makes
// no attempt and logs nothing.
type Arm struct {
	// Token names the run the observer works for (its UID); every Attempt made under this arm carries it, so
	// that a reader of the log keeps only its own run's attempts.
	Token string `json:"token"`
	// URLs are called in turn, one per attempt.
	URLs []string `json:"urls"`
	// Until ends the arm: no attempt starts at or after it.
	Until time.Time `json:"until"`
	// Interval, when set, paces the attempts made under this arm instead of the observer's own interval (which
	// still paces the loads of an idle arm): a run over many nodes asks its observers for fewer attempts.
	Interval time.Duration `json:"interval,omitempty"`
}

// Armed tells whether an attempt may start under a at the time now: a has URLs and now is before Until.
func (a Arm) Armed(now time.Time) bool {
	return len(a.URLs) > 0 && now.Before(a.Until)
}

// ArmVolume names the ConfigMap key that holds a warm observer's arm. Pod mounts that key as ArmFileName in
// ArmDir, through an optional ConfigMap volume: a missing ConfigMap or key leaves the observer idle.
type ArmVolume struct {
	// ConfigMap is the name of the ConfigMap, in the pod's namespace.
	ConfigMap string
	// Key is the ConfigMap's data key for this observer (one per node).
	Key string
}

// readArmFile reads and decodes the arm at path. A missing file is an idle arm, not an error: kubelet leaves
// the file out while the optional ConfigMap or its key does not exist.
func readArmFile(path string) (Arm, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Arm{}, nil
	}
	if err != nil {
		return Arm{}, err
	}
	var arm Arm
	if err := json.Unmarshal(raw, &arm); err != nil {
		return Arm{}, fmt.Errorf("decoding arm %s: %w", path, err)
	}
	return arm, nil
}

// armLoader is how Observe reads the arm: o.LoadArm, else a read of o.ArmFile, else nil (not a warm observer).
func armLoader(o Options) func() (Arm, error) {
	switch {
	case o.LoadArm != nil:
		return o.LoadArm
	case o.ArmFile != "":
		return func() (Arm, error) { return readArmFile(o.ArmFile) }
	}
	return nil
}

// observeArmed is Observe for a warm observer: before every attempt it loads the arm; while the arm is idle
// (or cannot be read) it makes no attempt and loads it again an Interval later. Armed, it calls the arm's URLs
// in turn, starting from the first one each time the token changes, and each Attempt names its URL and token.
// The budget (o.Settle) bounds the whole life as for any observer.
func observeArmed(ctx context.Context, o Options, load func() (Arm, error), emit func(Attempt)) {
	deadline := time.Now().Add(o.Settle)
	token, next := "", 0
	for {
		arm, err := load()
		if err == nil && arm.Armed(time.Now()) {
			if arm.Token != token {
				token, next = arm.Token, 0 // a new run starts at its first URL
			}
			one := o
			one.URL = arm.URLs[next%len(arm.URLs)]
			next++
			out := attempt(ctx, one)
			if ctx.Err() != nil {
				return
			}
			a := newAttempt(out)
			a.URL, a.Arm = one.URL, arm.Token
			emit(a)
		}
		wait := o.Interval
		if err == nil && arm.Armed(time.Now()) && arm.Interval > 0 {
			wait = arm.Interval
		}
		if o.Settle > 0 && time.Until(deadline) <= wait {
			return // the next attempt would start after the budget
		}
		if !pause(ctx, wait) || (o.Settle > 0 && !time.Now().Before(deadline)) {
			return
		}
	}
}
