#!/usr/bin/env bash
# pg.sh - a throwaway PostgreSQL cluster for the tests.
#
#   bash tests/pg.sh start        start one; prints COAI_PG_URL=... and COAI_PG_DIR=...
#   bash tests/pg.sh stop [DIR]   stop it and remove its data (DIR defaults to $COAI_PG_DIR)
#   eval "$(bash tests/pg.sh start)"   sets both variables in the calling shell
#
# Sourced (`. tests/pg.sh`), it only defines coai_pg_start / coai_pg_stop, which
# export COAI_PG_URL and COAI_PG_DIR into the sourcing shell (tests/run-unit.sh).
#
# The cluster lives in /tmp/coai-pg-<pid>, owned by the postgres user when run
# as root (initdb refuses root), listens on 127.0.0.1 only (port 54329, or the
# next free one up to 54399), trusts local connections for role "coai", and
# runs without fsync: it is for tests and is deleted by stop. Database
# coai_test is created. COAI_PG_BIN overrides the server binaries' directory.

coai_pg_bindir() {
  if [ -n "${COAI_PG_BIN:-}" ]; then echo "$COAI_PG_BIN"; return; fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$d" ] && command -v pg_ctl >/dev/null 2>&1; then d=$(dirname "$(command -v pg_ctl)"); fi
  echo "$d"
}

# Run a command as the cluster's owner: postgres when we are root, else ourselves.
coai_pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    local q="" a
    for a in "$@"; do q+=" $(printf '%q' "$a")"; done
    su postgres -s /bin/sh -c "cd /tmp &&$q"
  else
    "$@"
  fi
}

coai_pg_port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Start a cluster; sets and exports COAI_PG_URL and COAI_PG_DIR. Returns non-zero
# (with the reason on stderr) on failure.
coai_pg_start() {
  local bin dir port
  bin=$(coai_pg_bindir)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "pg.sh: PostgreSQL server binaries not found (apt-get install postgresql, or set COAI_PG_BIN)" >&2
    return 1
  fi
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    echo "pg.sh: running as root but there is no postgres user to own the cluster" >&2
    return 1
  fi
  dir=/tmp/coai-pg-$$
  rm -rf "$dir"
  mkdir -p "$dir" || return 1
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  chmod 700 "$dir"
  if ! coai_pg_as_owner "$bin/initdb" -D "$dir/data" -A trust -U coai -E UTF8 --locale=C.UTF-8 \
        >"$dir/initdb.log" 2>&1 &&
     ! coai_pg_as_owner "$bin/initdb" -D "$dir/data" -A trust -U coai -E UTF8 --locale=C \
        >"$dir/initdb.log" 2>&1; then
    echo "pg.sh: initdb failed:" >&2
    cat "$dir/initdb.log" >&2
    rm -rf "$dir"
    return 1
  fi
  for port in $(seq 54329 54399); do
    coai_pg_port_busy "$port" && continue
    if coai_pg_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
         -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=300 -c shared_buffers=64MB" start >/dev/null 2>&1; then
      break
    fi
    port=""
    coai_pg_as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1
  done
  if [ -z "${port:-}" ]; then
    echo "pg.sh: could not start PostgreSQL on any port 54329-54399; server log:" >&2
    tail -n 20 "$dir/server.log" >&2 2>/dev/null
    rm -rf "$dir"
    return 1
  fi
  if ! "$bin/createdb" -h 127.0.0.1 -p "$port" -U coai coai_test >"$dir/createdb.log" 2>&1; then
    echo "pg.sh: createdb coai_test failed:" >&2
    cat "$dir/createdb.log" >&2
    coai_pg_as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1
    rm -rf "$dir"
    return 1
  fi
  export COAI_PG_DIR=$dir
  export COAI_PG_URL=postgres://coai@127.0.0.1:$port/coai_test
}

# Stop the cluster in ${1:-$COAI_PG_DIR} and delete it.
coai_pg_stop() {
  local dir=${1:-${COAI_PG_DIR:-}} bin
  case "$dir" in
    /tmp/coai-pg-*) ;;
    *) echo "pg.sh: stop: no cluster directory (give one, or set COAI_PG_DIR)" >&2; return 1 ;;
  esac
  bin=$(coai_pg_bindir)
  if [ -f "$dir/data/postmaster.pid" ]; then
    coai_pg_as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
      coai_pg_as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1
  fi
  rm -rf "$dir"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  case "${1:-}" in
    start)
      coai_pg_start || exit 1
      echo "COAI_PG_URL=$COAI_PG_URL"
      echo "COAI_PG_DIR=$COAI_PG_DIR"
      ;;
    stop) coai_pg_stop "${2:-}" ;;
    *) echo "usage: $0 start | stop [DIR]" >&2; exit 2 ;;
  esac
fi
