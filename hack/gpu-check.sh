#!/usr/bin/env bash
# End-to-end check of the neuron's CUDA backend on a GPU machine that has
# nvcc, CMake and ninja but no Go. In one go it:
#
#   1. builds libggml-cuda.so from the carried ggml sources
#      (hack/build-cuda.sh; for the GPUs of this machine only, unless
#      CUDA_ARCHITECTURES says otherwise);
#   2. checks that every symbol the library leaves to the executable is
#      exported by the neuron binary (else the loader would skip it);
#   3. runs the neuron on loopback twice, CPU only (--disable-nvml, no
#      library path) and then with --library-path and every layer on GPU 0,
#      and through its HTTP API (/models/load, /v1/completions) has each
#      greedily continue "Once upon a time" (temperature 0) on
#      stories260K and on a generated ~100M-parameter llama;
#   4. compares the stories260K texts (a mismatch fails the check) and
#      prints decode tok/s for both runs, from the neuron's own counters
#      (cortex_neuron_generated_tokens_total / decode_seconds_total).
#
# It only reads GPU state (nvidia-smi queries); it changes no GPU setting.
#
#   hack/gpu/prepare.sh                 # where Go is: fills hack/gpu/carry
#   hack/gpu-check.sh                   # on the GPU machine
#
# Options (environment variables in brackets):
#   --neuron PATH       neuron binary, or .gz (hack/gpu/carry/neuron.gz, else bin/neuron)
#   --model PATH        golden-text model (hack/gpu/carry/stories260K.gguf)
#   --bench-size SIZE   generated benchmark model: 20M, 100M (default), 800M,
#                       or none [BENCH_SIZE]
#   --backend KIND      cuda (default), or cpu: the same comparison with the
#                       CPU variants instead, for a machine without a GPU [BACKEND]
#   --max-tokens N      tokens per completion (64) [MAX_TOKENS]
#   --work DIR          build and scratch folder (hack/gpu/build/check) [GPU_CHECK_WORK]
#   --port N            loopback port of the neuron (18231) [PORT]
# CUDA_ARCHITECTURES, BUILD_JOBS and GGML_SOURCE_DIR reach the build.
#
# Exit status: 0 when the texts match, 1 when they differ or a step fails.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CARRY=${ROOT}/hack/gpu/carry
START=${SECONDS}

NEURON_IN=""
MODEL=""
BENCH_SIZE=${BENCH_SIZE:-100M}
BACKEND=${BACKEND:-cuda}
MAX_TOKENS=${MAX_TOKENS:-64}
WORK=${GPU_CHECK_WORK:-${ROOT}/hack/gpu/build/check}
PORT=${PORT:-18231}
PROMPT="Once upon a time"
# Timed completions per model after one warm-up; their decode counters are
# summed.
REPEATS=3

log() { echo "gpu-check: [$((SECONDS - START))s] $*" >&2; }
die() {
	echo "gpu-check: [$((SECONDS - START))s] FAIL: $*" >&2
	exit 1
}
usage() {
	sed -n '2,36p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

while [[ $# -gt 0 ]]; do
	case "$1" in
	--neuron) NEURON_IN=${2:?}; shift 2 ;;
	--model) MODEL=${2:?}; shift 2 ;;
	--bench-size) BENCH_SIZE=${2:?}; shift 2 ;;
	--backend) BACKEND=${2:?}; shift 2 ;;
	--max-tokens) MAX_TOKENS=${2:?}; shift 2 ;;
	--work) WORK=${2:?}; shift 2 ;;
	--port) PORT=${2:?}; shift 2 ;;
	-h | --help) usage ;;
	*) echo "gpu-check: unknown argument $1" >&2; usage ;;
	esac
done
case "${BACKEND}" in cuda | cpu) ;; *) die "--backend must be cuda or cpu, not ${BACKEND}" ;; esac
[[ "${MAX_TOKENS}" =~ ^[1-9][0-9]*$ ]] || die "--max-tokens must be a positive integer"
[[ "${PORT}" =~ ^[1-9][0-9]*$ ]] || die "--port must be a port number"
command -v curl >/dev/null 2>&1 || die "curl is required"

# Layout: the neuron in bin/, the built libraries in backends/lib/ollama.
# Not bin/../lib/ollama: that is the loader's default folder, and the CPU
# run must not find them.
BIN=${WORK}/bin
LIBDIR=${WORK}/backends/lib/ollama
mkdir -p "${BIN}" "${LIBDIR}" "${WORK}/cache" "${WORK}/logs"

# --- the inputs -------------------------------------------------------------

if [[ -z "${NEURON_IN}" ]]; then
	for c in "${CARRY}/neuron.gz" "${CARRY}/neuron" "${ROOT}/bin/neuron"; do
		[[ -f "${c}" ]] && { NEURON_IN=${c}; break; }
	done
	[[ -n "${NEURON_IN}" ]] || die "no neuron binary: run hack/gpu/prepare.sh (or make build-neuron) and carry it, or pass --neuron"
fi
[[ -f "${NEURON_IN}" ]] || die "no such neuron binary: ${NEURON_IN}"
NEURON=${BIN}/neuron
if [[ "${NEURON_IN}" == *.gz ]]; then
	gzip -dc "${NEURON_IN}" >"${NEURON}.tmp"
else
	cp "${NEURON_IN}" "${NEURON}.tmp"
fi
chmod +x "${NEURON}.tmp" && mv -f "${NEURON}.tmp" "${NEURON}"
version=$("${NEURON}" --version 2>&1) || die "the neuron does not run here: ${version}"
log "neuron ${version} (from ${NEURON_IN})"

if [[ -z "${MODEL}" ]]; then
	for c in "${CARRY}/stories260K.gguf" "${ROOT}/../shared/models/stories260K.gguf"; do
		[[ -f "${c}" ]] && { MODEL=${c}; break; }
	done
fi
[[ -n "${MODEL}" && -f "${MODEL}" ]] || die "no stories260K.gguf: run hack/gpu/prepare.sh, or pass --model"
MODEL=$(cd "$(dirname "${MODEL}")" && pwd)/$(basename "${MODEL}")

BENCH=""
if [[ "${BENCH_SIZE}" != none ]]; then
	BENCH=${WORK}/llama${BENCH_SIZE}.gguf
	if [[ ! -s "${BENCH}" ]]; then
		gen=""
		for c in "${CARRY}/genmodel" "$(command -v genmodel || true)"; do
			[[ -n "${c}" && -x "${c}" ]] && { gen=${c}; break; }
		done
		if [[ -z "${gen}" ]] && command -v go >/dev/null 2>&1; then
			gen=${WORK}/genmodel
			(cd "${ROOT}" && CGO_ENABLED=0 go build -o "${gen}" ./hack/gpu/genmodel) || die "building genmodel"
		fi
		[[ -n "${gen}" ]] || die "no genmodel to write the benchmark model: run hack/gpu/prepare.sh, or --bench-size none"
		"${gen}" -size "${BENCH_SIZE}" -o "${BENCH}" || die "generating the ${BENCH_SIZE} model"
	fi
fi

# --- the GPU (read only) ----------------------------------------------------

if [[ "${BACKEND}" == cuda ]]; then
	command -v nvidia-smi >/dev/null 2>&1 || die "nvidia-smi not found: no NVIDIA driver here"
	gpus=$(nvidia-smi --query-gpu=index,name,compute_cap,memory.total,driver_version --format=csv,noheader 2>/dev/null) ||
		gpus=$(nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader) ||
		die "nvidia-smi cannot list the GPUs"
	while IFS= read -r g; do log "GPU ${g}"; done <<<"${gpus}"
	if [[ -z "${CUDA_ARCHITECTURES:-}" ]]; then
		# Only this machine's GPUs: a build for every architecture takes
		# several times longer.
		cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | sort -u | tr -d ' .' | sed 's/$/-real/' | paste -sd';' -) || cc=""
		export CUDA_ARCHITECTURES=${cc:-native}
	fi
fi

# --- 1. build ---------------------------------------------------------------

t0=${SECONDS}
# Only this run's libraries: a CPU variant left by a --backend cpu run
# would change the CUDA run's CPU side, and the reverse.
rm -f "${LIBDIR}"/libggml-*.so
if [[ "${BACKEND}" == cuda ]]; then
	log "building libggml-cuda.so (CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES})"
	"${ROOT}/hack/build-cuda.sh" "${LIBDIR}" >/dev/null
	LIBS=("${LIBDIR}/libggml-cuda.so")
else
	log "building the CPU variants this machine runs"
	mapfile -t LIBS < <("${ROOT}/hack/build-backends.sh" cpu "${LIBDIR}" native)
fi
BUILD_S=$((SECONDS - t0))
log "built in ${BUILD_S}s: ${LIBS[*]}"

# --- 2. symbols -------------------------------------------------------------

# The libraries have no DT_NEEDED on libggml-base: what they use of ggml
# must come from the neuron's dynamic symbol table (or from their own
# dependencies: libc, libstdc++, libcudart, libcublas, libcuda).
if command -v nm >/dev/null 2>&1 && command -v ldd >/dev/null 2>&1; then
	for lib in "${LIBS[@]}"; do
		deps=$(ldd "${lib}" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }')
		if ldd "${lib}" | grep -q 'not found'; then
			ldd "${lib}" >&2
			die "$(basename "${lib}") has unresolved dependencies"
		fi
		# shellcheck disable=SC2086 # deps is a list of paths
		missing=$(comm -23 \
			<(nm -D --undefined-only "${lib}" | awk '$1 == "U" { sub(/@.*/, "", $2); print $2 }' | sort -u) \
			<({ nm -D --defined-only "${NEURON}"; [[ -z "${deps}" ]] || nm -D --defined-only ${deps}; } 2>/dev/null |
				awk 'NF >= 3 { sub(/@.*/, "", $3); print $3 }' | sort -u))
		if [[ -n "${missing}" ]]; then
			echo "${missing}" | head -20 >&2
			die "the neuron does not export $(echo "${missing}" | wc -l) symbol(s) $(basename "${lib}") needs (see docs/gpu.md)"
		fi
		log "$(basename "${lib}"): every symbol it needs is exported by the neuron or its dependencies"
	done
else
	log "nm or ldd missing: skipping the symbol check (binutils)"
fi

# --- 3. the two runs --------------------------------------------------------

NEURON_PID=""
stop_neuron() {
	if [[ -n "${NEURON_PID}" ]]; then
		kill "${NEURON_PID}" 2>/dev/null || true
		wait "${NEURON_PID}" 2>/dev/null || true
		NEURON_PID=""
	fi
}
trap stop_neuron EXIT

API=http://127.0.0.1:${PORT}

# start_neuron <run> <flags...>: starts the neuron, waits for /readyz.
start_neuron() {
	local run=$1
	shift
	# Nothing inherited may point the loader elsewhere.
	env -u CORTEX_LIBRARY_PATH -u OLLAMA_LIBRARY_PATH -u GGML_BACKEND_PATH -u KUBECONFIG \
		"${NEURON}" --addr "127.0.0.1:${PORT}" --allow-unauthenticated --disable-registration \
		--node-name gpu-check --cache-dir "${WORK}/cache" "$@" >"${WORK}/logs/${run}.log" 2>&1 &
	NEURON_PID=$!
	for _ in $(seq 1 150); do
		if curl -fsS -o /dev/null "${API}/readyz" 2>/dev/null; then
			return 0
		fi
		kill -0 "${NEURON_PID}" 2>/dev/null || { tail -20 "${WORK}/logs/${run}.log" >&2; die "the ${run} neuron exited"; }
		sleep 0.2
	done
	tail -20 "${WORK}/logs/${run}.log" >&2
	die "the ${run} neuron did not become ready in 30s"
}

# diagnose_load <library>: the folder loader is silent about a library it
# cannot load; ggml's GGML_BACKEND_PATH loader is not. Start a neuron with
# it for a few seconds and show what ggml said.
diagnose_load() {
	local pid
	env -u CORTEX_LIBRARY_PATH -u OLLAMA_LIBRARY_PATH GGML_BACKEND_PATH="$1" \
		"${NEURON}" --addr "127.0.0.1:${PORT}" --allow-unauthenticated --disable-registration \
		--node-name gpu-check --cache-dir "${WORK}/cache" --zap-log-level=4 >"${WORK}/logs/diagnose.log" 2>&1 &
	pid=$!
	sleep 5
	kill "${pid}" 2>/dev/null || true
	wait "${pid}" 2>/dev/null || true
	grep -o 'load_backend: [^"]*\|ggml_cuda_init: [^"]*\|INFO system .*' "${WORK}/logs/diagnose.log" | sed 's/^/gpu-check:   /' >&2 || true
}

# json_string <json> <field>: the first "<field>":"…" value, still
# JSON-escaped (which is fine for comparing).
json_string() {
	grep -o "\"$2\":\"\\([^\"\\\\]\\|\\\\.\\)*\"" <<<"$1" | head -1 | sed "s/^\"$2\":\"//; s/\"\$//"
}

# metric <name> <model>: a counter's value for the model (0 if absent).
metric() {
	curl -fsS "${API}/metrics" | awk -v n="cortex_neuron_$1{model=\"$2\"}" '$1 == n { v = $2 } END { print v + 0 }'
}

# load_model <name> <path> <engine json> [devices json]
load_model() {
	local name=$1 path=$2 engine=$3 devices=${4:-} body resp state
	body="{\"name\":\"${name}\",\"source\":{\"uri\":\"file://${path}\"},\"engine\":${engine}"
	[[ -n "${devices}" ]] && body+=",\"devices\":${devices}"
	body+="}"
	resp=$(curl -sS -X POST -H 'Content-Type: application/json' -d "${body}" "${API}/models/load") ||
		die "POST /models/load ${name}"
	[[ "${resp}" == *'"state"'* ]] || die "loading ${name}: ${resp}"
	for _ in $(seq 1 600); do
		resp=$(curl -fsS "${API}/models")
		state=$(grep -o "\"name\":\"${name}\",\"state\":\"[a-z]*\"" <<<"${resp}" | sed 's/.*"state":"//; s/"$//' || true)
		case "${state}" in
		ready) return 0 ;;
		failed) die "loading ${name} failed: $(json_string "${resp}" error)" ;;
		esac
		sleep 0.5
	done
	die "${name} was not ready after 300s"
}

# complete <name> <max tokens>: prints the completion text (JSON-escaped).
complete() {
	local resp text
	resp=$(curl -sS --max-time 600 -H 'Content-Type: application/json' \
		-d "{\"model\":\"$1\",\"prompt\":\"${PROMPT}\",\"max_tokens\":$2,\"temperature\":0}" \
		"${API}/v1/completions") || die "POST /v1/completions for $1"
	[[ "${resp}" == *'"choices"'* ]] || die "completion of $1: ${resp}"
	text=$(json_string "${resp}" text)
	printf '%s' "${text}"
}

# measure <run> <name>: one warm-up, then REPEATS timed completions, which
# must all give the same text. Writes <run>.<name>.txt and .tps.
measure() {
	local run=$1 name=$2 first="" text tokens0 secs0 tokens secs i
	complete "${name}" 8 >/dev/null
	tokens0=$(metric generated_tokens_total "${name}")
	secs0=$(metric decode_seconds_total "${name}")
	for i in $(seq 1 "${REPEATS}"); do
		text=$(complete "${name}" "${MAX_TOKENS}")
		if [[ ${i} == 1 ]]; then
			first=${text}
		elif [[ "${text}" != "${first}" ]]; then
			log "${run}: first:  ${first}"
			log "${run}: later:  ${text}"
			die "${run}: two greedy completions of ${name} differ"
		fi
	done
	tokens=$(metric generated_tokens_total "${name}")
	secs=$(metric decode_seconds_total "${name}")
	printf '%s' "${first}" >"${WORK}/${run}.${name#check/}.txt"
	awk -v t="${tokens}" -v t0="${tokens0}" -v s="${secs}" -v s0="${secs0}" \
		'BEGIN { if (s > s0) printf "%.1f", (t - t0) / (s - s0); else print "0" }' >"${WORK}/${run}.${name#check/}.tps"
	log "${run}: ${name}: $(cat "${WORK}/${run}.${name#check/}.tps") tok/s decode, \"${PROMPT}${first:0:80}…\""
}

# run_models <run> <engine json> [devices json]
run_models() {
	local run=$1 engine=$2 devices=${3:-}
	load_model check/stories "${MODEL}" "${engine}" "${devices}"
	measure "${run}" check/stories
	if [[ -n "${BENCH}" ]]; then
		load_model check/bench "${BENCH}" "${engine}" "${devices}"
		measure "${run}" check/bench
	fi
}

# llama.cpp's own log lines (which backend loaded, how many layers went
# to the GPU) reach the neuron's log at the engine's debug level, slog's
# -4, which zap shows from --zap-log-level=4.
ENGINE='{"contextLength":1024,"parallel":1}'
rm -f "${WORK}"/{base,backend}.*.txt "${WORK}"/{base,backend}.*.tps

log "run 1: CPU only (built-in backend, --disable-nvml, no --library-path)"
start_neuron base --disable-nvml
discovery=$(curl -fsS "${API}/discovery")
[[ "${discovery}" == *'"backends":["cpu"]'* ]] || die "the CPU-only neuron reports ${discovery}"
run_models base "${ENGINE}"
stop_neuron

if [[ "${BACKEND}" == cuda ]]; then
	log "run 2: CUDA (--library-path ${LIBDIR}, every layer on GPU 0)"
	start_neuron backend --library-path "${LIBDIR}" --zap-log-level=4
	discovery=$(curl -fsS "${API}/discovery")
	log "discovery: ${discovery}"
	grep -o 'load_backend: loaded CUDA backend from [^"]*' "${WORK}/logs/backend.log" | sed 's/^/gpu-check:   /' >&2 || true
	[[ "${discovery}" == *'"cuda"'* ]] || {
		stop_neuron
		diagnose_load "${LIBDIR}/libggml-cuda.so"
		die "the neuron did not load libggml-cuda.so (backends in /discovery lack cuda)"
	}
	run_models backend '{"contextLength":1024,"parallel":1,"gpuLayers":-1}' '[0]'
	# The engine names the device it placed each model on; a CPU placement
	# here would mean the comparison compared the CPU with itself.
	placed=$(grep -c '"msg":"Model loaded".*"device":"cuda:0"' "${WORK}/logs/backend.log" || true)
	want=1
	[[ -n "${BENCH}" ]] && want=2
	((placed >= want)) || {
		grep '"msg":"Model loaded"' "${WORK}/logs/backend.log" >&2
		die "a model was not placed on cuda:0"
	}
	grep -o 'offloaded [0-9]*/[0-9]* layers to GPU' "${WORK}/logs/backend.log" | sed 's/^/gpu-check:   /' >&2 || true
else
	log "run 2: CPU variants (--library-path ${LIBDIR})"
	start_neuron backend --disable-nvml --library-path "${LIBDIR}" --zap-log-level=4
	loaded=$(grep -o 'load_backend: loaded CPU backend from [^"]*' "${WORK}/logs/backend.log" | head -1 || true)
	[[ -n "${loaded}" ]] || die "the neuron loaded no CPU variant from ${LIBDIR}"
	log "${loaded}"
	run_models backend "${ENGINE}"
fi
features=$(grep -o 'INFO system .*' "${WORK}/logs/backend.log" | head -1 || true)
[[ -z "${features}" ]] || log "ggml ${features#INFO }"
stop_neuron

# --- 4. verdict -------------------------------------------------------------

status=0
echo "gpu-check: backend ${BACKEND}, build ${BUILD_S}s, ${MAX_TOKENS} tokens x ${REPEATS}, decode tok/s from the neuron's counters"
printf 'gpu-check: %-14s %12s %12s %8s  %s\n' model builtin-cpu "${BACKEND}" speedup text
for m in stories ${BENCH:+bench}; do
	a=$(cat "${WORK}/base.${m}.tps") b=$(cat "${WORK}/backend.${m}.tps")
	speedup=$(awk -v a="${a}" -v b="${b}" 'BEGIN { if (a > 0) printf "x%.2f", b / a; else print "-" }')
	if cmp -s "${WORK}/base.${m}.txt" "${WORK}/backend.${m}.txt"; then
		same=identical
	elif [[ "${m}" == stories ]]; then
		same=DIFFERENT
		status=1
	else
		# Random weights give near-flat logits, where the last bit of a
		# different summation order can flip the argmax: reported only.
		same="differs (random weights; not checked)"
	fi
	label=$(basename "${MODEL}" .gguf)
	[[ "${m}" == bench ]] && label=llama${BENCH_SIZE}
	printf 'gpu-check: %-14s %12s %12s %8s  %s\n' "${label}" "${a}" "${b}" "${speedup}" "${same}"
done
if ((status != 0)); then
	echo "gpu-check:   built-in CPU:   ${PROMPT}$(cat "${WORK}/base.stories.txt")"
	echo "gpu-check:   with ${BACKEND} libraries: ${PROMPT}$(cat "${WORK}/backend.stories.txt")"
	echo "gpu-check: FAIL: the $(basename "${MODEL}") completions differ ($((SECONDS - START))s)"
else
	echo "gpu-check: PASS ($((SECONDS - START))s)"
fi
exit "${status}"
