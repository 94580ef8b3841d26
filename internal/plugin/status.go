package plugin

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

func newStatusCommand(o *Options) *cobra.Command {
	var wide bool
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Print a LabRun's step table",
		Long: `Print a LabRun's steps (lab, step, expected, observed, verdict, settle), then what each node saw for the
steps that failed. Exits 0 when the run Succeeded with its mesh restored, 1 when it ended otherwise, 2 while it
has not ended or could not be read. On a terminal the expected and observed texts are cut to its width;
--wide (or a pipe) prints them in full.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.status(cmd.Context(), args[0], wide) },
	}
	cmd.Flags().BoolVar(&wide, "wide", false, "print the expected and observed texts in full, whatever the terminal's width")
	return cmd
}

func (o *Options) status(ctx context.Context, name string, wide bool) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	run, err := o.getRun(ctx, c, name)
	if err != nil {
		return err
	}
	if failedAtPreflight(run) {
		fmt.Fprintln(o.Streams.Out, preflightLine(run)) // no step ran: no table of skipped steps
		return verdict(o.Streams.Out, run)
	}
	width := 0
	if !wide {
		width = terminalWidth(o.Streams.Out)
	}
	if err := writeStepTable(o.Streams.Out, run.Status.Steps, width); err != nil {
		return err
	}
	if !finished(run) {
		fmt.Fprintf(o.Streams.Out, "LabRun %s/%s is %s\n", run.Namespace, run.Name, orDash(string(run.Status.Phase)))
		return &exitError{code: ExitError, err: fmt.Errorf("LabRun %s/%s has not ended yet (%s)", run.Namespace, run.Name,
			orDash(string(run.Status.Phase)))}
	}
	return verdict(o.Streams.Out, run)
}
