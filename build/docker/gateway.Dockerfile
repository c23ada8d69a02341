# syntax=docker/dockerfile:1
# The cortex gateway: a static Go binary on distroless.
#
#   docker build -f build/docker/gateway.Dockerfile --build-arg VERSION=v0.1.0 -t cortex-gateway .
#
# The build step is `make build-gateway`, the same target CI runs.
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
ENV GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    make build-gateway BIN=/out VERSION=${VERSION}

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/gateway /gateway
USER 65532:65532
ENTRYPOINT ["/gateway"]
# API (OpenAI + Anthropic) and Prometheus metrics.
EXPOSE 8080 9090
