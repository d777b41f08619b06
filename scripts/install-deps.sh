#!/usr/bin/env bash
# Installs what Ferry's tests and demo need on a Debian/Ubuntu machine: the PostgreSQL, MariaDB
# and Redis server binaries (the tests start throwaway instances of them; the services the
# packages start on the standard ports are never used) and their command-line clients.
# As root it installs the missing packages through apt; otherwise it prints the command.
set -euo pipefail

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
{ [ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null 2>&1; } || missing+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || missing+=(mariadb-client)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)

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

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
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
