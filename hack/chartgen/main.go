// Command chartgen regenerates the parts of charts/labrun-operator that follow config/ (`make chart`): the CRDs,
// RBAC, admission policies and Services as templates, and the monitoring and Argo CD files the chart ships. It
// removes generated files config/ no longer produces. internal/chart's tests fail when the chart differs from
// what it writes.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ambientlab/labrun-operator/internal/chart"
	"github.com/ambientlab/labrun-operator/internal/controlplane"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "chartgen:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	files, err := chart.Generate(root)
	if err != nil {
		return err
	}
	dir := filepath.Join(root, chart.Dir)
	for _, sub := range chart.Generated {
		if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
			return err
		}
	}
	for rel, b := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	fmt.Printf("chartgen: wrote %d files under %s\n", len(files), chart.Dir)
	return nil
}
