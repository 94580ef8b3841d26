package chart

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/loader"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// KubeVersion is the Kubernetes version charts are rendered and linted for: the control plane's (Makefile
// K8S_VERSION). Helm's own default is older than the chart's kubeVersion constraint.
const KubeVersion = "v1.37.2"

// Rendered is a chart rendered as `helm template` renders it.
type Rendered struct {
	Manifest string
	Objects  []*unstructured.Unstructured
	Notes    string
}

// Render renders the chart in dir as release name in namespace, with vals over its values.yaml, without a
// cluster (Helm's client-only dry run, what `helm template` does).
func Render(ctx context.Context, dir, name, namespace string, vals map[string]any) (*Rendered, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("loading chart %s: %w", dir, err)
	}
	kv, err := common.ParseKubeVersion(KubeVersion)
	if err != nil {
		return nil, err
	}
	install := action.NewInstall(Quiet())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName, install.Namespace, install.KubeVersion = name, namespace, kv
	rel, err := install.RunWithContext(ctx, ch, vals)
	if err != nil {
		return nil, fmt.Errorf("rendering chart %s: %w", dir, err)
	}
	r, ok := rel.(*releasev1.Release)
	if !ok {
		return nil, fmt.Errorf("rendering chart %s: unexpected release type %T", dir, rel)
	}
	objs, err := Decode(r.Manifest)
	if err != nil {
		return nil, fmt.Errorf("reading chart %s's manifest: %w", dir, err)
	}
	return &Rendered{Manifest: r.Manifest, Objects: objs, Notes: r.Info.Notes}, nil
}

// Quiet is a Helm action configuration that logs nothing (Helm logs through slog's default otherwise).
func Quiet() *action.Configuration {
	return action.NewConfiguration(action.ConfigurationSetLogger(slog.NewTextHandler(io.Discard, nil)))
}

// Decode reads a multi-document YAML manifest into objects, skipping empty documents.
func Decode(manifest string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewBufferString(manifest), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

// Lint lints the chart in dir with vals, as `helm lint --strict --kube-version` does, and returns its messages
// of at least warning severity.
func Lint(dir, namespace string, vals map[string]any) ([]string, error) {
	kv, err := common.ParseKubeVersion(KubeVersion)
	if err != nil {
		return nil, err
	}
	lint := action.NewLint()
	// As `helm lint --strict`: a warning fails too.
	lint.Namespace, lint.KubeVersion, lint.Strict = namespace, kv, true
	res := lint.Run([]string{dir}, vals)
	var msgs []string
	for _, m := range res.Messages {
		if m.Severity >= 2 { // support.WarningSev
			msgs = append(msgs, m.Error())
		}
	}
	if len(res.Errors) > 0 && len(msgs) == 0 {
		return nil, errors.Join(res.Errors...)
	}
	return msgs, nil
}
