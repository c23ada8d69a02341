# cortex — run a fleet of GPU hosts as one LLM service on Kubernetes.
#
# `make help` lists the targets. `make test` is what CI runs.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

# The pinned llama.cpp sources (github.com/ollama/ollama/llama) include a
# miniaudio header the module zip does not ship; hack/include supplies a
# stub. Every go command that links the engine needs this.
export CGO_CPPFLAGS := -I$(CURDIR)/hack/include
# go-nvml's generated bindings call deprecated NVML entry points; their
# warnings drown real output.
export CGO_CFLAGS := -O2 -g -Wno-deprecated-declarations
export CGO_ENABLED := 1
export GOTOOLCHAIN := local

GO ?= go
BIN ?= $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/helexa-ai/cortex/internal/version.Version=$(VERSION)
CONTROLLER_GEN := $(GO) tool controller-gen
GOLANGCI_LINT := $(GO) tool -modfile=hack/tools/go.mod golangci-lint
TEST_FLAGS ?= -timeout 45m
PKGS ?= ./...

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
		/^[a-zA-Z0-9_.-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } \
		/^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: ## Generate deepcopy code from the API types.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: ## Generate CRDs and RBAC from kubebuilder markers (and copy CRDs into the chart).
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=cortex-manager paths=./controllers/... output:rbac:artifacts:config=config/rbac/manager
	$(CONTROLLER_GEN) rbac:roleName=cortex-gateway paths=./internal/gateway/... output:rbac:artifacts:config=config/rbac/gateway
	$(CONTROLLER_GEN) rbac:roleName=cortex-neuron paths=./internal/neuron/... output:rbac:artifacts:config=config/rbac/neuron
	@if [ -d charts/cortex ]; then mkdir -p charts/cortex/crds && cp config/crd/bases/*.yaml charts/cortex/crds/; fi
	@if [ -d charts/cortex ]; then hack/chart-sync.sh; fi

.PHONY: verify-generated
verify-generated: generate manifests ## Fail if generated files differ from what is committed.
	@if [ -n "$$(git status --porcelain -- api config charts/cortex/crds charts/cortex/files/rbac)" ]; then \
		echo "generated files are stale; run 'make generate manifests' and commit:"; \
		git status --porcelain -- api config charts/cortex/crds charts/cortex/files/rbac; git --no-pager diff --stat -- api config charts/cortex/crds charts/cortex/files/rbac; exit 1; fi

.PHONY: fmt
fmt: ## Format the Go code.
	$(GO) fmt ./...

.PHONY: fmt-check
fmt-check: ## Fail if any Go file is not gofmt-formatted.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt-formatted (run make fmt):"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

.PHONY: lint
lint: vet ## Run golangci-lint (pinned in hack/tools) and go vet.
	$(GOLANGCI_LINT) run ./...

.PHONY: envtest
envtest: ## Print (and if needed build) the kube-apiserver + etcd directory for envtest.
	@hack/envtest.sh

.PHONY: test
test: verify-generated fmt-check vet ## Check generated files, vet, and run every test (envtest, engine, end-to-end).
	KUBEBUILDER_ASSETS="$$(hack/envtest.sh)" $(GO) test $(TEST_FLAGS) $(PKGS)

.PHONY: test-short
test-short: ## Run the tests with -short (skips the slowest real-engine, process and keep-alive tests).
	$(GO) test -short $(PKGS)

.PHONY: bench
bench: ## Run the benchmarks.
	$(GO) test -run '^$$' -bench . -benchmem ./internal/placement/

.PHONY: bench-fleet
bench-fleet: ## The fleet simulator: cortex against Ollama-style, LRU, dedicated GPUs and routers on public traces (a few minutes); tables to stdout, plots to docs/img.
	$(GO) run ./hack/fleetsim $(FLEET_FLAGS)

.PHONY: bench-scale
bench-scale: ## The control plane at fleet scale: 1,000 Models on 200 simulated NeuronNodes on a real API server (a few minutes).
	KUBEBUILDER_ASSETS="$$(hack/envtest.sh)" $(GO) run ./hack/scalebench $(SCALE_FLAGS)

##@ Run

.PHONY: run
run: build ## Run the whole stack locally: API server, manager, gateway, two CPU neurons, sample Models.
	$(GO) run ./hack/localrun --bin $(BIN)

##@ Build

.PHONY: build
build: ## Build manager, neuron, gateway, the cortex CLI (also as the kubectl plugin kubectl-cortex) and cortex-acp into bin/.
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...
	@ln -sf cortex $(BIN)/kubectl-cortex

##@ Ship (images, Helm chart, kustomize bases)

IMAGE_REGISTRY ?= ghcr.io/helexa-ai
IMAGE_TAG ?= $(VERSION)
DOCKER ?= docker

.PHONY: build-manager
build-manager: ## Build the manager as a static binary (CGO_ENABLED=0) into $(BIN); honours GOFLAGS.
	@mkdir -p $(BIN)
	CGO_ENABLED=0 GOFLAGS="$(GOFLAGS)" $(GO) build -trimpath -ldflags '$(LDFLAGS) -s -w' -o $(BIN)/manager ./cmd/manager

.PHONY: build-gateway
build-gateway: ## Build the gateway as a static binary (CGO_ENABLED=0) into $(BIN); honours GOFLAGS.
	@mkdir -p $(BIN)
	CGO_ENABLED=0 GOFLAGS="$(GOFLAGS)" $(GO) build -trimpath -ldflags '$(LDFLAGS) -s -w' -o $(BIN)/gateway ./cmd/gateway

.PHONY: build-cortex
build-cortex: ## Build the cortex CLI as a static binary (CGO_ENABLED=0) into $(BIN), with the kubectl-cortex plugin link; honours GOFLAGS.
	@mkdir -p $(BIN)
	CGO_ENABLED=0 GOFLAGS="$(GOFLAGS)" $(GO) build -trimpath -ldflags '$(LDFLAGS) -s -w' -o $(BIN)/cortex ./cmd/cortex
	@ln -sf cortex $(BIN)/kubectl-cortex

.PHONY: build-neuron
build-neuron: ## Build the neuron (cgo, llama.cpp CPU backend) into $(BIN); honours GOFLAGS.
	@mkdir -p $(BIN)
	CGO_ENABLED=1 GOFLAGS="$(GOFLAGS)" $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/neuron ./cmd/neuron

.PHONY: images
images: ## Build the images with Docker (only prints the commands when no Docker daemon answers).
	@run=; if ! $(DOCKER) info >/dev/null 2>&1; then run=echo; \
		echo "# No Docker daemon answers; 'make images' would run:"; fi; \
	$$run $(DOCKER) build -f build/docker/manager.Dockerfile --build-arg VERSION=$(VERSION) -t $(IMAGE_REGISTRY)/cortex-manager:$(IMAGE_TAG) . && \
	$$run $(DOCKER) build -f build/docker/gateway.Dockerfile --build-arg VERSION=$(VERSION) -t $(IMAGE_REGISTRY)/cortex-gateway:$(IMAGE_TAG) . && \
	$$run $(DOCKER) build -f build/docker/neuron-cpu.Dockerfile --build-arg VERSION=$(VERSION) -t $(IMAGE_REGISTRY)/cortex-neuron:$(IMAGE_TAG)-cpu . && \
	$$run $(DOCKER) build -f build/docker/neuron-cuda.Dockerfile --build-arg VERSION=$(VERSION) -t $(IMAGE_REGISTRY)/cortex-neuron:$(IMAGE_TAG)-cuda .

.PHONY: chart-sync
chart-sync: ## Copy the generated CRDs and RBAC roles into charts/cortex (part of 'make manifests').
	@hack/chart-sync.sh

.PHONY: helm
helm: ## Print (and if needed build) the helm binary the chart tests use.
	@hack/helm.sh

.PHONY: chart-lint
chart-lint: ## Lint the Helm chart strictly.
	"$$(hack/helm.sh)" lint --strict charts/cortex

.PHONY: chart-test
chart-test: ## Run the chart, kustomize, samples and dashboard tests (helm + a real API server).
	KUBEBUILDER_ASSETS="$$(hack/envtest.sh)" $(GO) test $(TEST_FLAGS) ./test/chart/

.PHONY: kustomize-bases
kustomize-bases: ## Regenerate the kustomize bases in config/ from the chart.
	$(GO) test ./test/chart/ -run '^TestKustomizeBases$$' -args -update
