#!/usr/bin/env bash
# pg_ctl for pytest-postgresql, usable when the tests run as root (as `make test` does in CI).
#
# PostgreSQL refuses to run as root. Called by root, this wrapper runs the real pg_ctl as
# an unprivileged user (THERABOARD_PG_USER, default "postgres", which Debian's postgresql
# package creates). pytest-postgresql puts the data directory inside pytest's temp dir,
# which pytest keeps private to root (mode 0700, re-applied by every pytest run), so the
# cluster really lives in a private folder of that user under THERABOARD_PG_TMP (default
# /tmp), and the path pytest-postgresql knows is a symlink to it:
#
#   initdb -D X   creates R=/tmp/theraboard-pg.XXXXXX (owner postgres, 0700), X -> R
#   start/status/stop -D X   run on R; the log (-l) is written to R.log (linked from -l's path)
#   stop          after a clean stop, removes R, R.log and the symlink X
#
# Called by anyone else it simply runs pg_ctl. The real pg_ctl is THERABOARD_PG_CTL, else
# the newest /usr/lib/postgresql/*/bin/pg_ctl, else pg_ctl on PATH.
set -euo pipefail

find_pg_ctl() {
  if [[ -n "${THERABOARD_PG_CTL:-}" ]]; then echo "$THERABOARD_PG_CTL"; return 0; fi
  local found
  found=$(ls -1d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -n "$found" ]]; then echo "$found"; return 0; fi
  if command -v pg_ctl >/dev/null 2>&1; then command -v pg_ctl; return 0; fi
  echo "pg_ctl not found: install PostgreSQL (apt-get install -y postgresql) or set THERABOARD_PG_CTL" >&2
  return 127
}

PG_CTL=$(find_pg_ctl)
if [[ "$(id -u)" -ne 0 ]]; then
  exec "$PG_CTL" "$@"
fi

RUN_AS="${THERABOARD_PG_USER:-postgres}"
if ! id -u "$RUN_AS" >/dev/null 2>&1; then
  echo "user '$RUN_AS' does not exist: install PostgreSQL (apt-get install -y postgresql) or set THERABOARD_PG_USER" >&2
  exit 1
fi
PG_TMP="${THERABOARD_PG_TMP:-/tmp}"
command="${1:-}"
args=("$@")

# The data directory given with -D/--pgdata, and where the cluster really lives.
given=""
for ((i = 1; i < ${#args[@]}; i++)); do
  case "${args[i]}" in -D | --pgdata) given="${args[i + 1]:-}" ;; esac
done
real=""
if [[ -n "$given" ]]; then
  if [[ -L "$given" ]]; then
    real=$(readlink -f "$given")
  elif [[ ! -e "$given" && ( "$command" == "initdb" || "$command" == "init" ) ]]; then
    real=$(mktemp -d "$PG_TMP/theraboard-pg.XXXXXX")
    chown "$RUN_AS": "$real"
    chmod 700 "$real"
    ln -s "$real" "$given"
  else
    real="$given"
  fi
fi

for ((i = 1; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    -D | --pgdata) args[i + 1]="$real" ;;
    -l | --log)
      log="$real.log"
      touch "$log"
      chown "$RUN_AS": "$log"
      ln -sfn "$log" "${args[i + 1]}" 2>/dev/null || true
      args[i + 1]="$log"
      ;;
  esac
done

cd /
if [[ "$command" == "stop" && -n "$given" && -L "$given" ]]; then
  runuser -u "$RUN_AS" -- "$PG_CTL" "${args[@]}"
  rm -rf -- "$real" "$real.log"
  rm -f -- "$given"
  exit 0
fi
exec runuser -u "$RUN_AS" -- "$PG_CTL" "${args[@]}"
