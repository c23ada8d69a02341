#!/usr/bin/env bash
# Fills hack/gpu/carry (git-ignored) with what hack/gpu-check.sh needs on a
# GPU machine that has nvcc, CMake and ninja but no Go, so that the folder
# can be copied there with the working tree:
#
#   ollama/       the pinned github.com/ollama/ollama module's CMake project
#                 and ggml sources (VERSION names the module version), which
#                 hack/build-backends.sh builds from when Go is absent
#   neuron.gz     the neuron, built by `make build-neuron`, stripped and
#                 gzipped (the dynamic symbol table, which backends bind
#                 to, is kept)
#   genmodel      a static binary writing random-weight llama GGUFs
#                 (hack/gpu/genmodel), so that the benchmark model is made
#                 there instead of carried
#   stories260K.gguf  the golden-text model
#
#   hack/gpu/prepare.sh            # then carry hack/gpu/carry
#
# Rerunning replaces the folder. It stays well under the 60 MiB a device
# run may carry (about 20 MiB); the script fails if it would not.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CARRY=${ROOT}/hack/gpu/carry
MODULE=github.com/ollama/ollama
LIMIT_MIB=60
START=${SECONDS}
log() { echo "prepare: [$((SECONDS - START))s] $*" >&2; }
die() { echo "prepare: error: $*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "go is required (run this where the repository builds)"
export GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS=-mod=mod

stories=${CORTEX_TEST_MODEL:-${ROOT}/../shared/models/stories260K.gguf}
[[ -f "${stories}" ]] || die "no ${stories} (set CORTEX_TEST_MODEL)"

read -r version dir < <(cd "${ROOT}" && go list -m -f '{{.Version}} {{.Dir}}' "${MODULE}")
if [[ -z "${dir:-}" ]]; then
	(cd "${ROOT}" && go mod download "${MODULE}")
	read -r version dir < <(cd "${ROOT}" && go list -m -f '{{.Version}} {{.Dir}}' "${MODULE}")
fi
[[ -d "${dir}/ml/backend/ggml/ggml" ]] || die "${MODULE}@${version} has no ml/backend/ggml/ggml in ${dir}"

# Module cache files are read-only; make the old copy removable.
[[ -d "${CARRY}" ]] && chmod -R u+w "${CARRY}"
rm -rf "${CARRY}.tmp"
mkdir -p "${CARRY}.tmp/ollama/ml/backend/ggml"

log "copying ${MODULE}@${version}'s CMake project and ggml sources"
cp "${dir}/CMakeLists.txt" "${dir}/CMakePresets.json" "${dir}/LICENSE" "${CARRY}.tmp/ollama/"
cp -R "${dir}/ml/backend/ggml/ggml" "${CARRY}.tmp/ollama/ml/backend/ggml/"
chmod -R u+w "${CARRY}.tmp"
# Metal and Vulkan are never built here (build-backends.sh disables
# Vulkan); they are a third of the tree.
rm -rf "${CARRY}.tmp/ollama/ml/backend/ggml/ggml/src/ggml-metal" "${CARRY}.tmp/ollama/ml/backend/ggml/ggml/src/ggml-vulkan"
echo "${MODULE} ${version}" >"${CARRY}.tmp/ollama/VERSION"

log "building the neuron (make build-neuron)"
make -C "${ROOT}" --no-print-directory build-neuron BIN="${CARRY}.tmp/bin" >&2
strip -o "${CARRY}.tmp/neuron" "${CARRY}.tmp/bin/neuron"
rm -rf "${CARRY}.tmp/bin"
[[ "$(nm -D --defined-only "${CARRY}.tmp/neuron" | grep -c ' ggml_')" -gt 100 ]] ||
	die "the neuron does not export ggml's symbols; backend libraries could not bind to them (see docs/gpu.md)"
gzip -9 "${CARRY}.tmp/neuron"

log "building genmodel"
(cd "${ROOT}" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "${CARRY}.tmp/genmodel" ./hack/gpu/genmodel)
cp "${stories}" "${CARRY}.tmp/stories260K.gguf"

size=$(du -sk "${CARRY}.tmp" | cut -f1)
((size < LIMIT_MIB * 1024)) || die "the carried folder would be $((size / 1024)) MiB, over ${LIMIT_MIB} MiB"
rm -rf "${CARRY}"
mv "${CARRY}.tmp" "${CARRY}"
log "${CARRY}: $((size / 1024)) MiB"
for f in ollama/VERSION neuron.gz genmodel stories260K.gguf; do
	log "  ${f} ($(du -sh "${CARRY}/${f}" | cut -f1))"
done
log "on the GPU machine: hack/gpu-check.sh (carry hack/gpu/carry)"
