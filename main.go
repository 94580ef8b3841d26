// Command manager is the labrun-operator: it runs the LabRun controller, and with a subcommand, the in-pod
// prober (`manager probe`) and the sandbox (`manager sandbox`: a local cluster with a simulated ambient data plane).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/probe"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
	"github.com/ambientlab/labrun-operator/operator"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "probe":
			os.Exit(probe.Main(os.Args[2:], os.Stdout))
		case "sandbox":
			os.Exit(sandbox.Main(os.Args[2:], os.Stdout, os.Stderr, sandboxController))
		}
	}
	os.Exit(runManager())
}

func runManager() int {
	var o operator.Options
	flag.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8443", "Address of the metrics endpoint (0 disables it)")
	flag.BoolVar(&o.MetricsSecure, "metrics-secure", true,
		"Serve metrics over HTTPS, only to bearer tokens the API server authenticates and authorizes for GET /metrics (false: plain HTTP, unauthenticated)")
	flag.StringVar(&o.MetricsCertDir, "metrics-cert-path", "",
		"Directory with tls.crt and tls.key for the metrics endpoint, reloaded on change (default: a self-signed certificate)")
	flag.StringVar(&o.HealthAddr, "health-probe-bind-address", ":8081", "Address of the health endpoints (0 disables them)")
	flag.StringVar(&o.PprofAddr, "pprof-bind-address", "0",
		"Address of net/http/pprof's profiles, /debug/pprof/, unauthenticated: bind it to localhost (0 disables them)")
	flag.BoolVar(&o.LeaderElection, "leader-elect", true, "Elect a leader so only one replica runs LabRuns at a time")
	flag.StringVar(&o.LeaderElectionNS, "leader-election-namespace", "", "Namespace of the leader Lease (needed outside a cluster)")
	// A leader that dies with the mesh weakened leaves it so until a standby takes the Lease over (about
	// LeaseDuration after the leader's last renewal, give or take the standby's polling), and the new leader
	// restores at once. Shorter timings cost API requests: the leader renews (one write) every RetryPeriod, a
	// standby reads the Lease every 1.6 RetryPeriods on average. Measured idle against a real API server
	// (BenchmarkLeaderElectionCost in controllers/meshguard/takeover_test.go; exposure: kill → STRICT, mean of 4 kills):
	//   lease/renew/retry   leader writes/min   standby reads/min   crash exposure
	//   15s/10s/2s          28-30               18                  16.3 s (max 17.8)  controller-runtime's defaults
	//   8s/6s/1s            58                  34-36                8.4 s (max 9.4)
	//   6s/4s/1s            58                  38-40                7.3 s (max 7.9)   these defaults
	//   4s/3s/500ms         116                 70-72                4.6 s (max 5.4)
	// The defaults are the shortest lease whose leader stays within about one write a second; a 4 s renew
	// deadline still gives the leader four tries to renew before it steps down (and the process restarts).
	flag.DurationVar(&o.LeaseDuration, "leader-elect-lease-duration", 6*time.Second,
		"How long a standby waits after the leader's last renewal before taking the Lease over, so about how long a crashed leader leaves a weakened mesh unrestored (whole seconds)")
	flag.DurationVar(&o.RenewDeadline, "leader-elect-renew-deadline", 4*time.Second,
		"How long the leader keeps retrying to renew the Lease before it gives leadership up (shorter than the lease duration)")
	flag.DurationVar(&o.RetryPeriod, "leader-elect-retry-period", time.Second,
		"How often the leader renews the Lease and a standby checks it (renew deadline > 1.2 x retry period)")
	flag.StringVar(&o.ProbeImage, "probe-image", "controller:latest", "Image of probe pods (this operator's own image) when a LabRun names none")
	flag.StringVar(&o.Namespace, "namespace", "", "The operator's namespace, where the trusted run records live (default $POD_NAMESPACE, else labrun-system)")
	flag.BoolVar(&o.AllowAnyNamespace, "allow-any-namespace", false, "Let runs touch any namespace; by default only namespaces labelled labs.ambientlab.io/enabled=true")
	flag.DurationVar(&o.PodStartGrace, "pod-start-grace", 2*time.Minute, "How long a probe pod may take to start")
	flag.IntVar(&o.MaxActiveRuns, "max-active-runs", 10,
		"How many LabRuns the manager works on at once (0: no bound); the others wait Queued, holding no pod and no lock")
	flag.IntVar(&o.Workers, "max-concurrent-reconciles", 4,
		"How many LabRuns the manager reconciles at the same moment (each run is only ever reconciled by one at a time)")
	flag.IntVar(&o.QueueLookahead, "queue-lookahead", 1,
		"How many runs may stand ahead of a run waiting for a mesh lock for it to keep its observers running (runs further back hold no probe pod)")
	// Where the mesh lives is the operator's to say, not a LabRun's: a run may only repeat these values.
	flag.StringVar(&o.Mesh.RootNamespace, "mesh-root-namespace", mesh.DefaultRootNamespace,
		"Istio's root namespace, where the mesh-wide PeerAuthentication lives (LabRuns may only name this one)")
	flag.StringVar(&o.Mesh.ZtunnelNamespace, "ztunnel-namespace", mesh.DefaultZtunnelNamespace,
		"Namespace of the ztunnel pods whose readiness and logs runs read (LabRuns may only name this one)")
	ztunnelSelector := flag.String("ztunnel-selector", mesh.SelectorString(mesh.DefaultZtunnelSelector()),
		"Labels of the ztunnel pods, key=value[,key=value] (LabRuns may only name these)")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	selector, err := mesh.ParseSelector(*ztunnelSelector)
	if err != nil {
		fmt.Fprintf(os.Stderr, "manager: --ztunnel-selector: %v\n", err)
		return 2
	}
	o.Mesh.ZtunnelSelector = selector
	log := ctrl.Log.WithName("setup")
	limit, err := softMemoryLimit(os.Getenv("GOMEMLIMIT"), os.Getenv(memoryLimitEnv))
	if err != nil {
		fmt.Fprintf(os.Stderr, "manager: %v\n", err)
		return 2
	}
	if limit > 0 {
		// The runtime collects harder as the heap nears this, before the kubelet's limit kills the process.
		log.Info("Setting the Go memory limit from the container's", "bytes", limit, "fraction", memoryLimitFraction)
		debug.SetMemoryLimit(limit)
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "manager: %v\n", err)
		return 1
	}
	mgr, err := operator.NewManager(cfg, o)
	if err != nil {
		log.Error(err, "Unable to set up the manager")
		return 1
	}
	log.Info("Starting manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "Manager stopped with an error")
		return 1
	}
	return 0
}

// sandboxController runs the manager in-process against the sandbox, as this binary runs it on a cluster, under
// the manager ServiceAccount's identity, with leader election in the operator namespace and /metrics over plain
// HTTP where the sandbox command says (on loopback by default: the sandbox has no API server in front of it).
func sandboxController(sb *sandbox.Sandbox, so sandbox.ControllerOptions) (stop func(), err error) {
	mgr, err := operator.NewManager(sb.ManagerConfig(), operator.Options{
		ProbeImage: sandbox.SandboxProbeImage, SkipNameValidation: true, MetricsAddr: so.MetricsAddr,
		LeaderElection: true, LeaderElectionNS: sandbox.OperatorNamespace, Namespace: sandbox.OperatorNamespace,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() { cancel(); <-done }, nil
}
