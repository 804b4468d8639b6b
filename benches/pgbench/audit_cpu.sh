#!/usr/bin/env bash
# The audit trail's cost in CPU time rather than throughput: a fixed number of
# pgbench -S transactions through maskgate with audit off, on and strict, and the
# CPU time (user + system, from /proc) each maskgate process spent on them.
# CPU time per transaction does not depend on what else the machine runs, so this
# measures the trail's own cost even on a loaded machine, where TPS ratios are
# noise. See README.md in this folder.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=3
TRANSACTIONS=20000
SCALE=10
CLIENTS=8
MODES="simple,extended,prepared"

usage() {
    cat <<EOF
usage: $0 [options]
  --rounds N          rounds (default $ROUNDS)
  --transactions N    transactions per client and run (default $TRANSACTIONS / clients)
  --clients N         pgbench clients (default $CLIENTS)
  --modes LIST        pgbench query modes (default $MODES)
  --maskgate-bin PATH use this maskgate binary instead of building one
  --keep              keep the work dir
EOF
}

while (($#)); do
    case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --transactions) TRANSACTIONS="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --modes) MODES="$2"; shift 2 ;;
    --maskgate-bin) MG_BIN="$2"; shift 2 ;;
    --keep) BENCH_KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
    esac
done
IFS=, read -r -a MODE_LIST <<<"$MODES"
PER_CLIENT=$((TRANSACTIONS / CLIENTS))

# CPU time of a process in clock ticks: utime + stime (fields 14 and 15 of
# /proc/PID/stat, counted after the command name, which may hold spaces).
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

audit_targets_start
TARGET_LIST=(off on strict)
TICK_US=$((1000000 / $(getconf CLK_TCK)))

RESULTS="$BENCH_TMP/results.tsv"
for ((r = 1; r <= ROUNDS; r++)); do
    for m in "${MODE_LIST[@]}"; do
        for ((i = 0; i < 3; i++)); do
            t="${TARGET_LIST[$(((i + r - 1) % 3))]}"
            out="$BENCH_TMP/last.out"
            before=$(cpu_ticks "${AUDIT_PID[$t]}")
            "$PGBENCH" -S -n -t "$PER_CLIENT" -M "$m" -c "$CLIENTS" -j 2 \
                -h 127.0.0.1 -p "${AUDIT_PORT[$t]}" -U "$BENCH_USER" "$BENCH_DB" >"$out" 2>&1 ||
                { tail -n 5 "$out" >&2; die "pgbench failed against audit-$t"; }
            after=$(cpu_ticks "${AUDIT_PID[$t]}")
            us=$(awk -v d=$((after - before)) -v tick="$TICK_US" -v n=$((PER_CLIENT * CLIENTS)) \
                'BEGIN { printf "%.2f", d * tick / n }')
            printf '%s\t%s\t%s\t%s\n' "$r" "$m" "$t" "$us" >>"$RESULTS"
            log "round $r $m audit-$t: ${us} µs of maskgate CPU per transaction"
        done
    done
done

awk -F'\t' '
    { us[$2 SUBSEP $3] = us[$2 SUBSEP $3] " " $4; modes[$2] = 1 }
    function median(list,   a, n, i, j, t) {
        n = split(list, a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END {
        print "| mode | µs/tx audit off | µs/tx audit on | µs/tx strict | on/off | strict/off |"
        print "|---|---|---|---|---|---|"
        for (m in modes) {
            off = median(us[m SUBSEP "off"]); on = median(us[m SUBSEP "on"]); st = median(us[m SUBSEP "strict"])
            printf "| %s | %.2f | %.2f | %.2f | %.3f | %.3f |\n", m, off, on, st, on / off, st / off
        }
    }' "$RESULTS"
