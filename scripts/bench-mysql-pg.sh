#!/usr/bin/env bash
# MariaDB → PostgreSQL benchmark (parts pg-full and pg-stream of examples/bench_mysql.rs), one
# process, everything on this machine:
#   1. full transfer of the three tables (orders, order_items, order_events; ROWS rows each) by
#      Ferry FULL_TRANS and by pgloader, each into an empty PostgreSQL database, every table
#      compared with the source after each;
#   2. Ferry FULL_INCR_TRANS MariaDB → PostgreSQL under the sysbench load of bench-mysql, as fast
#      as the clients go: rates, lag, catch-up, every row compared.
#
# Usage: scripts/bench-mysql-pg.sh [ROWS]     (default 1000000)
# Environment (the full list is at the top of examples/bench_mysql.rs):
#   BENCH_PARTS [pg-full,pg-stream]  (add full,stream for the MariaDB → MariaDB figures beside)
#   FERRY_READERS [2]  FERRY_BATCH_ROWS [100000]  PGLOADER_WORKERS [2]  PGLOADER_CONCURRENCY [2]
#   PGLOADER_ROWS_PER_RANGE [100000]  BENCH_CLIENTS [2]  BENCH_FREE_SECONDS [30]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh demo
missing=()
command -v pgloader >/dev/null 2>&1 || missing+=(pgloader)
command -v sysbench >/dev/null 2>&1 || missing+=(sysbench)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    # Retry once with fresh package lists (a container often starts without them).
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
      echo "${missing[*]} could not be installed; the parts that need them are left out"
  else
    echo "not installed: ${missing[*]} (sudo apt-get install -y -qq ${missing[*]});" \
      "the parts that need them are left out"
  fi
fi
export BENCH_PARTS="${BENCH_PARTS:-pg-full,pg-stream}"
exec cargo run --release --locked --quiet --example bench_mysql -- "$@"
