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
# ggml backend libraries for $(BIN)/neuron: ollama's loader searches
# <executable>/../lib/ollama when no --library-path is given.
LIBDIR ?= $(abspath $(BIN)/../lib/ollama)
# `make cuda`: every architecture the CUDA image ships (empty: the list in
# hack/build-backends.sh, 75 to 90 real plus 90 PTX on CUDA 11.8).
CUDA_ARCHITECTURES ?=
# `make cuda-check`: the one architecture CI compiles on every change.
CUDA_CHECK_ARCHITECTURES ?= 90-real
CUDA_CHECK_DIR ?= $(HOME)/.cache/cortex/cuda-check/lib/ollama
FUZZTIME ?= 90s
FUZZPARALLEL ?= 1
FUZZ ?= .

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

.PHONY: llama-headers
llama-headers: ## Link the pinned llama.cpp and ggml headers for the engine's cgo code (every target that compiles runs it).
	@hack/llama-headers.sh >/dev/null

.PHONY: fmt
fmt: ## Format the Go code.
	$(GO) fmt ./...

.PHONY: fmt-check
fmt-check: ## Fail if any Go file is not gofmt-formatted.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt-formatted (run make fmt):"; echo "$$out"; exit 1; fi

.PHONY: check-deps
check-deps: ## Stop with the install command when the cgo build's toolchain or headers are missing (hack/check-deps.sh).
	@hack/check-deps.sh

.PHONY: vet
vet: check-deps llama-headers ## Run go vet.
	$(GO) vet ./...

.PHONY: lint
lint: vet ## Run golangci-lint (pinned in hack/tools) and go vet.
	$(GOLANGCI_LINT) run ./...

.PHONY: envtest
envtest: ## Print (and if needed build) the kube-apiserver + etcd directory for envtest.
	@hack/envtest.sh

.PHONY: test
test: check-deps verify-generated fmt-check vet llama-headers ## Check generated files, vet, and run every test (envtest, engine, end-to-end).
	KUBEBUILDER_ASSETS="$$(hack/envtest.sh)" $(GO) test $(TEST_FLAGS) $(PKGS)

.PHONY: test-short
test-short: check-deps llama-headers ## Run the tests with -short (skips the slowest real-engine, process and keep-alive tests).
	$(GO) test -short $(PKGS)

.PHONY: fuzz
fuzz: ## Run every fuzz target in turn for FUZZTIME each (default 90s; a count like 1000000x works too) and print the executions reached.
	FUZZTIME="$(FUZZTIME)" FUZZPARALLEL="$(FUZZPARALLEL)" FUZZ="$(FUZZ)" GO="$(GO)" hack/fuzz.sh

.PHONY: bench
bench: ## Run the benchmarks.
	$(GO) test -run '^$$' -bench . -benchmem ./internal/placement/

.PHONY: bench-neuron
bench-neuron: cpu-backend ## The neuron's HTTP API against the engine on real models, with this CPU's ggml variant (a few minutes).
	CORTEX_LIBRARY_PATH=$(LIBDIR) $(GO) test -run '^$$' -bench NeuronVsEngine -benchtime 3x ./internal/neuron/realengine/

.PHONY: bench-engine
bench-engine: llama-headers ## The engine against llama.cpp alone (llama-bench's pp/tg loops) on stories260K and generated 100M Q8_0/Q4_0 llamas; BENCH_FLAGS, CORTEX_BENCH_THREADS, CORTEX_BENCH_LARGE=1 (800M).
	$(GO) test -run '^$$' -bench Engine -benchtime 3x -timeout 60m $(BENCH_FLAGS) ./internal/engine/llamacpp/

.PHONY: bench-fleet
bench-fleet: ## The fleet simulator: cortex against Ollama-style, LRU, dedicated GPUs and routers on public traces (a few minutes); tables to stdout, plots to docs/img.
	$(GO) run ./hack/fleetsim $(FLEET_FLAGS)

.PHONY: bench-scale
bench-scale: ## The control plane at fleet scale: 1,000 Models on 200 simulated NeuronNodes on a real API server (a few minutes).
	KUBEBUILDER_ASSETS="$$(hack/envtest.sh)" $(GO) run ./hack/scalebench $(SCALE_FLAGS)

.PHONY: bench-cold
bench-cold: build ## A model's load order to first token on a real neuron against its floor (read bandwidth + engine init), page cache and cold.
	$(GO) run ./hack/coldbench -neuron $(BIN)/neuron $(COLD_FLAGS)

.PHONY: bench-overload
bench-overload: ## Goodput and latency from 0.5x to 3x capacity: a real neuron (stories260K) behind the gateway, with and without overload limits (about 9 minutes).
	$(GO) run ./hack/gatewaybench -overload $(OVERLOAD_FLAGS)

.PHONY: soak
soak: llama-headers ## Soak and faults: mixed traffic through the local stack while neurons, gateways, managers and the API server fail (bounded, about 10 minutes).
	KUBEBUILDER_ASSETS="$$(hack/envtest.sh)" $(GO) run ./hack/soak $(SOAK_FLAGS)

##@ Run

.PHONY: run
run: build ## Run the whole stack locally: API server, manager, gateway, two CPU neurons, sample Models.
	$(GO) run ./hack/localrun --bin $(BIN)

##@ Build

.PHONY: build
build: check-deps llama-headers cpu-backend ## Build manager, neuron, gateway, the cortex CLI (also as the kubectl plugin kubectl-cortex) and cortex-acp into bin/, with the CPU backend variant for this CPU.
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
build-neuron: check-deps llama-headers ## Build the neuron (cgo, llama.cpp CPU backend) into $(BIN); honours GOFLAGS.
	@mkdir -p $(BIN)
	CGO_ENABLED=1 GOFLAGS="$(GOFLAGS)" $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/neuron ./cmd/neuron

.PHONY: cpu-backend
cpu-backend: check-deps ## The ggml CPU variant this CPU runs best (AVX2, AVX-512, …) into $(LIBDIR), where bin/neuron loads it; built once, cached in ~/.cache/cortex/ggml.
	@if [ "$$(uname -m)" = x86_64 ]; then hack/build-backends.sh --cached cpu $(LIBDIR) best >/dev/null; \
	else echo "cpu-backend: no CPU variants for $$(uname -m); the neuron computes with its built-in CPU backend"; fi

.PHONY: cuda
cuda: check-deps ## libggml-cuda.so for every shipped architecture into $(LIBDIR) (no GPU needed; CUDA 11.8 from hack/cuda-toolkit.sh when no nvcc); cached.
	@toolkit=$$(command -v nvcc >/dev/null 2>&1 && dirname "$$(command -v nvcc)" || hack/cuda-toolkit.sh --install); \
	PATH="$$toolkit:$$PATH" CUDA_ARCHITECTURES='$(CUDA_ARCHITECTURES)' hack/build-cuda.sh --cached $(LIBDIR)

.PHONY: cuda-check
cuda-check: check-deps ## What CI compiles on every change: libggml-cuda.so for $(CUDA_CHECK_ARCHITECTURES) into ~/.cache/cortex/cuda-check (cached by source hash).
	@toolkit=$$(command -v nvcc >/dev/null 2>&1 && dirname "$$(command -v nvcc)" || hack/cuda-toolkit.sh --install); \
	PATH="$$toolkit:$$PATH" CUDA_ARCHITECTURES='$(CUDA_CHECK_ARCHITECTURES)' hack/build-cuda.sh --cached $(CUDA_CHECK_DIR)

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
