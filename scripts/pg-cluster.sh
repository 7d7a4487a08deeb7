#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the broker's tests, made with the
# machine's PostgreSQL server binaries (never a system cluster):
#   scripts/pg-cluster.sh start   initdb into a new temporary folder, start on
#                                 a free loopback port (socket in that folder)
#   scripts/pg-cluster.sh url     print its URL (postgres://...)
#   scripts/pg-cluster.sh stop    pg_ctl stop, and remove the folder
#   scripts/pg-cluster.sh halt    pg_ctl stop (fast), keeping the folder: a
#                                 server restart for fault tests, with
#   scripts/pg-cluster.sh resume  pg_ctl start again on the same port
#   scripts/pg-cluster.sh pause   the same as halt (an unreachable database)
# The folder is recorded in $PG_CLUSTER_STATE (default: target/pg-cluster).
# Authentication is `trust` on loopback and the socket only: test data only.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
state="${PG_CLUSTER_STATE:-$root/target/pg-cluster}"

bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"
      return 0
    fi
  done
  command -v initdb >/dev/null 2>&1 && dirname "$(command -v initdb)" && return 0
  return 1
}

# initdb and postgres refuse to run as root: as root, the cluster belongs to
# the `postgres` user the server package creates.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cmd="${1:-}"
case "$cmd" in
  start)
    if ! bin="$(bindir)"; then
      echo "pg-cluster: the PostgreSQL server binaries (initdb, pg_ctl) are not installed." >&2
      echo "pg-cluster: install them with: sudo apt-get install -y postgresql" >&2
      exit 1
    fi
    if [ -f "$state" ] && [ -d "$(cat "$state")" ]; then
      echo "pg-cluster: already started ($(cat "$state")); stop it first" >&2
      exit 1
    fi
    dir="$(mktemp -d /tmp/protonpass-pg.XXXXXX)"
    chmod 755 "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
    port="$(free_port)"
    as_owner "$bin/initdb" -D "$dir/data" -U protonpass --auth=trust -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=on" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    echo "$port" >"$dir/port"
    mkdir -p "$(dirname "$state")"
    echo "$dir" >"$state"
    echo "postgres://protonpass@127.0.0.1:$port/postgres"
    ;;
  url)
    dir="$(cat "$state" 2>/dev/null)" || { echo "pg-cluster: not started" >&2; exit 1; }
    echo "postgres://protonpass@127.0.0.1:$(cat "$dir/port")/postgres"
    ;;
  halt|pause)
    dir="$(cat "$state" 2>/dev/null)" || { echo "pg-cluster: not started" >&2; exit 1; }
    bin="$(bindir)"
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
  resume)
    dir="$(cat "$state" 2>/dev/null)" || { echo "pg-cluster: not started" >&2; exit 1; }
    bin="$(bindir)"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $(cat "$dir/port") -k $dir -c max_connections=300 -c fsync=on" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    ;;
  stop)
    dir="$(cat "$state" 2>/dev/null)" || exit 0
    if [ -d "$dir/data" ] && bin="$(bindir)"; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    case "$dir" in /tmp/protonpass-pg.*) rm -rf "$dir" ;; esac
    rm -f "$state"
    ;;
  *)
    echo "usage: $0 start|url|stop|halt|pause|resume" >&2
    exit 2
    ;;
esac
