#!/usr/bin/env bash
# PostgreSQL benchmark (`make bench`): Ferry side by side with its peers, in one run, on the same
# data, everything on this machine (examples/bench_pg.rs says how each part measures).
#
#   1. full transfer of three tables of ROWS rows each: Ferry FULL_TRANS, pg_dump | psql,
#      pg_dump -Fc | pg_restore, pg_dump -Fd -j 2 + pg_restore -j 2, pgcopydb clone;
#      every row and index compared after each tool
#   2. the highest change rate Ferry (FULL_INCR_TRANS) and PostgreSQL's logical replication
#      sustain under a stepped pgbench load
#   3. the same load as fast as two pgbench clients go: lag, catch-up, every row compared
#   4. Ferry's peak memory while it streams one transaction of a million rows
#
# Usage: scripts/bench-pg.sh [ROWS]          (ROWS per full-transfer table, default 1000000)
#
# Environment (defaults in brackets):
#   BENCH_ROWS [1000000]       rows of each full-transfer table (the argument wins)
#   BENCH_ROUNDS [1]           full-transfer rounds; the median is reported
#   BENCH_PARTS [full,rate,fixed,rss]   the parts to run
#   BENCH_TOOLS [ferry,native] the change-stream tools to run
#   FERRY_READERS [2]          Ferry's readParallelism
#   FERRY_BATCH_ROWS [100000]  Ferry's batchRows
#   FERRY_APPLY_BATCH          Ferry's applyBatchTransactions (Ferry's default when unset)
#   BENCH_STREAM_ROWS [100000] rows of the load table before the load
#   BENCH_RATE_START [10000]   first step, changed rows/s
#   BENCH_RATE_STEP [10000]    added at each step
#   BENCH_RATE_MAX [1000000]   no step above this
#   BENCH_STEP_SECONDS [15]    length of a step
#   BENCH_STEP_RETRIES [1]     a failing step is run this many times more before the ramp stops
#   BENCH_LAG_LIMIT [2]        p99 lag a step may reach, seconds
#   BENCH_LAG_GROWTH [0.5]     growth of the median lag within a step it may show, seconds
#   BENCH_CATCH_UP_SECONDS [120]  how long a tool may take to catch up after a step
#   BENCH_PAUSE_SECONDS [2]    idle time between steps
#   BENCH_CLIENTS [2]          pgbench clients and threads
#   BENCH_FIXED_SECONDS [30]   length of the unthrottled load
#   BENCH_BIG_ROWS [1000000]   rows of the one large transaction
#   BENCH_SYNC_COMMIT [on]     synchronous_commit of the load and heartbeat sessions (on or off)
#
# Quick run: BENCH_STEP_SECONDS=5 BENCH_FIXED_SECONDS=10 BENCH_BIG_ROWS=100000 scripts/bench-pg.sh 100000
set -euo pipefail
cd "$(dirname "$0")/.."
# The database servers and clients (pgbench comes with the server package).
scripts/install-deps.sh demo
if ! command -v pgcopydb >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get install -y -qq pgcopydb >/dev/null || echo "pgcopydb could not be installed; it is left out"
  else
    echo "pgcopydb is not installed (sudo apt-get install -y pgcopydb); it is left out"
  fi
fi
exec cargo run --release --locked --quiet --example bench_pg -- "$@"
