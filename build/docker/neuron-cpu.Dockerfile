# syntax=docker/dockerfile:1
# The cortex neuron, CPU build: llama.cpp through cgo, no GPU backend.
#
#   docker build -f build/docker/neuron-cpu.Dockerfile --build-arg VERSION=v0.1.0 -t cortex-neuron:v0.1.0-cpu .
#
# The build step is `make build-neuron`, the same target CI runs.
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
# Header-only C++ dependencies of the llama.cpp sources.
RUN apt-get update \
 && apt-get install -y --no-install-recommends nlohmann-json3-dev libstb-dev cmake ninja-build \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
ENV GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    make build-neuron BIN=/out VERSION=${VERSION}
# CPU backends tuned for newer instruction sets (AVX2, AVX-512, AMX): the
# engine loads the best one the host supports, 2-4x the decode speed of the
# baseline build on this project's measurements (docs/gpu.md).
RUN --mount=type=cache,target=/root/go/pkg/mod \
    hack/build-backends.sh cpu /out/lib/ollama all

FROM debian:bookworm-slim
# libgomp and libstdc++ for llama.cpp; CA certificates for hf:// and
# https:// model downloads.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 libstdc++6 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --home-dir /home/nonroot --create-home --shell /usr/sbin/nologin nonroot \
 && mkdir -p /var/lib/cortex/models && chown 65532:65532 /var/lib/cortex/models
COPY --from=build /out/neuron /usr/local/bin/neuron
# The loader's default folder for backend libraries: no flag needed.
COPY --from=build /out/lib/ollama /usr/local/lib/ollama
USER 65532:65532
ENV HOME=/home/nonroot
# API, control and /metrics.
EXPOSE 13131
ENTRYPOINT ["/usr/local/bin/neuron"]
