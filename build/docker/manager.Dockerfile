# syntax=docker/dockerfile:1
# The cortex manager: a static Go binary on distroless.
#
#   docker build -f build/docker/manager.Dockerfile --build-arg VERSION=v0.1.0 -t cortex-manager .
#
# The build step is `make build-manager`, the same target CI runs.
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
ENV GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    make build-manager BIN=/out VERSION=${VERSION}

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]
# Prometheus metrics and health probes.
EXPOSE 8080 8081
