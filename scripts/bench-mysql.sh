#!/usr/bin/env bash
# MariaDB benchmark (examples/bench_mysql.rs), one process, everything on this machine:
#   1. full transfer of three tables (orders, order_items, order_events; ROWS rows each) by Ferry
#      FULL_TRANS, mydumper + myloader and mysqldump | mysql, every row compared after each;
#   2. the highest change rate Ferry FULL_INCR_TRANS and MariaDB's own replication sustain under a
#      sysbench load stepped up until the lag fails;
#   3. the same load as fast as the clients go: rates, lag, catch-up, every row compared;
#   4. Ferry's peak memory while it streams one large source transaction.
#
# Usage: scripts/bench-mysql.sh [ROWS]        (default 1000000)
# Environment (defaults in brackets; the full list is at the top of examples/bench_mysql.rs):
#   BENCH_PARTS [full,stream,rss]     BENCH_ROUNDS [1]         FERRY_READERS [2]
#   FERRY_BATCH_ROWS [100000]         FERRY_APPLY_BATCH [Ferry's default]
#   BENCH_STREAM_TOOLS [ferry,native] BENCH_STREAM_ROWS [200000] BENCH_CLIENTS [2]
#   BENCH_TX_ROWS [10-50]             BENCH_RATE_START [10000] BENCH_RATE_STEP [10000]
#   BENCH_RATE_MAX [1000000]          BENCH_STEP_SECONDS [15]  BENCH_MAX_LAG [2]
#   BENCH_LAG_GROWTH [0.5]            BENCH_FREE_SECONDS [30]  BENCH_CATCHUP_SECONDS [600]
#   BENCH_NATIVE_THREADS [0]          BENCH_REPLICA_BINLOG [1] BENCH_BIG_TX_ROWS [ROWS]
# A reduced run: BENCH_STEP_SECONDS=5 BENCH_FREE_SECONDS=10 scripts/bench-mysql.sh 100000
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh demo
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
      echo "${missing[*]} could not be installed; the parts that need them are left out"
  else
    echo "not installed: ${missing[*]} (sudo apt-get install -y -qq ${missing[*]});" \
      "the parts that need them are left out"
  fi
fi
exec cargo run --release --locked --quiet --example bench_mysql -- "$@"
