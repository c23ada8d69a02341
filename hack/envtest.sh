#!/usr/bin/env bash
# Prints the directory holding kube-apiserver and etcd for envtest
# (KUBEBUILDER_ASSETS), obtaining them if needed. Progress goes to stderr;
# stdout carries only the directory, so callers can do
#   export KUBEBUILDER_ASSETS=$(hack/envtest.sh)
#
# Resolution order:
#   1. $KUBEBUILDER_ASSETS, if it holds both binaries;
#   2. ../shared/envtest/k8s-<ver>_etcd-<ver>_linux-amd64 next to the repo;
#   3. ~/.cache/cortex/envtest/<same name>, built from the Go module proxy
#      (the usual setup-envtest download host is not assumed reachable).
# Exits non-zero when no binaries can be had: envtest suites then fail
# rather than skip.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
NAME="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_linux-amd64"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/cortex/envtest/${NAME}

log() { echo "envtest: $*" >&2; }
have() { [[ -x "$1/kube-apiserver" && -x "$1/etcd" ]]; }

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && have "${KUBEBUILDER_ASSETS}"; then
	echo "${KUBEBUILDER_ASSETS}"
	exit 0
fi
for dir in "${ROOT}/../shared/envtest/${NAME}" "${CACHE}"; do
	if have "${dir}"; then
		(cd "${dir}" && pwd)
		exit 0
	fi
done

command -v go >/dev/null || { log "go is required to build ${NAME}"; exit 1; }
export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=mod
work=$(mktemp -d)
trap 'rm -rf "${work}"' EXIT
mkdir -p "${CACHE}.tmp"

build_etcd() {
	log "building etcd ${ETCD_VERSION} from the Go module proxy (about 2 minutes on 2 cores)"
	local d="${work}/etcd"
	mkdir -p "${d}"
	cat >"${d}/go.mod" <<EOF
module cortex.local/envtest-etcd

go 1.26
EOF
	cat >"${d}/tools.go" <<'EOF'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
EOF
	(cd "${d}" && go mod edit -require="go.etcd.io/etcd/server/v3@${ETCD_VERSION}" && go mod tidy >&2 &&
		go build -trimpath -ldflags=-s -o "${CACHE}.tmp/etcd" go.etcd.io/etcd/server/v3 >&2)
}

build_apiserver() {
	log "building kube-apiserver ${K8S_VERSION} from the Go module proxy (8 to 15 minutes on 2 cores)"
	local d="${work}/apiserver"
	mkdir -p "${d}"
	cat >"${d}/go.mod" <<EOF
module cortex.local/envtest-apiserver

go 1.26

require k8s.io/kubernetes ${K8S_VERSION}
EOF
	cat >"${d}/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
	# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces
	# them with local paths; point each at its published release instead.
	(cd "${d}" && go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" >/dev/null)
	local gomod
	gomod=$(cd "${d}" && go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
	local staging="v0.${K8S_VERSION#v1.}"
	awk '/^require \(/{r=1;next} r&&/^\)/{r=0} r&&$2=="v0.0.0"{print $1}' "${gomod}" | while read -r mod; do
		(cd "${d}" && go mod edit -replace="${mod}=${mod}@${staging}")
	done
	(cd "${d}" && go mod tidy >&2)
	local minor=${K8S_VERSION#v1.}
	minor=${minor%%.*}
	local ld="-s"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
	done
	(cd "${d}" && go build -trimpath -ldflags="${ld}" -o "${CACHE}.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2)
	# kubectl comes from the same module graph; tests fall back to it when
	# the machine has none on PATH.
	if ! command -v kubectl >/dev/null; then
		log "building kubectl ${K8S_VERSION}"
		(cd "${d}" && go build -trimpath -ldflags="${ld}" -o "${CACHE}.tmp/kubectl" k8s.io/kubernetes/cmd/kubectl >&2)
	fi
}

log "no prebuilt binaries found; building into ${CACHE}"
[[ -x "${CACHE}.tmp/etcd" ]] || build_etcd
[[ -x "${CACHE}.tmp/kube-apiserver" ]] || build_apiserver
rm -rf "${CACHE}"
mv "${CACHE}.tmp" "${CACHE}"
log "ready: ${CACHE}"
echo "${CACHE}"
