package plugin

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ambientlab/labrun-operator/internal/report"
)

func newReportCommand(o *Options) *cobra.Command {
	var format, file string
	cmd := &cobra.Command{
		Use:   "report NAME --format junit|json|markdown [-o FILE]",
		Short: "Write a LabRun's report: JUnit XML, JSON or Markdown",
		Long: `Write a LabRun's report. junit: a testsuite per lab and a testcase per step, for CI test reporters;
json: the documented labs.ambientlab.io/report/v1 document; markdown: a table per lab. A policy-audit step's
policies follow it: a testcase each (NotEnforced fails, NoEffect and Untestable are skipped), and in markdown a
table of their verdicts, reasons and first probes. The report is written whatever the run's outcome (exit 0); a
run that has not ended reports its unfinished steps as skipped.`,
		Example: `  kubectl labrun report ambient-security-labs -n demo --format junit -o labrun.xml`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.report(cmd.Context(), args[0], report.Format(format), file)
		},
	}
	cmd.Flags().StringVar(&format, "format", string(report.FormatJUnit), "junit, json or markdown")
	cmd.Flags().StringVarP(&file, "output", "o", "", "write to this file instead of standard output")
	return cmd
}

func (o *Options) report(ctx context.Context, name string, format report.Format, file string) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	run, err := o.getRun(ctx, c, name)
	if err != nil {
		return err
	}
	if file == "" {
		return report.Write(o.Streams.Out, run, format)
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("creating the report file: %w", err)
	}
	if err := report.Write(f, run, format); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the report file %s: %w", file, err)
	}
	return nil
}
