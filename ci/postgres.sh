#!/usr/bin/env bash
# A PostgreSQL for an MLflow tracking server, on localhost. Installs Debian's `postgresql` when
# it is missing (as root), makes a private cluster in DIR (trust auth, TCP on 127.0.0.1 only)
# and starts it, creates the database `mlflow`, and prints its SQLAlchemy URI. Idempotent: a
# cluster already running in DIR is reused (on the port it runs on). PostgreSQL refuses to run
# as root, so as root the cluster belongs to the `postgres` user the package creates.
#
#   ci/postgres.sh start DIR [PORT]   prints postgresql+psycopg2://postgres@127.0.0.1:PORT/mlflow
#   ci/postgres.sh stop DIR
set -euo pipefail
usage="usage: ci/postgres.sh start DIR [PORT] | stop DIR"
cmd=${1:?$usage}
dir=${2:?$usage}
port=${3:-5432}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
bin=$(pg_bin)
if [[ -z "$bin" ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "ci/postgres.sh: postgresql is not installed (as root: apt-get install postgresql)" >&2
        exit 3
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
    bin=$(pg_bin)
fi
as=()
if [[ $(id -u) -eq 0 ]]; then as=(runuser -u postgres --); fi

case "$cmd" in
start)
    mkdir -p "$dir"
    if [[ $(id -u) -eq 0 ]]; then chown postgres: "$dir"; chmod 700 "$dir"; fi
    if [[ ! -f "$dir/PG_VERSION" ]]; then
        "${as[@]}" "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    if ! "${as[@]}" "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        "${as[@]}" "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 120 \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
    fi
    port=$(sed -n 4p "$dir/postmaster.pid")
    psql=("$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tA)
    if [[ -z $("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'mlflow'") ]]; then
        "${psql[@]}" -q -c "CREATE DATABASE mlflow"
    fi
    echo "postgresql+psycopg2://postgres@127.0.0.1:$port/mlflow"  # the driver taskladder[server] installs
    ;;
stop)
    if [[ -f "$dir/postmaster.pid" ]]; then
        "${as[@]}" "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
    fi
    ;;
*)
    echo "$usage" >&2
    exit 2
    ;;
esac
