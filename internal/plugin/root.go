// Package plugin is the kubectl plugin kubectl-labrun: run a LabRun and follow it, show its step table, write its
// report, and restore the mesh from the operator's trusted records when the operator is gone. It reads
// --kubeconfig, --context, -n and the other kubectl connection flags through k8s.io/cli-runtime, so it talks to
// the cluster exactly as kubectl would, with the user's own identity and rights.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// Exit codes. A script tells a run that did not pass (1) from a plugin that could not find out (2).
const (
	ExitOK        = 0
	ExitRunFailed = 1 // the run ended Failed, or its mesh was not restored
	ExitError     = 2 // bad flags, an API error, a timeout
)

// exitError carries an exit code up through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// runFailed is the error of a run that ended without passing.
func runFailed(format string, args ...any) error {
	return &exitError{code: ExitRunFailed, err: fmt.Errorf(format, args...)}
}

// Options are shared by every subcommand.
type Options struct {
	Flags   *genericclioptions.ConfigFlags
	Streams genericiooptions.IOStreams
}

// NewRootCommand builds `kubectl labrun` with its subcommands.
func NewRootCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{Flags: genericclioptions.NewConfigFlags(true), Streams: streams}
	root := &cobra.Command{
		Use:   "kubectl-labrun",
		Short: "Run the Istio ambient-mode security labs (LabRuns) and read their results",
		Long: `kubectl labrun creates LabRuns and follows them, prints their step tables, writes their reports
(JUnit, JSON, Markdown) and, when the labrun-operator is gone, puts back what runs left changed in the mesh.

Exit codes: 0 success; 1 the run ended Failed or its mesh was not restored; 2 the plugin could not tell
(bad flags, API errors, timeout).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// kubectl runs the binary kubectl-labrun as `kubectl labrun`; help says the latter.
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl labrun"},
	}
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	o.Flags.AddFlags(root.PersistentFlags())
	root.AddCommand(newRunCommand(o), newStatusCommand(o), newReportCommand(o), newRestoreCommand(o), newScheduleCommand(o),
		newVersionCommand(o))
	return root
}

// Execute runs the command line args and returns the process exit code, having printed any error.
func Execute(ctx context.Context, args []string, streams genericiooptions.IOStreams) int {
	cmd := NewRootCommand(streams)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(streams.ErrOut, "Error:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return ExitError
}

// scheme holds the kinds the plugin reads and writes typed; mesh objects are handled as unstructured.
func scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, labsv1.AddToScheme(s)
}

// restConfig is the user's connection, as kubectl would build it from the flags and kubeconfig.
func (o *Options) restConfig() (*rest.Config, error) {
	cfg, err := o.Flags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	return cfg, nil
}

// clientFor builds a client with watch support for cfg.
func clientFor(cfg *rest.Config) (client.WithWatch, error) {
	s, err := scheme()
	if err != nil {
		return nil, err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: s})
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", cfg.Host, err)
	}
	return c, nil
}

// client connects as the user.
func (o *Options) client() (client.WithWatch, error) {
	cfg, err := o.restConfig()
	if err != nil {
		return nil, err
	}
	return clientFor(cfg)
}

// namespace is -n, else the kubeconfig context's namespace, else default.
func (o *Options) namespace() (string, error) {
	ns, _, err := o.Flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("reading the namespace from the kubeconfig: %w", err)
	}
	return ns, nil
}

// getRun reads a LabRun of the current namespace.
func (o *Options) getRun(ctx context.Context, c client.Client, name string) (*labsv1.LabRun, error) {
	ns, err := o.namespace()
	if err != nil {
		return nil, err
	}
	run := &labsv1.LabRun{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, run); err != nil {
		return nil, fmt.Errorf("reading LabRun %s/%s: %w", ns, name, err)
	}
	return run, nil
}

// terminalWidth is the width of the terminal out writes to, or 0 when it is not one (a pipe, a file, a test's
// buffer): only what a person reads in a terminal is cut to fit.
func terminalWidth(out io.Writer) int {
	f, ok := out.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0
	}
	w, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0
	}
	return w
}
