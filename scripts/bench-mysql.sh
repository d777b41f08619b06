#!/usr/bin/env bash
# MariaDB benchmark: Ferry side by side with mysqldump | mysql and mydumper + myloader on the same
# data, and its change stream under a sysbench oltp_write_only load.
# Usage: scripts/bench-mysql.sh [ROWS] [STREAM_RATE] [STREAM_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
missing=()
if ! command -v mydumper >/dev/null 2>&1 || ! command -v myloader >/dev/null 2>&1; then
  missing+=(mydumper)
fi
command -v sysbench >/dev/null 2>&1 || missing+=(sysbench)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    # Retry once with fresh package lists (a container often starts without them).
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
      echo "${missing[*]} could not be installed; left out (sysbench: a built-in writer takes its place)"
  else
    echo "not installed: ${missing[*]} (sudo apt-get install -y -qq ${missing[*]}); left out" \
      "(sysbench: a built-in writer takes its place)"
  fi
fi
exec cargo run --release --locked --quiet --example bench_mysql -- "$@"
