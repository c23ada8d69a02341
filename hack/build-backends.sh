#!/usr/bin/env bash
# Builds ggml backend libraries that the neuron loads at start (from
# --library-path / CORTEX_LIBRARY_PATH), from the same ggml sources as the
# ggml compiled into the neuron: the pinned github.com/ollama/ollama module.
#
#   hack/build-backends.sh [--cached] cuda <outdir>               # <outdir>/libggml-cuda.so
#   hack/build-backends.sh [--cached] cpu  <outdir> [variant...]  # <outdir>/libggml-cpu-<variant>.so
#
# CPU variants (x86-64): x64 sse42 sandybridge haswell skylakex icelake
# alderlake, or "all" (the default), "native" (those this machine can
# run) or "best" (the one of those ggml scores highest here). The neuron's
# built-in CPU backend is baseline x86-64 (no AVX); at start ggml loads the
# best variant its CPU supports from the folder.
#
# --cached keeps the libraries under ~/.cache/cortex/ggml (BACKENDS_CACHE_DIR)
# keyed by a hash of the sources (the module version and its go.sum hash),
# this script, the CMake wrapper, the compilers and the options: a second
# run with the same key copies them without configuring anything.
#
# Sources, first found:
#   1. $GGML_SOURCE_DIR: a copy of the module's CMakeLists.txt and
#      ml/backend/ggml/ggml (hack/gpu/prepare.sh makes one, for machines
#      without Go);
#   2. the module directory `go list -m` reports for go.mod's pin;
#   3. hack/gpu/carry/ollama, when prepare.sh filled it.
#
# Environment:
#   CUDA_ARCHITECTURES    CMAKE_CUDA_ARCHITECTURES for the CUDA build (empty:
#                         the default below; "native": this machine's GPUs).
#                         CMAKE_CUDA_ARCHITECTURES is read too.
#   GGML_BUILD_DIR        CMake build folder (default hack/gpu/build/<kind>,
#                         git-ignored; rebuilds are incremental).
#   BUILD_JOBS            parallel compile jobs (default: the build tool's).
#   CMAKE_GENERATOR       Ninja when ninja is installed, else Unix Makefiles.
#
# The build is ollama's own CMake project (hack/gpu/ggml/CMakeLists.txt
# wraps it) with GGML_BACKEND_DL, so the library exports ggml_backend_init
# and ggml_backend_score as the neuron's loader expects. Unlike ollama's
# libraries it has no DT_NEEDED on libggml-base.so: it binds to the ggml
# the neuron has compiled in. See docs/gpu.md.
#
# Progress goes to stderr; stdout lists the libraries written, one a line.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE=github.com/ollama/ollama
START=${SECONDS}

log() { echo "build-backends: [$((SECONDS - START))s] $*" >&2; }
die() { echo "build-backends: error: $*" >&2; exit 1; }

usage() {
	sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

CACHED=0
if [[ "${1:-}" == --cached ]]; then
	CACHED=1
	shift
fi
[[ $# -ge 2 ]] || usage
KIND=$1
OUT=$2
shift 2
case "${KIND}" in
cpu | cuda) ;;
*) die "unknown backend kind '${KIND}' (cpu or cuda)" ;;
esac

# ollama's x86-64 CPU variants and the CPU flags each needs (from
# ml/backend/ggml/ggml/src/CMakeLists.txt and the variants' score
# functions), so "native" can pick what /proc/cpuinfo allows.
ALL_CPU_VARIANTS=(x64 sse42 sandybridge haswell skylakex icelake alderlake)
# The same in the order of ggml_backend_cpu_x86_score (ggml-cpu/arch/x86/
# cpu-feats.cpp): each feature adds a higher bit (AVX_VNNI 1<<6, AVX512F
# 1<<7, VBMI 1<<8, AVX512_VNNI 1<<10), so among the variants a CPU runs the
# last of this list is the one the loader would pick.
SCORE_ORDER=(x64 sse42 sandybridge haswell alderlake skylakex icelake)
cpu_variant_flags() {
	case "$1" in
	x64) echo "" ;;
	sse42) echo "sse4_2" ;;
	sandybridge) echo "sse4_2 avx" ;;
	haswell) echo "sse4_2 avx f16c avx2 bmi2 fma" ;;
	skylakex) echo "sse4_2 avx f16c avx2 bmi2 fma avx512f avx512cd avx512vl avx512dq avx512bw" ;;
	icelake) echo "sse4_2 avx f16c avx2 bmi2 fma avx512f avx512cd avx512vl avx512dq avx512bw avx512vbmi avx512_vnni" ;;
	alderlake) echo "sse4_2 avx f16c avx2 bmi2 fma avx_vnni" ;;
	*) return 1 ;;
	esac
}

# pinned_version prints go.mod's version of the module, read with Go when
# it is there and from the file when not (the GPU machine has no Go).
pinned_version() {
	if command -v go >/dev/null 2>&1; then
		(cd "${ROOT}" && GOFLAGS=-mod=mod go list -m -f '{{.Version}}' "${MODULE}" 2>/dev/null) || true
	else
		awk -v m="${MODULE}" '$1 == m && $2 ~ /^v/ { print $2; exit }
			$1 == "require" && $2 == m && $3 ~ /^v/ { print $3; exit }' "${ROOT}/go.mod"
	fi
}

# resolve_sources sets SRC (the module root) and SRC_VERSION.
resolve_sources() {
	if [[ -n "${GGML_SOURCE_DIR:-}" ]]; then
		SRC=${GGML_SOURCE_DIR}
		SRC_VERSION=$(cat "${SRC}/VERSION" 2>/dev/null || echo unknown)
		log "sources: \$GGML_SOURCE_DIR=${SRC} (${SRC_VERSION})"
	elif command -v go >/dev/null 2>&1; then
		local info
		# go list reads go.mod's pin (and any replace), not whatever
		# version happens to be in the module cache.
		info=$(cd "${ROOT}" && GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-local} go list -m -f '{{.Version}} {{.Dir}}' "${MODULE}") ||
			die "go list -m ${MODULE} failed"
		SRC_VERSION=${info%% *}
		SRC=${info#* }
		if [[ -z "${SRC}" || "${SRC}" == "${info}" ]]; then
			log "downloading ${MODULE}@${SRC_VERSION}"
			(cd "${ROOT}" && GOFLAGS=-mod=mod go mod download "${MODULE}") || die "go mod download ${MODULE} failed"
			SRC=$(cd "${ROOT}" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' "${MODULE}")
		fi
		SRC_FROM_GO=1
		log "sources: ${MODULE}@${SRC_VERSION} in ${SRC}"
	elif [[ -f "${ROOT}/hack/gpu/carry/ollama/CMakeLists.txt" ]]; then
		SRC=${ROOT}/hack/gpu/carry/ollama
		SRC_VERSION=$(cat "${SRC}/VERSION" 2>/dev/null || echo unknown)
		log "sources: ${SRC} (${SRC_VERSION}, copied by hack/gpu/prepare.sh)"
	else
		die "no ggml sources: set GGML_SOURCE_DIR, install Go, or run hack/gpu/prepare.sh where Go is"
	fi
	[[ -f "${SRC}/CMakeLists.txt" && -f "${SRC}/ml/backend/ggml/ggml/src/CMakeLists.txt" ]] ||
		die "${SRC} does not hold ${MODULE}'s CMakeLists.txt and ml/backend/ggml/ggml"
	# A carried copy that went stale would build a library for other ggml
	# sources than the neuron's.
	if [[ "${SRC_FROM_GO:-}" != 1 ]]; then
		local pinned
		pinned=$(pinned_version)
		if [[ -z "${pinned}" || "${SRC_VERSION}" == unknown ]]; then
			log "warning: cannot tell whether ${SRC} matches go.mod's ${MODULE} ${pinned:-(not found)}"
		elif [[ "${SRC_VERSION}" != *" ${pinned}" ]]; then
			die "sources are ${SRC_VERSION} but go.mod pins ${MODULE} ${pinned}; rerun hack/gpu/prepare.sh"
		fi
	fi
}

# default_cuda_architectures: real code for every data-centre and
# workstation generation still in use (Turing T4 to Hopper H100/H200, and
# Blackwell where the toolkit has it), plus PTX of the newest for the JIT
# on GPUs newer than the toolkit.
default_cuda_architectures() {
	local v major minor
	v=$(nvcc --version | sed -n 's/.*release \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
	read -r major minor <<<"${v:-0 0}"
	if ((major > 12 || (major == 12 && minor >= 8))); then
		echo "75-real;80-real;86-real;89-real;90-real;100-real;120-real;120-virtual"
	else
		echo "75-real;80-real;86-real;89-real;90-real;90-virtual"
	fi
}

resolve_sources

command -v cmake >/dev/null 2>&1 || die "cmake is required (apt-get install cmake)"
GENERATOR=${CMAKE_GENERATOR:-}
if [[ -z "${GENERATOR}" ]]; then
	if command -v ninja >/dev/null 2>&1; then
		GENERATOR=Ninja
	else
		GENERATOR="Unix Makefiles"
		log "ninja not found; using make (apt-get install ninja-build is faster)"
	fi
fi

BUILD=${GGML_BUILD_DIR:-${ROOT}/hack/gpu/build/${KIND}}
CONFIG=(-DOLLAMA_SOURCE_DIR="${SRC}" -DCMAKE_BUILD_TYPE=Release
	# Only the backends asked for: a Vulkan SDK on the build machine must not
	# pull ggml-vulkan into the configure step.
	-DCMAKE_DISABLE_FIND_PACKAGE_Vulkan=ON)
TARGETS=()
case "${KIND}" in
cuda)
	# The CUDA images and the toolkit's installer put nvcc here without
	# always adding it to PATH.
	if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
		export PATH=/usr/local/cuda/bin:${PATH}
	fi
	command -v nvcc >/dev/null 2>&1 ||
		die "nvcc is not on PATH: export PATH=\$(hack/cuda-toolkit.sh):\$PATH (Debian's CUDA 11.8, no GPU needed), or install a CUDA toolkit"
	ARCHS=${CUDA_ARCHITECTURES:-${CMAKE_CUDA_ARCHITECTURES:-}}
	[[ -n "${ARCHS}" ]] || ARCHS=$(default_cuda_architectures)
	log "nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), CUDA architectures ${ARCHS}"
	# CUDAToolkit_ROOT: the libraries beside this nvcc, not another toolkit
	# CMake might find first (an unpacked one is not in the system paths).
	CONFIG+=(-DCMAKE_CUDA_COMPILER="$(command -v nvcc)" -DCMAKE_CUDA_ARCHITECTURES="${ARCHS}"
		-DCUDAToolkit_ROOT="$(cd "$(dirname "$(readlink -f "$(command -v nvcc)")")/.." && pwd)"
		-DCMAKE_CUDA_FLAGS="${CMAKE_CUDA_FLAGS:--Wno-deprecated-gpu-targets}")
	TARGETS=(ggml-cuda)
	;;
cpu)
	[[ "$(uname -m)" == x86_64 ]] || die "CPU variants are built for x86-64 only (this is $(uname -m))"
	# No CUDA here even where nvcc exists: configuring it costs a minute.
	CONFIG+=(-DCMAKE_CUDA_COMPILER=)
	variants=("$@")
	[[ ${#variants[@]} -gt 0 ]] || variants=(all)
	picked=()
	for v in "${variants[@]}"; do
		case "${v}" in
		all) picked+=("${ALL_CPU_VARIANTS[@]}") ;;
		native | best)
			flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
			for c in "${ALL_CPU_VARIANTS[@]}"; do
				ok=1
				for f in $(cpu_variant_flags "${c}"); do
					[[ "${flags}" == *" ${f} "* ]] || ok=0
				done
				((ok)) && picked+=("${c}")
			done
			if [[ "${v}" == best ]]; then
				runnable=" ${picked[*]} "
				for c in "${SCORE_ORDER[@]}"; do
					[[ "${runnable}" == *" ${c} "* ]] && best=${c}
				done
				picked=("${best}")
			fi
			;;
		*)
			cpu_variant_flags "${v}" >/dev/null || die "unknown CPU variant '${v}' (${ALL_CPU_VARIANTS[*]}, all, native, best)"
			picked+=("${v}")
			;;
		esac
	done
	for v in "${picked[@]}"; do
		[[ " ${TARGETS[*]} " == *" ggml-cpu-${v} "* ]] || TARGETS+=("ggml-cpu-${v}")
	done
	;;
esac

# The cache key: everything that changes the libraries' bytes.
if ((CACHED)); then
	CACHE_ROOT=${BACKENDS_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/cortex/ggml}
	sum=$(awk -v m="${MODULE}" -v v="${SRC_VERSION##* }" '$1 == m && $2 == v { print $3 }' "${ROOT}/go.sum" 2>/dev/null || true)
	key=$({
		echo "${KIND} ${TARGETS[*]} ${SRC_VERSION##* } ${sum}"
		echo "${CONFIG[*]}" | sed "s|${SRC}|SRC|g; s|-DCUDAToolkit_ROOT=[^ ]*||; s|-DCMAKE_CUDA_COMPILER=[^ ]*||"
		sha256sum "${BASH_SOURCE[0]}" "${ROOT}/hack/gpu/ggml/CMakeLists.txt" | cut -d' ' -f1
		c++ --version 2>/dev/null | head -1
		[[ "${KIND}" == cuda ]] && nvcc --version | tail -1
		true
	} | sha256sum | cut -c1-16)
	ENTRY=${CACHE_ROOT}/${KIND}-${key}
	BUILD=${GGML_BUILD_DIR:-${CACHE_ROOT}/build/${KIND}}
	if [[ -f "${ENTRY}/.complete" ]]; then
		mkdir -p "${OUT}"
		for t in "${TARGETS[@]}"; do
			dst=${OUT}/lib${t}.so
			if ! cmp -s "${ENTRY}/lib${t}.so" "${dst}"; then
				cp "${ENTRY}/lib${t}.so" "${dst}.tmp" && mv -f "${dst}.tmp" "${dst}"
			fi
			echo "${dst}"
		done
		log "from the cache ${ENTRY}"
		exit 0
	fi
fi

mkdir -p "${BUILD}" "${OUT}"
log "configuring ${BUILD} (${GENERATOR})"
cmake -G "${GENERATOR}" -S "${ROOT}/hack/gpu/ggml" -B "${BUILD}" "${CONFIG[@]}" >"${BUILD}/configure.log" 2>&1 ||
	{ tail -40 "${BUILD}/configure.log" >&2; die "cmake configure failed (full log: ${BUILD}/configure.log)"; }
if [[ "${KIND}" == cuda ]] && ! grep -q 'CUDA Toolkit found' "${BUILD}/configure.log"; then
	tail -40 "${BUILD}/configure.log" >&2
	die "CMake did not find the CUDA toolkit"
fi

log "building ${TARGETS[*]}"
jobs=()
[[ -n "${BUILD_JOBS:-}" ]] && jobs=(--parallel "${BUILD_JOBS}")
# ninja prints [n/N] lines: every 20th and each link step is the progress
# shown; everything goes to the log.
set +o pipefail
cmake --build "${BUILD}" --target "${TARGETS[@]}" "${jobs[@]}" 2>&1 | tee "${BUILD}/build.log" |
	awk '/^\[ *[0-9]+(\/[0-9]+|%)\]/ { n++; if (n % 20 == 1 || /Linking/) { print "build-backends: " $0; fflush() } }' >&2
status=${PIPESTATUS[0]}
set -o pipefail
if [[ "${status}" != 0 ]]; then
	grep -E -B2 -A20 'error|Error' "${BUILD}/build.log" | tail -60 >&2 || true
	die "build failed (full log: ${BUILD}/build.log)"
fi

for t in "${TARGETS[@]}"; do
	lib=${BUILD}/lib/ollama/lib${t}.so
	[[ -f "${lib}" ]] || die "the build did not produce ${lib}"
	# The library must not need libggml-base.so (see hack/gpu/ggml).
	if readelf -d "${lib}" | grep -q 'NEEDED.*libggml'; then
		die "${lib} needs a libggml-* library; it must bind to the neuron's ggml"
	fi
	dst=${OUT}/lib${t}.so
	if cmp -s "${lib}" "${dst}"; then
		log "${dst} is up to date"
	else
		# Copy then rename, so a neuron starting meanwhile never loads half a file.
		cp "${lib}" "${dst}.tmp" && chmod 0755 "${dst}.tmp" && mv -f "${dst}.tmp" "${dst}"
		log "wrote ${dst} ($(du -h "${dst}" | cut -f1))"
	fi
	echo "${dst}"
	if ((CACHED)); then
		mkdir -p "${ENTRY}"
		cp "${lib}" "${ENTRY}/lib${t}.so"
	fi
done
if ((CACHED)); then
	touch "${ENTRY}/.complete"
	log "cached in ${ENTRY}"
fi
log "done"
