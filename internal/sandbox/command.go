package sandbox

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/sandbox/dataplane"
)

type commandConfig struct {
	kubeconfigOut    string
	controller       bool
	applySample      bool
	faults           map[string]dataplane.Fault // node → the fault its ztunnel shows (--node-fault)
	keep             bool
	propagationDelay time.Duration
	podStartLatency  time.Duration
	runTimeout       time.Duration
	verbose          bool
	nodes, replicas  int
	metricsAddr      string
}

// Main is `manager sandbox`, with the manager startController runs (nil: none). It returns 0 unless a run it
// applied did not succeed with the mesh restored.
func Main(args []string, stdout, stderr io.Writer, startController Controller) int {
	cfg, err := parseCommand(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "sandbox: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, startController, stdout); err != nil {
		fmt.Fprintf(stderr, "sandbox: %v\n", err)
		return 1
	}
	return 0
}

func parseCommand(args []string, stderr io.Writer) (commandConfig, error) {
	var c commandConfig
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.kubeconfigOut, "kubeconfig-out", "", "Where to write the sandbox's kubeconfig (default bin/sandbox/kubeconfig in the repository)")
	fs.BoolVar(&c.controller, "controller", true, "Run the LabRun controller in-process (false: start the manager yourself with --kubeconfig bin/sandbox/manager.kubeconfig)")
	fs.IntVar(&c.nodes, "nodes", 3, "How many simulated nodes, each with its ztunnel")
	fs.IntVar(&c.replicas, "replicas", 1, "How many backend pods, spread over the nodes from the second on (frontend runs on the first)")
	fs.BoolVar(&c.applySample, "apply-sample", false, "Apply config/samples/labs_v1alpha1_labrun.yaml, wait for it and print its steps")
	fs.BoolVar(&c.keep, "keep", false, "Stay up until interrupted (Ctrl-C)")
	fs.DurationVar(&c.propagationDelay, "propagation-delay", 500*time.Millisecond, "How long a policy change takes to reach the simulated ztunnel")
	fs.DurationVar(&c.podStartLatency, "pod-start-latency", 0, "How long a pod takes to start")
	fs.DurationVar(&c.runTimeout, "run-timeout", 5*time.Minute, "How long to wait for the applied LabRun")
	fs.BoolVar(&c.verbose, "v", false, "Log the controller and the sandbox")
	fs.StringVar(&c.metricsAddr, "metrics-bind-address", "127.0.0.1:8080", "Where the in-process manager serves /metrics, over plain HTTP (0 disables it)")
	fs.Func("node-fault", "NODE=FAULT: make NODE's ztunnel misbehave (repeatable): no-enforce lets every connection into NODE's pods through, refuse-all resets every connection NODE carries; a Verify run then fails and names NODE when NODE hosts a backend pod (see --replicas: with 1, only the second node does)", func(v string) error {
		node, name, ok := strings.Cut(v, "=")
		if !ok || node == "" {
			return fmt.Errorf("want NODE=FAULT, got %q", v)
		}
		f, err := dataplane.ParseFault(name)
		if err != nil {
			return err
		}
		if c.faults == nil {
			c.faults = map[string]dataplane.Fault{}
		}
		c.faults[node] = f
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.nodes < 1 || c.replicas < 1 {
		return c, fmt.Errorf("--nodes and --replicas must be at least 1, got %d and %d", c.nodes, c.replicas)
	}
	if c.applySample && !c.controller {
		fmt.Fprintln(stderr, "sandbox: --apply-sample with --controller=false waits for a manager you start yourself")
	}
	return c, nil
}

func run(ctx context.Context, cfg commandConfig, startController Controller, stdout io.Writer) error {
	if cfg.verbose {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true)))
	} else {
		ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	}
	fmt.Fprintln(stdout, "Starting the sandbox: a real kube-apiserver and etcd with a SIMULATED ambient data plane (node agent + ztunnel)...")
	sb, err := Start(ctx, Options{PropagationDelay: orNone(cfg.propagationDelay), PodStartLatency: cfg.podStartLatency,
		Progress: stdout, Nodes: cfg.nodes, Replicas: cfg.replicas})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(stdout, "Stopping the sandbox...")
		if err := sb.Stop(); err != nil {
			fmt.Fprintf(stdout, "stopping: %v\n", err)
		}
	}()
	for node, f := range cfg.faults {
		if !slices.Contains(sb.Nodes, node) {
			return fmt.Errorf("--node-fault: no node %q (nodes: %v)", node, sb.Nodes)
		}
		sb.SetNodeFault(node, f)
		fmt.Fprintf(stdout, "Fault switched on: the ztunnel of %s is %s.\n", node, f)
	}
	path, err := sb.writeKubeconfig(cfg.kubeconfigOut)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Sandbox up: %d nodes, namespace %s with frontend and %d backend pod(s), ztunnel on every node.\n",
		len(sb.Nodes), DemoNamespace, sb.Replicas)
	fmt.Fprintf(stdout, "export KUBECONFIG=%s\n", path)
	if cfg.controller {
		if startController == nil {
			return errors.New("this build has no manager to run in the sandbox: use --controller=false")
		}
		stopController, err := startController(sb, ControllerOptions{MetricsAddr: cfg.metricsAddr})
		if err != nil {
			return err
		}
		defer stopController()
		if cfg.metricsAddr != "0" && cfg.metricsAddr != "" {
			fmt.Fprintf(stdout, "Manager metrics (plain HTTP): curl -s http://%s/metrics | grep '^labrun_'\n", cfg.metricsAddr)
		}
	}
	if cfg.applySample {
		if err := sb.applySample(ctx, cfg.runTimeout, stdout); err != nil {
			return err
		}
	}
	if cfg.keep {
		fmt.Fprintln(stdout, "Sandbox running; press Ctrl-C to stop.")
		<-ctx.Done()
	}
	return nil
}

func orNone(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// SandboxProbeImage is the probe image of the sandbox's manager (the node agent runs the prober in-process).
const SandboxProbeImage = "labrun-operator:sandbox"

// Controller runs the operator's manager against the sandbox, under the manager ServiceAccount's identity
// (ManagerConfig), until the returned stop is called. main.go passes the one it builds: the sandbox sits below the
// operator and does not import it.
type Controller func(s *Sandbox, o ControllerOptions) (stop func(), err error)

// ControllerOptions are what the sandbox command asks of the manager it runs.
type ControllerOptions struct {
	// MetricsAddr is where the manager serves /metrics over plain HTTP ("0": nowhere).
	MetricsAddr string
}

// writeKubeconfig writes an admin kubeconfig for the sandbox's API server, and beside it manager.kubeconfig,
// which acts as the manager's ServiceAccount (for `bin/manager --kubeconfig …` with --controller=false).
func (s *Sandbox) writeKubeconfig(path string) (string, error) {
	if path == "" {
		path = filepath.Join(s.Env.Root, "bin", "sandbox", "kubeconfig")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if err := s.WriteAdminKubeconfig(abs); err != nil {
		return "", err
	}
	return abs, s.WriteManagerKubeconfig(filepath.Join(filepath.Dir(abs), "manager.kubeconfig"))
}

// WriteAdminKubeconfig writes an admin kubeconfig for the sandbox's API server at path: what `manager sandbox`
// prints an export of.
func (s *Sandbox) WriteAdminKubeconfig(path string) error {
	return clientcmd.WriteToFile(kubeconfig(s.Env.Config, ""), path)
}

// WriteManagerKubeconfig writes a kubeconfig at path that acts as the manager's ServiceAccount (config/default's
// RBAC and admission policies apply to it): for the manager binary run as its own process.
func (s *Sandbox) WriteManagerKubeconfig(path string) error {
	return clientcmd.WriteToFile(kubeconfig(s.Env.Config, ManagerUser), path)
}

// kubeconfig for c; with impersonate set, it acts as that ServiceAccount user.
func kubeconfig(c *rest.Config, impersonate string) clientcmdapi.Config {
	const name = "labrun-sandbox"
	auth := &clientcmdapi.AuthInfo{ClientCertificateData: c.CertData, ClientKeyData: c.KeyData, Token: c.BearerToken}
	if impersonate != "" {
		auth.Impersonate = impersonate
		auth.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + OperatorNamespace, "system:authenticated"}
	}
	return clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{name: {Server: c.Host, CertificateAuthorityData: c.CAData}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{name: auth},
		Contexts:       map[string]*clientcmdapi.Context{name: {Cluster: name, AuthInfo: name, Namespace: DemoNamespace}},
		CurrentContext: name,
	}
}

// applySample applies the sample LabRun, waits for it to end and prints its steps.
func (s *Sandbox) applySample(ctx context.Context, timeout time.Duration, out io.Writer) error {
	raw, err := os.ReadFile(filepath.Join(s.Env.Root, "config", "samples", "labs_v1alpha1_labrun.yaml"))
	if err != nil {
		return err
	}
	run := &labsv1.LabRun{}
	if err := yaml.UnmarshalStrict(raw, run); err != nil {
		return fmt.Errorf("reading the sample: %w", err)
	}
	if err := s.Client.Create(ctx, run); err != nil {
		return fmt.Errorf("applying the sample: %w", err)
	}
	fmt.Fprintf(out, "Applied LabRun %s/%s; waiting for it to finish...\n", run.Namespace, run.Name)
	start := time.Now()
	done, err := WaitForRun(ctx, s.Client, client.ObjectKeyFromObject(run), timeout)
	if err != nil {
		return err
	}
	PrintRun(out, done)
	fmt.Fprintf(out, "Wall time: %s\n", time.Since(start).Round(time.Millisecond))
	if done.Status.Phase != labsv1.PhaseSucceeded ||
		!meta.IsStatusConditionTrue(done.Status.Conditions, labsv1.ConditionMeshRestored) {
		return fmt.Errorf("LabRun %s ended %s: %s", run.Name, done.Status.Phase, done.Status.Message)
	}
	return nil
}

// PrintRun writes a readable table of every step, the exposure and whether the mesh is restored.
func PrintRun(out io.Writer, run *labsv1.LabRun) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LAB\tSTEP\tEXPECTED\tOBSERVED\tVERDICT\tSETTLE")
	for _, st := range run.Status.Steps {
		settle := "-"
		if st.Settle != nil {
			settle = st.Settle.Duration.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", st.Lab, st.Name, clip(st.Expected), clip(st.Observed), st.Verdict, settle)
	}
	_ = tw.Flush()
	for _, st := range run.Status.Steps {
		if st.Verdict != labsv1.VerdictPass {
			fmt.Fprintf(out, "%s/%s %s: %s\n", st.Lab, st.Name, st.Verdict, st.Message)
		}
	}
	exposure := "0s"
	x := run.Status.Exposure
	if d := x.Duration; d != nil {
		exposure = d.Duration.String()
	}
	if x.Scope != "" {
		exposure += fmt.Sprintf(" (scope %s: %d pod(s) weakened at most, %s pod-seconds)", x.Scope, x.Pods, x.PodSeconds)
	}
	restored := "Unknown"
	if c := meta.FindStatusCondition(run.Status.Conditions, labsv1.ConditionMeshRestored); c != nil {
		restored = fmt.Sprintf("%s (%s)", c.Status, c.Message)
	}
	fmt.Fprintf(out, "Phase: %s — %s\nExposure: %s\nMesh restored: %s\n", run.Status.Phase, run.Status.Message,
		exposure, restored)
}

// clip keeps the table readable on a terminal; the full text is in the LabRun's status.
func clip(s string) string {
	const n = 60
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
