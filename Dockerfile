# Build the manager binary (also the probe: `manager probe` runs in probe pods). `make image` builds the same
# image without a container engine (internal/image): keep the build flags, the user and the entrypoint equal
# (internal/image's TestDockerfileAgrees checks them).
FROM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH
WORKDIR /workspace
COPY go.mod go.sum ./
RUN go mod download
COPY *.go ./
COPY api/ api/
COPY controllers/ controllers/
COPY operator/ operator/
COPY internal/ internal/
# The manager compares the installed admission policies with config/'s (embedded).
COPY config/ config/
# Static, with the time zone database embedded (timetzdata) for LabSchedule's spec.timeZone.
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} go build -trimpath -buildvcs=false -tags timetzdata -ldflags "-s -w" -o manager .

# distroless static, non-root: the probe pods run as UID 65532 with a read-only root filesystem.
FROM gcr.io/distroless/static:nonroot
WORKDIR /
COPY --from=builder /workspace/manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]
