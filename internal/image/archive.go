package image

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The archive is what `docker save` has written since Docker 25: an OCI image layout (oci-layout, index.json,
// blobs/sha256/…) with a Docker manifest.json beside it over the same blobs. containerd's importer, which
// `kind load image-archive` runs (`ctr images import --all-platforms`) and `docker load` uses with the containerd
// image store, reads the layout and so every platform, naming the image from index.json's
// io.containerd.image.name; Docker's classic image store reads manifest.json, one image per name, so that entry
// is the host platform's.
const (
	// ContainerdNameAnnotation names the image for containerd's importer.
	ContainerdNameAnnotation = "io.containerd.image.name"
	// RefNameAnnotation is the OCI layout's name of the image (the tag, as docker save writes it).
	RefNameAnnotation = "org.opencontainers.image.ref.name"
)

// DockerManifest is one entry of a Docker archive's manifest.json.
type DockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// WriteArchiveFile writes the archive of idx, named ref, to path (through a temporary file, so a failed build
// leaves no half archive), with manifest.json pointing at docker's platform.
func WriteArchiveFile(path, ref string, idx v1.ImageIndex, docker v1.Platform) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".archive-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := WriteArchive(tmp, ref, idx, docker); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// WriteArchive writes the archive of idx, named ref (repository:tag), to w. Entries come in a fixed order with
// fixed metadata, so the same index gives the same bytes.
func WriteArchive(w io.Writer, ref string, idx v1.ImageIndex, docker v1.Platform) error {
	aw := &archiveWriter{tw: tar.NewWriter(w), written: map[string]bool{}}
	if err := aw.file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	raw, err := idx.RawManifest()
	if err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	if err := aw.blob(d, raw); err != nil {
		return err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	var dockerEntry *DockerManifest
	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return err
		}
		entry, err := aw.image(img)
		if err != nil {
			return err
		}
		if desc.Platform != nil && desc.Platform.Equals(docker) {
			dockerEntry = entry
		}
	}
	if dockerEntry == nil {
		return fmt.Errorf("the index has no image for %s (manifest.json's platform)", docker)
	}
	tag := ref[strings.LastIndex(ref, ":")+1:]
	top := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{{
		MediaType: types.OCIImageIndex, Digest: d, Size: int64(len(raw)),
		Annotations: map[string]string{ContainerdNameAnnotation: NormalizeName(ref), RefNameAnnotation: tag},
	}}}
	b, err := json.Marshal(top)
	if err != nil {
		return err
	}
	if err := aw.file("index.json", b); err != nil {
		return err
	}
	dockerEntry.RepoTags = []string{ref}
	if b, err = json.Marshal([]*DockerManifest{dockerEntry}); err != nil {
		return err
	}
	if err := aw.file("manifest.json", b); err != nil {
		return err
	}
	return aw.tw.Close()
}

type archiveWriter struct {
	tw      *tar.Writer
	written map[string]bool
}

// image writes img's manifest, config and layers as blobs and returns its manifest.json entry.
func (aw *archiveWriter) image(img v1.Image) (*DockerManifest, error) {
	raw, err := img.RawManifest()
	if err != nil {
		return nil, err
	}
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	if err := aw.blob(d, raw); err != nil {
		return nil, err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return nil, err
	}
	cd, err := img.ConfigName()
	if err != nil {
		return nil, err
	}
	if err := aw.blob(cd, cfg); err != nil {
		return nil, err
	}
	entry := &DockerManifest{Config: blobPath(cd)}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		ld, err := l.Digest()
		if err != nil {
			return nil, err
		}
		entry.Layers = append(entry.Layers, blobPath(ld))
		if aw.written[blobPath(ld)] {
			continue
		}
		size, err := l.Size()
		if err != nil {
			return nil, err
		}
		rc, err := l.Compressed()
		if err != nil {
			return nil, err
		}
		err = aw.stream(blobPath(ld), size, rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
	}
	return entry, nil
}

func (aw *archiveWriter) blob(d v1.Hash, b []byte) error {
	if aw.written[blobPath(d)] {
		return nil
	}
	return aw.file(blobPath(d), b)
}

func (aw *archiveWriter) file(name string, b []byte) error {
	return aw.stream(name, int64(len(b)), strings.NewReader(string(b)))
}

// stream writes one regular file: mode 0644, owned by root, dated at the epoch (the archive's dates mean nothing;
// the image's own dates are inside its config and layer).
func (aw *archiveWriter) stream(name string, size int64, r io.Reader) error {
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
	if err := aw.tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(aw.tw, r)
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if n != size {
		return fmt.Errorf("writing %s: %d bytes, want %d", name, n, size)
	}
	aw.written[name] = true
	return nil
}

func blobPath(d v1.Hash) string { return "blobs/" + d.Algorithm + "/" + d.Hex }

// NormalizeName is ref as containerd and Docker name it: docker.io/library/ for a bare name, docker.io/ for a
// name without a registry (labrun-operator:dev is docker.io/library/labrun-operator:dev, which is what a pod's
// image labrun-operator:dev resolves to on a kind node).
func NormalizeName(ref string) string {
	first, rest, found := strings.Cut(ref, "/")
	if !found {
		return "docker.io/library/" + ref
	}
	if strings.ContainsAny(first, ".:") || first == "localhost" {
		return ref
	}
	return "docker.io/" + first + "/" + rest
}
