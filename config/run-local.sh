#!/usr/bin/env bash
# The run command: starts churnstile with config/churnstile.toml in front of
# the local PostgreSQL on 127.0.0.1:5432 and the local MariaDB on
# 127.0.0.1:3306. On a fresh Debian machine it first installs and starts
# both and gives the `postgres` role the password the example config uses
# ("postgres"). Extra arguments go to churnstile.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

postgres_running() {
    command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432
}

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "config/run-local.sh: installing PostgreSQL" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fresh_install=yes
fi
if ! postgres_running; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    echo "config/run-local.sh: starting PostgreSQL $version" >&2
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 30); do postgres_running && break; sleep 1; done
fi
if [ "${fresh_install:-no}" = yes ]; then
    # Debian's default pg_hba asks TCP clients for a password.
    as_root runuser -u postgres -- psql -q -c "ALTER ROLE postgres PASSWORD 'postgres'"
fi

mariadb_running() {
    command -v mariadb-admin >/dev/null 2>&1 && mariadb-admin -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1
}

if ! command -v mariadbd >/dev/null 2>&1 && ! command -v mysqld >/dev/null 2>&1; then
    echo "config/run-local.sh: installing MariaDB" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null
fi
if ! mariadb_running; then
    echo "config/run-local.sh: starting MariaDB" >&2
    as_root service mariadb start >/dev/null 2>&1 || as_root service mysql start >/dev/null 2>&1 || true
    for _ in $(seq 1 30); do mariadb_running && break; sleep 1; done
fi
if mariadb_running || [ -S /run/mysqld/mysqld.sock ]; then
    # The example config's MySQL database and the account churnstile logs in
    # upstream with (root over the socket may create them on Debian).
    as_root mariadb -u root -e "CREATE DATABASE IF NOT EXISTS test; \
        CREATE USER IF NOT EXISTS 'churnstile'@'localhost' IDENTIFIED BY 'churnstile'; \
        CREATE USER IF NOT EXISTS 'churnstile'@'127.0.0.1' IDENTIFIED BY 'churnstile'; \
        GRANT ALL ON test.* TO 'churnstile'@'localhost'; \
        GRANT ALL ON test.* TO 'churnstile'@'127.0.0.1';" >/dev/null 2>&1 \
        || echo "config/run-local.sh: could not create the MariaDB account churnstile/churnstile" >&2
else
    echo "config/run-local.sh: MariaDB is not reachable on 127.0.0.1:3306; MySQL clients will get errors" >&2
fi

echo "config/run-local.sh: connect with: PGPASSWORD=postgres psql -h 127.0.0.1 -p 6432 -U postgres postgres" >&2
echo "config/run-local.sh:          or: mariadb -h 127.0.0.1 -P 3307 -u app -papp test" >&2
exec cargo run --release --quiet -- --config config/churnstile.toml "$@"
