# syntax=docker/dockerfile:1
# The cortex neuron, CUDA build: the neuron binary plus llama.cpp's CUDA
# backend (libggml-cuda.so), loaded at start from the binary's folder.
#
#   docker build -f build/docker/neuron-cuda.Dockerfile --build-arg VERSION=v0.1.0 -t cortex-neuron:v0.1.0-cuda .
#
# The build steps are CI's: `make build-neuron`, then hack/build-cuda.sh
# with Debian bookworm's CUDA 11.8 unpacked by hack/cuda-toolkit.sh (no GPU
# needed, nothing from NVIDIA's registries). CI compiles sm_90 on every
# change with the same script and sources; this image builds every
# architecture below. CUDA 11.8 runs on drivers 520 and later.
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
# Header-only C++ dependencies of the llama.cpp sources, CMake, and g++-11,
# the newest host compiler nvcc 11.8 accepts.
RUN apt-get update \
 && apt-get install -y --no-install-recommends nlohmann-json3-dev libstb-dev cmake ninja-build g++-11 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
ENV GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
# CUDA architectures for the backend; empty takes hack/build-backends.sh's
# default: 75;80;86;89;90-real (T4, A100, A10/A40, L4/L40S, H100/H200) and
# PTX of 90 for the JIT on newer GPUs.
ARG CUDA_ARCHITECTURES=""
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    make build-neuron BIN=/out VERSION=${VERSION}
# The CUDA backend of the same llama.cpp sources, built by the project's
# script, which writes libggml-cuda.so into the folder it is given; its
# runtime libraries (cudart, cuBLAS) go beside it in /out/cuda.
RUN --mount=type=cache,target=/root/go/pkg/mod \
    toolkit="$(hack/cuda-toolkit.sh)" \
 && PATH="${toolkit}:${PATH}" CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}" hack/build-cuda.sh /out \
 && test -f /out/libggml-cuda.so \
 && mkdir -p /out/cuda \
 && cp -P "${toolkit}"/../lib/x86_64-linux-gnu/libcudart.so.11* "${toolkit}"/../lib/x86_64-linux-gnu/libcublas.so.11* \
          "${toolkit}"/../lib/x86_64-linux-gnu/libcublasLt.so.11* /out/cuda/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 libstdc++6 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --home-dir /home/nonroot --create-home --shell /usr/sbin/nologin nonroot \
 && mkdir -p /var/lib/cortex/models && chown 65532:65532 /var/lib/cortex/models
# The backend sits next to the binary; --library-path (here through its
# environment fallback) tells the engine where to load it from. The driver's
# libcuda.so.1 and libnvidia-ml.so.1 come from the NVIDIA container runtime;
# without them the neuron serves on the CPU and says why in /discovery.
COPY --from=build /out/neuron /opt/cortex/bin/neuron
COPY --from=build /out/libggml-cuda.so /opt/cortex/bin/libggml-cuda.so
COPY --from=build /out/cuda /opt/cortex/lib
ENV CORTEX_LIBRARY_PATH=/opt/cortex/bin \
    LD_LIBRARY_PATH=/opt/cortex/lib \
    PATH=/opt/cortex/bin:${PATH} \
    HOME=/home/nonroot \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 65532:65532
EXPOSE 13131
ENTRYPOINT ["/opt/cortex/bin/neuron"]
