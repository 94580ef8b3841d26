package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// Metrics on the manager's /metrics endpoint (controller-runtime's registry), for alerting on a mesh that
// stopped passing its labs or on runs that keep the mesh weak too long. Each carries the namespace of the LabRun
// it counts, so an alert says whose run it was (and can be routed to that team) instead of paging the platform
// about an anonymous run somewhere in the cluster.
var (
	stepVerdicts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "labrun_step_verdicts_total",
		Help: "Step verdicts by the run's namespace, lab, step and verdict (Pass, Fail, Error, Skipped).",
	}, []string{"namespace", "lab", "step", "verdict"})
	runsFinished = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "labrun_runs_finished_total",
		Help: "Finished LabRuns by namespace, phase (Succeeded, Failed) and whether the mesh was restored.",
	}, []string{"namespace", "phase", "mesh_restored"})
	exposureSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "labrun_exposure_seconds",
		Help:    "Seconds a finished run kept the mesh weaker than found, by the run's namespace.",
		Buckets: []float64{0.5, 1, 2, 5, 10, 30, 60, 120, 300},
	}, []string{"namespace"})
)

func init() {
	metrics.Registry.MustRegister(stepVerdicts, runsFinished, exposureSeconds)
}

// countVerdict counts one verdict of run.
func countVerdict(run *labsv1.LabRun, st *labsv1.StepResult) {
	stepVerdicts.WithLabelValues(run.Namespace, string(st.Lab), st.Name, string(st.Verdict)).Inc()
}

// observeRun records a finished run.
func observeRun(run *labsv1.LabRun, meshRestored bool) {
	restored := "false"
	if meshRestored {
		restored = "true"
	}
	runsFinished.WithLabelValues(run.Namespace, string(run.Status.Phase), restored).Inc()
	if d := run.Status.Exposure.Duration; d != nil {
		exposureSeconds.WithLabelValues(run.Namespace).Observe(d.Seconds())
	}
}
