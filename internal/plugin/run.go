package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// runOptions are `run`'s flags. Spec flags left unset are left to the API server's defaults.
type runOptions struct {
	*Options
	file                string
	name, generateName  string
	labs                []string
	target, targetNS    string
	port                int32
	path, clientSA      string
	policy              string
	mode, scope         string
	maxExposure, settle time.Duration
	timeout             time.Duration
	wait                bool
}

func newRunCommand(o *Options) *cobra.Command {
	r := &runOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "run [-f FILE | --target SERVICE [flags]]",
		Short: "Create a LabRun and follow it with a live step table",
		Long: `Create a LabRun, from a file (-f) or from flags, and follow it: a row is printed whenever a step
changes. The command exits 0 only when the run Succeeded and its MeshRestored condition is True.

The LabRun is created with your identity: the operator's admission checks that you may create probe pods in the
target namespace and update the mesh objects the labs change.`,
		Example: `  kubectl labrun run -f config/samples/labs_v1alpha1_labrun.yaml
  kubectl labrun run -n demo --target backend --authorization-policy backend-allow-frontend-only
  kubectl labrun run -n demo --target backend --mode Verify --labs mtls,authorization-policy --timeout 5m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return r.run(cmd.Context()) },
	}
	f := cmd.Flags()
	f.StringVarP(&r.file, "filename", "f", "", "a LabRun manifest (YAML or JSON); - reads standard input")
	f.StringVar(&r.name, "name", "", "name of the LabRun (overrides the file's)")
	f.StringVar(&r.generateName, "generate-name", "", "name prefix; the API server adds a random suffix (default labrun- when no name is given)")
	f.StringSliceVar(&r.labs, "labs", nil, "labs to run, in order (default: all five): mtls,peer-authentication,authorization-policy,footprint,hbone")
	f.StringVar(&r.target, "target", "", "the target Service's name (required without -f)")
	f.StringVar(&r.targetNS, "target-namespace", "", "the target Service's namespace (default: the LabRun's)")
	f.Int32Var(&r.port, "port", 0, "the target Service port (default 80)")
	f.StringVar(&r.path, "path", "", "the HTTP path the probes request (default /get)")
	f.StringVar(&r.clientSA, "client", "", "the ServiceAccount the allowed probes run as (default frontend)")
	f.StringVar(&r.policy, "authorization-policy", "", "[NAMESPACE/]NAME of the AuthorizationPolicy guarding the target (needed by the peer-authentication and authorization-policy labs)")
	f.StringVar(&r.mode, "mode", "", "Lab (weaken the mesh for a while to show each protection) or Verify (assert without changing anything)")
	f.StringVar(&r.scope, "scope", "", "how much the peer-authentication lab weakens: Workload, Namespace or Mesh")
	f.DurationVar(&r.maxExposure, "max-exposure", 0, "cap on how long the mesh may stay weakened (default 2m)")
	f.DurationVar(&r.settle, "settle-timeout", 0, "how long a step waits for a policy change to show")
	f.DurationVar(&r.timeout, "timeout", 10*time.Minute, "how long to follow the run before giving up (the run goes on)")
	f.BoolVar(&r.wait, "wait", true, "follow the run until it ends; --wait=false only creates it and prints its name")
	return cmd
}

func (r *runOptions) run(ctx context.Context) error {
	run, err := r.labRun()
	if err != nil {
		return &exitError{code: ExitError, err: err}
	}
	c, err := r.client()
	if err != nil {
		return err
	}
	if err := c.Create(ctx, run); err != nil {
		if apierrors.IsAlreadyExists(err) {
			// A LabRun is one run: running the same file again needs a new name.
			return fmt.Errorf("creating LabRun %s in namespace %s: %w; run it again under a new name with "+
				"--generate-name %s- (or --name), or delete the old run first", run.Name, run.Namespace, err, run.Name)
		}
		return fmt.Errorf("creating LabRun %s in namespace %s: %w", orDash(run.Name+run.GenerateName), run.Namespace, err)
	}
	fmt.Fprintf(r.Streams.Out, "labrun.labs.ambientlab.io/%s created\n", run.Name)
	return r.followCreated(ctx, c, run, r.wait, r.timeout)
}

// labRun builds the LabRun from the file or the flags, in the namespace of -n or the kubeconfig.
func (r *runOptions) labRun() (*labsv1.LabRun, error) {
	ns, err := r.namespace()
	if err != nil {
		return nil, err
	}
	var run *labsv1.LabRun
	if r.file != "" {
		if r.specFlagsSet() {
			return nil, errors.New("give either -f or spec flags (--target, --labs, ...), not both")
		}
		if run, err = readRun(r.file, r.Streams.In); err != nil {
			return nil, err
		}
	} else if run, err = r.fromFlags(); err != nil {
		return nil, err
	}
	if run.Namespace == "" || r.Flags.Namespace != nil && *r.Flags.Namespace != "" {
		run.Namespace = ns
	}
	switch {
	case r.name != "":
		run.Name, run.GenerateName = r.name, ""
	case r.generateName != "":
		run.Name, run.GenerateName = "", r.generateName
	case run.Name == "" && run.GenerateName == "":
		run.GenerateName = "labrun-"
	}
	return run, nil
}

// specFlagsSet: any flag that would go into the spec.
func (r *runOptions) specFlagsSet() bool {
	return len(r.labs) > 0 || r.target != "" || r.targetNS != "" || r.port != 0 || r.path != "" || r.clientSA != "" ||
		r.policy != "" || r.mode != "" || r.scope != "" || r.maxExposure != 0 || r.settle != 0
}

// readRun reads a LabRun manifest; unknown fields are refused, as kubectl's server-side validation would.
func readRun(path string, stdin io.Reader) (*labsv1.LabRun, error) {
	var raw []byte
	var err error
	if path == "-" {
		raw, err = io.ReadAll(stdin)
	} else {
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	run := &labsv1.LabRun{}
	if err := yaml.UnmarshalStrict(raw, run); err != nil {
		return nil, fmt.Errorf("reading a LabRun from %s: %w", path, err)
	}
	if gvk := run.GroupVersionKind(); gvk != labsv1.GroupVersion.WithKind("LabRun") {
		return nil, fmt.Errorf("%s holds a %s, not a %s LabRun", path, gvk.Kind, labsv1.GroupVersion)
	}
	return run, nil
}

// fromFlags builds the spec from flags; the API server validates and defaults it.
func (r *runOptions) fromFlags() (*labsv1.LabRun, error) {
	if r.target == "" {
		return nil, errors.New("--target SERVICE is required without -f")
	}
	spec := labsv1.LabRunSpec{
		Target: labsv1.TargetSpec{Namespace: r.targetNS, Service: r.target, Port: r.port, Path: r.path},
		Client: labsv1.ClientSpec{ServiceAccount: r.clientSA},
		Mode:   labsv1.Mode(r.mode), Scope: labsv1.Scope(r.scope),
	}
	for _, l := range r.labs {
		spec.Labs = append(spec.Labs, labsv1.LabName(strings.TrimSpace(l)))
	}
	if r.policy != "" {
		ns, name, found := strings.Cut(r.policy, "/")
		if !found {
			ns, name = "", r.policy
		}
		spec.Mesh.AuthorizationPolicy = &labsv1.ObjectRef{Namespace: ns, Name: name}
	}
	if r.maxExposure != 0 {
		spec.MaxExposure = &metav1.Duration{Duration: r.maxExposure}
	}
	if r.settle != 0 {
		spec.Probe.SettleTimeout = &metav1.Duration{Duration: r.settle}
	}
	return &labsv1.LabRun{Spec: spec}, nil
}

// verdict prints the outcome and turns it into the exit code: 0 only for Succeeded with the mesh restored.
func verdict(out io.Writer, run *labsv1.LabRun) error {
	s := run.Status.Summary
	restored, msg := meshRestored(run)
	fmt.Fprintf(out, "LabRun %s/%s %s: %d passed, %d failed, %d errored, %d skipped of %d; MeshRestored %s",
		run.Namespace, run.Name, run.Status.Phase, s.Passed, s.Failed, s.Errored, s.Skipped, s.Total, restored)
	if msg != "" {
		fmt.Fprintf(out, " (%s)", msg)
	}
	fmt.Fprintln(out)
	switch {
	case run.Status.Phase != labsv1.PhaseSucceeded:
		return runFailed("LabRun %s/%s ended %s: %s", run.Namespace, run.Name, run.Status.Phase, orDash(run.Status.Message))
	case restored != "True":
		return runFailed("LabRun %s/%s succeeded but its MeshRestored condition is %s: %s", run.Namespace, run.Name, restored, orDash(msg))
	}
	return nil
}
