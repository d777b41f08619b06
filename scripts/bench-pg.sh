#!/usr/bin/env bash
# PostgreSQL benchmark: Ferry side by side with pg_dump|pg_restore and pgcopydb on the same data.
# Usage: scripts/bench-pg.sh [ROWS] [STREAM_RATE] [STREAM_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if ! command -v pgcopydb >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get install -y -qq pgcopydb >/dev/null || echo "pgcopydb could not be installed; it is left out"
  else
    echo "pgcopydb is not installed (sudo apt-get install -y pgcopydb); it is left out"
  fi
fi
exec cargo run --release --locked --quiet --example bench_pg -- "$@"
