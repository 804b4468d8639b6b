#!/usr/bin/env bash
# What a row filter through a foreign key costs PostgreSQL: lookups on a child table
# that carries only the participant's id ("TheBHYT"), as the provincial officer's
# rewrite sends them (masking subquery, nguoi_id IN (in-scope participants)), against
# the same lookups unfiltered, both run directly on PostgreSQL as the table owner,
# interleaved in rounds. See README.md in this folder.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=3
SECONDS_PER_RUN=10
ROWS=1000000
CLIENTS=2
MODES="prepared,simple"
PROVINCES=63
OFFICER="officer_bench"

usage() {
    cat <<EOF
usage: $0 [options]
  --rounds N          rounds; each runs every lookup both ways (default $ROUNDS)
  --seconds S         duration of one pgbench run (default $SECONDS_PER_RUN)
  --rows N            participants, one card each (default $ROWS)
  --clients N         pgbench clients (default $CLIENTS)
  --modes LIST        pgbench query modes, comma separated (default $MODES)
  --maskgate-bin PATH use this maskgate binary (only for policy explain) instead of building one
  --keep              keep the work dir after the run
  -h, --help          this text
EOF
}

while (($#)); do
    case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --seconds) SECONDS_PER_RUN="$2"; shift 2 ;;
    --rows) ROWS="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --modes) MODES="$2"; shift 2 ;;
    --maskgate-bin) MG_BIN="$2"; shift 2 ;;
    --keep) BENCH_KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
    esac
done
for n in "$ROUNDS" "$SECONDS_PER_RUN" "$ROWS" "$CLIENTS"; do
    [[ "$n" =~ ^[0-9]+$ ]] || die "not a number: $n"
done
((ROWS >= PROVINCES)) || die "--rows must be at least $PROVINCES"
IFS=, read -r -a MODE_LIST <<<"$MODES"

bench_install_traps
mg_build
bench_make_tmp
pg_start $((CLIENTS + 20))

# Row n is in province 01 when n % 63 = 1; its card has id n and nguoi_id n.
log "loading $ROWS participants and their cards"
"$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$BENCH_USER" -d "$BENCH_DB" \
    >"$BENCH_TMP/load.log" 2>&1 <<EOF || { tail -n 20 "$BENCH_TMP/load.log" >&2; die "loading failed"; }
CREATE TABLE participant (
    id bigint PRIMARY KEY, citizen_id char(12) NOT NULL, social_insurance_code char(10) NOT NULL,
    full_name text NOT NULL, date_of_birth date NOT NULL, gender char(1) NOT NULL, phone text,
    email text, address text, province_code char(2) NOT NULL, employer_id bigint,
    registered_on date NOT NULL
);
INSERT INTO participant
SELECT n, (100000000000 + n)::text, (1000000000 + n)::text, 'Nguyễn Văn Người ' || n,
       date '1950-01-01' + ((n * 7919) % 25000)::int, 'F', NULL, 'p' || n || '@example.vn', NULL,
       lpad(((n - 1) % $PROVINCES + 1)::text, 2, '0'), NULL, date '2000-01-01' + (n % 9000)::int
FROM generate_series(1::bigint, $ROWS) AS n;
CREATE TABLE "TheBHYT" (
    id bigint PRIMARY KEY, nguoi_id bigint NOT NULL REFERENCES participant (id),
    "số thẻ" varchar(15) NOT NULL UNIQUE, "nơi đăng ký" text, valid_to date NOT NULL
);
INSERT INTO "TheBHYT"
SELECT n, n, 'HT3' || lpad(n::text, 12, '0'), 'Bệnh viện ' || (n % 11), date '2026-06-30'
FROM generate_series(1::bigint, $ROWS) AS n;
CREATE INDEX the_bhyt_nguoi_id_idx ON "TheBHYT" (nguoi_id);
VACUUM ANALYZE participant, "TheBHYT";
EOF

# The example policy and a provincial officer of province 01, for policy explain.
mg_dir="$BENCH_TMP/maskgate"
mkdir -p "$mg_dir/policy"
cp "$BENCH_ROOT/examples/policy/classification.toml" "$BENCH_ROOT/examples/policy/roles.toml" "$mg_dir/policy/"
verifier="$(random_secret | "$MG_BIN" passwd "$OFFICER" 2>"$BENCH_TMP/passwd.log")" ||
    { cat "$BENCH_TMP/passwd.log" >&2; die "maskgate passwd failed"; }
cat >"$mg_dir/policy/officer.toml" <<EOF
[accounts.$OFFICER]
name = "pgbench provincial officer"
$verifier
roles = ["provincial_officer"]
attributes = { province = "01" }
networks = ["127.0.0.1/32"]
EOF
chmod 600 "$mg_dir/policy/officer.toml"
cat >"$mg_dir/maskgate.toml" <<EOF
[server]
listen = "127.0.0.1:1"
[tls]
mode = "disable"
[upstream]
host = "127.0.0.1"
port = $PG_PORT
database = "$BENCH_DB"
user = "$BENCH_USER"
password_env = "MASKGATE_UPSTREAM_PASSWORD"
tls = "disable"
[policy]
dir = "policy"
EOF

# shellcheck disable=SC2016 # $1 is SQL, not shell
declare -A LOOKUPS=(
    [by_id]='SELECT id, nguoi_id, "số thẻ", "nơi đăng ký", valid_to FROM "TheBHYT" WHERE id = $1'
    [by_holder]='SELECT id, nguoi_id, "số thẻ", "nơi đăng ký", valid_to FROM "TheBHYT" WHERE nguoi_id = $1'
)
NAMES=(by_id by_holder)

rewritten() {
    MASKGATE_UPSTREAM_PASSWORD="$BENCH_PASSWORD" "$MG_BIN" policy explain --config "$mg_dir/maskgate.toml" \
        --user "$OFFICER" --sql "$1" 2>"$BENCH_TMP/explain.log" |
        sed -n '/^  sent upstream:$/ { n; s/^    //p; q; }'
}

# $1: the statement, $2: the script name without -bind.sql / -simple.sql.
write_script() {
    local per_province=$(((ROWS - 1) / PROVINCES)) mode value
    for mode in bind simple; do
        value=":n"
        [[ "$mode" == simple ]] && value="':n'"
        cat >"$2-$mode.sql" <<EOF
\\set k random(0, $per_province)
\\set n 1 + $PROVINCES * :k
${1//\$1/$value};
EOF
    done
}

for name in "${NAMES[@]}"; do
    sql="${LOOKUPS[$name]}"
    filtered="$(rewritten "$sql")" || true
    [[ "$filtered" == *'IN (SELECT "participant"."id"'* ]] ||
        { cat "$BENCH_TMP/explain.log" >&2; die "policy explain did not show the filter through participant"; }
    log "$name rewritten: $filtered"
    write_script "$sql" "$BENCH_TMP/$name-plain"
    write_script "$filtered" "$BENCH_TMP/$name-filtered"
    "$PSQL" -X -Atq -h 127.0.0.1 -p "$PG_PORT" -U "$BENCH_USER" -d "$BENCH_DB" \
        -c "EXPLAIN ${filtered//\$1/64}" >"$BENCH_TMP/$name-plan.txt"
    ! grep -q "Seq Scan" "$BENCH_TMP/$name-plan.txt" ||
        { cat "$BENCH_TMP/$name-plan.txt" >&2; die "the filtered $name lookup is not an index scan"; }
done

run_pgbench() {
    local script="$1" mode="$2" out="$BENCH_TMP/last-pgbench.out"
    if [[ "$mode" == simple ]]; then script+="-simple.sql"; else script+="-bind.sql"; fi
    if ! "$PGBENCH" -n -f "$script" -T "$SECONDS_PER_RUN" -M "$mode" -c "$CLIENTS" -j "$CLIENTS" \
        -h 127.0.0.1 -p "$PG_PORT" -U "$BENCH_USER" "$BENCH_DB" >"$out" 2>&1 ||
        grep -q '^number of failed transactions: [1-9]' "$out"; then
        tail -n 5 "$out" >&2
        printf 'ERR\tERR\n'
        return 0
    fi
    pgbench_tps_latency "$out"
}

RESULTS="$BENCH_TMP/results.tsv"
for ((r = 1; r <= ROUNDS; r++)); do
    for m in "${MODE_LIST[@]}"; do
        for name in "${NAMES[@]}"; do
            for kind in plain filtered; do
                [[ $((r % 2)) == 0 ]] && kind="$([[ $kind == plain ]] && echo filtered || echo plain)"
                res="$(run_pgbench "$BENCH_TMP/$name-$kind" "$m")"
                printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$m" "$name" "$kind" "$res" >>"$RESULTS"
                log "round $r $m $name $kind: tps ${res%%$'\t'*}"
            done
        done
    done
done

printf '\n## Card lookups, %s participants, %s clients, %s rounds x %ss, median of rounds\n\n' \
    "$ROWS" "$CLIENTS" "$ROUNDS" "$SECONDS_PER_RUN"
printf 'plain: unfiltered; filtered: the rewrite for provincial_officer (path through participant). Both on PostgreSQL %s directly.\n\n' \
    "$("$PG_BINDIR/postgres" --version | awk '{print $3}')"
awk -F'\t' '
    function median(key,    n, i, j, t, a) {
        n = cnt[key]; if (n == 0) return ""
        for (i = 1; i <= n; i++) a[i] = val[key, i]
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    $5 != "ERR" { k = $2 SUBSEP $3 SUBSEP $4; cnt[k]++; val[k, cnt[k]] = $5 + 0; seen[$2 SUBSEP $3] = 1 }
    END {
        print "| mode | lookup | TPS plain | TPS filtered | filtered/plain |"
        print "|---|---|---:|---:|---:|"
        for (s in seen) {
            split(s, p, SUBSEP)
            a = median(s SUBSEP "plain"); b = median(s SUBSEP "filtered")
            printf "| %s | %s | %.0f | %.0f | %.2fx |\n", p[1], p[2], a, b, (a > 0 ? b / a : 0)
        }
    }' "$RESULTS"
