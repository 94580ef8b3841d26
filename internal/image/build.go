// Package image builds the operator's container image without a container engine, as ko does: the manager is
// compiled statically for each platform (CGO off, -trimpath, time zones embedded for LabSchedule's timeZone),
// put as the only file of one layer on an empty (scratch) base, with entrypoint /manager and user 65532:65532 as
// in the Dockerfile, OCI labels from the version, and every timestamp at the source's date so that a build of the
// same tree gives the same digests. The platforms' images go into one OCI index, written as a tarball that
// `docker load` and `kind load image-archive` read (WriteArchive), beside a CycloneDX SBOM per platform whose
// digest the image's labels carry (SBOM). `make image` runs it through hack/imagebuild.
package image

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Fixed parts of the image: the Dockerfile says the same (TestDockerfileAgrees).
const (
	// Entrypoint is the manager binary's path in the image; probe pods run it as `/manager probe`.
	Entrypoint = "/manager"
	// User is the non-root user and group the manager and the probe pods run as (distroless's nonroot).
	User = "65532:65532"
	// Name is the image's default name.
	Name = "labrun-operator"
	// Source is the repository the labels point at.
	Source = "https://github.com/ambientlab/labrun-operator"
	// Description is the image's org.opencontainers.image.description.
	Description = "LabRun operator: Istio ambient-mode security labs as Kubernetes objects; also the probe of its probe pods"
	// SBOMDigestLabel carries the sha256 of the platform's SBOM file (the .cdx.json beside the archive).
	SBOMDigestLabel = "io.ambientlab.sbom.digest"
	// SBOMFormatLabel says what that file is.
	SBOMFormatLabel = "io.ambientlab.sbom.format"
	// SBOMFormat is the SBOM's format and spec version.
	SBOMFormat = "CycloneDX 1.6 JSON"
)

// BuildTags are the tags the manager is built with: timetzdata embeds the time zone database, which LabSchedule's
// spec.timeZone needs and a scratch image does not have.
const BuildTags = "timetzdata"

// LDFlags strip the symbol table and DWARF, as the Dockerfile does.
const LDFlags = "-s -w"

// DefaultPlatforms are the platforms `make image` builds.
var DefaultPlatforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// Options say what to build and where.
type Options struct {
	// Root is the repository root: the manager's main package and go.mod.
	Root string
	// Out is the directory for the binaries, the SBOMs and the archive.
	Out string
	// Repository and Tag name the image in the archive (Repository defaults to Name).
	Repository, Tag string
	// Version and Revision go into the OCI labels (version: git describe; revision: the commit).
	Version, Revision string
	// Created is every timestamp in the image: the config's, the history's and the layer's files.
	Created time.Time
	// Platforms to build (default DefaultPlatforms).
	Platforms []v1.Platform
	// SBOMTool is cyclonedx-gomod (BuildSBOMTool); empty: no SBOM and no SBOM labels.
	SBOMTool string
	// Log receives progress lines (nil: none).
	Log io.Writer
}

// Result is what Build made.
type Result struct {
	// Reference is the image's name in the archive (repository:tag).
	Reference string
	// Archive is the tarball's path.
	Archive string
	// Index is the multi-platform index; IndexDigest its digest (what a registry would serve for the tag).
	Index       v1.ImageIndex `json:"-"`
	IndexDigest string
	Images      []PlatformImage
}

// PlatformImage is one platform's image in the index.
type PlatformImage struct {
	Platform       string
	ManifestDigest string
	ConfigDigest   string
	// Binary is the manager's path on disk; BinarySize its size (the layer, uncompressed, is about as big).
	Binary     string `json:"-"`
	BinarySize int64
	// LayerSize is the compressed layer's size: about what a node pulls.
	LayerSize int64
	// SBOM is the platform's SBOM file (empty without one) and SBOMDigest its sha256.
	SBOM       string `json:",omitempty"`
	SBOMDigest string `json:",omitempty"`
}

func (o *Options) defaults() {
	if o.Repository == "" {
		o.Repository = Name
	}
	if o.Tag == "" {
		o.Tag = "dev"
	}
	if len(o.Platforms) == 0 {
		o.Platforms = DefaultPlatforms
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// Build compiles the manager for every platform, writes their SBOMs, assembles the index and writes the archive
// Out/<repository's last element>.tar.
func Build(ctx context.Context, o Options) (*Result, error) {
	o.defaults()
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	var parts []Part
	for _, p := range o.Platforms {
		part := Part{Platform: p, Binary: filepath.Join(o.Out, p.OS+"-"+p.Architecture, "manager")}
		start := time.Now()
		if err := BuildBinary(ctx, o.Root, p, part.Binary); err != nil {
			return nil, err
		}
		fmt.Fprintf(o.Log, "image: built %s in %s\n", part.Binary, time.Since(start).Round(time.Second))
		if o.SBOMTool != "" {
			part.SBOM = filepath.Join(o.Out, fmt.Sprintf("%s.%s-%s.cdx.json", baseName(o.Repository), p.OS, p.Architecture))
			start = time.Now()
			if err := WriteSBOM(ctx, o.SBOMTool, o.Root, p, part.SBOM); err != nil {
				return nil, err
			}
			fmt.Fprintf(o.Log, "image: wrote %s in %s\n", part.SBOM, time.Since(start).Round(time.Second))
		}
		parts = append(parts, part)
	}
	res, err := Assemble(o, parts)
	if err != nil {
		return nil, err
	}
	res.Archive = filepath.Join(o.Out, baseName(o.Repository)+".tar")
	if err := WriteArchiveFile(res.Archive, res.Reference, res.Index, HostPlatform()); err != nil {
		return nil, err
	}
	return res, nil
}

// BuildBinary compiles the manager for platform p into out: static (CGO off), -trimpath, no VCS stamp (the
// labels carry the revision), with BuildTags and LDFlags, so the same tree gives the same bytes anywhere.
func BuildBinary(ctx context.Context, root string, p v1.Platform, out string) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-tags", BuildTags,
		"-ldflags", LDFlags, "-o", out, ".")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	if p.Variant != "" && p.Architecture == "arm" {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build for %s: %w\n%s", p, err, stderr.String())
	}
	return nil
}

// HostPlatform is the linux platform of this machine's architecture: the one the archive's manifest.json (read
// by `docker load` without the containerd image store, which keeps one platform per name) points at.
func HostPlatform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// SourceDate is the time a build of the tree at root stamps: $SOURCE_DATE_EPOCH (the reproducible-builds
// convention) when set, else the commit time of HEAD, else the Unix epoch.
func SourceDate(root string) (time.Time, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	out, err := git(root, "log", "-1", "--format=%ct")
	if err != nil || out == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	sec, err := strconv.ParseInt(out, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("commit time %q: %w", out, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// Describe returns the tree's version (git describe --tags --always --dirty) and revision (HEAD's commit);
// "devel" and "" outside a git checkout.
func Describe(root string) (version, revision string) {
	version, err := git(root, "describe", "--tags", "--always", "--dirty")
	if err != nil || version == "" {
		version = "devel"
	}
	revision, _ = git(root, "rev-parse", "HEAD")
	return version, revision
}

func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}

// baseName is a repository's last path element: labrun-operator for ghcr.io/ambientlab/labrun-operator.
func baseName(repository string) string {
	return repository[strings.LastIndex(repository, "/")+1:]
}
