// Package labs is the lab catalogue: each lab of the ambient-mode lab guide as an ordered plan of small steps,
// with the outcome the guide expects for each. Expectations live here, never in the data plane that is probed.
package labs

import (
	"fmt"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
	"github.com/ambientlab/labrun-operator/internal/probe"
)

// Kind is what a step does.
type Kind string

const (
	// KindProbe runs one probe pod and compares its outcome with the expectation.
	KindProbe Kind = "Probe"
)

// Caller is who a probe runs as.
type Caller string

const (
	// CallerClient is the in-mesh client (spec.client.serviceAccount in the target namespace).
	CallerClient Caller = "client"
)

// Step is one planned step of a lab.
type Step struct {
	Lab         labsv1.LabName
	Name        string
	Description string
	Kind        Kind
	// Caller and Expect describe a probe step.
	Caller Caller
	Expect probe.Expectation
	// Count is how many requests must all match (several requests for the HBONE lab).
	Count int
}

// Expected is the step's expectation in the words recorded in status.
func (s Step) Expected() string {
	switch s.Expect {
	case probe.ExpectAllowed:
		return "allowed (HTTP 2xx)"
	case probe.ExpectDenied:
		return "denied (connection reset, curl 56)"
	}
	return string(s.Expect)
}

// ID names the step uniquely within a run.
func (s Step) ID() string { return fmt.Sprintf("%s/%s", s.Lab, s.Name) }

// catalogue holds each lab's steps in the lab guide's order.
var catalogue = map[labsv1.LabName][]Step{
	labsv1.LabMTLS: {
		{Name: "client-allowed", Kind: KindProbe, Caller: CallerClient, Expect: probe.ExpectAllowed,
			Description: "The in-mesh client calls the target through ztunnel (guide: curl http://backend.demo/get → 200)"},
	},
}

// Plan is the ordered steps of the given labs. Labs without steps yet are reported in the error.
func Plan(names []labsv1.LabName) ([]Step, error) {
	var plan []Step
	for _, name := range names {
		steps, ok := catalogue[name]
		if !ok {
			return nil, fmt.Errorf("lab %q is not in the catalogue", name)
		}
		for _, s := range steps {
			s.Lab = name
			plan = append(plan, s)
		}
	}
	return plan, nil
}
