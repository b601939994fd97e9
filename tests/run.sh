#!/usr/bin/env bash
# The test command: installs the database servers the integration tests run
# (when missing), then checks formatting and lints and runs every test.
# Extra arguments go to `cargo test`, e.g. `tests/run.sh --test harness`.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

apt_updated=no
apt_install() {
    echo "tests/run.sh: installing $*" >&2
    if [ "$apt_updated" = no ]; then
        as_root apt-get update -qq
        apt_updated=yes
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

have_postgres_server() {
    local bindir
    for bindir in /usr/lib/postgresql/*/bin; do
        if [ -x "$bindir/initdb" ] && [ -x "$bindir/postgres" ]; then
            return 0
        fi
    done
    return 1
}

have_program() {
    PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v "$1" >/dev/null 2>&1
}

# Packages only: the tests start their own servers on free ports and never
# touch the system services these packages may start.
if ! have_postgres_server || ! have_program psql || ! have_program pgbench; then
    apt_install postgresql postgresql-contrib
fi
if ! have_program mariadbd || ! have_program mariadb-install-db || ! have_program mariadb; then
    apt_install mariadb-server mariadb-client
fi
# PHP's mysqli and PDO, which one MySQL test drives (it skips, saying so,
# without them); never fatal.
if ! have_program php || ! php -m 2>/dev/null | grep -qx pdo_mysql; then
    apt_install php-cli php-mysql \
        || echo "tests/run.sh: could not install php-cli and php-mysql; their test will be skipped" >&2
fi

# Python clients one transaction-pooling test drives (it skips, saying so,
# without them). Wheels only, a couple of seconds; never fatal.
if command -v python3 >/dev/null 2>&1 && ! python3 -c "import psycopg, asyncpg" 2>/dev/null; then
    echo "tests/run.sh: installing psycopg and asyncpg with pip" >&2
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
        --only-binary=:all: "psycopg[binary]" asyncpg \
        || echo "tests/run.sh: could not install psycopg and asyncpg; their test will be skipped" >&2
fi

# PyYAML, with which one test parses the Kubernetes example (it skips,
# saying so, without it); never fatal.
if command -v python3 >/dev/null 2>&1 && ! python3 -c "import yaml" 2>/dev/null; then
    echo "tests/run.sh: installing PyYAML with pip" >&2
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
        --only-binary=:all: PyYAML \
        || echo "tests/run.sh: could not install PyYAML; the manifest test will be skipped" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
    cat >&2 <<'MSG'
tests/run.sh: cargo not found. Install a Rust toolchain (edition 2024 needs
Rust 1.85 or newer), e.g. `apt-get install cargo rustc` where new enough, or
rustup from https://rustup.rs, then run tests/run.sh again.
MSG
    exit 1
fi

cargo fmt --all -- --check
cargo clippy --quiet --all-targets -- -D warnings
cargo test --all-targets "$@"

# Each fuzz target in fuzz/ briefly (CHURNSTILE_FUZZ_SECONDS, default 5) from
# its committed corpus, when the nightly toolchain is there: a crash fails the
# run, a missing nightly or cargo-fuzz never does. New inputs go to a scratch
# directory, so the committed corpus stays as it is. The long runs (millions
# of executions per target) are scheduled separately. Only on a full run.
fuzz_briefly() {
    local seconds="${CHURNSTILE_FUZZ_SECONDS:-5}" target scratch log
    if [ "$seconds" = 0 ]; then
        return 0
    fi
    if ! cargo +nightly --version >/dev/null 2>&1; then
        echo "tests/run.sh: no nightly toolchain (rustup toolchain install nightly); fuzz targets skipped" >&2
        return 0
    fi
    if ! cargo +nightly fuzz --version >/dev/null 2>&1 \
        && ! cargo install cargo-fuzz --locked --quiet; then
        echo "tests/run.sh: could not install cargo-fuzz; fuzz targets skipped" >&2
        return 0
    fi
    cargo +nightly fuzz build
    for target in $(cargo +nightly fuzz list); do
        scratch="$(mktemp -d)"
        log="$(mktemp)"
        if ! cargo +nightly fuzz run "$target" "$scratch" "fuzz/corpus/$target" -- \
            -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
            tail -40 "$log" >&2
            echo "tests/run.sh: fuzz target $target failed; its input is under fuzz/artifacts/$target" >&2
            rm -rf "$scratch" "$log"
            return 1
        fi
        sed -n "s/^stat::number_of_executed_units: */fuzz $target: executions: /p" "$log"
        rm -rf "$scratch" "$log"
    done
}
if [ "$#" -eq 0 ]; then
    fuzz_briefly
fi
