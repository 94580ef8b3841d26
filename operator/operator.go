// Package operator assembles the manager: scheme, cache, leader election, health, metrics and the LabRun
// controller. main.go, the sandbox and the tests build it the same way.
package operator

import (
	"crypto/tls"
	"fmt"
	"os"
	"time"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/controllers"
	"github.com/ambientlab/labrun-operator/controllers/labschedule"
	"github.com/ambientlab/labrun-operator/controllers/meshguard"
	"github.com/ambientlab/labrun-operator/controllers/policyreport"
	"github.com/ambientlab/labrun-operator/internal/admissioncheck"
	"github.com/ambientlab/labrun-operator/internal/cachefilter"
	"github.com/ambientlab/labrun-operator/internal/mesh"
	"github.com/ambientlab/labrun-operator/internal/scheme"
	"github.com/ambientlab/labrun-operator/internal/ztunnel"
)

// Options configure the manager.
type Options struct {
	MetricsAddr string // "0" disables the metrics endpoint
	// MetricsSecure serves metrics over HTTPS to callers the API server vouches for: a bearer token it
	// authenticates (TokenReview) whose identity may GET /metrics (SubjectAccessReview), as kubebuilder projects do.
	MetricsSecure bool
	// MetricsCertDir holds tls.crt and tls.key for the metrics endpoint (from cert-manager, say), reloaded when
	// they change; empty, or without those files, a self-signed certificate is generated in memory at start.
	MetricsCertDir string
	HealthAddr     string // "0" disables the health endpoint
	// PprofAddr serves net/http/pprof's profiles (/debug/pprof/) there; "" or "0" (the default) serves none.
	// Unauthenticated: bind it to localhost, or reach it with kubectl port-forward.
	PprofAddr        string
	LeaderElection   bool
	LeaderElectionNS string // needed when running outside a cluster
	ProbeImage       string
	// Namespace is the operator's own namespace, where the trusted run records live (default: $POD_NAMESPACE,
	// else labrun-system).
	Namespace string
	// AllowAnyNamespace turns off the namespace opt-in: without it a run may only touch namespaces labelled
	// labs.ambientlab.io/enabled=true.
	AllowAnyNamespace bool
	// Mesh says where the mesh lives: the root namespace and the ztunnel pods (empty fields: Istio's,
	// istio-system and app=ztunnel). LabRuns may only repeat it (mesh.Config).
	Mesh          mesh.Config
	PodStartGrace time.Duration
	// QueueLookahead: how many runs may stand ahead of a queued run for it to keep its observers (zero: 1).
	QueueLookahead int
	// MaxActiveRuns bounds the runs worked on at once (zero: no bound).
	MaxActiveRuns int
	// Workers is how many LabRuns are reconciled at the same moment (zero: 4).
	Workers int
	// LeaseDuration, RenewDeadline and RetryPeriod tune leader election (zero: controller-runtime's defaults,
	// 15s, 10s, 2s; main.go's flags default shorter). The Lease is released on a clean shutdown so a standby
	// replica takes over at once; after a crash, about LeaseDuration later (measured: main.go), which is how
	// long a mesh the dead leader left weakened stays so.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// KeepLeaseOnStop leaves the Lease held on shutdown, as a crashed process would (tests only).
	KeepLeaseOnStop bool
	// WatchdogGrace is how long past an object's restore-by deadline its run gets before the watchdog restores it.
	WatchdogGrace time.Duration
	// AdmissionCheckInterval is how often the manager checks that its admission policies are installed as
	// shipped and enforced (zero: a minute); it also checks at start and whenever one of them changes.
	AdmissionCheckInterval time.Duration
	// PolicyReportPoll is how often the manager looks for the wgpolicyk8s.io PolicyReport API while it is not
	// served (zero: a minute); once it is, every LabRun gets its report.
	PolicyReportPoll time.Duration
	// Fault injects a crash at mesh mutation points (tests only).
	Fault func(point string) error
	// SkipNameValidation lets one process build several managers in turn (tests, the sandbox).
	SkipNameValidation bool
}

// NewManager builds a manager with the LabRun controller and the watchdogs registered.
func NewManager(cfg *rest.Config, o Options) (ctrl.Manager, error) {
	mopts, err := managerOptions(o)
	if err != nil {
		return nil, err
	}
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, mopts)
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}
	records := mesh.Store{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: o.namespace()}
	// Schedule and mesh-safety metrics are read from the cache at scrape time (controllers/labschedule/metrics.go).
	labschedule.CollectMetrics(mgr.GetClient(), o.namespace())
	// A new leader first restores what a previous one left changed; the reconcilers wait for that pass.
	takeover := meshguard.NewTakeover(mgr.GetClient(), records)
	if err := mgr.Add(takeover); err != nil {
		return nil, err
	}
	// Lab runs wait while the admission policies that hold the trust boundary are not as shipped and enforced.
	admission, err := newAdmissionGuard(mgr, o)
	if err != nil {
		return nil, err
	}
	r := &controllers.LabRunReconciler{
		Admission:      admission,
		Client:         mgr.GetClient(),
		APIReader:      takeover.Gate(mgr.GetAPIReader()),
		Records:        withMemo(records),
		Recorder:       mgr.GetEventRecorder("labrun-controller"),
		Logs:           &ztunnel.LogReader{Client: clientset, Keep: controllers.ObserverLine},
		Fault:          o.Fault,
		ProbeImage:     o.ProbeImage,
		PodStartGrace:  o.PodStartGrace,
		QueueLookahead: o.QueueLookahead,
		MaxActiveRuns:  o.MaxActiveRuns,
		Workers:        o.Workers,
		Mesh:           o.Mesh.WithDefaults(),
	}
	if !o.AllowAnyNamespace {
		r.EnabledLabel = labsv1.LabelEnabled
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the LabRun controller: %w", err)
	}
	schedules := &labschedule.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Records: records, Recorder: mgr.GetEventRecorder("labschedule-controller"), Mesh: o.Mesh.WithDefaults()}
	if err := schedules.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the LabSchedule controller: %w", err)
	}
	reports := &policyreport.Reconciler{Client: mgr.GetClient(), Poll: o.PolicyReportPoll}
	if err := reports.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the PolicyReport controller: %w", err)
	}
	return mgr, setupWatchdog(mgr, records, o.WatchdogGrace, takeover)
}

// DefaultNamespace is the operator's namespace when neither Options.Namespace nor $POD_NAMESPACE says.
const DefaultNamespace = "labrun-system"

func (o Options) namespace() string {
	if o.Namespace != "" {
		return o.Namespace
	}
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return DefaultNamespace
}

// managerOptions: leader election, metrics, health, and a cache that holds only what the controller needs —
// labelled probe pods, the mesh objects a run changed, the mesh lock — never every pod of the cluster.
func managerOptions(o Options) (ctrl.Options, error) {
	kinds, err := scheme.New()
	if err != nil {
		return ctrl.Options{}, err
	}
	changed, err := labels.Parse(mesh.LabelChangedBy)
	if err != nil {
		return ctrl.Options{}, err
	}
	if err := o.checkLeaderElection(); err != nil {
		return ctrl.Options{}, err
	}
	if err := o.Mesh.WithDefaults().Validate(); err != nil {
		return ctrl.Options{}, err
	}
	return ctrl.Options{
		Scheme:                        kinds,
		Metrics:                       metricsOptions(o),
		HealthProbeBindAddress:        orDefault(o.HealthAddr, "0"),
		PprofBindAddress:              orDefault(o.PprofAddr, "0"),
		LeaderElection:                o.LeaderElection,
		LeaderElectionID:              "labrun-operator.labs.ambientlab.io",
		LeaderElectionNamespace:       o.LeaderElectionNS,
		LeaderElectionReleaseOnCancel: !o.KeepLeaseOnStop,
		LeaseDuration:                 durationOrNil(o.LeaseDuration),
		RenewDeadline:                 durationOrNil(o.RenewDeadline),
		RetryPeriod:                   durationOrNil(o.RetryPeriod),
		Controller:                    config.Controller{SkipNameValidation: &o.SkipNameValidation},
		// Managed fields and others' annotations are left out of every cached object (cachefilter.StripUnread).
		Cache: cache.Options{DefaultTransform: cachefilter.StripUnread, ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:                     {Label: labels.SelectorFromSet(labels.Set{labsv1.LabelProbe: "true"})},
			&securityv1.PeerAuthentication{}:  {Label: changed},
			&securityv1.AuthorizationPolicy{}: {Label: changed},
			// The mesh lock's tickets live in the operator's namespace (controllers' lock), where its RBAC is.
			&coordinationv1.Lease{}: {Namespaces: map[string]cache.Config{o.namespace(): {}},
				Label: labels.SelectorFromSet(labels.Set{mesh.LabelLockTicket: "true"})},
			// The manager may read ConfigMaps only in its own namespace (config/rbac): the trusted records.
			&corev1.ConfigMap{}: {Namespaces: map[string]cache.Config{o.namespace(): {}},
				Label: labels.SelectorFromSet(labels.Set{mesh.LabelRecord: "true"})},
		}},
	}, nil
}

// metricsOptions: plain HTTP, or with o.MetricsSecure, HTTPS behind the API server's authentication and
// authorization. The filter asks the API server with the manager's own credentials, so the manager needs the
// rights of config/rbac/metrics_auth_role.yaml, and a scraper a binding to the metrics-reader ClusterRole.
func metricsOptions(o Options) metricsserver.Options {
	opts := metricsserver.Options{BindAddress: orDefault(o.MetricsAddr, "0")}
	if !o.MetricsSecure {
		return opts
	}
	opts.SecureServing = true
	opts.FilterProvider = filters.WithAuthenticationAndAuthorization
	opts.CertDir = o.MetricsCertDir
	// HTTP/2 stays off, as in kubebuilder's scaffold: its stream handling was the vector of the rapid-reset
	// attacks (CVE-2023-44487, CVE-2023-39325), and a scraper needs only HTTP/1.1.
	opts.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	return opts
}

// setupWatchdog registers the watchdog over the trusted records.
func setupWatchdog(mgr ctrl.Manager, records mesh.Store, grace time.Duration, takeover *meshguard.Takeover) error {
	if grace == 0 {
		grace = 30 * time.Second // the run restores at its own deadline first; the watchdog is the backstop
	}
	w := &meshguard.Watchdog{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Records: records, Grace: grace,
		Takeover: takeover}
	if err := w.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the watchdog: %w", err)
	}
	return nil
}

// checkLeaderElection refuses timings leader election would refuse only when the manager starts, and a lease
// duration the Lease cannot hold (it stores whole seconds, and a standby reads it from there).
func (o Options) checkLeaderElection() error {
	if !o.LeaderElection {
		return nil
	}
	lease, renew, retry := orDuration(o.LeaseDuration, 15*time.Second), orDuration(o.RenewDeadline, 10*time.Second),
		orDuration(o.RetryPeriod, 2*time.Second)
	switch {
	case lease%time.Second != 0:
		return fmt.Errorf("leader election: the lease duration (%s) must be a whole number of seconds", lease)
	case lease <= renew:
		return fmt.Errorf("leader election: the lease duration (%s) must be longer than the renew deadline (%s)", lease, renew)
	case renew <= time.Duration(leaderelection.JitterFactor*float64(retry)):
		return fmt.Errorf("leader election: the renew deadline (%s) must be longer than %.1f times the retry period (%s)",
			renew, leaderelection.JitterFactor, retry)
	}
	return nil
}

func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func durationOrNil(d time.Duration) *time.Duration {
	if d == 0 {
		return nil
	}
	return &d
}

// newAdmissionGuard registers the check of the admission policies config/default ships (embedded in the binary)
// against those on the cluster, for an operator in o's namespace.
// withMemo is the store a LabRun pass reads its run's record through once (bench-load, 30 runs at once: reading
// it at every step made GET configmaps four in ten of all the API server's requests).
func withMemo(s mesh.Store) mesh.Store {
	s.Memo = &mesh.Memo{}
	return s
}

func newAdmissionGuard(mgr ctrl.Manager, o Options) (*admissioncheck.Guard, error) {
	shipped, err := admissioncheck.LoadShipped(o.namespace())
	if err != nil {
		return nil, fmt.Errorf("loading the shipped admission policies: %w", err)
	}
	g := &admissioncheck.Guard{
		Checker:   &admissioncheck.Checker{Reader: mgr.GetClient(), Client: mgr.GetClient(), Shipped: shipped},
		Informers: mgr.GetCache(),
		Interval:  o.AdmissionCheckInterval,
	}
	if err := mgr.Add(g); err != nil {
		return nil, err
	}
	return g, nil
}
