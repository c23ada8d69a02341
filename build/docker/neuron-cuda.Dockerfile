# syntax=docker/dockerfile:1
# The cortex neuron, CUDA build: the neuron binary plus llama.cpp's CUDA
# backend (libggml-cuda.so), loaded at start from the binary's folder.
#
#   docker build -f build/docker/neuron-cuda.Dockerfile --build-arg VERSION=v0.1.0 -t cortex-neuron:v0.1.0-cuda .
#
# The build steps are `make build-neuron` and hack/build-cuda.sh, as in CI.
ARG CUDA_VERSION=12.8.1
ARG UBUNTU_VERSION=24.04
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS go

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends make git ca-certificates cmake ninja-build nlohmann-json3-dev libstb-dev \
 && rm -rf /var/lib/apt/lists/*
COPY --from=go /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:/root/go/bin:${PATH} GOTOOLCHAIN=local
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
# CUDA architectures for the backend; empty takes hack/build-cuda.sh's
# default (75;80;86;89;90-real, plus 100;120-real on CUDA 12.8 and newer).
ARG CUDA_ARCHITECTURES=""
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    make build-neuron BIN=/out VERSION=${VERSION}
# The CUDA backend of the same llama.cpp sources, built by the project's
# script, which writes libggml-cuda.so into the folder it is given.
RUN --mount=type=cache,target=/root/go/pkg/mod \
    CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}" hack/build-cuda.sh /out \
 && test -f /out/libggml-cuda.so

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION}
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --home-dir /home/nonroot --create-home --shell /usr/sbin/nologin nonroot \
 && mkdir -p /var/lib/cortex/models && chown 65532:65532 /var/lib/cortex/models
# The backend sits next to the binary; --library-path (here through its
# environment fallback) tells the engine where to load it from.
COPY --from=build /out/neuron /opt/cortex/bin/neuron
COPY --from=build /out/libggml-cuda.so /opt/cortex/bin/libggml-cuda.so
ENV CORTEX_LIBRARY_PATH=/opt/cortex/bin \
    PATH=/opt/cortex/bin:${PATH} \
    HOME=/home/nonroot \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 65532:65532
EXPOSE 13131
ENTRYPOINT ["/opt/cortex/bin/neuron"]
