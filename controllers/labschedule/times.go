package labschedule

import (
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// maxMissedScan bounds how many scheduled times one pass walks to find the most recent one missed (a schedule of
// every minute that was down for a year would otherwise walk half a million). Past it the pass gives up on the
// missed time, says so, and goes on from now.
const maxMissedScan = 100_000

// parseSchedule reads spec.schedule in spec.timeZone (UTC by default) the way cron.ParseStandard does: five
// fields, a descriptor (@hourly) or @every <duration>.
func parseSchedule(ls *labsv1.LabSchedule) (cron.Schedule, error) {
	loc := time.UTC
	if tz := ls.Spec.TimeZone; tz != nil && *tz != "" {
		l, err := time.LoadLocation(*tz)
		if err != nil {
			return nil, fmt.Errorf("unknown time zone %q: %w", *tz, err)
		}
		loc = l
	}
	sched, err := cron.ParseStandard(ls.Spec.Schedule)
	if err != nil {
		return nil, fmt.Errorf("schedule %q does not parse: %w", ls.Spec.Schedule, err)
	}
	if s, ok := sched.(*cron.SpecSchedule); ok && !strings.HasPrefix(ls.Spec.Schedule, "CRON_TZ=") &&
		!strings.HasPrefix(ls.Spec.Schedule, "TZ=") {
		s.Location = loc
	}
	return sched, nil
}

// dueTimes returns the most recent scheduled time after earliest and not after now (zero if none), and the next
// one after now. Only the most recent missed time matters: a schedule runs a missed time once, never a backlog.
func dueTimes(sched cron.Schedule, earliest, now time.Time) (last, next time.Time, err error) {
	if every, ok := sched.(cron.ConstantDelaySchedule); ok && every.Delay > 0 {
		// Skip straight to the last interval before now; Next keeps the phase of earliest.
		if n := now.Sub(earliest) / every.Delay; n > 2 {
			earliest = earliest.Add((n - 2) * every.Delay)
		}
	}
	t := sched.Next(earliest)
	for i := 0; !t.IsZero() && !t.After(now); i++ {
		if i == maxMissedScan {
			return time.Time{}, sched.Next(now), fmt.Errorf("more than %d scheduled times missed since %s; "+
				"going on from now", maxMissedScan, earliest.Format(time.RFC3339))
		}
		last, t = t, sched.Next(t)
	}
	return last, t, nil
}

// tooLate tells whether a run scheduled at t may no longer start: startingDeadlineSeconds has passed.
func tooLate(ls *labsv1.LabSchedule, t, now time.Time) bool {
	d := ls.Spec.StartingDeadlineSeconds
	return d != nil && now.Sub(t) > time.Duration(*d)*time.Second
}

// runBaseLen keeps a run's name, <base>-t-<10-digit unix seconds>, within 63 characters: run names become label
// values (labs.ambientlab.io/labrun on probe pods and fixtures).
const runBaseLen = 50

// runBase is the schedule's name, shortened with a hash of the whole name when it is too long, so two long
// names that share a prefix still make different run names.
func runBase(schedule string) string {
	if len(schedule) <= runBaseLen {
		return schedule
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(schedule))
	return fmt.Sprintf("%s-%08x", strings.TrimRight(schedule[:runBaseLen-9], "-."), h.Sum32())
}

// scheduledRunName is deterministic in the scheduled time: creating the run of a time twice (a restart, a second
// replica) gets AlreadyExists instead of a second run.
func scheduledRunName(schedule string, t time.Time) string {
	return fmt.Sprintf("%s-%d", runBase(schedule), t.Unix())
}

// triggeredRunName is deterministic in the debounced time of a trigger.
func triggeredRunName(schedule string, t time.Time) string {
	return fmt.Sprintf("%s-t-%d", runBase(schedule), t.Unix())
}
