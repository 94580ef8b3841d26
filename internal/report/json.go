package report

import (
	"encoding/json"
	"fmt"
	"io"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// JSONVersion names the shape of the JSON report. Fields are only ever added within a version.
const JSONVersion = "labs.ambientlab.io/report/v1"

// Document is the JSON report: who ran what, how it ended, and every step grouped by lab. Steps are the API's
// StepResult as-is (see `kubectl explain labrun.status.steps`), so the report carries no second vocabulary.
type Document struct {
	// Version is JSONVersion.
	Version string `json:"version"`
	// Run names the LabRun.
	Run RunRef `json:"run"`
	// Mode and Scope are the run's spec.mode and spec.scope.
	Mode  labsv1.Mode  `json:"mode,omitempty"`
	Scope labsv1.Scope `json:"scope,omitempty"`
	// Phase, Reason and Message are the run's.
	Phase   labsv1.Phase `json:"phase,omitempty"`
	Reason  string       `json:"reason,omitempty"`
	Message string       `json:"message,omitempty"`
	// MeshRestored is the MeshRestored condition's status (True, False or Unknown) and message.
	MeshRestored        string `json:"meshRestored"`
	MeshRestoredMessage string `json:"meshRestoredMessage,omitempty"`
	// StartTime and CompletionTime bound the run.
	StartTime      *metav1.Time `json:"startTime,omitempty"`
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// Summary counts the verdicts; Exposure is how long, and how widely, the mesh was weakened.
	Summary  labsv1.Summary  `json:"summary"`
	Exposure labsv1.Exposure `json:"exposure"`
	// Labs holds the steps of each lab, in the order they ran.
	Labs []LabReport `json:"labs"`
}

// RunRef names a LabRun.
type RunRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid,omitempty"`
}

// LabReport is one lab's steps.
type LabReport struct {
	Lab   labsv1.LabName      `json:"lab"`
	Steps []labsv1.StepResult `json:"steps"`
}

// JSON builds the JSON document of a run.
func JSON(run *labsv1.LabRun) Document {
	restored, msg := MeshRestored(run)
	doc := Document{
		Version: JSONVersion,
		Run:     RunRef{Namespace: run.Namespace, Name: run.Name, UID: string(run.UID)},
		Mode:    run.Spec.Mode, Scope: run.Spec.Scope,
		Phase: run.Status.Phase, Reason: run.Status.Reason, Message: run.Status.Message,
		MeshRestored: restored, MeshRestoredMessage: msg,
		StartTime: run.Status.StartTime, CompletionTime: run.Status.CompletionTime,
		Summary: run.Status.Summary, Exposure: run.Status.Exposure,
		Labs: []LabReport{},
	}
	for _, lab := range byLab(run.Status.Steps) {
		doc.Labs = append(doc.Labs, LabReport{Lab: lab.Lab, Steps: lab.Steps})
	}
	return doc
}

// WriteJSON writes the run's JSON document, indented.
func WriteJSON(w io.Writer, run *labsv1.LabRun) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(JSON(run)); err != nil {
		return fmt.Errorf("writing the JSON report of LabRun %s/%s: %w", run.Namespace, run.Name, err)
	}
	return nil
}
