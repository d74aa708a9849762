#!/usr/bin/env bash
# Private, throw-away PostgreSQL 15 cluster on loopback for local development and tests.
#
# Usage: scripts/postgres-local.sh up|down|status|env|reset
#
#   up      install Debian's `postgresql` package if missing (its own system
#           cluster is not started), `initdb` into $PG_LOCAL_DIR, start the
#           server on 127.0.0.1:$PG_PORT and a Unix socket in $PG_LOCAL_DIR
#           (nothing else), create the role and database `readersviews` with
#           a generated password, and print the settings as shell-evaluable
#           KEY=VALUE lines on stdout.  If already running it only prints them.
#   down    stop the server (data is kept; the next `up` reuses it)
#   status  exit 0 if the server is up, 3 otherwise
#   env     print the settings of a running instance
#   reset   `down` and delete the whole state directory
#
# Environment:
#   PG_LOCAL_DIR  state directory (default /tmp/readersviews-pg)
#   PG_PORT       TCP port on 127.0.0.1 (default 55432)
#
# The settings are also written to $PG_LOCAL_DIR/env, e.g.
#   set -a; . /tmp/readersviews-pg/env; set +a
# They are READERSVIEWS_TEST_PG_URL (postgresql://readersviews@127.0.0.1:PORT/readersviews),
# READERSVIEWS_DATABASE_PASSWORD and PGPASSWORD (the same generated password).
#
# PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` system user
# that Debian's package creates.
set -euo pipefail

STATE_DIR="${PG_LOCAL_DIR:-/tmp/readersviews-pg}"
[[ ${STATE_DIR} == /* ]] || STATE_DIR="${PWD}/${STATE_DIR}"
STATE_DIR="${STATE_DIR%/}"
PORT="${PG_PORT:-55432}"
HOST=127.0.0.1
DATA="${STATE_DIR}/data"
ENV_FILE="${STATE_DIR}/env"
LOG_FILE="${STATE_DIR}/postgres.log"
PASSWORD_FILE="${STATE_DIR}/password"
DB_NAME=readersviews
DB_USER=readersviews

log() { printf 'postgres-local: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

find_bin() {
    local dir
    for dir in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
        if [[ -x ${dir}/initdb ]]; then
            printf '%s\n' "${dir}"
            return 0
        fi
    done
    return 1
}

install_packages() {
    find_bin >/dev/null && return 0
    [[ ${EUID} -eq 0 ]] || die "PostgreSQL is not installed: run as root, or apt-get install postgresql"
    log "installing Debian's postgresql package"
    # Keep apt from starting the package's own cluster: a temporary policy-rc.d.
    local policy=/usr/sbin/policy-rc.d added_policy=0 rc=0
    if [[ ! -e ${policy} ]]; then
        printf '#!/bin/sh\nexit 101\n' >"${policy}" && chmod 755 "${policy}"
        added_policy=1
    fi
    {
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql
    } >&2 || rc=$?
    [[ ${added_policy} -eq 1 ]] && rm -f "${policy}"
    [[ ${rc} -eq 0 ]] || die "apt-get install postgresql failed (rc=${rc})"
    find_bin >/dev/null || die "postgresql installed, but no initdb under /usr/lib/postgresql"
}

# Run a PostgreSQL program as the cluster's owner (root is refused by postgres itself).
as_owner() {
    if [[ ${EUID} -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

running() { [[ -s ${DATA}/postmaster.pid ]] && as_owner "${BIN}/pg_ctl" -D "${DATA}" status >/dev/null 2>&1; }

write_env() {
    local password
    password="$(cat "${PASSWORD_FILE}")"
    (
        umask 077
        cat >"${ENV_FILE}" <<EOF
READERSVIEWS_TEST_PG_URL='postgresql://${DB_USER}@${HOST}:${PORT}/${DB_NAME}'
READERSVIEWS_DATABASE_PASSWORD='${password}'
PGPASSWORD='${password}'
PG_LOCAL_SOCKET_DIR='${STATE_DIR}'
EOF
    )
}

cmd_up() {
    install_packages
    BIN="$(find_bin)"
    if running; then
        cat "${ENV_FILE}"
        return 0
    fi
    mkdir -p "${STATE_DIR}"
    chmod 755 "${STATE_DIR}"
    [[ ${EUID} -eq 0 ]] && chown postgres: "${STATE_DIR}"
    if [[ ! -s ${PASSWORD_FILE} ]]; then
        (umask 077 && od -An -tx1 -N18 /dev/urandom | tr -d ' \n' >"${PASSWORD_FILE}")
    fi
    if [[ ! -s ${DATA}/PG_VERSION ]]; then
        local superpass="${STATE_DIR}/.initdb-pass"
        (umask 077 && cp "${PASSWORD_FILE}" "${superpass}")
        [[ ${EUID} -eq 0 ]] && chown postgres: "${superpass}"
        log "initdb into ${DATA}"
        # Socket connections by the cluster's owner are trusted; TCP (loopback only) needs a password.
        as_owner "${BIN}/initdb" -D "${DATA}" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
            --pwfile="${superpass}" -E UTF8 --locale=C.UTF-8 >"${STATE_DIR}/initdb.log" 2>&1 ||
            { rm -f "${superpass}"; cat "${STATE_DIR}/initdb.log" >&2; die "initdb failed"; }
        rm -f "${superpass}"
    fi
    log "starting PostgreSQL on ${HOST}:${PORT} (socket in ${STATE_DIR})"
    # fsync off: a throw-away test cluster; durability is PostgreSQL's business, not the tests'.
    as_owner "${BIN}/pg_ctl" -D "${DATA}" -l "${LOG_FILE}" -w -t 60 \
        -o "-c listen_addresses=${HOST} -p ${PORT} -c unix_socket_directories=${STATE_DIR} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null || { tail -20 "${LOG_FILE}" >&2 || true; die "PostgreSQL did not start"; }
    local password
    password="$(cat "${PASSWORD_FILE}")"
    as_owner "${BIN}/psql" -h "${STATE_DIR}" -p "${PORT}" -U postgres -d postgres -v ON_ERROR_STOP=1 -q >/dev/null <<SQL
SELECT 'CREATE ROLE ${DB_USER} LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${DB_USER}')\gexec
ALTER ROLE ${DB_USER} PASSWORD '${password}' CREATEDB;
SELECT 'CREATE DATABASE ${DB_NAME} OWNER ${DB_USER}' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '${DB_NAME}')\gexec
SQL
    write_env
    cat "${ENV_FILE}"
}

cmd_down() {
    BIN="$(find_bin)" || return 0
    if running; then
        log "stopping PostgreSQL (${DATA})"
        as_owner "${BIN}/pg_ctl" -D "${DATA}" -m fast -w stop >/dev/null
    fi
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status)
    BIN="$(find_bin)" || exit 3
    if running; then log "running on ${HOST}:${PORT}"; else log "not running"; exit 3; fi
    ;;
env)
    BIN="$(find_bin)" || die "PostgreSQL is not installed"
    running || die "not running; run: $0 up"
    cat "${ENV_FILE}"
    ;;
reset)
    cmd_down
    rm -rf "${STATE_DIR}"
    ;;
*)
    sed -n '2,27p' "$0" >&2
    exit 2
    ;;
esac
