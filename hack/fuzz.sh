#!/usr/bin/env bash
# Runs every fuzz target in the repository, one after another, each for
# FUZZTIME (a duration such as 2m, or a count such as 1000000x), and prints
# a table of the executions each one reached. Targets are found by their
# declarations (func FuzzX(f *testing.F) in a _test.go file), so a new
# target is picked up without editing this file.
#
# Environment:
#   FUZZTIME      per-target budget (default 90s; fast targets pass 10^6
#                 executions well within it)
#   FUZZMINIMIZETIME  how long to shrink each new interesting input
#                 (default 2s: go test's 60s, spent on every new input,
#                 leaves a short run idle most of its time)
#   FUZZPARALLEL  fuzzing workers per target (default 1: the targets run
#                 one after another, each on one core)
#   FUZZ          only targets whose "package.Name" matches this extended
#                 regular expression (default: all)
#   FUZZLOG       directory for each target's full output (default: a
#                 temporary directory, printed at the end)
#
# A target that finds a failure stops, leaves its crasher under the
# package's testdata/fuzz/<Name>/, and the script exits non-zero after the
# remaining targets have run.
set -uo pipefail

FUZZTIME=${FUZZTIME:-90s}
FUZZPARALLEL=${FUZZPARALLEL:-1}
FUZZ=${FUZZ:-.}
GO=${GO:-go}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}" || exit 1
LOGDIR=${FUZZLOG:-$(mktemp -d -t cortex-fuzz.XXXXXX)}
mkdir -p "${LOGDIR}"

# "dir name" pairs, sorted, for every fuzz target.
mapfile -t targets < <(git ls-files '*_test.go' |
	xargs grep -H -E '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' |
	sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#\1 \2#' |
	sort -u)

rows=()
failed=0
for t in "${targets[@]}"; do
	dir=${t% *}
	name=${t#* }
	pkg=${dir#internal/}
	if ! [[ "${pkg}.${name}" =~ ${FUZZ} ]]; then
		continue
	fi
	log="${LOGDIR}/$(echo "${dir}" | tr / _).${name}.log"
	echo "==> ${dir} ${name} (${FUZZTIME})"
	start=$(date +%s)
	"${GO}" test -run '^$' -fuzz "^${name}\$" -fuzztime "${FUZZTIME}" -fuzzminimizetime "${FUZZMINIMIZETIME:-2s}" -parallel "${FUZZPARALLEL}" "./${dir}/" >"${log}" 2>&1
	rc=$?
	secs=$(($(date +%s) - start))
	# The last progress line carries the total: "fuzz: elapsed: 1m30s,
	# execs: 1234567 (13717/sec), new interesting: ...".
	execs=$(grep -oE 'execs: [0-9]+' "${log}" | tail -n1 | awk '{print $2}')
	result=ok
	if [[ ${rc} -ne 0 ]] && grep -q 'context deadline exceeded' "${log}" && ! grep -q 'Failing input written to' "${log}"; then
		# go test reports the time running out while it shrinks a new
		# input as a failure, with no failing input: not a finding.
		rc=0
		result='ok (time ran out while minimizing)'
	fi
	if [[ ${rc} -ne 0 ]]; then
		result=FAIL
		failed=1
		tail -n 30 "${log}"
	fi
	rows+=("$(printf '%-22s %-24s %12s %6ss  %s' "${pkg}" "${name}" "${execs:-0}" "${secs}" "${result}")")
done

echo
printf '%-22s %-24s %12s %7s  %s\n' package target execs time result
printf '%s\n' "${rows[@]}"
echo "logs: ${LOGDIR}"
exit "${failed}"
