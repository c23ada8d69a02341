#!/usr/bin/env bash
# Checks, before anything is compiled, that this machine has what the cgo
# build of the neuron needs: Go (the version go.mod asks for), a C and C++
# compiler, the two header packages the pinned llama.cpp sources include
# (nlohmann/json, stb_image), and CMake for the CPU backend variant `make
# build` adds (hack/build-backends.sh). `make build`, `make run`, `make test`
# and the other targets that compile the engine run it first, so a missing
# package stops the build with the command that installs it instead of a
# compiler error ten minutes in.
#
#   hack/check-deps.sh             # report; exit 1 with the command to run
#   hack/check-deps.sh --install   # install what is missing with apt-get
#                                  # (Debian and Ubuntu; sudo when not root)
#
# On Debian and Ubuntu the packages are looked up with dpkg-query; elsewhere
# the headers are looked for with the C++ preprocessor and the message
# names what to install. Quiet when everything is there.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
INSTALL=0
case "${1:-}" in
"") ;;
--install) INSTALL=1 ;;
-h | --help)
	sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "check-deps: unknown argument '$1' (--install or nothing)" >&2
	exit 2
	;;
esac

# The compilers and CMake are checked as commands (an image may have gcc
# and g++ without the build-essential package); the headers with dpkg on
# Debian and Ubuntu, else with the C++ preprocessor. Each maps to the
# Debian package that provides it.
declare -A HEADER=([nlohmann-json3-dev]=nlohmann/json.hpp [libstb-dev]=stb/stb_image.h)

missing=()
problems=()

have_dpkg=0
command -v dpkg-query >/dev/null 2>&1 && have_dpkg=1

# dpkg_installed <package>: dpkg's view, "install ok installed" only (a
# removed package leaves "deinstall ok config-files").
dpkg_installed() {
	[[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

# cgo runs $CC (default gcc) and $CXX (default g++).
CC_BIN=${CC:-gcc}
CXX_BIN=${CXX:-g++}
cc_ok=1
for c in "${CC_BIN%% *}" "${CXX_BIN%% *}" make; do
	command -v "${c}" >/dev/null 2>&1 || cc_ok=0
done
((cc_ok)) || missing+=(build-essential)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)

for p in nlohmann-json3-dev libstb-dev; do
	if ((have_dpkg)); then
		dpkg_installed "${p}" || missing+=("${p}")
	elif ((cc_ok)); then
		# CGO_CPPFLAGS as the build has them (hack/include holds a stub).
		# shellcheck disable=SC2086 # flags are a list
		printf '#include <%s>\n' "${HEADER[${p}]}" |
			${CXX_BIN} ${CGO_CPPFLAGS:-} -E -x c++ - -o /dev/null >/dev/null 2>&1 ||
			missing+=("${p}")
	fi
done

# Go: the toolchain on PATH is used (GOTOOLCHAIN=local), so it must be at
# least go.mod's version.
want=$(awk '$1 == "go" { print $2; exit }' "${ROOT}/go.mod")
if ! command -v go >/dev/null 2>&1; then
	problems+=("no 'go' on PATH: install Go ${want} or later from https://go.dev/dl/ and put its bin/ on PATH")
else
	have=$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null | sed 's/^go//')
	older=$(printf '%s\n%s\n' "${want}" "${have}" | sort -V | head -1)
	if [[ -z "${have}" || ("${older}" != "${want}" && "${have}" != "${want}") ]]; then
		problems+=("go ${have:-(unknown)} is older than go.mod's ${want}: install Go ${want} or later from https://go.dev/dl/")
	fi
fi

if [[ ${#missing[@]} -eq 0 && ${#problems[@]} -eq 0 ]]; then
	exit 0
fi

SUDO=""
[[ "$(id -u)" -eq 0 ]] || SUDO="sudo "
cmd="${SUDO}apt-get install -y --no-install-recommends ${missing[*]}"

if ((INSTALL)) && [[ ${#missing[@]} -gt 0 ]] && ((have_dpkg)) && command -v apt-get >/dev/null 2>&1; then
	echo "check-deps: installing ${missing[*]}" >&2
	# shellcheck disable=SC2086 # SUDO is empty or one word
	${SUDO}apt-get update -qq
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive ${SUDO}apt-get install -y -qq --no-install-recommends "${missing[@]}"
	# Check again from scratch: the compilers came with build-essential.
	exec "${BASH_SOURCE[0]}"
fi

status=0
if [[ ${#missing[@]} -gt 0 ]]; then
	echo "check-deps: the cgo build of the neuron needs ${missing[*]}: gcc, g++ and make (build-essential), cmake, and the nlohmann/json and stb_image headers the pinned llama.cpp sources include." >&2
	if ((have_dpkg)); then
		echo "check-deps: run this, then the make command again:" >&2
		echo "" >&2
		echo "    ${cmd}" >&2
		echo "" >&2
		echo "check-deps: (or 'hack/check-deps.sh --install' runs it)" >&2
	else
		echo "check-deps: install a C/C++ compiler and the nlohmann/json and stb headers with your package manager (Debian and Ubuntu: ${cmd})" >&2
	fi
	status=1
fi
for p in "${problems[@]}"; do
	echo "check-deps: ${p}" >&2
	status=1
done
exit "${status}"
