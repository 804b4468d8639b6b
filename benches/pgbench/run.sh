#!/usr/bin/env bash
# End-to-end throughput and latency: pgbench against PostgreSQL directly, through
# PgBouncer (session mode) and through maskgate, interleaved in rounds so that
# machine drift hits all targets alike. See README.md in this folder.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=3
SECONDS_PER_RUN=10
SCALE=10
WARMUP=2
MODES="simple,extended,prepared"
CLIENTS="1,8,32"
TARGETS="direct,pgbouncer,maskgate"
CUSTOM=""
RAW_OUT=""

usage() {
    cat <<EOF
usage: $0 [options]
  --rounds N          rounds; each runs every cell on every target (default $ROUNDS)
  --seconds S         duration of one pgbench run (default $SECONDS_PER_RUN)
  --scale N           pgbench -i scale factor (default $SCALE)
  --warmup S          seconds of warm-up per target before round 1, 0 = none (default $WARMUP)
  --modes LIST        query modes, comma separated (default $MODES)
  --clients LIST      client counts, comma separated (default $CLIENTS)
  --targets LIST      any of direct,pgbouncer,maskgate (default $TARGETS)
  --custom FILE       run pgbench -f FILE instead of the built-in -S script
  --maskgate-bin PATH use this maskgate binary instead of building one
  --raw FILE          also write every single measurement as TSV to FILE
  --keep              keep the work dir (logs, configs) after the run
  -h, --help          this text
EOF
}

while (($#)); do
    case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --seconds) SECONDS_PER_RUN="$2"; shift 2 ;;
    --scale) SCALE="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --modes) MODES="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --targets) TARGETS="$2"; shift 2 ;;
    --custom) CUSTOM="$2"; shift 2 ;;
    --maskgate-bin) MG_BIN="$2"; shift 2 ;;
    --raw) RAW_OUT="$2"; shift 2 ;;
    --keep) BENCH_KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
    esac
done

for n in "$ROUNDS" "$SECONDS_PER_RUN" "$SCALE" "$WARMUP"; do
    [[ "$n" =~ ^[0-9]+$ ]] || die "not a number: $n"
done
((ROUNDS >= 1 && SECONDS_PER_RUN >= 1 && SCALE >= 1)) || die "rounds, seconds and scale must be at least 1"
IFS=, read -r -a MODE_LIST <<<"$MODES"
IFS=, read -r -a CLIENT_LIST <<<"$CLIENTS"
IFS=, read -r -a TARGET_LIST <<<"$TARGETS"
for m in "${MODE_LIST[@]}"; do
    [[ "$m" == simple || "$m" == extended || "$m" == prepared ]] || die "unknown mode: $m"
done
max_clients=1
for c in "${CLIENT_LIST[@]}"; do
    [[ "$c" =~ ^[1-9][0-9]*$ ]] || die "not a client count: $c"
    ((c > max_clients)) && max_clients=$c
done
for t in "${TARGET_LIST[@]}"; do
    [[ "$t" == direct || "$t" == pgbouncer || "$t" == maskgate ]] || die "unknown target: $t"
done
if [[ -n "$CUSTOM" ]]; then
    [[ -r "$CUSTOM" ]] || die "cannot read custom script $CUSTOM"
    CUSTOM="$(cd "$(dirname "$CUSTOM")" && pwd)/$(basename "$CUSTOM")"
fi

has_target() {
    local t
    for t in "${TARGET_LIST[@]}"; do [[ "$t" == "$1" ]] && return 0; done
    return 1
}

bench_install_traps
if has_target maskgate; then
    mg_build
fi
bench_make_tmp
# Every target may hold max_clients server connections at once (pools linger).
pg_start $((3 * max_clients + 40))

log "pgbench -i -s $SCALE"
"$PGBENCH" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U "$BENCH_USER" "$BENCH_DB" \
    >"$BENCH_TMP/pgbench-init.log" 2>&1 || { tail -n 20 "$BENCH_TMP/pgbench-init.log" >&2; die "pgbench -i failed"; }

has_target pgbouncer && pgb_start $((max_clients + 8))
has_target maskgate && mg_start $((max_clients + 100)) 8

port_of() {
    case "$1" in
    direct) printf '%s\n' "$PG_PORT" ;;
    pgbouncer) printf '%s\n' "$PGB_PORT" ;;
    maskgate) printf '%s\n' "$MG_PORT" ;;
    esac
}

# One pgbench run; prints "tps<TAB>latency_ms" or "ERR<TAB>ERR".
run_pgbench() {
    local target="$1" mode="$2" clients="$3" secs="$4" port jobs out
    port="$(port_of "$target")"
    jobs=$((clients < 2 ? clients : 2))
    local -a script=(-S)
    [[ -n "$CUSTOM" ]] && script=(-f "$CUSTOM")
    out="$BENCH_TMP/last-pgbench.out"
    if ! "$PGBENCH" "${script[@]}" -n -T "$secs" -M "$mode" -c "$clients" -j "$jobs" \
        -h 127.0.0.1 -p "$port" -U "$BENCH_USER" "$BENCH_DB" >"$out" 2>&1; then
        log "pgbench failed against $target ($mode, $clients clients):"
        tail -n 5 "$out" >&2
        printf 'ERR\tERR\n'
        return 0
    fi
    pgbench_tps_latency "$out"
}

RESULTS="$BENCH_TMP/results.tsv"
printf 'round\tmode\tclients\ttarget\ttps\tlatency_ms\n' >"$RESULTS"

if ((WARMUP > 0)); then
    log "warm-up: ${WARMUP}s per target"
    for t in "${TARGET_LIST[@]}"; do
        run_pgbench "$t" "${MODE_LIST[0]}" "$max_clients" "$WARMUP" >/dev/null
    done
fi

total=$((ROUNDS * ${#MODE_LIST[@]} * ${#CLIENT_LIST[@]} * ${#TARGET_LIST[@]}))
log "$total runs of ${SECONDS_PER_RUN}s (about $((total * (SECONDS_PER_RUN + 1) / 60 + 1)) min)"
done_runs=0
ntargets=${#TARGET_LIST[@]}
for ((r = 1; r <= ROUNDS; r++)); do
    for m in "${MODE_LIST[@]}"; do
        for c in "${CLIENT_LIST[@]}"; do
            # The starting target rotates per round, so no target always runs first.
            for ((i = 0; i < ntargets; i++)); do
                t="${TARGET_LIST[$(((i + r - 1) % ntargets))]}"
                res="$(run_pgbench "$t" "$m" "$c" "$SECONDS_PER_RUN")"
                printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$m" "$c" "$t" "$res" >>"$RESULTS"
                done_runs=$((done_runs + 1))
                log "[$done_runs/$total] round $r $m c=$c $t: tps ${res%%$'\t'*} lat ${res##*$'\t'} ms"
            done
        done
    done
done

[[ -n "$RAW_OUT" ]] && cp "$RESULTS" "$RAW_OUT"

workload="pgbench -S (select-only)"
[[ -n "$CUSTOM" ]] && workload="pgbench -f $(basename "$CUSTOM")"
printf '\n## %s, scale %s, %s rounds x %ss, median of rounds\n\n' "$workload" "$SCALE" "$ROUNDS" "$SECONDS_PER_RUN"
printf 'Host: %s cores, %s; PostgreSQL %s; %s\n\n' "$(nproc)" "$(uname -sr)" \
    "$("$PG_BINDIR/postgres" --version | awk '{print $3}')" \
    "$(has_target pgbouncer && "$PGB_BIN" --version 2>/dev/null | head -n 1 || echo 'no PgBouncer')"

awk -F'\t' -v modes="$MODES" -v clients="$CLIENTS" '
    function median(key,    n, i, j, tmp, a) {
        n = cnt[key]
        if (n == 0) return ""
        for (i = 1; i <= n; i++) a[i] = val[key, i]
        for (i = 2; i <= n; i++) {
            tmp = a[i]
            for (j = i - 1; j >= 1 && a[j] > tmp; j--) a[j + 1] = a[j]
            a[j + 1] = tmp
        }
        if (n % 2) return a[(n + 1) / 2]
        return (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function fmt(x, spec) { return x == "" ? "-" : sprintf(spec, x) }
    function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "" : a / b }
    function diff(a, b) { return (a == "" || b == "") ? "" : a - b }
    NR == 1 { next }
    {
        if ($5 == "ERR") { errors[$4]++; next }
        k = $2 SUBSEP $3 SUBSEP $4
        cnt["tps" SUBSEP k]++; val["tps" SUBSEP k, cnt["tps" SUBSEP k]] = $5 + 0
        cnt["lat" SUBSEP k]++; val["lat" SUBSEP k, cnt["lat" SUBSEP k]] = $6 + 0
    }
    END {
        nm = split(modes, M, ","); nc = split(clients, C, ",")
        print "| mode | clients | TPS direct | TPS pgbouncer | TPS maskgate | pgbouncer/direct | maskgate/direct | maskgate/pgbouncer | lat direct ms | lat pgbouncer ms | lat maskgate ms | +lat pgbouncer ms | +lat maskgate ms |"
        print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        for (i = 1; i <= nm; i++) for (j = 1; j <= nc; j++) {
            m = M[i]; c = C[j]
            td = median("tps" SUBSEP m SUBSEP c SUBSEP "direct")
            tb = median("tps" SUBSEP m SUBSEP c SUBSEP "pgbouncer")
            tm = median("tps" SUBSEP m SUBSEP c SUBSEP "maskgate")
            ld = median("lat" SUBSEP m SUBSEP c SUBSEP "direct")
            lb = median("lat" SUBSEP m SUBSEP c SUBSEP "pgbouncer")
            lm = median("lat" SUBSEP m SUBSEP c SUBSEP "maskgate")
            rb = ratio(tb, td); rm = ratio(tm, td); rmb = ratio(tm, tb)
            if (rb != "") { gb += log(rb); nb++ }
            if (rm != "") { gm += log(rm); nmg++ }
            if (rmb != "") {
                gmb += log(rmb); nmb++
                if (rmb < 1.3) tps_miss = tps_miss " " m "/" c
            }
            if (c == 1 && lb != "" && lm != "" && ld != "") {
                lat_checked = 1
                if (lm - ld > (lb - ld) / 2) lat_miss = lat_miss " " m
            }
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", m, c,
                fmt(td, "%.0f"), fmt(tb, "%.0f"), fmt(tm, "%.0f"),
                fmt(rb, "%.2fx"), fmt(rm, "%.2fx"), fmt(rmb, "%.2fx"),
                fmt(ld, "%.3f"), fmt(lb, "%.3f"), fmt(lm, "%.3f"),
                fmt(diff(lb, ld), "%+.3f"), fmt(diff(lm, ld), "%+.3f")
        }
        print ""
        printf "Geometric mean: pgbouncer/direct %s, maskgate/direct %s, maskgate/pgbouncer %s\n",
            nb ? sprintf("%.2fx", exp(gb / nb)) : "-",
            nmg ? sprintf("%.2fx", exp(gm / nmg)) : "-",
            nmb ? sprintf("%.2fx", exp(gmb / nmb)) : "-"
        if (nmb) {
            print ""
            printf "Target maskgate >= 1.3x pgbouncer TPS in every cell: %s\n",
                tps_miss == "" ? "met" : "MISSED in" tps_miss
            if (lat_checked)
                printf "Target maskgate added latency <= half of pgbouncer added latency at 1 client: %s\n",
                    lat_miss == "" ? "met" : "MISSED in" lat_miss
        }
        for (t in errors) printf "\nWARNING: %d failed pgbench runs against %s (left out of the medians)\n", errors[t], t
    }' "$RESULTS"
