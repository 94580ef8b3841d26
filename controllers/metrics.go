package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// Metrics on the manager's /metrics endpoint (controller-runtime's registry), for alerting on a mesh that
// stopped passing its labs or on runs that keep the mesh weak too long.
var (
	stepVerdicts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "labrun_step_verdicts_total",
		Help: "Step verdicts by lab, step and verdict (Pass, Fail, Error, Skipped).",
	}, []string{"lab", "step", "verdict"})
	runsFinished = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "labrun_runs_finished_total",
		Help: "Finished LabRuns by phase (Succeeded, Failed) and whether the mesh was restored.",
	}, []string{"phase", "mesh_restored"})
	exposureSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "labrun_exposure_seconds",
		Help:    "Seconds a finished run kept the mesh weaker than found.",
		Buckets: []float64{0.5, 1, 2, 5, 10, 30, 60, 120, 300},
	})
)

func init() {
	metrics.Registry.MustRegister(stepVerdicts, runsFinished, exposureSeconds)
}

// observeStep counts one verdict.
func observeStep(st *labsv1.StepResult) {
	stepVerdicts.WithLabelValues(string(st.Lab), st.Name, string(st.Verdict)).Inc()
}

// observeRun records a finished run.
func observeRun(run *labsv1.LabRun, meshRestored bool) {
	restored := "false"
	if meshRestored {
		restored = "true"
	}
	runsFinished.WithLabelValues(string(run.Status.Phase), restored).Inc()
	if d := run.Status.Exposure.Duration; d != nil {
		exposureSeconds.Observe(d.Seconds())
	}
}
