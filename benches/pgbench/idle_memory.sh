#!/usr/bin/env bash
# Resident memory per idle client connection: the proxy's VmRSS before and while
# N clients (default 1,000) sit idle on it after one `SELECT 1` each. In session
# mode every client also pins one upstream connection, so its buffers count too.
# See README.md in this folder.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLIENTS=1000
TARGET=maskgate
IDLE_BIN=""
LIMIT_KIB=100

usage() {
    cat <<EOF
usage: $0 [options]
  --clients N         idle client connections to hold (default $CLIENTS)
  --target T          maskgate or pgbouncer (for comparison) (default $TARGET)
  --maskgate-bin PATH use this maskgate binary instead of building one
  --idle-bin PATH     use this idle_clients executable instead of building the bench
  --keep              keep the work dir (logs, configs) after the run
  -h, --help          this text
EOF
}

while (($#)); do
    case "$1" in
    --clients) CLIENTS="$2"; shift 2 ;;
    --target) TARGET="$2"; shift 2 ;;
    --maskgate-bin) MG_BIN="$2"; shift 2 ;;
    --idle-bin) IDLE_BIN="$2"; shift 2 ;;
    --keep) BENCH_KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
    esac
done
[[ "$CLIENTS" =~ ^[1-9][0-9]*$ ]] || die "not a client count: $CLIENTS"
[[ "$TARGET" == maskgate || "$TARGET" == pgbouncer ]] || die "unknown target: $TARGET"

bench_install_traps

if [[ -z "$IDLE_BIN" ]]; then
    log "cargo bench --bench idle_clients --no-run"
    IDLE_BIN="$(cd "$BENCH_ROOT" && cargo bench --bench idle_clients --no-run --message-format=json-render-diagnostics |
        sed -n 's/.*"executable":"\([^"]*idle_clients[^"]*\)".*/\1/p' | tail -n 1)"
    [[ -n "$IDLE_BIN" ]] || die "could not build the idle_clients bench"
fi
[[ -x "$IDLE_BIN" ]] || die "$IDLE_BIN is not executable"
[[ "$TARGET" == maskgate ]] && mg_build

# Each client needs a socket in this shell's children and two in the proxy.
want_fds=$((3 * CLIENTS + 256))
if (($(ulimit -n) < want_fds)); then
    ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    (($(ulimit -n) >= want_fds)) || log "warning: open-file limit $(ulimit -n) may be too low for $CLIENTS clients"
fi

bench_make_tmp
pg_start $((CLIENTS + 60))

case "$TARGET" in
maskgate)
    mg_start $((CLIENTS + 100)) 8
    port="$MG_PORT"
    pid="$MG_PID"
    ;;
pgbouncer)
    pgb_start $((CLIENTS + 20))
    port="$PGB_PORT"
    pid="$(cat "$PGB_PIDFILE")"
    ;;
esac

# A few sessions first, so that lazily built state is in the baseline.
for _ in 1 2 3; do
    "$PSQL" -X -Atq -h 127.0.0.1 -p "$port" -U "$BENCH_USER" -d "$BENCH_DB" -c 'SELECT 1' >/dev/null
done
sleep 1
rss_before="$(rss_kib "$pid")"

hold=6
out="$BENCH_TMP/idle_clients.out"
: >"$out"
log "opening $CLIENTS idle clients against $TARGET (then idle for ${hold}s)"
MASKGATE_BENCH_URL="host=127.0.0.1 port=$port user=$BENCH_USER dbname=$BENCH_DB password=$BENCH_PASSWORD sslmode=disable" \
    MASKGATE_BENCH_CLIENTS="$CLIENTS" MASKGATE_BENCH_HOLD_SECS="$hold" \
    "$IDLE_BIN" >"$out" 2>&1 &
idle_pid=$!
BENCH_CHILD_PIDS+=" $idle_pid"

ready=0
for _ in $(seq 1 1200); do
    if grep -q '^idle_clients: holding' "$out"; then
        ready=1
        break
    fi
    kill -0 "$idle_pid" 2>/dev/null || break
    sleep 0.1
done
if ((!ready)); then
    cat "$out" >&2
    die "idle_clients did not get to the holding phase"
fi
sleep 2
kill -0 "$pid" 2>/dev/null || die "$TARGET exited while the clients were idle"
rss_idle="$(rss_kib "$pid")"
connected="$(sed -n 's/^idle_clients: holding \([0-9]*\) idle.*/\1/p' "$out")"
wait "$idle_pid" || true
sleep 2
rss_after="$(rss_kib "$pid")"

cat "$out" >&2
printf '\n## Idle client memory: %s, %s clients requested\n\n' "$TARGET" "$CLIENTS"
printf '| connected | RSS before KiB | RSS with idle clients KiB | RSS after release KiB | KiB per idle client |\n'
printf '|---:|---:|---:|---:|---:|\n'
if ((connected > 0)); then
    per_client="$(awk -v a="$rss_idle" -v b="$rss_before" -v n="$connected" 'BEGIN { printf "%.1f", (a - b) / n }')"
else
    per_client="-"
fi
printf '| %s | %s | %s | %s | %s |\n' "$connected" "$rss_before" "$rss_idle" "$rss_after" "$per_client"
if [[ "$TARGET" == maskgate && "$per_client" != "-" ]]; then
    verdict="$(awk -v p="$per_client" -v l="$LIMIT_KIB" 'BEGIN { print (p <= l) ? "met" : "MISSED" }')"
    printf '\nTarget at most %s KiB per idle client: %s\n' "$LIMIT_KIB" "$verdict"
fi
((connected == CLIENTS)) || log "warning: only $connected of $CLIENTS clients connected"
