#!/usr/bin/env bash
# Installs the database clients of the driver matrix (tests/driver_matrix.rs) from
# the package registries, where they are missing:
#   Debian: psql, a JDK and the PostgreSQL JDBC driver, Node.js and npm, python3-venv
#   PyPI:   psycopg[binary], asyncpg, SQLAlchemy  -> target/drivers/venv
#   npm:    pg, pg-cursor                          -> target/drivers/node
# Run from anywhere; installs Debian packages only when running as root.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="$root/target/drivers"
mkdir -p "$dir"

need_apt=()
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
command -v javac >/dev/null 2>&1 || need_apt+=(default-jdk-headless)
[[ -f /usr/share/java/postgresql.jar ]] || need_apt+=(libpostgresql-jdbc-java)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
if ((${#need_apt[@]})); then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "missing Debian packages (not root, not installing): ${need_apt[*]}" >&2
    else
        echo "installing Debian packages: ${need_apt[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get -o DPkg::Lock::Timeout=300 update
        apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${need_apt[@]}"
    fi
fi

if [[ ! -x "$dir/venv/bin/python" ]]; then
    python3 -m venv "$dir/venv"
fi
if ! "$dir/venv/bin/python" -c 'import psycopg, asyncpg, sqlalchemy' >/dev/null 2>&1; then
    "$dir/venv/bin/pip" install --quiet --disable-pip-version-check \
        'psycopg[binary]' asyncpg SQLAlchemy
fi
"$dir/venv/bin/python" -c 'import psycopg, asyncpg, sqlalchemy; print("python drivers: psycopg", psycopg.__version__, "asyncpg", asyncpg.__version__, "SQLAlchemy", sqlalchemy.__version__)'

if [[ ! -d "$dir/node/node_modules/pg-cursor" ]]; then
    mkdir -p "$dir/node"
    (cd "$dir/node" && npm install --silent --no-audit --no-fund --no-save pg pg-cursor >/dev/null)
fi
node -e "console.log('node drivers: pg', require('$dir/node/node_modules/pg/package.json').version, 'pg-cursor', require('$dir/node/node_modules/pg-cursor/package.json').version)"
