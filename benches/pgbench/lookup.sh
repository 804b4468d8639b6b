#!/usr/bin/env bash
# End-to-end cost of full enforcement: a counter clerk's lookups on the protected,
# masked, row-filtered participant table through maskgate, against the same
# lookups sent unmasked to PostgreSQL directly and through PgBouncer (session
# mode), interleaved in rounds. See README.md in this folder.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=3
SECONDS_PER_RUN=10
ROWS=1000000
WARMUP=3
MODES="prepared,extended,simple"
CLIENTS=8
RAW_OUT=""
CLERK_USER="clerk_bench"
CLERK_PASSWORD=""
# The clerk's province: the account's `province` attribute, substituted into the
# role's row filter `province_code = :province`.
CLERK_PROVINCE="01"
PROVINCES=63
TARGETS="direct,pgbouncer,maskgate,rewritten"
# What the clerk's application sends; $1 becomes pgbench's :cid.
# shellcheck disable=SC2016 # $1 is SQL, not shell
LOOKUP='SELECT id, full_name, citizen_id, date_of_birth FROM participant WHERE citizen_id = $1'

usage() {
    cat <<EOF
usage: $0 [options]
  --rounds N          rounds; each runs every mode on every target (default $ROUNDS)
  --seconds S         duration of one pgbench run (default $SECONDS_PER_RUN)
  --rows N            rows in the participant table (default $ROWS)
  --clients N         pgbench clients (default $CLIENTS)
  --warmup S          seconds of warm-up per target before round 1, 0 = none (default $WARMUP)
  --modes LIST        pgbench query modes, comma separated (default $MODES)
  --targets LIST      any of direct,pgbouncer,maskgate,rewritten (default $TARGETS)
  --maskgate-bin PATH use this maskgate binary instead of building one
  --raw FILE          also write every single measurement as TSV to FILE
  --keep              keep the work dir (logs, configs, scripts) after the run
  -h, --help          this text
EOF
}

while (($#)); do
    case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --seconds) SECONDS_PER_RUN="$2"; shift 2 ;;
    --rows) ROWS="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --modes) MODES="$2"; shift 2 ;;
    --targets) TARGETS="$2"; shift 2 ;;
    --maskgate-bin) MG_BIN="$2"; shift 2 ;;
    --raw) RAW_OUT="$2"; shift 2 ;;
    --keep) BENCH_KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
    esac
done

for n in "$ROUNDS" "$SECONDS_PER_RUN" "$ROWS" "$CLIENTS" "$WARMUP"; do
    [[ "$n" =~ ^[0-9]+$ ]] || die "not a number: $n"
done
((ROUNDS >= 1 && SECONDS_PER_RUN >= 1 && CLIENTS >= 1)) || die "rounds, seconds and clients must be at least 1"
((ROWS >= PROVINCES && ROWS <= 899999999999)) || die "--rows must be between $PROVINCES and 899999999999"
IFS=, read -r -a MODE_LIST <<<"$MODES"
for m in "${MODE_LIST[@]}"; do
    [[ "$m" == simple || "$m" == extended || "$m" == prepared ]] || die "unknown mode: $m"
done
IFS=, read -r -a TARGET_LIST <<<"$TARGETS"
for t in "${TARGET_LIST[@]}"; do
    [[ "$t" == direct || "$t" == pgbouncer || "$t" == maskgate || "$t" == rewritten ]] ||
        die "unknown target: $t"
done

bench_install_traps
mg_build
bench_make_tmp
pg_start $((3 * CLIENTS + 40))

# The register table as examples/policy/classification.toml declares it. Every value
# derives from the row number n:
#   citizen_id            = 100000000000 + n, 12 digits (so pgbench can compute it)
#   social_insurance_code = 1000000000 + n, 10 digits
#   province_code         = 01..63 round robin: row n is in province 01 when n % 63 = 1
log "loading $ROWS participants"
"$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$BENCH_USER" -d "$BENCH_DB" \
    >"$BENCH_TMP/load.log" 2>&1 <<EOF || { tail -n 20 "$BENCH_TMP/load.log" >&2; die "loading the participant table failed"; }
CREATE TABLE participant (
    id bigint PRIMARY KEY,
    citizen_id char(12) NOT NULL,
    social_insurance_code char(10) NOT NULL,
    full_name text NOT NULL,
    date_of_birth date NOT NULL,
    gender char(1) NOT NULL,
    phone text,
    email text,
    address text,
    province_code char(2) NOT NULL,
    employer_id bigint,
    registered_on date NOT NULL
);
INSERT INTO participant
SELECT n,
       (100000000000 + n)::text,
       (1000000000 + n)::text,
       (ARRAY['Nguyễn', 'Trần', 'Lê', 'Phạm', 'Hoàng', 'Võ'])[n % 6 + 1]
           || ' ' || (ARRAY['Văn', 'Thị', 'Minh', 'Quốc'])[n % 4 + 1]
           || ' Participant ' || n,
       date '1950-01-01' + ((n * 7919) % 25000)::int,
       CASE WHEN n % 2 = 0 THEN 'F' ELSE 'M' END,
       '09' || lpad((n % 100000000)::text, 8, '0'),
       'participant' || n || '@example.vn',
       n || ' Đường Trần Hưng Đạo',
       lpad(((n - 1) % $PROVINCES + 1)::text, 2, '0'),
       n % 50000 + 1,
       date '2000-01-01' + (n % 9000)::int
FROM generate_series(1::bigint, $ROWS) AS n;
CREATE UNIQUE INDEX participant_citizen_id ON participant (citizen_id);
CREATE UNIQUE INDEX participant_social_insurance_code ON participant (social_insurance_code);
VACUUM ANALYZE participant;
EOF

pgb_start $((CLIENTS + 8))

# maskgate's policy: the example classification and roles, and a clerk account like
# clerk_hanoi_01 without its hours, days and session limits. mg_start (lib.sh) adds
# its unrestricted bench account to this directory and leaves these files alone.
policy_dir="$BENCH_TMP/maskgate/policy"
mkdir -p "$policy_dir"
cp "$BENCH_ROOT/examples/policy/classification.toml" "$policy_dir/"
# The clerk role's 60 statements per minute would stop a benchmark after a second;
# the quota stays configured (and counted), just out of reach.
sed '/^\[roles\.clerk\]$/,/^\[/ s/^statements_per_minute = .*/statements_per_minute = 1000000000/' \
    "$BENCH_ROOT/examples/policy/roles.toml" >"$policy_dir/roles.toml"
grep -q '^statements_per_minute = 1000000000$' "$policy_dir/roles.toml" ||
    die "could not lift the clerk's statements_per_minute in examples/policy/roles.toml"
CLERK_PASSWORD="$(random_secret)"
clerk_verifier="$(printf '%s\n' "$CLERK_PASSWORD" | "$MG_BIN" passwd "$CLERK_USER" 2>"$BENCH_TMP/passwd.log")" ||
    { cat "$BENCH_TMP/passwd.log" >&2; die "maskgate passwd failed"; }
cat >"$policy_dir/clerk.toml" <<EOF
[accounts.$CLERK_USER]
name = "pgbench counter clerk"
$clerk_verifier
roles = ["clerk"]
attributes = { province = "$CLERK_PROVINCE" }
networks = ["127.0.0.1/32"]
EOF
chmod 600 "$policy_dir/clerk.toml"
mg_start $((CLIENTS + 100)) 8

MASKGATE_UPSTREAM_PASSWORD="$BENCH_PASSWORD" "$MG_BIN" policy check --config "$MG_CONFIG" >"$BENCH_TMP/policy-check.log" 2>&1 ||
    { cat "$BENCH_TMP/policy-check.log" >&2; die "maskgate policy check failed"; }

# Lookups of participants in the clerk's province only, so every lookup finds one
# row on every target: the unmasked one directly and through PgBouncer, the masked
# one through maskgate. pgbench substitutes :cid as a bind parameter in extended and
# prepared mode (typed by PostgreSQL from the char(12) column) and as text in simple
# mode, where it needs the quotes. $1 is the only placeholder in both statements.
# $1: the statement, $2: the file name without -bind.sql / -simple.sql.
write_script() {
    local per_province=$(((ROWS - 1) / PROVINCES)) mode value
    for mode in bind simple; do
        value=":cid"
        [[ "$mode" == simple ]] && value="':cid'"
        cat >"$2-$mode.sql" <<EOF
\\set k random(0, $per_province)
\\set cid 100000000001 + $PROVINCES * :k
${1//\$1/$value};
EOF
    done
}
SCRIPT="$BENCH_TMP/lookup"
write_script "$LOOKUP" "$SCRIPT"

# The `rewritten` target: PostgreSQL alone running the statement maskgate sends
# upstream for the clerk (from `maskgate policy explain --sql`), as the table
# owner, no proxy. Its distance to `direct` is what the masks and the fence cost
# PostgreSQL; the rest of maskgate's distance is the proxy's own work.
REWRITTEN="$BENCH_TMP/rewritten"
if [[ " ${TARGET_LIST[*]} " == *" rewritten "* ]]; then
    rewritten_sql="$(MASKGATE_UPSTREAM_PASSWORD="$BENCH_PASSWORD" "$MG_BIN" policy explain \
        --config "$MG_CONFIG" --user "$CLERK_USER" --sql "$LOOKUP" 2>"$BENCH_TMP/explain.log" |
        sed -n '/^  sent upstream:$/ { n; s/^    //p; q; }')" || true
    # shellcheck disable=SC2016 # $1 is SQL, not shell
    [[ "$rewritten_sql" == *'"public"."participant"'*'$1'* ]] ||
        { cat "$BENCH_TMP/explain.log" >&2; die "maskgate policy explain --sql did not show the rewritten lookup"; }
    write_script "$rewritten_sql" "$REWRITTEN"
fi

# psql as the clerk through maskgate; prints the rows, unaligned.
clerk_psql() {
    PGPASSWORD="$CLERK_PASSWORD" "$PSQL" -X -Atq -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$MG_PORT" \
        -U "$CLERK_USER" -d "$BENCH_DB" -c "$1"
}

# Before measuring: the clerk really is enforced (masked, filtered, lookup-only).
log "checking enforcement for $CLERK_USER"
if ! got="$(clerk_psql "SELECT id, citizen_id, date_of_birth FROM participant WHERE citizen_id = '100000000001'" 2>&1)"; then
    log "maskgate refused the clerk's lookup: $got"
    die "maskgate does not serve the clerk account; this benchmark needs statement enforcement in the proxy"
fi
[[ "$got" == "1|********0001|$("$PSQL" -X -Atq -h 127.0.0.1 -p "$PG_PORT" -U "$BENCH_USER" -d "$BENCH_DB" \
    -c "SELECT date_trunc('year', date_of_birth)::date FROM participant WHERE id = 1")" ]] ||
    die "the clerk's lookup is not masked as the policy says: got '$got'"
got="$(clerk_psql "SELECT id FROM participant WHERE citizen_id = '100000000002'" 2>&1)" ||
    die "the clerk's lookup outside the province failed: $got"
[[ -z "$got" ]] || die "the clerk sees a participant outside province $CLERK_PROVINCE"
if got="$(clerk_psql "SELECT count(*) FROM participant" 2>&1)"; then
    die "an unpinned query on the lookup-only table was allowed: $got"
fi
[[ "$got" == *lookup-only* ]] || die "an unpinned query failed, but not with the lookup-only denial: $got"
log "enforcement checked: masked, filtered to province $CLERK_PROVINCE, lookup-only"

port_of() {
    case "$1" in
    direct | rewritten) printf '%s\n' "$PG_PORT" ;;
    pgbouncer) printf '%s\n' "$PGB_PORT" ;;
    maskgate) printf '%s\n' "$MG_PORT" ;;
    esac
}

# One pgbench run; prints "tps<TAB>latency_ms" or "ERR<TAB>ERR".
run_pgbench() {
    local target="$1" mode="$2" secs="$3" port jobs out user password script
    port="$(port_of "$target")"
    jobs=$((CLIENTS < 2 ? CLIENTS : 2))
    user="$BENCH_USER" password="$BENCH_PASSWORD" script="$SCRIPT"
    case "$target" in
    maskgate) user="$CLERK_USER" password="$CLERK_PASSWORD" ;;
    rewritten) script="$REWRITTEN" ;;
    esac
    if [[ "$mode" == simple ]]; then script+="-simple.sql"; else script+="-bind.sql"; fi
    out="$BENCH_TMP/last-pgbench.out"
    if ! PGPASSWORD="$password" "$PGBENCH" -n -f "$script" -T "$secs" -M "$mode" -c "$CLIENTS" -j "$jobs" \
        -h 127.0.0.1 -p "$port" -U "$user" "$BENCH_DB" >"$out" 2>&1; then
        log "pgbench failed against $target ($mode):"
        tail -n 5 "$out" >&2
        printf 'ERR\tERR\n'
        return 0
    fi
    # A run in which a lookup failed does not count (pgbench 15 may still exit 0).
    if grep -q '^number of failed transactions: [1-9]' "$out"; then
        log "pgbench had failed transactions against $target ($mode):"
        tail -n 5 "$out" >&2
        printf 'ERR\tERR\n'
        return 0
    fi
    pgbench_tps_latency "$out"
}

RESULTS="$BENCH_TMP/results.tsv"
printf 'round\tmode\ttarget\ttps\tlatency_ms\n' >"$RESULTS"

if ((WARMUP > 0)); then
    log "warm-up: ${WARMUP}s per target and mode"
    for m in "${MODE_LIST[@]}"; do
        for t in "${TARGET_LIST[@]}"; do
            run_pgbench "$t" "$m" "$WARMUP" >/dev/null
        done
    done
fi

ntargets=${#TARGET_LIST[@]}
total=$((ROUNDS * ${#MODE_LIST[@]} * ntargets))
log "$total runs of ${SECONDS_PER_RUN}s at $CLIENTS clients (about $((total * (SECONDS_PER_RUN + 1) / 60 + 1)) min)"
done_runs=0
for ((r = 1; r <= ROUNDS; r++)); do
    for m in "${MODE_LIST[@]}"; do
        # The starting target rotates per round, so no target always runs first.
        for ((i = 0; i < ntargets; i++)); do
            t="${TARGET_LIST[$(((i + r - 1) % ntargets))]}"
            res="$(run_pgbench "$t" "$m" "$SECONDS_PER_RUN")"
            printf '%s\t%s\t%s\t%s\n' "$r" "$m" "$t" "$res" >>"$RESULTS"
            done_runs=$((done_runs + 1))
            log "[$done_runs/$total] round $r $m $t: tps ${res%%$'\t'*} lat ${res##*$'\t'} ms"
        done
    done
done

[[ -n "$RAW_OUT" ]] && cp "$RESULTS" "$RAW_OUT"

printf '\n## Lookups on participant (%s rows), %s clients, %s rounds x %ss, median of rounds\n\n' \
    "$ROWS" "$CLIENTS" "$ROUNDS" "$SECONDS_PER_RUN"
printf 'direct and pgbouncer: unmasked, as the table owner; maskgate: %s (role clerk: masked, province %s, lookup-only)\n' \
    "$CLERK_USER" "$CLERK_PROVINCE"
printf 'Host: %s cores, %s; PostgreSQL %s; %s\n\n' "$(nproc)" "$(uname -sr)" \
    "$("$PG_BINDIR/postgres" --version | awk '{print $3}')" \
    "$("$PGB_BIN" --version 2>/dev/null | head -n 1)"

awk -F'\t' -v modes="$MODES" '
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
    NR == 1 { next }
    {
        if ($4 == "ERR") { errors[$3]++; next }
        k = $2 SUBSEP $3
        cnt["tps" SUBSEP k]++; val["tps" SUBSEP k, cnt["tps" SUBSEP k]] = $4 + 0
        cnt["lat" SUBSEP k]++; val["lat" SUBSEP k, cnt["lat" SUBSEP k]] = $5 + 0
    }
    END {
        nm = split(modes, M, ",")
        print "| mode | TPS direct | TPS pgbouncer | TPS maskgate | TPS rewritten | maskgate/direct | maskgate/pgbouncer | pgbouncer/direct | rewritten/direct | lat direct ms | lat pgbouncer ms | lat maskgate ms |"
        print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        for (i = 1; i <= nm; i++) {
            m = M[i]
            td = median("tps" SUBSEP m SUBSEP "direct")
            tb = median("tps" SUBSEP m SUBSEP "pgbouncer")
            tm = median("tps" SUBSEP m SUBSEP "maskgate")
            tr = median("tps" SUBSEP m SUBSEP "rewritten")
            rd = ratio(tm, td); rb = ratio(tm, tb)
            if (rd == "" || rb == "") verdict = verdict " " m ":incomplete"
            else if (rd < 0.75 || rb <= 1) verdict = verdict " " m ":MISSED"
            else verdict = verdict " " m ":met"
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", m,
                fmt(td, "%.0f"), fmt(tb, "%.0f"), fmt(tm, "%.0f"), fmt(tr, "%.0f"),
                fmt(rd, "%.2fx"), fmt(rb, "%.2fx"), fmt(ratio(tb, td), "%.2fx"), fmt(ratio(tr, td), "%.2fx"),
                fmt(median("lat" SUBSEP m SUBSEP "direct"), "%.3f"),
                fmt(median("lat" SUBSEP m SUBSEP "pgbouncer"), "%.3f"),
                fmt(median("lat" SUBSEP m SUBSEP "maskgate"), "%.3f")
        }
        print ""
        printf "Target (maskgate > pgbouncer TPS and maskgate >= 0.75x direct TPS), per mode:%s\n", verdict
        for (t in errors) printf "\nWARNING: %d failed pgbench runs against %s (left out of the medians)\n", errors[t], t
    }' "$RESULTS"
