// Command manager is the labrun-operator: it runs the LabRun controller, and with a subcommand, the in-pod
// prober (`manager probe`) and the sandbox (`manager sandbox`: a local cluster with a simulated ambient data plane).
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/ambientlab/labrun-operator/internal/operator"
	"github.com/ambientlab/labrun-operator/internal/probe"
	"github.com/ambientlab/labrun-operator/internal/sandbox"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "probe":
			os.Exit(probe.Main(os.Args[2:], os.Stdout))
		case "sandbox":
			os.Exit(sandbox.Main(os.Args[2:], os.Stdout, os.Stderr))
		}
	}
	os.Exit(runManager())
}

func runManager() int {
	var o operator.Options
	flag.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8080", "Address of the metrics endpoint (0 disables it)")
	flag.StringVar(&o.HealthAddr, "health-probe-bind-address", ":8081", "Address of the health endpoints (0 disables them)")
	flag.BoolVar(&o.LeaderElection, "leader-elect", true, "Elect a leader so only one replica runs LabRuns at a time")
	flag.StringVar(&o.LeaderElectionNS, "leader-election-namespace", "", "Namespace of the leader Lease (needed outside a cluster)")
	flag.StringVar(&o.ProbeImage, "probe-image", "controller:latest", "Image of probe pods (this operator's own image) when a LabRun names none")
	flag.StringVar(&o.Namespace, "namespace", "", "The operator's namespace, where the trusted run records live (default $POD_NAMESPACE, else labrun-system)")
	flag.BoolVar(&o.AllowAnyNamespace, "allow-any-namespace", false, "Let runs touch any namespace; by default only namespaces labelled labs.ambientlab.io/enabled=true")
	flag.DurationVar(&o.PodStartGrace, "pod-start-grace", 2*time.Minute, "How long a probe pod may take to start")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")

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
