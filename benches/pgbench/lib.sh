# shellcheck shell=bash
# shellcheck disable=SC2034 # the globals set here are read by the scripts that source this file
# Shared helpers for the end-to-end benchmarks in this folder: a throwaway
# PostgreSQL cluster, a private PgBouncer and a maskgate instance, all on
# loopback, all removed again by bench_cleanup. Sourced, not executed.

BENCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH_TMP=""
BENCH_KEEP=0
BENCH_USED_PORTS=" "
PG_BINDIR=""
PSQL=""
PGBENCH=""
PG_PORT=""
PG_DATA=""
PG_SOCK=""
BENCH_USER="bench"
BENCH_DB="bench"
BENCH_PASSWORD=""
BENCH_VERIFIER=""
PGB_BIN=""
PGB_PORT=""
PGB_PIDFILE=""
MG_BIN=""
MG_PORT=""
MG_ADMIN_PORT=""
MG_PID=""
MG_PIDS=()
MG_CONFIG=""
BENCH_CHILD_PIDS=""

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# PostgreSQL refuses to run as root, so as root the server side runs as `postgres`.
as_pg() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

find_pg_bindir() {
    local dir candidate
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dir="$(dirname "$(readlink -f "$(command -v initdb)")")"
        if [[ -x "$dir/pg_ctl" ]]; then
            PG_BINDIR="$dir"
            return 0
        fi
    fi
    if command -v pg_config >/dev/null 2>&1; then
        dir="$(pg_config --bindir 2>/dev/null || true)"
        if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            PG_BINDIR="$dir"
            return 0
        fi
    fi
    candidate="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$candidate" ]]; then
        PG_BINDIR="$(dirname "$candidate")"
        return 0
    fi
    return 1
}

# A client tool (psql, pgbench, pg_isready): the server's bindir first, then PATH.
pg_tool() {
    local name="$1"
    if [[ -n "$PG_BINDIR" && -x "$PG_BINDIR/$name" ]]; then
        printf '%s\n' "$PG_BINDIR/$name"
    elif command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
    else
        die "$name not found (install the postgresql-client package)"
    fi
}

# Sets variable $1 to a port nobody listens on right now; never the same port twice.
# (A variable, not stdout: a command substitution's subshell would lose the record.)
free_port() {
    local port tries=0
    while ((tries < 200)); do
        port=$((20000 + RANDOM % 40000))
        tries=$((tries + 1))
        [[ "$BENCH_USED_PORTS" == *" $port "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            BENCH_USED_PORTS+="$port "
            printf -v "$1" '%s' "$port"
            return 0
        fi
    done
    die "no free TCP port found"
}

random_secret() {
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n'
}

bench_make_tmp() {
    BENCH_TMP="$(mktemp -d "${TMPDIR:-/tmp}/maskgate-bench.XXXXXX")"
    chmod 755 "$BENCH_TMP"
    if is_root; then
        id -u postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' OS user to run the servers"
        chown postgres: "$BENCH_TMP"
    fi
    log "work dir: $BENCH_TMP"
}

bench_cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    local child
    for child in $BENCH_CHILD_PIDS; do
        kill -TERM "$child" 2>/dev/null
        wait "$child" 2>/dev/null
    done
    local mg
    for mg in "${MG_PIDS[@]}"; do
        kill -0 "$mg" 2>/dev/null || continue
        kill -TERM "$mg" 2>/dev/null
        for _ in $(seq 1 50); do
            kill -0 "$mg" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$mg" 2>/dev/null
        wait "$mg" 2>/dev/null
    done
    if [[ -n "$PGB_PIDFILE" && -s "$PGB_PIDFILE" ]]; then
        local pgb_pid
        pgb_pid="$(cat "$PGB_PIDFILE")"
        kill -TERM "$pgb_pid" 2>/dev/null
        for _ in $(seq 1 50); do
            kill -0 "$pgb_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pgb_pid" 2>/dev/null
    fi
    if [[ -n "$PG_DATA" && -f "$PG_DATA/postmaster.pid" ]]; then
        as_pg "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1
    fi
    if [[ -n "$BENCH_TMP" && -d "$BENCH_TMP" ]]; then
        if ((BENCH_KEEP)); then
            log "kept work dir $BENCH_TMP"
        else
            rm -rf "$BENCH_TMP"
        fi
    fi
    exit "$status"
}

bench_install_traps() {
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Starts a cluster with SCRAM on 127.0.0.1 and creates the bench role and database.
# $1: max_connections.
pg_start() {
    local max_conn="${1:-200}"
    find_pg_bindir || die "initdb not found (PATH, pg_config --bindir, /usr/lib/postgresql/*/bin)"
    PSQL="$(pg_tool psql)"
    PGBENCH="$(pg_tool pgbench)"
    free_port PG_PORT
    PG_DATA="$BENCH_TMP/pgdata"
    PG_SOCK="$BENCH_TMP/pgsock"
    as_pg mkdir -p "$PG_SOCK"
    log "initdb ($PG_BINDIR)"
    as_pg "$PG_BINDIR/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 >"$BENCH_TMP/initdb.log" 2>&1 ||
        { cat "$BENCH_TMP/initdb.log" >&2; die "initdb failed"; }
    as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
max_connections = $max_conn
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    as_pg tee "$PG_DATA/pg_hba.conf" >/dev/null <<EOF
local all all trust
host all all 127.0.0.1/32 scram-sha-256
EOF
    as_pg "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -l "$BENCH_TMP/postgresql.log" -w -t 60 start >/dev/null ||
        { tail -n 30 "$BENCH_TMP/postgresql.log" >&2; die "PostgreSQL did not start"; }
    log "PostgreSQL on 127.0.0.1:$PG_PORT"

    BENCH_PASSWORD="$(random_secret)"
    # The password goes through stdin so it never shows in a process list.
    "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres >/dev/null <<EOF
CREATE ROLE $BENCH_USER LOGIN PASSWORD '$BENCH_PASSWORD';
CREATE DATABASE $BENCH_DB OWNER $BENCH_USER;
EOF
    # PostgreSQL computed the SCRAM verifier; PgBouncer and maskgate reuse it as is.
    BENCH_VERIFIER="$("$PSQL" -X -Atq -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres \
        -c "SELECT rolpassword FROM pg_authid WHERE rolname = '$BENCH_USER'")"
    [[ "$BENCH_VERIFIER" == SCRAM-SHA-256\$* ]] || die "unexpected verifier format in pg_authid"
    export PGPASSWORD="$BENCH_PASSWORD"
    export PGSSLMODE=disable
    export PGGSSENCMODE=disable
}

pgb_install() {
    local candidate
    for candidate in "$(command -v pgbouncer 2>/dev/null || true)" /usr/sbin/pgbouncer /usr/bin/pgbouncer; do
        if [[ -n "$candidate" && -x "$candidate" ]]; then
            PGB_BIN="$candidate"
            return 0
        fi
    done
    is_root || die "pgbouncer is not installed; run 'apt-get install -y pgbouncer' as root"
    log "installing Debian's pgbouncer package"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y pgbouncer >"$BENCH_TMP/apt.log" 2>&1; then
        apt-get update >>"$BENCH_TMP/apt.log" 2>&1 || true
        apt-get install -y pgbouncer >>"$BENCH_TMP/apt.log" 2>&1 ||
            { tail -n 20 "$BENCH_TMP/apt.log" >&2; die "apt-get install pgbouncer failed"; }
    fi
    [[ -x /usr/sbin/pgbouncer ]] || die "pgbouncer binary not found after install"
    PGB_BIN=/usr/sbin/pgbouncer
}

# A private PgBouncer in session mode; the package's system service is not used.
# $1: server connections per pool (session mode needs one per concurrent client).
pgb_start() {
    local pool="${1:-64}" dir="$BENCH_TMP/pgbouncer"
    pgb_install
    free_port PGB_PORT
    PGB_PIDFILE="$dir/pgbouncer.pid"
    as_pg mkdir -p "$dir"
    printf '"%s" "%s"\n' "$BENCH_USER" "$BENCH_VERIFIER" | as_pg tee "$dir/userlist.txt" >/dev/null
    as_pg tee "$dir/pgbouncer.ini" >/dev/null <<EOF
[databases]
$BENCH_DB = host=127.0.0.1 port=$PG_PORT dbname=$BENCH_DB

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = session
max_client_conn = $((pool + 100))
default_pool_size = $pool
server_tls_sslmode = disable
client_tls_sslmode = disable
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $PGB_PIDFILE
log_connections = 0
log_disconnections = 0
EOF
    # runuser applies PAM's default open-file limit (often 1024); PgBouncer needs two
    # descriptors per session, so raise the soft limit as far as the hard one allows.
    # shellcheck disable=SC2016 # expanded by the inner shell
    as_pg bash -c 'ulimit -Sn "$1" 2>/dev/null || ulimit -Sn "$(ulimit -Hn)"; shift; exec "$@"' \
        _ $((2 * pool + 300)) "$PGB_BIN" -d -q "$dir/pgbouncer.ini" ||
        { tail -n 20 "$dir/pgbouncer.log" >&2 2>/dev/null; die "pgbouncer did not start"; }
    wait_sql "$PGB_PORT" "pgbouncer" "" || { tail -n 20 "$dir/pgbouncer.log" >&2; die "pgbouncer not answering"; }
    log "PgBouncer $("$PGB_BIN" --version 2>/dev/null | head -n 1 | awk '{print $2}') on 127.0.0.1:$PGB_PORT (session mode)"
}

mg_build() {
    if [[ -n "$MG_BIN" ]]; then
        [[ -x "$MG_BIN" ]] || die "maskgate binary $MG_BIN is not executable"
        return 0
    fi
    log "cargo build --release --bin maskgate"
    (cd "$BENCH_ROOT" && cargo build --release --bin maskgate) || die "cargo build failed"
    MG_BIN="$BENCH_ROOT/target/release/maskgate"
}

# $1: max client connections, $2: upstream pool size, $3: instance name (its
# directory under the work dir), $4: more configuration text (e.g. an [audit] section).
mg_start() {
    local max_clients="${1:-1000}" pool="${2:-8}" name="${3:-maskgate}" extra="${4:-}"
    local dir="$BENCH_TMP/$name"
    mkdir -p "$dir"
    free_port MG_PORT
    free_port MG_ADMIN_PORT
    MG_CONFIG="$dir/maskgate.toml"
    mkdir -p "$dir/policy"
    # The bench account relays everything: this measures the relay, not enforcement.
    cat >"$dir/policy/bench.toml" <<EOF
[roles.bench]
unrestricted = true

[accounts.$BENCH_USER]
name = "pgbench"
verifier = "$BENCH_VERIFIER"
roles = ["bench"]
EOF
    chmod 600 "$dir/policy/bench.toml"
    cat >"$MG_CONFIG" <<EOF
[server]
listen = "127.0.0.1:$MG_PORT"
max_client_connections = $max_clients
login_timeout = "15s"
client_idle_timeout = "0s"
shutdown_grace = "5s"
auth_failure_delay = "500ms"
max_message_size = 67108864

[tls]
mode = "disable"

[upstream]
host = "127.0.0.1"
port = $PG_PORT
database = "$BENCH_DB"
user = "$BENCH_USER"
password_env = "MASKGATE_UPSTREAM_PASSWORD"
tls = "disable"
connect_timeout = "5s"
pool_size = $pool
pool_idle_timeout = "5m"

[policy]
dir = "policy"

[admin]
listen = "127.0.0.1:$MG_ADMIN_PORT"

[log]
format = "human"
level = "warn"

$extra
EOF
    MASKGATE_UPSTREAM_PASSWORD="$BENCH_PASSWORD" "$MG_BIN" serve --config "$MG_CONFIG" \
        >"$dir/maskgate.log" 2>&1 &
    MG_PID=$!
    if ! wait_sql "$MG_PORT" "maskgate" "$MG_PID"; then
        log "maskgate log (last lines):"
        tail -n 30 "$dir/maskgate.log" >&2
        die "maskgate did not accept a login on 127.0.0.1:$MG_PORT (rerun with --keep to inspect $MG_CONFIG and its log)"
    fi
    log "$name on 127.0.0.1:$MG_PORT (pid $MG_PID)"
    MG_PIDS+=("$MG_PID")
}

# Writes audit keys into $1 with openssl (signing key, public key, seal keys) and
# prints an [audit] section using them; $2: more lines for the section.
mg_audit_section() {
    local dir="$1" extra="${2:-}"
    mkdir -p "$dir"
    openssl genpkey -algorithm ed25519 -out "$dir/audit-signing.pem" 2>/dev/null || die "openssl genpkey failed"
    openssl pkey -in "$dir/audit-signing.pem" -pubout -out "$dir/audit-public.pem" 2>/dev/null
    printf 'maskgate-audit seal-keys v1\nk1 %s\n' "$(openssl rand -hex 32)" >"$dir/audit-seal.keys"
    chmod 600 "$dir/audit-signing.pem" "$dir/audit-seal.keys"
    printf '[audit]\ndir = "%s"\nsigning_key = "%s"\nseal_key = "%s"\n%s\n' \
        "$dir/audit" "$dir/audit-signing.pem" "$dir/audit-seal.keys" "$extra"
}

# Polls until `SELECT 1` as the bench user works on 127.0.0.1:$1 (up to 20 s).
# $3: a pid that must stay alive meanwhile (may be empty).
wait_sql() {
    local port="$1" what="$2" pid="$3"
    for _ in $(seq 1 100); do
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            log "$what exited during startup"
            return 1
        fi
        if "$PSQL" -X -Atq -h 127.0.0.1 -p "$port" -U "$BENCH_USER" -d "$BENCH_DB" \
            -c 'SELECT 1' >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# Resident memory of a process in KiB.
rss_kib() {
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

# Prints "TPS<tab>average latency ms" from a pgbench output file, or "ERR<tab>ERR".
# pgbench 14+ prints "(without initial connection time)", older ones "(excluding
# connections establishing)".
pgbench_tps_latency() {
    awk '
        /^tps = / && (/without initial/ || /excluding/) && tps == "" { tps = $3 }
        /^tps = / && fallback == "" { fallback = $3 }
        /^latency average = / { lat = $4 }
        END {
            if (tps == "") tps = fallback
            if (tps == "" || lat == "") { print "ERR\tERR" } else { print tps "\t" lat }
        }' "$1"
}

# The audit benchmarks' setup: a cluster with `pgbench -i -s $SCALE` and three
# maskgate instances in front of it (audit off, on, on in strict mode) for
# $CLIENTS clients. Fills AUDIT_PORT and AUDIT_PID (keyed off, on, strict).
declare -A AUDIT_PORT AUDIT_PID
audit_targets_start() {
    bench_install_traps
    mg_build
    bench_make_tmp
    pg_start $((3 * CLIENTS + 40))
    "$PGBENCH" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U "$BENCH_USER" "$BENCH_DB" \
        >"$BENCH_TMP/pgbench-init.log" 2>&1 || die "pgbench -i failed"
    local target section
    for target in off on strict; do
        case "$target" in
        off) section="" ;;
        on) section="$(mg_audit_section "$BENCH_TMP/keys-on")" ;;
        strict) section="$(mg_audit_section "$BENCH_TMP/keys-strict" 'strict = true')" ;;
        esac
        mg_start $((CLIENTS + 20)) 8 "audit-$target" "$section"
        AUDIT_PORT[$target]=$MG_PORT
        AUDIT_PID[$target]=$MG_PID
    done
}
