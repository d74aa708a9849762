#!/usr/bin/env bash
# Private, throw-away WordPress on loopback for local development and tests.
#
# Usage: scripts/wordpress-local.sh up|down|status|env|reset
#
#   up      install Debian packages if missing (wordpress mariadb-server php-cli
#           php-mysql php-curl php-xml php-mbstring curl), start a private
#           MariaDB (unix socket only, --skip-networking) and `php -S` on
#           127.0.0.1:$WP_PORT, install the site (admin user, category
#           "Readers' Views", application password) and print the settings
#           as shell-evaluable KEY=VALUE lines on stdout.  If already running
#           it only prints the settings.
#   down    stop php and mariadb (data is kept; the next `up` reuses it)
#   status  report what is running; exit 0 if everything is up, 3 otherwise
#   env     print the settings of a running instance (same as `up` when running)
#   reset   `down` and delete the whole state directory
#
# Environment:
#   WP_LOCAL_DIR  state directory (default /tmp/readersviews-wp)
#   WP_PORT       HTTP port on 127.0.0.1 (default 8089)
#
# The settings are also written to $WP_LOCAL_DIR/env, e.g.
#   set -a; . /tmp/readersviews-wp/env; set +a
# or: eval "$(scripts/wordpress-local.sh up)"
#
# Everything except the settings goes to stderr or to log files in the state
# directory (mariadb.log, php-server.log, php-error.log).
set -euo pipefail

STATE_DIR="${WP_LOCAL_DIR:-/tmp/readersviews-wp}"
[[ ${STATE_DIR} == /* ]] || STATE_DIR="${PWD}/${STATE_DIR}"
STATE_DIR="${STATE_DIR%/}"
PORT="${WP_PORT:-8089}"
HOST=127.0.0.1
URL="http://${HOST}:${PORT}"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HELPERS="${SCRIPT_DIR}/wordpress"
WP_SRC=/usr/share/wordpress

DOCROOT="${STATE_DIR}/docroot"
DATADIR="${STATE_DIR}/mysql"
SOCKET="${STATE_DIR}/mysqld.sock"
MYSQL_PID="${STATE_DIR}/mysqld.pid"
PHP_PID="${STATE_DIR}/php-server.pid"
ENV_FILE="${STATE_DIR}/env"
DB_NAME=wordpress
DB_USER=wordpress

PACKAGES=(wordpress mariadb-server php-cli php-mysql php-curl php-xml php-mbstring curl)

log() { printf 'wordpress-local: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

as_root() {
    if [[ ${EUID} -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# ---------------------------------------------------------------- packages ---

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        if [[ "$(dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null || true)" != "install ok installed" ]]; then
            missing+=("${pkg}")
        fi
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0

    log "installing Debian packages: ${missing[*]}"
    # Keep apt from starting the system apache2/mariadb services: install a
    # temporary policy-rc.d unless the machine already has one.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e ${policy} ]]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > ${policy} && chmod 755 ${policy}"
        added_policy=1
        # shellcheck disable=SC2064 # expand now: remove it even if apt is interrupted
        trap "as_root rm -f '${policy}'" EXIT
    fi
    local rc=0
    {
        as_root apt-get update -qq &&
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                --no-install-recommends "${missing[@]}"
    } >&2 || rc=$?
    if [[ ${added_policy} -eq 1 ]]; then
        as_root rm -f "${policy}"
        trap - EXIT
    fi
    [[ ${rc} -eq 0 ]] || die "apt-get install failed (rc=${rc})"
}

# ----------------------------------------------------------------- helpers ---

pid_alive() { # pidfile
    local pid
    [[ -s $1 ]] || return 1
    pid="$(cat "$1" 2>/dev/null)" || return 1
    [[ ${pid} =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null
}

port_open() {
    (exec 3<>"/dev/tcp/${HOST}/${PORT}") 2>/dev/null
}

mysql_running() { pid_alive "${MYSQL_PID}" && [[ -S ${SOCKET} ]]; }
php_running() { pid_alive "${PHP_PID}"; }

mysql_cli() {
    mariadb --no-defaults --protocol=socket --socket="${SOCKET}" -uroot "$@"
}

secret() { # file -> prints a stored (or newly generated) random token
    if [[ ! -s $1 ]]; then
        (umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$1")
    fi
    cat "$1"
}

print_settings() {
    [[ -s ${ENV_FILE} ]] || die "no ${ENV_FILE}; run: $0 up"
    cat "${ENV_FILE}"
}

wait_for() { # seconds description command...
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        if "$@"; then return 0; fi
        sleep 0.1
    done
    die "timed out after ${secs}s waiting for ${what}"
}

# ----------------------------------------------------------------- mariadb ---

start_mysql() {
    if mysql_running; then return 0; fi
    if (( ${#SOCKET} > 100 )); then
        die "socket path too long for a unix socket (${SOCKET}); use a shorter WP_LOCAL_DIR"
    fi
    local user_args=()
    [[ ${EUID} -eq 0 ]] && user_args=(--user=root)

    if [[ ! -d ${DATADIR}/mysql ]]; then
        log "initialising MariaDB datadir ${DATADIR}"
        rm -rf "${DATADIR}"
        mkdir -p "${DATADIR}"
        mariadb-install-db --no-defaults "${user_args[@]}" --datadir="${DATADIR}" \
            --auth-root-authentication-method=normal --skip-test-db \
            --skip-name-resolve >"${STATE_DIR}/mariadb-install.log" 2>&1 ||
            die "mariadb-install-db failed, see ${STATE_DIR}/mariadb-install.log"
    fi
    rm -f "${SOCKET}" "${MYSQL_PID}"
    log "starting MariaDB (socket ${SOCKET}, no TCP)"
    setsid mariadbd --no-defaults "${user_args[@]}" \
        --datadir="${DATADIR}" --socket="${SOCKET}" --pid-file="${MYSQL_PID}" \
        --skip-networking --port=0 --skip-name-resolve --skip-log-bin \
        --log-error="${STATE_DIR}/mariadb.log" \
        --innodb-buffer-pool-size=64M --innodb-flush-log-at-trx-commit=2 \
        --innodb-buffer-pool-dump-at-shutdown=0 --innodb-buffer-pool-load-at-startup=0 \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
        </dev/null >>"${STATE_DIR}/mariadb.log" 2>&1 &
    wait_for 30 "MariaDB (see ${STATE_DIR}/mariadb.log)" mysql_ping
}

mysql_ping() { [[ -S ${SOCKET} ]] && mysql_cli -e 'SELECT 1' >/dev/null 2>&1; }

create_db() {
    local pw
    pw="$(secret "${STATE_DIR}/secrets/db-password")"
    mysql_cli <<SQL
CREATE DATABASE IF NOT EXISTS \`${DB_NAME}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '${DB_USER}'@'localhost' IDENTIFIED BY '${pw}';
ALTER USER '${DB_USER}'@'localhost' IDENTIFIED BY '${pw}';
GRANT ALL PRIVILEGES ON \`${DB_NAME}\`.* TO '${DB_USER}'@'localhost';
SQL
}

stop_mysql() {
    if ! pid_alive "${MYSQL_PID}"; then
        rm -f "${MYSQL_PID}"
        return 0
    fi
    local pid
    pid="$(cat "${MYSQL_PID}")"
    log "stopping MariaDB (pid ${pid})"
    mysql_cli -e 'SHUTDOWN' >/dev/null 2>&1 || kill -TERM "${pid}" 2>/dev/null || true
    if ! wait_for_exit "${pid}" 30; then
        log "MariaDB did not stop, killing"
        kill -KILL "${pid}" 2>/dev/null || true
    fi
    rm -f "${MYSQL_PID}" "${SOCKET}"
}

wait_for_exit() { # pid seconds
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

# --------------------------------------------------------------- wordpress ---

prepare_docroot() {
    if ! cmp -s "${WP_SRC}/wp-includes/version.php" "${DOCROOT}/wp-includes/version.php"; then
        log "copying WordPress core from ${WP_SRC}"
        rm -rf "${DOCROOT}.new"
        cp -a "${WP_SRC}" "${DOCROOT}.new"
        # Debian's wp-config.php dispatches to /etc/wordpress; we use our own.
        rm -f "${DOCROOT}.new/wp-config.php" "${DOCROOT}.new/.htaccess"
        if [[ -d ${DOCROOT}/wp-content/uploads ]]; then
            mkdir -p "${DOCROOT}.new/wp-content"
            cp -a "${DOCROOT}/wp-content/uploads" "${DOCROOT}.new/wp-content/"
        fi
        rm -rf "${DOCROOT}"
        mv "${DOCROOT}.new" "${DOCROOT}"
    fi
    mkdir -p "${DOCROOT}/wp-content/uploads" "${DOCROOT}/wp-content/themes"
    rm -rf "${DOCROOT}/wp-content/themes/readersviews-local"
    cp -r "${HELPERS}/theme/readersviews-local" "${DOCROOT}/wp-content/themes/"
    mkdir -p "${DOCROOT}/wp-content/mu-plugins"
    cp "${HELPERS}/mu-plugins/readersviews-local.php" "${DOCROOT}/wp-content/mu-plugins/"
    write_wp_config
}

write_wp_config() {
    local pw salts="" key
    pw="$(secret "${STATE_DIR}/secrets/db-password")"
    for key in AUTH_KEY SECURE_AUTH_KEY LOGGED_IN_KEY NONCE_KEY AUTH_SALT SECURE_AUTH_SALT LOGGED_IN_SALT NONCE_SALT; do
        salts+="define('${key}', '$(secret "${STATE_DIR}/secrets/${key}")');"$'\n'
    done
    local tmp="${DOCROOT}/wp-config.php.tmp"
    cat >"${tmp}" <<PHP
<?php
/* Generated by scripts/wordpress-local.sh -- private local test instance. */
define('DB_NAME', '${DB_NAME}');
define('DB_USER', '${DB_USER}');
define('DB_PASSWORD', '${pw}');
define('DB_HOST', 'localhost:${SOCKET}');
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
${salts}
\$table_prefix = 'wp_';

/* Application passwords work over plain http only for "local". */
define('WP_ENVIRONMENT_TYPE', 'local');
define('WP_HOME', '${URL}');
define('WP_SITEURL', '${URL}');

/* Never talk to the internet, never update, no pseudo-cron. */
define('WP_HTTP_BLOCK_EXTERNAL', true);
define('DISABLE_WP_CRON', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('WP_AUTO_UPDATE_CORE', false);
define('DISALLOW_FILE_MODS', true);
define('FS_METHOD', 'direct');

define('WP_DEBUG', false);
define('WP_DEBUG_DISPLAY', false);
@ini_set('display_errors', '0');

if (!defined('ABSPATH')) {
    define('ABSPATH', __DIR__ . '/');
}
require_once ABSPATH . 'wp-settings.php';
PHP
    mv "${tmp}" "${DOCROOT}/wp-config.php"
}

php_args() {
    printf '%s\n' -d display_errors=0 -d log_errors=1 \
        -d "error_log=${STATE_DIR}/php-error.log" -d memory_limit=256M \
        -d upload_max_filesize=32M -d post_max_size=32M
}

run_setup() {
    local args
    mapfile -t args < <(php_args)
    (cd "${DOCROOT}" && WP_URL="${URL}" php "${args[@]}" "${HELPERS}/setup.php" \
        "${DOCROOT}" "${STATE_DIR}") >&2 ||
        die "WordPress setup failed (see ${STATE_DIR}/php-error.log)"
}

start_php() {
    if php_running; then return 0; fi
    local args
    mapfile -t args < <(php_args)
    log "starting php -S ${HOST}:${PORT}"
    PHP_CLI_SERVER_WORKERS=4 setsid php "${args[@]}" \
        -S "${HOST}:${PORT}" -t "${DOCROOT}" "${HELPERS}/router.php" \
        </dev/null >>"${STATE_DIR}/php-server.log" 2>&1 &
    echo $! >"${PHP_PID}"
    wait_for 15 "php -S on ${PORT} (see ${STATE_DIR}/php-server.log)" port_open
}

stop_php() {
    if ! pid_alive "${PHP_PID}"; then
        rm -f "${PHP_PID}"
        return 0
    fi
    local pid
    pid="$(cat "${PHP_PID}")"
    log "stopping php -S (pid ${pid})"
    # setsid made it a process-group leader: signal the workers too.
    kill -TERM -- "-${pid}" 2>/dev/null || kill -TERM "${pid}" 2>/dev/null || true
    if ! wait_for_exit "${pid}" 10; then
        kill -KILL -- "-${pid}" 2>/dev/null || kill -KILL "${pid}" 2>/dev/null || true
    fi
    rm -f "${PHP_PID}"
}

verify_api() {
    local user pass code _
    user="$(sed -n 's/^WP_USER=//p' "${ENV_FILE}")"
    pass="$(bash -c 'set -a; . "$1"; printf %s "$WP_APP_PASSWORD"' _ "${ENV_FILE}")"
    for _ in $(seq 1 50); do
        code="$(curl -s -o "${STATE_DIR}/verify.json" -w '%{http_code}' \
            -u "${user}:${pass}" "${URL}/wp-json/wp/v2/users/me" || true)"
        [[ ${code} == 200 ]] && return 0
        sleep 0.2
    done
    die "REST check failed: GET /wp-json/wp/v2/users/me -> ${code}: $(head -c 300 "${STATE_DIR}/verify.json" 2>/dev/null)"
}

# ---------------------------------------------------------------- commands ---

cmd_up() {
    if php_running && [[ -s ${ENV_FILE} ]] && ! grep -qxF "WP_URL=${URL}" "${ENV_FILE}"; then
        die "instance in ${STATE_DIR} is running with $(grep '^WP_URL=' "${ENV_FILE}"), not ${URL}; run: $0 down"
    fi
    if mysql_running && php_running && [[ -s ${ENV_FILE} ]]; then
        print_settings
        return 0
    fi
    if ! php_running && port_open; then
        die "port ${PORT} on ${HOST} is already in use by another process (set WP_PORT)"
    fi
    install_packages
    mkdir -p "${STATE_DIR}/secrets"
    chmod 700 "${STATE_DIR}" "${STATE_DIR}/secrets"
    start_mysql
    create_db
    prepare_docroot
    run_setup
    start_php
    verify_api
    log "WordPress is up at ${URL} (state in ${STATE_DIR})"
    print_settings
}

cmd_down() {
    stop_php
    stop_mysql
    log "stopped"
}

cmd_status() {
    local ok=0
    if mysql_running; then
        log "mariadb: running (pid $(cat "${MYSQL_PID}"), socket ${SOCKET})"
    else
        log "mariadb: stopped"
        ok=3
    fi
    if php_running; then
        log "php -S:  running (pid $(cat "${PHP_PID}"), ${URL})"
    else
        log "php -S:  stopped"
        ok=3
    fi
    if [[ ${ok} -eq 0 ]]; then
        local code
        code="$(curl -s -o /dev/null -w '%{http_code}' "${URL}/wp-json/" || true)"
        log "GET ${URL}/wp-json/ -> ${code}"
        [[ ${code} == 200 ]] || ok=3
    fi
    echo "state_dir=${STATE_DIR} url=${URL} status=$([[ ${ok} -eq 0 ]] && echo up || echo down)"
    return "${ok}"
}

cmd_reset() {
    cmd_down
    case "${STATE_DIR}" in
        "" | / | /tmp | /tmp/) die "refusing to delete ${STATE_DIR}" ;;
    esac
    rm -rf "${STATE_DIR}"
    log "removed ${STATE_DIR}"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env)
        if ! { mysql_running && php_running; }; then die "not running; run: $0 up"; fi
        print_settings
        ;;
    reset) cmd_reset ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
