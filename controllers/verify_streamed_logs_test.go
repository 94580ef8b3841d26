package controllers_test

import (
	"runtime"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	labsv1 "github.com/ambientlab/labrun-operator/api/v1alpha1"
)

// TestVerifyWithStreamedLogs: with --stream-logs, a Verify run of every lab reads ztunnel's and the observers' logs
// from follow streams and passes as with pages; the streams end when the manager stops.
func TestVerifyWithStreamedLogs(t *testing.T) {
	g := NewWithT(t)
	o := managerOptions()
	o.StreamLogs = true
	stop := startManager(t, o)
	run := newRun(labsv1.AllLabs...)
	run.Spec.Mode = labsv1.ModeVerify
	create(t, run)
	done := finished(t, run)
	g.Expect(done.Status.Phase).To(Equal(labsv1.PhaseSucceeded), notPassed(done))
	// A stream stays open until its container goes unread for two minutes: those the run read are still open.
	g.Expect(logStreams()).To(BeNumerically(">", 0), "the run's logs were read from streams")
	deleteAndWait(t, run)
	stop()
	g.Expect(logStreams()).To(BeZero(), "the manager stopped with log streams still running")
}

// logStreams counts the goroutines of this process that follow a pods/log stream (ztunnel.LogReader).
func logStreams() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "ztunnel.(*tail[...]).run(")
		}
		buf = make([]byte, 2*len(buf))
	}
}
