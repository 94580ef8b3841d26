// Command bundlegen writes the operator's OLM bundle from config/ (`make bundle`; internal/bundle):
// bundle/manifests (the ClusterServiceVersion, the CRDs and the other objects a bundle may carry),
// bundle/metadata/annotations.yaml, bundle/extra/admission-policies.yaml (what OLM cannot install) and
// bundle.Dockerfile. internal/bundle's tests fail when the committed bundle differs from what it writes with the
// default -image, or when the bundle does not validate.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/ambientlab/labrun-operator/internal/bundle"
	"github.com/ambientlab/labrun-operator/internal/controlplane"
)

func main() {
	image := flag.String("image", bundle.DefaultImage, "The manager's and probe pods' image (by digest for a release: repository@sha256:...)")
	flag.Parse()
	if err := run(*image); err != nil {
		fmt.Fprintln(os.Stderr, "bundlegen:", err)
		os.Exit(1)
	}
}

func run(image string) error {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	files, err := bundle.Generate(root, bundle.Options{Image: image})
	if err != nil {
		return err
	}
	if err := bundle.Validate(files); err != nil {
		return err
	}
	if err := bundle.Write(root, files); err != nil {
		return err
	}
	fmt.Printf("bundlegen: wrote %d files (%s, %s), image %s\n", len(files), bundle.Dir, bundle.Dockerfile, image)
	return nil
}
