#!/usr/bin/env bash
# Prints the path of a Helm 3 binary, obtaining one if needed. Progress goes
# to stderr; stdout carries only the path, so callers can do
#   HELM=$(hack/helm.sh)
#
# Resolution order:
#   1. $HELM, if it is an executable Helm 3;
#   2. `helm` on PATH, if it is Helm 3;
#   3. ~/.cache/cortex/helm/<version>/helm, built from the Go module proxy
#      (no release download host is assumed reachable). A second run finds
#      the cached binary and does nothing.
#
# Exits non-zero when no Helm can be had: the chart tests then fail rather
# than skip.
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-v3.22.0}
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/cortex/helm/${HELM_VERSION}
want_major=${HELM_VERSION%%.*} # v3

log() { echo "helm: $*" >&2; }

# is_helm3 BIN: true when BIN runs and reports the wanted major version.
is_helm3() {
	local v
	v=$("$1" version --short 2>/dev/null) || return 1
	[[ "${v}" == "${want_major}".* ]]
}

if [[ -n "${HELM:-}" ]] && [[ -x "${HELM}" ]] && is_helm3 "${HELM}"; then
	echo "${HELM}"
	exit 0
fi
if p=$(command -v helm 2>/dev/null) && is_helm3 "${p}"; then
	echo "${p}"
	exit 0
fi
if [[ -x "${CACHE_DIR}/helm" ]] && is_helm3 "${CACHE_DIR}/helm"; then
	echo "${CACHE_DIR}/helm"
	exit 0
fi

command -v go >/dev/null || { log "go is required to build helm ${HELM_VERSION}"; exit 1; }
export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0

# Helm's own Makefile stamps the Kubernetes version it was built against
# into chartutil (the .Capabilities.KubeVersion that `helm template` and
# `helm lint` assume offline) and into the deprecation linter. A plain
# `go install` leaves both at v1.20, which fails a chart's
# `kubeVersion: >=1.30`; derive them from the client-go Helm requires.
log "building helm ${HELM_VERSION} from the Go module proxy into ${CACHE_DIR} (about 2-3 minutes on 2 cores)"
work=$(mktemp -d)
trap 'rm -rf "${work}"' EXIT
(cd "${work}" && go mod init cortex.local/helm >/dev/null 2>&1)
gomod=$(cd "${work}" && go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[[ -n "${gomod}" && -f "${gomod}" ]] || { log "cannot download helm.sh/helm/v3@${HELM_VERSION}"; exit 1; }
clientgo=$(awk '$1=="k8s.io/client-go"{print $2; exit}' "${gomod}") # v0.37.0
[[ "${clientgo}" =~ ^v0\.([0-9]+)\. ]] || { log "cannot read the client-go version from ${gomod}"; exit 1; }
k8s_minor=${BASH_REMATCH[1]}

ld="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
	ld+=" -X ${pkg}.k8sVersionMajor=1 -X ${pkg}.k8sVersionMinor=${k8s_minor}"
done
mkdir -p "${CACHE_DIR}.tmp"
GOBIN="${CACHE_DIR}.tmp" go install -trimpath -ldflags="${ld}" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" >&2
rm -rf "${CACHE_DIR}"
mv "${CACHE_DIR}.tmp" "${CACHE_DIR}"
is_helm3 "${CACHE_DIR}/helm" || { log "the built binary does not report ${want_major}"; exit 1; }
log "ready: ${CACHE_DIR}/helm (assumes Kubernetes v1.${k8s_minor} offline)"
echo "${CACHE_DIR}/helm"
