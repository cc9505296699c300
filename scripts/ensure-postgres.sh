#!/usr/bin/env bash
# Make PostgreSQL's server programs (initdb, pg_ctl) available for the contract tests, which
# start their own throwaway cluster. Installs Debian's `postgresql` package when they are
# missing, then prints the directory holding them. Idempotent; prints only that when present.
set -euo pipefail

find_bin_dir() {
  local initdb
  if initdb="$(command -v initdb)"; then
    dirname "$(readlink -f "$initdb")"
    return 0
  fi
  # Debian keeps server programs out of PATH, one directory per major version: take the newest.
  local candidates
  shopt -s nullglob
  candidates=(/usr/lib/postgresql/*/bin/initdb)
  shopt -u nullglob
  ((${#candidates[@]})) || return 1
  dirname "$(printf '%s\n' "${candidates[@]}" | sort -V | tail -n 1)"
}

fail() {
  echo "ensure-postgres: $*" >&2
  exit 1
}

if ! bin_dir="$(find_bin_dir)"; then
  command -v apt-get >/dev/null ||
    fail "no initdb found and this is not Debian; install the PostgreSQL server yourself"
  as_root=()
  if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null || fail "installing PostgreSQL needs root or sudo"
    as_root=(sudo)
  fi
  echo "ensure-postgres: installing PostgreSQL with apt-get" >&2
  ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -q
  ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends postgresql
  bin_dir="$(find_bin_dir)" || fail "the postgresql package is installed but initdb is not"
fi
echo "$bin_dir"
