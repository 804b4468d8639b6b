#!/usr/bin/env bash
# The audit trail's cost: pgbench -S through three maskgate instances in front of
# one cluster — audit off, audit on, audit on in strict mode — interleaved in
# rounds, the first target rotating. See README.md in this folder.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=3
SECONDS_PER_RUN=10
SCALE=10
CLIENTS=8
MODES="simple,extended,prepared"

usage() {
    cat <<EOF
usage: $0 [options]
  --rounds N          rounds (default $ROUNDS)
  --seconds S         duration of one pgbench run (default $SECONDS_PER_RUN)
  --clients N         pgbench clients (default $CLIENTS)
  --modes LIST        pgbench query modes (default $MODES)
  --maskgate-bin PATH use this maskgate binary instead of building one
  --keep              keep the work dir
EOF
}

while (($#)); do
    case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --seconds) SECONDS_PER_RUN="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --modes) MODES="$2"; shift 2 ;;
    --maskgate-bin) MG_BIN="$2"; shift 2 ;;
    --keep) BENCH_KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
    esac
done
IFS=, read -r -a MODE_LIST <<<"$MODES"

audit_targets_start
TARGET_LIST=(off on strict)

RESULTS="$BENCH_TMP/results.tsv"
for ((r = 1; r <= ROUNDS; r++)); do
    for m in "${MODE_LIST[@]}"; do
        for ((i = 0; i < 3; i++)); do
            t="${TARGET_LIST[$(((i + r - 1) % 3))]}"
            out="$BENCH_TMP/last.out"
            "$PGBENCH" -S -n -T "$SECONDS_PER_RUN" -M "$m" -c "$CLIENTS" -j 2 \
                -h 127.0.0.1 -p "${AUDIT_PORT[$t]}" -U "$BENCH_USER" "$BENCH_DB" >"$out" 2>&1 ||
                { tail -n 5 "$out" >&2; die "pgbench failed against audit-$t"; }
            printf '%s\t%s\t%s\t%s\n' "$r" "$m" "$t" "$(pgbench_tps_latency "$out" | cut -f1)" >>"$RESULTS"
            log "round $r $m audit-$t: $(tail -n 1 "$RESULTS" | cut -f4) tps"
        done
    done
done

awk -F'\t' '
    { tps[$2 SUBSEP $3] = tps[$2 SUBSEP $3] " " $4; modes[$2] = 1 }
    function median(list,   a, n, i, j, t) {
        n = split(list, a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END {
        print "| mode | TPS audit off | TPS audit on | TPS strict | on/off | strict/off |"
        print "|---|---|---|---|---|---|"
        for (m in modes) {
            off = median(tps[m SUBSEP "off"]); on = median(tps[m SUBSEP "on"]); st = median(tps[m SUBSEP "strict"])
            printf "| %s | %.0f | %.0f | %.0f | %.3f | %.3f |\n", m, off, on, st, on / off, st / off
        }
    }' "$RESULTS"
