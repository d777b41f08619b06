#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (cargo fuzz, libFuzzer with AddressSanitizer) for FUZZ_SECONDS
# each (default 600), FUZZ_JOBS at a time (default 2), from the committed seeds in fuzz/seeds/<t>
# into a local corpus fuzz/corpus/<t> (not committed). A crash, timeout or out-of-memory input
# lands in fuzz/artifacts/<t>/; each input's memory is limited (-rss_limit_mb, -malloc_limit_mb)
# so an unbounded allocation is a finding too. Prints per target: runs, seconds, corpus size,
# findings; exits non-zero when a target found something.
# Usage: scripts/fuzz.sh [target ...]   (default: every target)
# The toolchain is stable: RUSTC_BOOTSTRAP=1 lets it take the sanitizer flags cargo fuzz passes.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-600}"
jobs="${FUZZ_JOBS:-2}"
export RUSTC_BOOTSTRAP=1 CARGO_INCREMENTAL=0
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
  exit 1
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
# Built once; the runs start the binaries themselves, so editing sources meanwhile rebuilds nothing.
cargo fuzz build -O -a --codegen-units 16
bin="$PWD/target/x86_64-unknown-linux-gnu/release"
mkdir -p logs
run() {
  local t="$1"
  mkdir -p "corpus/$t" "artifacts/$t"
  ASAN_OPTIONS="detect_odr_violation=0" "$bin/$t" -artifact_prefix="artifacts/$t/" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 -print_final_stats=1 \
    "corpus/$t" "seeds/$t" >"logs/$t.log" 2>&1 || echo "$t: finding, see fuzz/logs/$t.log" >&2
}
export -f run
export seconds bin
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run {}'
status=0
printf '%-14s %12s %8s %8s  %s\n' target runs seconds corpus findings
for t in "${targets[@]}"; do
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || true)
  secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "logs/$t.log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' || true)
  corpus=$(find "corpus/$t" -type f | wc -l)
  found=$(find "artifacts/$t" -type f | wc -l)
  printf '%-14s %12s %8s %8s  %s\n' "$t" "${runs:-?}" "${secs:-?}" "$corpus" "$found"
  [ "$found" -eq 0 ] || status=1
done
exit $status
