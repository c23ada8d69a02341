#!/usr/bin/env bash
# Builds llama.cpp's CUDA backend for the neuron: writes <outdir>/libggml-cuda.so
# from the pinned github.com/ollama/ollama module's ggml sources, the same
# sources as the ggml compiled into the neuron. Put it next to the neuron
# binary (or in any folder whose path contains lib/ollama) and start the
# neuron with --library-path (CORTEX_LIBRARY_PATH) naming that folder.
#
#   hack/build-cuda.sh [--cached] <outdir>
#   CUDA_ARCHITECTURES=90-real hack/build-cuda.sh <outdir>   # Hopper only
#   PATH=$(hack/cuda-toolkit.sh):$PATH hack/build-cuda.sh <outdir>   # no CUDA here
#
# Needs nvcc (CUDA 11.8 or later; hack/cuda-toolkit.sh unpacks Debian's
# 11.8 where none is installed), CMake 3.21+, a C++17 compiler, and ninja
# (make works, slower). --cached: see hack/build-backends.sh. CUDA_ARCHITECTURES (or CMAKE_CUDA_ARCHITECTURES) is
# CMake's list; empty means 75-real;80-real;86-real;89-real;90-real plus
# 100-real;120-real with CUDA 12.8+, and PTX of the newest for the JIT on
# later GPUs; "native" builds for the GPUs of this machine only.
#
# Where the sources come from, and the other settings (GGML_SOURCE_DIR,
# GGML_BUILD_DIR, BUILD_JOBS), are in hack/build-backends.sh, which does
# the work. See docs/gpu.md.
set -euo pipefail
cached=()
if [[ "${1:-}" == --cached ]]; then
	cached=(--cached)
	shift
fi
if [[ $# -ne 1 || "$1" == -* ]]; then
	sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
fi
exec "$(dirname "${BASH_SOURCE[0]}")/build-backends.sh" "${cached[@]}" cuda "$1"
