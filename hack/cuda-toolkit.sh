#!/usr/bin/env bash
# Prints the bin/ folder of a CUDA toolkit that builds libggml-cuda.so on a
# machine with no GPU and no driver: Debian bookworm's nvidia-cuda-toolkit
# 11.8 (non-free), unpacked under ~/.cache/cortex/cuda/ on first use.
#
#   PATH=$(hack/cuda-toolkit.sh):$PATH hack/build-cuda.sh <outdir>
#   hack/cuda-toolkit.sh --install    # also apt-get install g++-11 if missing
#
# Why unpacked, not installed: the Debian packages depend on libcuda1, the
# driver's user-space library (which pulls contrib's GLX alternatives), and
# a build machine must stay driverless so the neuron's "no GPU" path is what
# runs there. The .debs come from Debian's own servers through apt, with a
# private source list that adds non-free for this download only (the
# system's apt configuration is not touched), and are unpacked with
# dpkg-deb minus what ggml does not use (static libraries but the CUDA
# runtime, cuFFT, NPP, …).
# nvcc 11.8 needs a host compiler no newer than GCC 11: bookworm's g++-11
# (main), which Debian's nvcc wrapper picks by itself.
#
# Environment: CUDA_CACHE_DIR (default ~/.cache/cortex/cuda),
# DEBIAN_MIRROR (default http://deb.debian.org).
set -euo pipefail

VERSION=11.8.89~11.8.0-5~deb12u1
PKGS=(nvidia-cuda-toolkit nvidia-cuda-dev libcudart11.0 libcublas11 libcublaslt11 libnvvm4 libcub-dev libthrust-dev libcu++-dev)
CACHE=${CUDA_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/cortex/cuda}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org}
DIR=${CACHE}/debian-${VERSION//\~/-}
START=${SECONDS}
log() { echo "cuda-toolkit: [$((SECONDS - START))s] $*" >&2; }
die() { echo "cuda-toolkit: error: $*" >&2; exit 1; }

INSTALL=0
case "${1:-}" in
"") ;;
--install) INSTALL=1 ;;
*) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

[[ "$(uname -m)" == x86_64 ]] || die "the Debian CUDA toolkit is unpacked for x86-64 only (this is $(uname -m))"

if ! command -v g++-11 >/dev/null 2>&1; then
	SUDO=""
	[[ "$(id -u)" -eq 0 ]] || SUDO="sudo "
	if ((INSTALL)); then
		log "installing g++-11 (nvcc 11.8's host compiler)"
		${SUDO}apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive ${SUDO}apt-get install -y -qq --no-install-recommends g++-11 >&2
	else
		die "nvcc 11.8 needs g++-11 (GCC 12 is too new for it); run: ${SUDO}apt-get install -y g++-11"
	fi
fi

# CMake's CUDA compiler check links nvcc's default static runtime: a tree
# unpacked without libcudart_static.a (as this script once did) cannot
# configure any CUDA project, so it is unpacked again.
if [[ -f "${DIR}/.complete" && -f "${DIR}/usr/lib/x86_64-linux-gnu/libcudart_static.a" ]]; then
	echo "${DIR}/usr/bin"
	exit 0
fi

command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 ||
	die "apt-get and dpkg-deb are needed (Debian or Ubuntu); elsewhere install CUDA 11.8 or later and put nvcc on PATH"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -f "${keyring}" ]] || die "no ${keyring} (apt-get install debian-archive-keyring)"

rm -rf "${DIR}.tmp"
mkdir -p "${DIR}.tmp/apt/lists/partial" "${DIR}.tmp/apt/archives/partial" "${DIR}.tmp/debs" "${DIR}.tmp/root"
cat >"${DIR}.tmp/apt/sources.list" <<EOF
deb [signed-by=${keyring}] ${MIRROR}/debian bookworm main non-free
deb [signed-by=${keyring}] ${MIRROR}/debian bookworm-updates main non-free
deb [signed-by=${keyring}] ${MIRROR}/debian-security bookworm-security main non-free
EOF
APT=(-o Dir::Etc::SourceList="${DIR}.tmp/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
	-o Dir::State::Lists="${DIR}.tmp/apt/lists" -o Dir::Cache::Archives="${DIR}.tmp/apt/archives"
	-o Debug::NoLocking=1 -o APT::Sandbox::User="$(id -un)")
log "apt-get update (private source list with non-free)"
apt-get "${APT[@]}" update -qq >&2 || die "apt-get update failed"
pinned=()
for p in "${PKGS[@]}"; do
	case "${p}" in
	libcub-dev | libthrust-dev | libcu++-dev) pinned+=("${p}") ;;
	libcublas11 | libcublaslt11) pinned+=("${p}=11.11.3.6~11.8.0-5~deb12u1") ;;
	*) pinned+=("${p}=${VERSION}") ;;
	esac
done
log "downloading ${PKGS[*]} (about 1.1 GB)"
(cd "${DIR}.tmp/debs" && apt-get "${APT[@]}" download "${pinned[@]}" >&2) || die "apt-get download failed"

log "unpacking"
for deb in "${DIR}.tmp/debs"/*.deb; do
	dpkg-deb --fsys-tarfile "${deb}" | tar -x -C "${DIR}.tmp/root" \
		--exclude='*_static.a' --exclude='*/libcufft*' --exclude='*/libcusparse*' --exclude='*/libcusolver*' \
		--exclude='*/libnpp*' --exclude='*/libnvjpeg*' --exclude='*/libcurand*' --exclude='*/libnvblas*' \
		--exclude='*/compute-sanitizer*' --exclude='*/cuda-gdb*' --exclude='./usr/share/doc*' || die "unpacking ${deb}"
done
# Of the static libraries, only the CUDA runtime (about 1 MB) is needed:
# CMake's compiler check links it.
for deb in "${DIR}.tmp/debs"/nvidia-cuda-dev_*.deb; do
	dpkg-deb --fsys-tarfile "${deb}" | tar -x -C "${DIR}.tmp/root" --wildcards '*/libcudart_static.a' || die "unpacking libcudart_static.a from ${deb}"
done

# Make the tree relocatable. Debian's nvcc reads nvcc.profile beside
# itself (a link to /etc/nvcc.profile naming /usr paths) and /usr/bin/nvcc
# execs an absolute path; CMake wants libdevice under <root>/nvvm/libdevice
# and the libraries under <root>/lib64.
U=${DIR}.tmp/root/usr
rm -f "${U}/lib/nvidia-cuda-toolkit/bin/nvcc.profile" "${U}/bin/nvcc"
cat >"${U}/lib/nvidia-cuda-toolkit/bin/nvcc.profile" <<'EOF'
TOP = $(_HERE_)/../../..
NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice
PATH += $(_HERE_):$(TOP)/bin:
INCLUDES += "-I$(TOP)/include" $(_SPACE_)
LIBRARIES =+ $(_SPACE_) -L$(TOP)/lib/x86_64-linux-gnu/stubs -L$(TOP)/lib/x86_64-linux-gnu
EOF
printf '#!/bin/sh\nexec "$(dirname "$(readlink -f "$0")")/../lib/nvidia-cuda-toolkit/bin/nvcc" "$@"\n' >"${U}/bin/nvcc"
chmod +x "${U}/bin/nvcc"
mkdir -p "${U}/nvvm"
ln -sfn ../lib/nvidia-cuda-toolkit/libdevice "${U}/nvvm/libdevice"
ln -sfn lib/x86_64-linux-gnu "${U}/lib64"

"${U}/bin/nvcc" --version | grep -q 'release 11.8' || die "the unpacked nvcc does not run"
rm -rf "${DIR}"
mv "${DIR}.tmp/root" "${DIR}"
rm -rf "${DIR}.tmp"
touch "${DIR}/.complete"
log "CUDA 11.8 in ${DIR} ($(du -sh "${DIR}" | cut -f1))"
echo "${DIR}/usr/bin"
