#!/usr/bin/env bash
# Builds llama.cpp's CUDA backend for the neuron: writes <outdir>/libggml-cuda.so
# from the pinned github.com/ollama/ollama module's ggml sources, the same
# sources as the ggml compiled into the neuron. Put it next to the neuron
# binary (or in any folder whose path contains lib/ollama) and start the
# neuron with --library-path (CORTEX_LIBRARY_PATH) naming that folder.
#
#   hack/build-cuda.sh <outdir>
#   CUDA_ARCHITECTURES=90-real hack/build-cuda.sh <outdir>   # Hopper only
#
# Needs nvcc (CUDA 12 or later), CMake 3.21+, a C++17 compiler, and ninja
# (make works, slower). CUDA_ARCHITECTURES (or CMAKE_CUDA_ARCHITECTURES) is
# CMake's list; empty means 75-real;80-real;86-real;89-real;90-real plus
# 100-real;120-real with CUDA 12.8+, and PTX of the newest for the JIT on
# later GPUs; "native" builds for the GPUs of this machine only.
#
# Where the sources come from, and the other settings (GGML_SOURCE_DIR,
# GGML_BUILD_DIR, BUILD_JOBS), are in hack/build-backends.sh, which does
# the work. See docs/gpu.md.
set -euo pipefail
if [[ $# -ne 1 || "$1" == -* ]]; then
	sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
fi
exec "$(dirname "${BASH_SOURCE[0]}")/build-backends.sh" cuda "$1"
