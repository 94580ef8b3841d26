package plugin

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// AnnotationFromSchedule names, for people, the LabSchedule a run was started from by hand (`schedule run`).
// Nothing reads it: the run is the user's own, not the schedule's (no controller reference, no schedule label),
// so the schedule's history, concurrency policy and metrics leave it out.
// Outside labs.ambientlab.io/, which only the operator may write on a LabRun (config/admission's object-marks).
const AnnotationFromSchedule = "kubectl-labrun.ambientlab.io/from-schedule"

func newScheduleCommand(o *Options) *cobra.Command {
	schedule := &cobra.Command{
		Use:   "schedule",
		Short: "Work with LabSchedules",
	}
	var wait bool
	var timeout time.Duration
	run := &cobra.Command{
		Use:   "run NAME",
		Short: "Run a LabSchedule's template once, now, and follow the run",
		Long: `Create a LabRun from the LabSchedule's template now, as you (with your own rights, as kubectl create job
--from=cronjob/NAME does), and follow it as run does. The run is yours, not the schedule's: it is named
NAME-manual-<suffix>, annotated ` + AnnotationFromSchedule + `=NAME, and the schedule's history, concurrency
policy and metrics leave it out.`,
		Example: `  kubectl labrun schedule run ambient-security-nightly -n demo`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.runSchedule(cmd.Context(), args[0], wait, timeout)
		},
	}
	run.Flags().BoolVar(&wait, "wait", true, "follow the run until it ends; --wait=false only creates it and prints its name")
	run.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long to follow the run before giving up (the run goes on)")
	schedule.AddCommand(run)
	return schedule
}

func (o *Options) runSchedule(ctx context.Context, name string, wait bool, timeout time.Duration) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	ns, err := o.namespace()
	if err != nil {
		return err
	}
	ls := &labsv1.LabSchedule{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, ls); err != nil {
		return fmt.Errorf("reading LabSchedule %s/%s: %w", ns, name, err)
	}
	run := fromSchedule(ls)
	if err := c.Create(ctx, run); err != nil {
		return fmt.Errorf("creating a LabRun from LabSchedule %s/%s: %w", ns, name, err)
	}
	fmt.Fprintf(o.Streams.Out, "labrun.labs.ambientlab.io/%s created from LabSchedule %s\n", run.Name, name)
	return o.followCreated(ctx, c, run, wait, timeout)
}

// fromSchedule is a run of the schedule's template, the user's own: no schedule label, no owner.
func fromSchedule(ls *labsv1.LabSchedule) *labsv1.LabRun {
	tmpl := ls.Spec.Template
	annotations := maps.Clone(tmpl.Metadata.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[AnnotationFromSchedule] = ls.Name
	labels := maps.Clone(tmpl.Metadata.Labels)
	delete(labels, labsv1.LabelSchedule)
	return &labsv1.LabRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: ls.Namespace, GenerateName: ls.Name + "-manual-", Labels: labels,
			Annotations: annotations},
		Spec: *tmpl.Spec.DeepCopy(),
	}
}
