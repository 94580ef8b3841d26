package image_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ambientlab/labrun-operator/internal/controlplane"
	"github.com/ambientlab/labrun-operator/internal/image"
)

// The tests build the image as `make image` does (both platforms, with SBOMs) once, into bin/image-test (bin/ is
// ignored by git; the Go build cache makes a rebuild mostly links), and open what it wrote with the same library
// a registry client would use.
var (
	created = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	opts    = image.Options{Repository: "labrun-operator", Tag: "test", Version: "v0.0.0-test", Revision: "0123456789abcdef"}

	buildOnce sync.Once
	built     *image.Result
	buildErr  error
)

func build(t *testing.T) *image.Result {
	t.Helper()
	buildOnce.Do(func() {
		root, err := controlplane.RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		o := opts
		o.Root, o.Out, o.Created = root, filepath.Join(root, "bin", "image-test"), created
		o.SBOMTool = filepath.Join(root, "bin", "cyclonedx-gomod")
		ctx := context.Background()
		if buildErr = image.BuildSBOMTool(ctx, root, o.SBOMTool); buildErr != nil {
			return
		}
		start := time.Now()
		built, buildErr = image.Build(ctx, o)
		if buildErr == nil {
			for _, pi := range built.Images {
				t.Logf("%s: binary %d bytes, layer %d bytes (gzip)", pi.Platform, pi.BinarySize, pi.LayerSize)
			}
			t.Logf("built %s in %s", built.Reference, time.Since(start).Round(time.Second))
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// untar extracts the archive into a directory: an OCI image layout, which go-containerregistry's layout reads.
func untar(t *testing.T, archive string) string {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReader(f))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return dir
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, tr); err != nil {
			t.Fatal(err)
		}
		out.Close()
	}
}

// platformImages opens the archive's layout: its one named index and that index's image per platform.
func platformImages(t *testing.T, archive string) (v1.Descriptor, v1.ImageIndex, map[string]v1.Image) {
	t.Helper()
	g := NewWithT(t)
	top, err := layout.ImageIndexFromPath(untar(t, archive))
	g.Expect(err).NotTo(HaveOccurred())
	tm, err := top.IndexManifest()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tm.Manifests).To(HaveLen(1), "index.json names one image")
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	g.Expect(err).NotTo(HaveOccurred())
	im, err := idx.IndexManifest()
	g.Expect(err).NotTo(HaveOccurred())
	imgs := map[string]v1.Image{}
	for _, d := range im.Manifests {
		g.Expect(d.Platform).NotTo(BeNil(), "every manifest of the index names its platform")
		img, err := idx.Image(d.Digest)
		g.Expect(err).NotTo(HaveOccurred())
		imgs[d.Platform.String()] = img
	}
	return tm.Manifests[0], idx, imgs
}

// TestArchiveIsAMultiPlatformIndex opens the tarball as an OCI layout and checks what a node sees: one index
// named labrun-operator:test for containerd, linux/amd64 and linux/arm64 images, each with the manager as its
// only layer, user 65532, entrypoint /manager, the OCI labels, the SBOM's digest and the fixed dates.
func TestArchiveIsAMultiPlatformIndex(t *testing.T) {
	g := NewWithT(t)
	res := build(t)
	desc, idx, imgs := platformImages(t, res.Archive)
	g.Expect(desc.Annotations).To(HaveKeyWithValue(image.ContainerdNameAnnotation, "docker.io/library/labrun-operator:test"))
	g.Expect(desc.Annotations).To(HaveKeyWithValue(image.RefNameAnnotation, "test"))
	g.Expect(desc.Digest.String()).To(Equal(res.IndexDigest))
	mt, err := idx.MediaType()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(mt).To(Equal(types.OCIImageIndex))
	g.Expect(imgs).To(HaveLen(2))
	g.Expect(imgs).To(HaveKey("linux/amd64"))
	g.Expect(imgs).To(HaveKey("linux/arm64"))

	for platform, img := range imgs {
		cf, err := img.ConfigFile()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(cf.OS + "/" + cf.Architecture).To(Equal(platform))
		g.Expect(cf.Config.User).To(Equal("65532:65532"), platform)
		g.Expect(cf.Config.Entrypoint).To(Equal([]string{"/manager"}), platform)
		g.Expect(cf.Config.Cmd).To(BeEmpty(), platform)
		g.Expect(cf.Created.Time.Equal(created)).To(BeTrue(), "%s created %s", platform, cf.Created)
		for _, h := range cf.History {
			g.Expect(h.Created.Time.Equal(created)).To(BeTrue(), "%s history %s", platform, h.Created)
		}
		g.Expect(cf.Config.Labels).To(And(
			HaveKeyWithValue("org.opencontainers.image.version", "v0.0.0-test"),
			HaveKeyWithValue("org.opencontainers.image.revision", "0123456789abcdef"),
			HaveKeyWithValue("org.opencontainers.image.created", "2026-01-02T03:04:05Z"),
			HaveKeyWithValue("org.opencontainers.image.source", image.Source),
			HaveKeyWithValue("org.opencontainers.image.title", "labrun-operator"),
			HaveKeyWithValue(image.SBOMFormatLabel, image.SBOMFormat),
		), platform)
		var pi image.PlatformImage
		for _, p := range res.Images {
			if p.Platform == platform {
				pi = p
			}
		}
		g.Expect(pi.SBOM).To(BeAnExistingFile())
		g.Expect(cf.Config.Labels).To(HaveKeyWithValue(image.SBOMDigestLabel, sha256File(t, pi.SBOM)), "%s: the SBOM beside the archive", platform)

		layers, err := img.Layers()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(layers).To(HaveLen(1), "a scratch base: the binary is the only layer")
		lmt, _ := layers[0].MediaType()
		g.Expect(lmt).To(Equal(types.OCILayer))
		entries := layerEntries(t, layers[0])
		g.Expect(entries).To(HaveLen(1))
		hdr := entries[0]
		g.Expect(hdr.Name).To(Equal("manager"))
		g.Expect(hdr.Mode & 0o777).To(Equal(int64(0o755)))
		g.Expect(hdr.Uid).To(Equal(0))
		g.Expect(hdr.ModTime.Equal(created)).To(BeTrue(), "the file's date: %s", hdr.ModTime)
	}
}

// TestDockerArchiveIsTheHostPlatform reads the archive as `docker load` does without the containerd image store
// (manifest.json): the host platform's image, tagged labrun-operator:test.
func TestDockerArchiveIsTheHostPlatform(t *testing.T) {
	g := NewWithT(t)
	res := build(t)
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(res.Archive) })
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(m).To(HaveLen(1))
	g.Expect(m[0].RepoTags).To(Equal([]string{"labrun-operator:test"}))
	img, err := tarball.ImageFromPath(res.Archive, nil)
	g.Expect(err).NotTo(HaveOccurred())
	cf, err := img.ConfigFile()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cf.Architecture).To(Equal(runtime.GOARCH))
	g.Expect(cf.Config.User).To(Equal(image.User))
	cd, err := img.ConfigName()
	g.Expect(err).NotTo(HaveOccurred())
	var want []string
	for _, pi := range res.Images {
		if pi.Platform == "linux/"+runtime.GOARCH {
			want = append(want, pi.ConfigDigest)
		}
	}
	g.Expect(want).To(ConsistOf(cd.String()), "the same config as the index's image for this platform")
}

// TestBinaryRuns extracts the manager from the image of this machine's platform (amd64 here) and runs it as the
// Deployment and the probe pods do; the other platform's binary must be an ELF for its architecture.
func TestBinaryRuns(t *testing.T) {
	g := NewWithT(t)
	res := build(t)
	_, _, imgs := platformImages(t, res.Archive)
	machines := map[string]elf.Machine{"linux/amd64": elf.EM_X86_64, "linux/arm64": elf.EM_AARCH64}
	for platform, img := range imgs {
		bin := filepath.Join(t.TempDir(), "manager")
		layers, err := img.Layers()
		g.Expect(err).NotTo(HaveOccurred())
		extract(t, layers[0], "manager", bin)
		f, err := elf.Open(bin)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(f.Machine).To(Equal(machines[platform]), platform)
		g.Expect(f.Progs).NotTo(ContainElement(HaveField("Type", elf.PT_INTERP)), "%s: static, no dynamic loader", platform)
		f.Close()
		info, err := buildinfo.ReadFile(bin)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(settings(info)).To(And(HaveKeyWithValue("CGO_ENABLED", "0"), HaveKeyWithValue("-tags", image.BuildTags),
			HaveKeyWithValue("-trimpath", "true")), "%s: static, with the time zones LabSchedule's timeZone needs", platform)
		if platform != "linux/"+runtime.GOARCH {
			continue
		}
		out, err := exec.Command(bin, "--help").CombinedOutput()
		g.Expect(err).NotTo(HaveOccurred(), "manager --help: %s", out)
		g.Expect(string(out)).To(And(ContainSubstring("-probe-image"), ContainSubstring("-leader-elect")))
		out, err = exec.Command(bin, "probe", "--help").CombinedOutput()
		g.Expect(err).NotTo(HaveOccurred(), "manager probe --help: %s", out)
		g.Expect(string(out)).To(And(ContainSubstring("-url"), ContainSubstring("-expect")))
	}
}

// TestSBOMDescribesTheBinary checks each SBOM against the binary it was written for: CycloneDX 1.6, the manager's
// module as the application, and exactly the modules (and versions) the binary's build info says it links.
func TestSBOMDescribesTheBinary(t *testing.T) {
	res := build(t)
	for _, pi := range res.Images {
		t.Run(pi.Platform, func(t *testing.T) {
			g := NewWithT(t)
			b, err := os.ReadFile(pi.SBOM)
			g.Expect(err).NotTo(HaveOccurred())
			var bom struct {
				BOMFormat    string `json:"bomFormat"`
				SpecVersion  string `json:"specVersion"`
				SerialNumber string `json:"serialNumber"`
				Metadata     struct {
					Timestamp string `json:"timestamp"`
					Component struct {
						Name       string `json:"name"`
						Type       string `json:"type"`
						Properties []struct{ Name, Value string }
					} `json:"component"`
				} `json:"metadata"`
				Components []struct {
					Name, Version, Purl string
					Hashes              []struct{ Alg, Content string }
				} `json:"components"`
				Dependencies []struct{ Ref string } `json:"dependencies"`
			}
			g.Expect(json.Unmarshal(b, &bom)).To(Succeed())
			g.Expect(bom.BOMFormat).To(Equal("CycloneDX"))
			g.Expect(bom.SpecVersion).To(Equal("1.6"))
			g.Expect(bom.SerialNumber).To(BeEmpty(), "reproducible: no serial number")
			g.Expect(bom.Metadata.Timestamp).To(BeEmpty(), "reproducible: no timestamp")
			g.Expect(bom.Metadata.Component.Name).To(Equal("github.com/ambientlab/labrun-operator"))
			g.Expect(bom.Metadata.Component.Type).To(Equal("application"))
			goos, goarch, _ := strings.Cut(pi.Platform, "/")
			g.Expect(bom.Metadata.Component.Properties).To(ContainElements(
				struct{ Name, Value string }{"cdx:gomod:build:env:GOOS", goos},
				struct{ Name, Value string }{"cdx:gomod:build:env:GOARCH", goarch}))
			g.Expect(bom.Dependencies).NotTo(BeEmpty(), "the module graph's edges")

			info, err := buildinfo.ReadFile(pi.Binary)
			g.Expect(err).NotTo(HaveOccurred())
			var linked []string
			for _, d := range info.Deps {
				if d.Replace != nil {
					d = d.Replace
				}
				linked = append(linked, d.Path+"@"+d.Version)
			}
			var listed []string
			for _, c := range bom.Components {
				if c.Name == "std" {
					g.Expect(c.Version).To(Equal(info.GoVersion))
					continue
				}
				listed = append(listed, c.Name+"@"+c.Version)
				g.Expect(c.Hashes).NotTo(BeEmpty(), "%s: its go.sum hash", c.Name)
				g.Expect(c.Purl).To(HavePrefix("pkg:golang/" + c.Name + "@" + c.Version))
			}
			slices.Sort(linked)
			slices.Sort(listed)
			g.Expect(listed).To(Equal(linked), "the SBOM's modules are the binary's")
		})
	}
}

// TestAssemblyIsReproducible assembles the image twice from the same binaries and SBOMs, and once with another
// date: the same inputs give the same digests (no clock, no host in them), another date another digest.
func TestAssemblyIsReproducible(t *testing.T) {
	g := NewWithT(t)
	res := build(t)
	var parts []image.Part
	for _, pi := range res.Images {
		p, err := v1.ParsePlatform(pi.Platform)
		g.Expect(err).NotTo(HaveOccurred())
		parts = append(parts, image.Part{Platform: *p, Binary: pi.Binary, SBOM: pi.SBOM})
	}
	o := opts
	o.Created = created
	again, err := image.Assemble(o, parts)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again.IndexDigest).To(Equal(res.IndexDigest))
	var a, b bytes.Buffer
	g.Expect(image.WriteArchive(&a, again.Reference, again.Index, image.HostPlatform())).To(Succeed())
	g.Expect(image.WriteArchive(&b, again.Reference, again.Index, image.HostPlatform())).To(Succeed())
	g.Expect(a.Len()).To(BeNumerically(">", 1<<20))
	g.Expect(bytes.Equal(a.Bytes(), b.Bytes())).To(BeTrue(), "two archives of one index differ")
	o.Created = created.Add(time.Second)
	later, err := image.Assemble(o, parts)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(later.IndexDigest).NotTo(Equal(res.IndexDigest))
}

// TestDockerfileAgrees keeps the Dockerfile, for those who build with Docker, in step with `make image`: the same
// user and entrypoint, the same build flags, and every package of the manager copied into the build stage.
func TestDockerfileAgrees(t *testing.T) {
	g := NewWithT(t)
	root, err := controlplane.RepoRoot()
	g.Expect(err).NotTo(HaveOccurred())
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	g.Expect(err).NotTo(HaveOccurred())
	df := string(b)
	g.Expect(regexp.MustCompile(`(?m)^USER (\S+)$`).FindStringSubmatch(df)).To(Equal([]string{"USER " + image.User, image.User}))
	g.Expect(regexp.MustCompile(`(?m)^ENTRYPOINT \["([^"]+)"\]$`).FindStringSubmatch(df)).To(
		HaveExactElements(ContainSubstring("ENTRYPOINT"), Equal(image.Entrypoint)))
	g.Expect(df).To(ContainSubstring(`-tags ` + image.BuildTags))
	g.Expect(df).To(ContainSubstring(`-ldflags "` + image.LDFlags + `"`))
	g.Expect(df).To(ContainSubstring("CGO_ENABLED=0"))

	var copied []string
	for _, m := range regexp.MustCompile(`(?m)^COPY (\S+) `).FindAllStringSubmatch(df, -1) {
		copied = append(copied, m[1])
	}
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}", ".")
	cmd.Dir = root
	out, err := cmd.Output()
	g.Expect(err).NotTo(HaveOccurred())
	for _, dir := range strings.Fields(string(out)) {
		rel, _ := filepath.Rel(root, dir)
		for _, f := range goFiles(t, dir) {
			path := filepath.ToSlash(filepath.Join(rel, f))
			g.Expect(copiedBy(copied, path)).To(BeTrue(), "the Dockerfile does not COPY %s, which the manager builds from", path)
		}
	}
}

func goFiles(t *testing.T, dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".go") && !strings.HasSuffix(e.Name(), "_test.go") {
			out = append(out, e.Name())
		}
	}
	return out
}

// copiedBy says whether a COPY source of the Dockerfile (a file, a directory with a trailing slash, or a
// glob) brings path into the build stage.
func copiedBy(sources []string, path string) bool {
	for _, s := range sources {
		if strings.HasSuffix(s, "/") && strings.HasPrefix(path, s) {
			return true
		}
		if ok, _ := filepath.Match(s, path); ok {
			return true
		}
	}
	return false
}

func layerEntries(t *testing.T, l v1.Layer) []*tar.Header {
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var out []*tar.Header
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, hdr)
	}
}

func extract(t *testing.T, l v1.Layer, name, to string) {
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in the layer: %v", name, err)
		}
		if hdr.Name != name {
			continue
		}
		f, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return
	}
}

func settings(info *buildinfo.BuildInfo) map[string]string {
	m := map[string]string{}
	for _, s := range info.Settings {
		m[s.Key] = s.Value
	}
	return m
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("sha256sum", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	return "sha256:" + strings.Fields(string(out))[0]
}
