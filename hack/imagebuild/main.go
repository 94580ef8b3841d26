// Command imagebuild builds the operator's image without a container engine (`make image`; internal/image):
// the manager for each platform, its SBOM, one OCI index, and in -out:
//
//	labrun-operator.tar                        docker load / kind load image-archive
//	labrun-operator.linux-<arch>.cdx.json      the CycloneDX SBOM of each platform's binary (digest in the labels)
//	image.json                                 reference, digests and sizes, as the build printed them
//	values.yaml                                the chart's image values, by digest: helm install -f
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ambientlab/labrun-operator/internal/controlplane"
	"github.com/ambientlab/labrun-operator/internal/image"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	version, revision := image.Describe(root)
	out := flag.String("out", filepath.Join(root, "bin", "image"), "Directory for the archive, the SBOMs, image.json and values.yaml")
	repository := flag.String("repository", image.Name, "The image's repository (its name in the archive)")
	tag := flag.String("tag", version, "The image's tag (not latest: kind nodes pull latest Always)")
	platforms := flag.String("platforms", "linux/amd64,linux/arm64", "Platforms of the index, comma-separated")
	sbom := flag.Bool("sbom", true, "Write an SBOM per platform (cyclonedx-gomod, pinned in hack/sbom/go.mod) and label its digest")
	flag.Parse()
	if *tag == "latest" {
		return fmt.Errorf("-tag latest: Kubernetes pulls latest Always, so a loaded image would not be used")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	created, err := image.SourceDate(root)
	if err != nil {
		return err
	}
	o := image.Options{Root: root, Out: *out, Repository: *repository, Tag: *tag, Version: version,
		Revision: revision, Created: created, Log: os.Stdout}
	for _, s := range strings.Split(*platforms, ",") {
		p, err := v1.ParsePlatform(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		o.Platforms = append(o.Platforms, *p)
	}
	if *sbom {
		o.SBOMTool = filepath.Join(root, "bin", "cyclonedx-gomod")
		if err := image.BuildSBOMTool(ctx, root, o.SBOMTool); err != nil {
			return err
		}
	}
	res, err := image.Build(ctx, o)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	if err := writeJSON(filepath.Join(*out, "image.json"), struct {
		*image.Result
		Created      time.Time
		Version      string
		Revision     string
		BuildSeconds float64
	}{res, created, version, revision, elapsed.Seconds()}); err != nil {
		return err
	}
	repo := *repository
	values := fmt.Sprintf("# helm install ... -f %s: the image make image built, by digest (the tag is kept for reading).\n"+
		"image:\n  repository: %s\n  tag: %q\n  digest: %s\n", filepath.Join(*out, "values.yaml"), repo, *tag, res.IndexDigest)
	if err := os.WriteFile(filepath.Join(*out, "values.yaml"), []byte(values), 0o644); err != nil {
		return err
	}
	fmt.Printf("image: %s (index %s), created %s, in %s\n", res.Reference, res.IndexDigest,
		created.Format(time.RFC3339), elapsed.Round(time.Second))
	for _, pi := range res.Images {
		fmt.Printf("  %-12s manifest %s  binary %s  layer (gzip) %s  sbom %s\n", pi.Platform, pi.ManifestDigest[:19],
			mib(pi.BinarySize), mib(pi.LayerSize), filepath.Base(pi.SBOM))
	}
	fmt.Printf("  archive %s\n  load it: kind load image-archive %s --name <cluster>   or   docker load -i %s\n",
		res.Archive, res.Archive, res.Archive)
	return nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
