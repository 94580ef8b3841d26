# labrun-operator — build, generate, test.

# Tool and control-plane versions. Keep K8S_VERSION on the same minor as the k8s.io modules in go.mod.
CONTROLLER_TOOLS_VERSION ?= v0.23.0
K8S_VERSION ?= v1.37.2
ETCD_VERSION ?= v3.7.0

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
export KUBEBUILDER_ASSETS ?= $(LOCALBIN)/k8s
IMG ?= controller:latest

.PHONY: all
all: build

##@ Generation

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD and RBAC manifests.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases
	go run ./hack/crddocs config/crd/bases/*.yaml

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: chart
chart: ## Regenerate the Helm chart's generated templates and files from config/ (internal/chart's tests check them).
	go run ./hack/chartgen

$(CONTROLLER_GEN):
	mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(LOCALBIN)/controller-gen $(CONTROLLER_GEN)

##@ Build and test

.PHONY: build
build: ## Build the manager binary.
	go build -o $(LOCALBIN)/manager .

PLUGIN_VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)

.PHONY: plugin
plugin: ## Build the kubectl plugin bin/kubectl-labrun (put it on PATH, then: kubectl labrun --help).
	go build -ldflags "-X github.com/ambientlab/labrun-operator/internal/plugin.Version=$(PLUGIN_VERSION)" -o $(LOCALBIN)/kubectl-labrun ./cmd/kubectl-labrun

.PHONY: controlplane
controlplane: ## Build kube-apiserver and etcd from Go modules into bin/k8s (skipped when present).
	K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/controlplane.sh $(KUBEBUILDER_ASSETS)

.PHONY: istiod
istiod: ## Build istiod (pilot-discovery) from the pinned istio.io/istio into bin/istiod (skipped when present).
	hack/istiod.sh $(LOCALBIN)/istiod

.PHONY: promtool
promtool: ## Build promtool from the pinned github.com/prometheus/prometheus into bin/promtool (skipped when present).
	hack/promtool.sh $(LOCALBIN)/promtool

.PHONY: verify-generated
verify-generated: ## Fail when 'make manifests generate' changes the tree.
	hack/verify-generated.sh

.PHONY: vet
vet:
	go vet ./...

.PHONY: test
test: controlplane istiod promtool verify-generated vet ## Build what is needed, check generated files, vet, run every test.
	go test ./... -count=1 -timeout 30m

.PHONY: demo
demo: controlplane istiod build ## Run the sample LabRun in the sandbox (local API server + simulated ambient data plane).
	$(LOCALBIN)/manager sandbox --apply-sample

.PHONY: sandbox
sandbox: controlplane istiod build ## Start the sandbox and keep it up (Ctrl-C stops it).
	$(LOCALBIN)/manager sandbox --keep

.PHONY: bench
bench: controlplane istiod ## Print the figures of a full five-lab run on the sandbox, then the rows of N runs at once (bench-load).
	go test ./controllers/ -run '^$$' -bench BenchmarkFullRun -benchtime 3x
	$(MAKE) bench-load

BENCH_LOAD_N ?= 1,30,100

BENCH_FLEET_NODES ?= 3,30,100,300

.PHONY: bench-fleet
bench-fleet: controlplane istiod ## A one-off Verify run of every lab, then a LabSchedule's first two runs (warm observers), on sandboxes of BENCH_FLEET_NODES nodes: wall, pods created, API requests by verb, bytes written, manager CPU and peak heap, in bin/bench-fleet/fleet.txt.
	go run ./hack/benchload -fleet $(BENCH_FLEET_NODES) -out $(LOCALBIN)/bench-fleet

.PHONY: bench-load
bench-load: controlplane istiod ## Many LabRuns at once (BENCH_LOAD_N) against the manager as its own process: wall, per run, peak RSS, API requests, profiles in bin/bench-load.
	go run ./hack/benchload -n $(BENCH_LOAD_N) -out $(LOCALBIN)/bench-load

##@ Deploy

IMAGE_REPOSITORY ?= labrun-operator
IMAGE_TAG ?= $(PLUGIN_VERSION)
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64

.PHONY: image
image: ## Build the image without a container engine: bin/image/labrun-operator.tar (docker load, kind load image-archive), an SBOM per platform, image.json, values.yaml.
	go run ./hack/imagebuild -repository $(IMAGE_REPOSITORY) -tag $(IMAGE_TAG) -platforms $(IMAGE_PLATFORMS) -out $(LOCALBIN)/image

BUNDLE_IMAGE ?= ghcr.io/ambientlab/labrun-operator:v0.1.0

.PHONY: bundle
bundle: ## Regenerate the OLM bundle (bundle/, bundle.Dockerfile) from config/ (internal/bundle's tests check it); BUNDLE_IMAGE=repo@sha256:... for a release.
	go run ./hack/bundlegen -image $(BUNDLE_IMAGE)

.PHONY: e2e-kind
e2e-kind: ## On a machine with Docker: kind + Istio ambient + make image + Helm + the sample runs (hack/e2e-kind.sh; E2E_ARGS=--dry-run prints the commands).
	hack/e2e-kind.sh $(E2E_ARGS)

.PHONY: docker-build
docker-build: ## Build the image with Docker (needs a Docker engine; make image needs none).
	docker build -t $(IMG) .

.PHONY: deploy
deploy: ## Install the CRD, RBAC and manager on the current cluster.
	kubectl apply -k config/default

.PHONY: help
help:
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ { printf "  %-18s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
