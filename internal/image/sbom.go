package image

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// SBOMToolModule is the wrapper module that pins CycloneDX's cyclonedx-gomod (a tool directive), relative to
// the repository root.
const SBOMToolModule = "hack/sbom"

// BuildSBOMTool builds cyclonedx-gomod, at the version hack/sbom/go.mod pins, for this machine into out. The Go
// build cache makes a second build a link; `go tool` cannot be used directly, because the SBOM's build
// constraints are GOOS and GOARCH, which `go tool` would build the tool itself for.
func BuildSBOMTool(ctx context.Context, root, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod")
	cmd.Dir = filepath.Join(root, SBOMToolModule)
	cmd.Env = append(os.Environ(), "GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH, "CGO_ENABLED=0", "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building cyclonedx-gomod from %s: %w\n%s", SBOMToolModule, err, stderr.String())
	}
	return nil
}

// WriteSBOM writes the CycloneDX SBOM (JSON, spec 1.6) of the manager built for platform p to out, with
// cyclonedx-gomod's app mode: the modules the main package's build for p links (from the module graph and
// `go list -deps` under the build's constraints: GOOS, GOARCH, CGO_ENABLED=0, the build tags), their hashes from
// go.sum and the dependency edges between them, the Go standard library as a component. No serial number and
// no timestamp, so the same tree gives the same file.
func WriteSBOM(ctx context.Context, tool, root string, p v1.Platform, out string) error {
	cmd := exec.CommandContext(ctx, tool, "app", "-json", "-output-version", "1.6", "-noserial", "-notimestamp",
		"-std", "-main", ".", "-output", out, root)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture,
		"GOFLAGS=-tags="+BuildTags+" -buildvcs=false")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cyclonedx-gomod for %s: %w\n%s", p, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
