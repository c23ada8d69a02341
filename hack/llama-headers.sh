#!/usr/bin/env bash
# Links the pinned github.com/ollama/ollama module (whose llama package
# compiles llama.cpp and ggml into every cortex binary that links the
# engine) into internal/engine/llamacpp/_pinned/, so that the engine's cgo
# code compiles against that module's own llama.h and ggml headers:
#
#   internal/engine/llamacpp/_pinned/ollama@<version> -> $(go env GOMODCACHE)/github.com/ollama/ollama@<version>
#
# cgo can name include folders only inside the package (${SRCDIR}), and the
# module lives in the module cache, whose path differs per machine, so the
# link is made here, by every make target that compiles Go code, and is
# git-ignored. Links to other versions are removed: after a module upgrade
# the version in the engine's #cgo lines no longer resolves, and the build
# stops with the upgrade steps of docs/development.md instead of compiling
# against stale headers. Cheap and idempotent; the Go build cache is not
# affected (the include folder is the package's own flag, not CGO_CPPFLAGS).
#
#   hack/llama-headers.sh          # prints the link it made
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE=github.com/ollama/ollama
PINNED=${ROOT}/internal/engine/llamacpp/_pinned
die() { echo "llama-headers: error: $*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "go is required"
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}

modinfo() { (cd "${ROOT}" && go list -m -f '{{.Version}} {{.Dir}}' "${MODULE}"); }
read -r version dir < <(modinfo) || die "go list -m ${MODULE} failed"
if [[ -z "${dir:-}" ]]; then
	(cd "${ROOT}" && go mod download "${MODULE}") || die "could not download ${MODULE}@${version}"
	read -r version dir < <(modinfo)
fi
[[ -f "${dir}/llama/llama.cpp/include/llama.h" ]] || die "${MODULE}@${version} has no llama/llama.cpp/include/llama.h in ${dir}"
[[ -f "${dir}/ml/backend/ggml/ggml/include/ggml.h" ]] || die "${MODULE}@${version} has no ml/backend/ggml/ggml/include/ggml.h in ${dir}"

link=${PINNED}/ollama@${version}
mkdir -p "${PINNED}"
if [[ "$(readlink "${link}" 2>/dev/null)" != "${dir}" ]]; then
	ln -sfn "${dir}" "${link}.tmp"
	mv -Tf "${link}.tmp" "${link}"
fi
for old in "${PINNED}"/ollama@*; do
	[[ "${old}" == "${link}" ]] || rm -f "${old}"
done
echo "${link#"${ROOT}/"} -> ${dir}"
