#!/usr/bin/env bash
# Fuzzes the pure parsers with cargo-fuzz (libFuzzer): the env-file parser,
# the command-line word splitter, the duration parser, the health-body
# classifier and the status request parser. The targets and their properties are in scripts/fuzz/fuzz_targets/.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (default: 600 s, every target)
#   JOBS=N       targets run N at a time (default 1; the machine has 2 cores)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). libFuzzer needs the nightly
# flag -Zsanitizer=fuzzer; on a stable toolchain RUSTC_BOOTSTRAP=1 lets
# stable rustc accept it. Built with debug assertions (overflow checks on)
# and without a sanitizer: the code under test is safe Rust, where a bug
# shows as a panic, and the runs get more inputs through.
#
# The corpus grows in scripts/fuzz/corpus/TARGET, findings land in
# scripts/fuzz/artifacts/TARGET (both untracked). Prints one summary line a
# target and exits 1 when any target found something.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-600}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(env_file split_words duration classify request)
JOBS=${JOBS:-1}
FUZZ=(cargo fuzz)
export RUSTC_BOOTSTRAP=1
FLAGS=(--fuzz-dir scripts/fuzz --sanitizer none --debug-assertions)
OUT=scripts/fuzz/runs
mkdir -p "$OUT"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: cargo-fuzz is missing: cargo install cargo-fuzz" >&2
  exit 2
fi

seed() { # seed TARGET NAME CONTENT: a starting input, written once
  mkdir -p "scripts/fuzz/corpus/$1"
  [ -e "scripts/fuzz/corpus/$1/seed-$2" ] || printf '%b' "$3" >"scripts/fuzz/corpus/$1/seed-$2"
}
seed env_file dotenv '# c\nexport A=1\nB = "x\\\\ny \\\\" q" # c\nC='"'"'lit $X'"'"'\nD=a#b  # c\nM="l1\nl2"\r\n'
seed env_file fields '/srv/app/.env\0python3\001app.py\001--port=8000\0My App\0sh -c '"'"'kill $(cat pid)'"'"'\0www\0healthy,OK\0a@x.org,b@x.org\0me@x.org\0500ms\0logs\012.5'
seed split_words cmd 'sh -c "echo \\"$1\\" a\\\\b" '"'"'it'"'"'\\'"'"''"'"'s'"'"' x\\ y\\\n z ""'
seed duration units '1.5h'
seed duration seconds ' 0.000000001 '
seed classify demo '\310\000\001{"status": "healthy", "uptime": 3600.5, "memory": {"status": "healthy", "used": 150, "total": 16384}, "system": {"platform": "linux", "cpuUsage": {"percent": 5.2}}, "services": {"database": {"status": "healthy", "responseTime": 45}}}'
seed request get 'GET /metrics?x HTTP/1.1\r\nHost: a\r\nAuthorization: Basic dTowMTIzNDU2Nzg5YWJjZGVm\r\n\r\n'
seed classify unhealthy '\310\000\001{"status":"Unhealthy"}'

echo "fuzz: building the targets"
if ! "${FUZZ[@]}" build "${FLAGS[@]}" >"$OUT/build.log" 2>&1; then
  cat "$OUT/build.log" >&2
  exit 2
fi

run_one() {
  local t=$1 log="$OUT/$1.log"
  # -rss_limit_mb: a 1 MiB body is fine, a leak is not.
  "${FUZZ[@]}" run "${FLAGS[@]}" "$t" -- -max_total_time="$SECONDS_EACH" \
    -print_final_stats=1 -rss_limit_mb=1024 -timeout=10 >"$log" 2>&1 || true
}

pids=()
for t in "${TARGETS[@]}"; do
  echo "fuzz: $t for ${SECONDS_EACH} s ($(date -u +%H:%M:%S) UTC)"
  run_one "$t" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$JOBS" ]; then
    wait "${pids[0]}"
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p"; done

found=0
printf '%-12s %12s %9s %7s %s\n' target executions exec/s corpus findings
for t in "${TARGETS[@]}"; do
  log="$OUT/$t.log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
  corpus=$(find "scripts/fuzz/corpus/$t" -type f | wc -l)
  crashes=$(find "scripts/fuzz/artifacts/$t" -type f 2>/dev/null | wc -l)
  rate=$(( ${execs:-0} / ${secs:-1} ))
  [ "${secs:-0}" -gt 0 ] || rate=$(( ${execs:-0} / SECONDS_EACH ))
  [ "$crashes" -eq 0 ] || found=1
  printf '%-12s %12s %9s %7s %s\n' "$t" "${execs:-?}" "$rate" "$corpus" \
    "$([ "$crashes" -eq 0 ] && echo none || echo "$crashes in scripts/fuzz/artifacts/$t (see $log)")"
done
exit $found
