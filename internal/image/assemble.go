package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Part is one platform's input to the image: the manager built for it and, optionally, its SBOM.
type Part struct {
	Platform v1.Platform
	Binary   string
	SBOM     string
}

// Assemble builds each platform's image from its part and the index of them all. It reads only the parts and o
// (no clock, no environment), so the same inputs give the same digests.
func Assemble(o Options, parts []Part) (*Result, error) {
	o.defaults()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	res := &Result{Reference: o.Repository + ":" + o.Tag}
	for _, part := range parts {
		img, pi, err := platformImage(o, part)
		if err != nil {
			return nil, err
		}
		p := part.Platform
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
		res.Images = append(res.Images, *pi)
	}
	res.Index = mutate.Annotations(idx, annotations(o)).(v1.ImageIndex)
	d, err := res.Index.Digest()
	if err != nil {
		return nil, err
	}
	res.IndexDigest = d.String()
	return res, nil
}

// platformImage is the scratch image holding part's binary as its only layer.
func platformImage(o Options, part Part) (v1.Image, *PlatformImage, error) {
	st, err := os.Stat(part.Binary)
	if err != nil {
		return nil, nil, err
	}
	layerTar, err := binaryLayer(part.Binary, o.Created)
	if err != nil {
		return nil, nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.BestCompression),
		tarball.WithCompressedCaching)
	if err != nil {
		return nil, nil, err
	}
	labels := annotations(o)
	pi := &PlatformImage{Platform: part.Platform.String(), Binary: part.Binary, BinarySize: st.Size(), SBOM: part.SBOM}
	if part.SBOM != "" {
		sum, err := fileDigest(part.SBOM)
		if err != nil {
			return nil, nil, err
		}
		labels[SBOMDigestLabel], labels[SBOMFormatLabel] = sum, SBOMFormat
		pi.SBOMDigest = sum
	}
	created := v1.Time{Time: o.Created}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: part.Platform.Architecture,
		OS:           part.Platform.OS,
		Variant:      part.Platform.Variant,
		Created:      created,
		Config: v1.Config{
			User:       User,
			Entrypoint: []string{Entrypoint},
			WorkingDir: "/",
			Labels:     labels,
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, nil, err
	}
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created:   created,
		CreatedBy: "make image (internal/image): " + Entrypoint,
		Comment:   "the manager, static, " + part.Platform.String(),
	}})
	if err != nil {
		return nil, nil, err
	}
	img = mutate.Annotations(img, annotations(o)).(v1.Image)
	if pi.LayerSize, err = layer.Size(); err != nil {
		return nil, nil, err
	}
	md, err := img.Digest()
	if err != nil {
		return nil, nil, err
	}
	cd, err := img.ConfigName()
	if err != nil {
		return nil, nil, err
	}
	pi.ManifestDigest, pi.ConfigDigest = md.String(), cd.String()
	return img, pi, nil
}

// binaryLayer is an uncompressed tar holding the binary as /manager: mode 0755, owned by root (the user
// 65532 may run it, not change it), stamped with created.
func binaryLayer(binary string, created time.Time) ([]byte, error) {
	b, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: Entrypoint[1:], Mode: 0o755, Size: int64(len(b)), ModTime: created,
		Typeflag: tar.TypeReg, Uname: "root", Gname: "root"}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(b); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// annotations are the OCI labels of the image, also its manifests' and index's annotations.
func annotations(o Options) map[string]string {
	a := map[string]string{
		"org.opencontainers.image.title":       Name,
		"org.opencontainers.image.description": Description,
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.created":     o.Created.UTC().Format(time.RFC3339),
		"org.opencontainers.image.source":      Source,
		"org.opencontainers.image.url":         Source,
	}
	if o.Revision != "" {
		a["org.opencontainers.image.revision"] = o.Revision
	}
	for k, v := range a {
		if v == "" {
			delete(a, k)
		}
	}
	return a
}

// fileDigest is sha256:<hex> of the file at path.
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
