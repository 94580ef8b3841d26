// Command kubectl-labrun is the kubectl plugin of the labrun-operator: put it on PATH and run `kubectl labrun`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/ambientlab/labrun-operator/internal/plugin"
)

func main() {
	// Ctrl-C stops following a run; the run itself goes on in the cluster.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := plugin.Execute(ctx, os.Args[1:], genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	stop()
	os.Exit(code)
}
