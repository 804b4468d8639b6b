//! Regression cases for statements whose text sent upstream is not what
//! maskgate analyzed (issue 9): literals printed without escaping, tokens that
//! merge when printed side by side, and names PostgreSQL binds differently
//! from the analyzer; and read-only accounts that must not be able to create
//! anything, directly or through such smuggled text.
//!
//! The corpus cases run as every restricted account of the example policy
//! (the write-capable claims officer included) in the simple protocol, the
//! extended protocol with binary and with text results, and through SQL
//! `PREPARE`/`EXECUTE`; each must be denied or return only what the account
//! may see, judged by the ground-truth leak checks of the bypass corpus.

#[path = "common/bypass.rs"]
mod bypass;
#[path = "common/enforcement.rs"]
mod enforcement;
#[path = "common/wire.rs"]
mod wire;

use bypass::*;
use enforcement::*;
use wire::Wire;

/// Raw diagnosis codes of every province, as one value, without a quote
/// character (so it survives inside a string literal unchanged).
const LEAK: &str = "(SELECT string_agg(diagnosis_code, chr(44)) FROM benefit_claim)";

/// Statements that every account's rules allow as the analyzer reads them
/// (a literal or a constant expression), but whose printed text, if a
/// literal is not re-escaped or two tokens merge, reads the raw diagnoses.
fn smuggled_reads() -> Vec<(&'static str, String)> {
    let l = LEAK;
    vec![
        (
            "lit-national",
            format!("SELECT N'a'' AS a, {l} AS leak --' AS b"),
        ),
        (
            "lit-national-newline",
            format!("SELECT N'a''\n, {l} AS leak --' AS b"),
        ),
        (
            "lit-bit",
            format!("SELECT B'1'' AS a, {l} AS leak --' AS b"),
        ),
        (
            "lit-hex",
            format!("SELECT X'1f'' AS a, {l} AS leak --' AS b"),
        ),
        (
            "lit-escape-quote",
            format!("SELECT E'a\\'' AS a, {l} AS leak --' AS b"),
        ),
        (
            "lit-escape-backslash",
            format!("SELECT E'a\\\\'' AS a, {l} AS leak --' AS b"),
        ),
        (
            "lit-escape-hex-quote",
            format!("SELECT E'\\x27 AS a, {l} AS leak --' AS b"),
        ),
        (
            "lit-escape-octal-quote",
            format!("SELECT E'\\047 AS a, {l} AS leak --' AS b"),
        ),
        (
            "lit-escape-unicode-quote",
            format!("SELECT E'\\u0027 AS a, {l} AS leak --' AS b"),
        ),
        (
            "lit-unicode-quote",
            format!("SELECT U&'\\0027 AS a, {l} AS leak --' AS b"),
        ),
        (
            "lit-unicode-doubled",
            format!("SELECT U&'a'' AS a, {l} AS leak --' AS b"),
        ),
        (
            "lit-unicode-uescape",
            format!("SELECT U&'!0027 AS a, {l} AS leak --' UESCAPE '!' AS b"),
        ),
        (
            "lit-dollar-inner-dollars",
            format!("SELECT $t$a$$ AS a, {l} AS leak --$t$ AS b"),
        ),
        (
            "lit-dollar-quote",
            format!("SELECT $t$a' AS a, {l} AS leak --$t$ AS b"),
        ),
        (
            "lit-dollar-nested-tags",
            format!("SELECT $a$ $b$ $a$ AS a, $b$ AS c, {l} AS leak --$b$ AS b"),
        ),
        (
            "ident-doubled-quote",
            format!("SELECT 1 AS \"a\"\" , {l} AS leak --\""),
        ),
        (
            "comment-nested",
            format!("SELECT 1 AS a /* /* */, {l} AS leak /* */ */"),
        ),
        (
            "comment-nested-in-literal",
            format!("SELECT '/* /*' AS a, 1 AS b /* */ , {l} */"),
        ),
        (
            "merge-double-negation",
            format!("SELECT - -1 AS a, '\n1 AS a, {l} AS leak --' AS b"),
        ),
        (
            "merge-double-negation-nested",
            format!("SELECT -(-1) AS a, - - -1 AS c, '\n1 AS a, {l} AS leak --' AS b"),
        ),
        (
            "merge-plus-minus",
            format!("SELECT + -1 AS a, '\n1 AS a, {l} AS leak --' AS b"),
        ),
        (
            "merge-at-minus",
            format!("SELECT @ -1 AS a, '\n1 AS a, {l} AS leak --' AS b"),
        ),
        (
            "merge-root-double-negation",
            format!("SELECT |/ - -16 AS a, '\n16 AS a, {l} AS leak --' AS b"),
        ),
        (
            "merge-minus-root",
            "SELECT - |/ 16 AS a, ~ -1 AS b, - ~1 AS c".into(),
        ),
        (
            "merge-divide-star",
            "SELECT 6 / /* c */ 3 AS a, 2 * /* d */ 3 AS b".into(),
        ),
        (
            "merge-negation-in-where",
            format!("SELECT 'x' AS a WHERE - -1 = 1 OR '\ntrue UNION ALL SELECT {l} --' = ''"),
        ),
        (
            "type-datetime64-timezone",
            format!(
                "SELECT CAST(1 AS DateTime64(3, 'x'')) AS a, {l} AS leak, \
                 CAST(1 AS DateTime64(3, ''x')) AS c"
            ),
        ),
        (
            "type-enum-member",
            format!("SELECT CAST(1 AS ENUM('x'')) AS a, {l} AS leak, CAST(1 AS ENUM(''x')) AS c"),
        ),
        (
            "type-set-member",
            format!("SELECT CAST(1 AS SET('x'')) AS a, {l} AS leak, CAST(1 AS SET(''x')) AS c"),
        ),
        (
            "type-custom-modifier",
            format!("SELECT CAST(1 AS int4('x'')) AS a, {l} AS leak, CAST(1 AS int4(''x')) AS c"),
        ),
        (
            "merge-negation-in-cast",
            format!("SELECT (- -1)::text AS a, '\n1 AS a, {l} AS leak --'::text AS b"),
        ),
    ]
}

/// Statements that would create something (named by `{name}`) if their
/// printed text ran a second statement.
fn smuggled_ddl() -> Vec<(&'static str, &'static str)> {
    vec![
        ("ddl-national", "SELECT N'a''; CREATE TABLE public.{name} (x int); --' AS b"),
        ("ddl-hex", "SELECT X'1f''; CREATE TABLE public.{name} (x int); --' AS b"),
        ("ddl-bit", "SELECT B'1''; CREATE TABLE public.{name} (x int); --' AS b"),
        ("ddl-escape", "SELECT E'\\x27; CREATE TABLE public.{name} (x int); --' AS b"),
        ("ddl-unicode", "SELECT U&'\\0027; CREATE TABLE public.{name} (x int); --' AS b"),
        ("ddl-dollar", "SELECT $t$a$$; CREATE TABLE public.{name} (x int); --$t$ AS b"),
        ("ddl-double-negation", "SELECT - -1 AS a, '\n1; CREATE TABLE public.{name} (x int); --' AS b"),
        ("ddl-function", "SELECT N'a''; CREATE FUNCTION public.{name}() RETURNS int LANGUAGE sql AS ''SELECT 1''; --' AS b"),
    ]
}

/// Write-path cases: the officer may update its province's rows; the others
/// must be denied. Each case runs in a transaction (rolled back) and reads
/// its own write back, so a raw value copied into a visible column shows.
fn writes() -> Vec<(&'static str, Vec<&'static str>, Option<&'static str>)> {
    // (name, steps, an expected read-back as a superuser query, else leak checks only)
    vec![
        ("scope-set-from-empty-subquery", vec![
            "BEGIN",
            "UPDATE participant SET full_name = (SELECT citizen_id FROM (SELECT 1) s) WHERE id = 17",
            "SELECT id, full_name FROM participant WHERE id = 17",
        ], None),
        ("scope-set-from-sibling-subquery", vec![
            "BEGIN",
            "UPDATE participant SET full_name = (SELECT v FROM participant q, (SELECT citizen_id AS v) s LIMIT 1) WHERE id = 17",
            "SELECT id, full_name FROM participant WHERE id = 17",
        ], None),
        ("scope-set-contact-from-subquery", vec![
            "BEGIN",
            "UPDATE participant SET address = (SELECT x FROM (SELECT social_insurance_code AS x) s) WHERE id = 17",
            "SELECT id, address FROM participant WHERE id = 17",
        ], None),
        ("scope-set-from-lateral-miss", vec![
            "BEGIN",
            "UPDATE participant SET email = (SELECT x.v FROM (SELECT 1 AS n) a CROSS JOIN LATERAL (SELECT date_of_birth::text AS v) x) WHERE id = 17",
            "SELECT id, email FROM participant WHERE id = 17",
        ], None),
        ("scope-claim-kind-from-diagnosis", vec![
            "BEGIN",
            "UPDATE benefit_claim SET kind = (SELECT diagnosis_code FROM (SELECT 1) s) WHERE id = 9",
            "SELECT id, kind FROM benefit_claim WHERE id = 9",
        ], None),
        ("scope-on-clause-oracle-update", vec![
            "BEGIN",
            "UPDATE participant SET full_name = 'mg oracle' WHERE id = 17 AND EXISTS (SELECT 1 FROM (SELECT 1) a JOIN (SELECT 1) b ON substr(citizen_id, 1, 1) = '0', participant q)",
            "SELECT count(*) FROM participant WHERE full_name = 'mg oracle'",
        ], Some(ZERO)),
        ("scope-on-clause-oracle-delete", vec![
            "BEGIN",
            "DELETE FROM benefit_claim WHERE id = 9 AND EXISTS (SELECT 1 FROM (SELECT 1) a JOIN (SELECT 1) b ON diagnosis_code NOT LIKE '%*%', benefit_claim q)",
            "SELECT count(*) FROM benefit_claim WHERE id = 9",
        ], Some("SELECT count(*) FROM benefit_claim WHERE id = 9")),
        ("scope-on-clause-oracle-in-set", vec![
            "BEGIN",
            "UPDATE participant SET full_name = coalesce((SELECT 'mg oracle' FROM (SELECT 1) a JOIN (SELECT 1) b ON substr(citizen_id, 1, 1) = '0' CROSS JOIN participant q LIMIT 1), full_name) WHERE id = 17",
            "SELECT count(*) FROM participant WHERE full_name = 'mg oracle'",
        ], Some(ZERO)),
        ("scope-where-subquery-oracle", vec![
            "BEGIN",
            "UPDATE participant SET gender = gender, full_name = 'mg oracle' WHERE id = 17 AND (SELECT substr(social_insurance_code, 1, 2) FROM (SELECT 1) s) = '48'",
            "SELECT count(*) FROM participant WHERE full_name = 'mg oracle'",
        ], Some(ZERO)),
        ("lit-national-in-update", vec![
            "BEGIN",
            "UPDATE participant SET address = N'a'', full_name = (SELECT string_agg(diagnosis_code, chr(44)) FROM benefit_claim) --' WHERE id = 17",
            "SELECT id, full_name, address FROM participant WHERE id = 17",
        ], None),
        ("merge-negation-in-update", vec![
            "BEGIN",
            "UPDATE participant SET employer_id = - -1, address = '\n1, full_name = (SELECT string_agg(diagnosis_code, chr(44)) FROM benefit_claim) --' WHERE id = 17",
            "SELECT id, full_name, address FROM participant WHERE id = 17",
        ], None),
    ]
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (n, login) in RESTRICTED.into_iter().enumerate() {
        let named = |name: &str| leak(format!("{name}@{login}"));
        for (name, sql) in smuggled_reads() {
            cases.push(case(named(name), login, leak(sql)));
        }
        for (name, sql) in smuggled_ddl() {
            let object = format!("mg_smug_{}_{login}_{PROTOCOL}", name.replace('-', "_"));
            let created = format!(
                "SELECT (SELECT count(*) FROM pg_class WHERE relname = '{object}') \
                 + (SELECT count(*) FROM pg_proc WHERE proname = '{object}')"
            );
            cases.push(
                case(named(name), login, leak(sql.replace("{name}", &object)))
                    .after(After::Superuser(leak(created), "0")),
            );
        }
        for (name, sql, expected) in writes() {
            let mut c = steps(
                named(name),
                login,
                &sql.into_iter().map(Step::Sql).collect::<Vec<_>>(),
            );
            if let Some(truth) = expected {
                c = c.check(Check::Same(truth));
            }
            cases.push(
                c.after(After::Superuser(
                    "SELECT count(*) FROM participant WHERE full_name = 'mg oracle' OR full_name LIKE '%.%'",
                    "0",
                )),
            );
        }
        // An out-of-scope row inserted through a literal that ends early (the
        // row as analyzed is in the officer's province); one id per account
        // and protocol.
        let id = format!("90001{n}{PROTOCOL_NUMBER}");
        cases.push(
            case(
                named("lit-national-in-insert"),
                login,
                leak(format!(
                    "INSERT INTO benefit_claim (id, participant_id, kind, amount, submitted_on, status, province_code) \
                     VALUES ({id}, 17, N'x'', 1, ''2025-01-02'', ''submitted'', ''01'') --', 1, '2025-01-02', 'submitted', '48')"
                )),
            )
            .after(After::Superuser(
                leak(format!(
                    "SELECT count(*) FROM benefit_claim WHERE id = {id} AND province_code <> '48'"
                )),
                "0",
            )),
        );
        // Reads whose ON clause names a FROM item after the join.
        cases.push(case(
            named("scope-on-clause-read"),
            login,
            "SELECT q.id FROM participant q WHERE EXISTS (SELECT 1 FROM (SELECT 1) a JOIN (SELECT 1) b ON substr(citizen_id, 1, 1) = '0', participant r) LIMIT 20",
        ));
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggled_text_is_denied_or_sees_only_what_the_account_may_see() {
    let env = Env::start().await;
    run_corpus(&env, &cases(), ALL_PROTOCOLS).await;
}

/// Everything a read-only account tries to create, directly or smuggled
/// inside a literal; every name starts with `mg_ro`.
const CREATES: &[(&str, bool)] = &[
    // (statement, whether it must be refused: smuggled ones may also run harmlessly)
    ("CREATE TABLE mg_ro_t1 (x int)", true),
    ("CREATE TEMP TABLE mg_ro_t2 (x int)", true),
    ("CREATE UNLOGGED TABLE mg_ro_t3 (x int)", true),
    ("CREATE TABLE mg_ro_t4 AS SELECT 1 AS x", true),
    ("SELECT 1 AS x INTO mg_ro_t5", true),
    ("SELECT 1 AS x INTO TEMP mg_ro_t6", true),
    ("SELECT * INTO mg_ro_t7 FROM participant", true),
    ("WITH w AS (SELECT 1 AS x) SELECT * INTO mg_ro_t8 FROM w", true),
    ("CREATE TABLE mg_ro_t9 (LIKE participant)", true),
    ("CREATE VIEW mg_ro_v1 AS SELECT 1 AS x", true),
    ("CREATE TEMP VIEW mg_ro_v2 AS SELECT 1 AS x", true),
    ("CREATE MATERIALIZED VIEW mg_ro_m1 AS SELECT 1 AS x", true),
    ("CREATE FUNCTION mg_ro_f1() RETURNS int LANGUAGE sql AS 'SELECT 1'", true),
    ("CREATE OR REPLACE FUNCTION mg_ro_f2() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$", true),
    ("CREATE PROCEDURE mg_ro_p1() LANGUAGE sql AS 'SELECT 1'", true),
    ("CREATE AGGREGATE mg_ro_a1 (int) (SFUNC = int4pl, STYPE = int)", true),
    ("CREATE INDEX mg_ro_i1 ON participant (full_name)", true),
    ("CREATE INDEX CONCURRENTLY mg_ro_i2 ON participant (gender)", true),
    ("CREATE STATISTICS mg_ro_st1 ON gender, province_code FROM participant", true),
    ("CREATE SCHEMA mg_ro_s1", true),
    ("CREATE SEQUENCE mg_ro_q1", true),
    ("CREATE TYPE mg_ro_ty1 AS (x int)", true),
    ("CREATE DOMAIN mg_ro_d1 AS int", true),
    ("CREATE ROLE mg_ro_r1", true),
    ("CREATE TRIGGER mg_ro_tg1 BEFORE UPDATE ON participant FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()", true),
    ("CREATE RULE mg_ro_ru1 AS ON INSERT TO participant DO INSTEAD NOTHING", true),
    ("CREATE POLICY mg_ro_po1 ON participant USING (true)", true),
    ("CREATE PUBLICATION mg_ro_pub1 FOR TABLE participant", true),
    ("ALTER TABLE participant ADD COLUMN mg_ro_c1 int", true),
    ("COMMENT ON TABLE participant IS 'mg_ro'", true),
    ("DO $$ BEGIN CREATE TABLE mg_ro_t10 (x int); END $$", true),
    ("SELECT N'a''; CREATE TABLE mg_ro_t11 (x int); --' AS b", false),
    ("SELECT X'1f''; CREATE VIEW mg_ro_v3 AS SELECT 1; --' AS b", false),
    ("SELECT B'1''; CREATE FUNCTION mg_ro_f3() RETURNS int LANGUAGE sql AS ''SELECT 1''; --' AS b", false),
    ("SELECT - -1 AS a, '\n1; CREATE TABLE mg_ro_t12 (x int); --' AS b", false),
    ("SELECT U&'\\0027; CREATE TABLE mg_ro_t13 (x int); --' AS b", false),
];

/// Objects named like [`CREATES`], anywhere in the catalog.
const CREATED: &str = "SELECT ((SELECT count(*) FROM pg_class WHERE relname LIKE 'mg\\_ro%') \
    + (SELECT count(*) FROM pg_proc WHERE proname LIKE 'mg\\_ro%') \
    + (SELECT count(*) FROM pg_type WHERE typname LIKE 'mg\\_ro%') \
    + (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'mg\\_ro%') \
    + (SELECT count(*) FROM pg_roles WHERE rolname LIKE 'mg\\_ro%') \
    + (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'mg\\_ro%') \
    + (SELECT count(*) FROM pg_rewrite WHERE rulename LIKE 'mg\\_ro%') \
    + (SELECT count(*) FROM pg_policy WHERE polname LIKE 'mg\\_ro%') \
    + (SELECT count(*) FROM pg_statistic_ext WHERE stxname LIKE 'mg\\_ro%') \
    + (SELECT count(*) FROM pg_publication WHERE pubname LIKE 'mg\\_ro%') \
    + (SELECT count(*) FROM pg_attribute WHERE attname LIKE 'mg\\_ro%') \
    + (SELECT count(*) FROM pg_description WHERE description = 'mg_ro'))::text";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_accounts_cannot_create_anything() {
    let env = Env::start().await;
    let mut failures = Vec::new();
    for login in READ_ONLY {
        for protocol in ALL_PROTOCOLS {
            let tag = format!("{login} [{protocol:?}]");
            // One session per protocol, kept open while the catalog is read, so
            // that temporary objects would still be there.
            let mut wire = None;
            let mut client = None;
            let opened = match protocol {
                Protocol::ExtendedText => {
                    Wire::login(&env.proxy, login).await.map(|w| wire = Some(w))
                }
                _ => env
                    .proxy
                    .connect(login, PASSWORD)
                    .await
                    .map(|c| client = Some(c))
                    .map_err(|e| e.to_string()),
            };
            if let Err(e) = opened {
                failures.push(format!("{tag}: login failed: {e}"));
                continue;
            }
            for (n, (sql, must_fail)) in CREATES.iter().enumerate() {
                let outcome = match (protocol, &mut wire, &client) {
                    (Protocol::ExtendedText, Some(w), _) => w.extended_text(sql).await,
                    (Protocol::Simple, _, Some(c)) => simple(c, sql).await,
                    (Protocol::Extended, _, Some(c)) => extended(c, sql).await,
                    (_, _, Some(c)) => prepared(c, sql, n).await,
                    _ => unreachable!("a session per protocol"),
                };
                if *must_fail && outcome.error.is_none() {
                    failures.push(format!("{tag}: `{sql}` succeeded"));
                }
                let created = column(&env.su, CREATED).await;
                if created.first().and_then(|v| v.as_deref()) != Some("0") {
                    failures.push(format!(
                        "{tag}: SIDE EFFECT: `{sql}` created {:?} object(s)",
                        created.first().cloned().flatten()
                    ));
                    // Start clean for the next statement.
                    let _ = env.su.batch_execute(CLEAN_UP).await;
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Removes what a failing run created (best effort), so one success does
/// not count again for every later statement.
const CLEAN_UP: &str = "DO $$ DECLARE r record; BEGIN \
    FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c WHERE c.relname LIKE 'mg\\_ro%' AND c.relkind IN ('r', 'v', 'm', 'S') LOOP \
      EXECUTE format('DROP %s IF EXISTS %s CASCADE', CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, r.name); END LOOP; \
    FOR r IN SELECT p.oid::regprocedure AS name, p.prokind FROM pg_proc p WHERE p.proname LIKE 'mg\\_ro%' LOOP \
      EXECUTE format('DROP ROUTINE IF EXISTS %s CASCADE', r.name); END LOOP; \
    FOR r IN SELECT c.relname FROM pg_class c WHERE c.relname LIKE 'mg\\_ro\\_i%' LOOP \
      EXECUTE format('DROP INDEX IF EXISTS %I', r.relname); END LOOP; \
    END $$; \
    DROP SCHEMA IF EXISTS mg_ro_s1 CASCADE; DROP TYPE IF EXISTS mg_ro_ty1; DROP DOMAIN IF EXISTS mg_ro_d1; \
    DROP ROLE IF EXISTS mg_ro_r1; DROP TRIGGER IF EXISTS mg_ro_tg1 ON participant; DROP RULE IF EXISTS mg_ro_ru1 ON participant; \
    DROP POLICY IF EXISTS mg_ro_po1 ON participant; DROP PUBLICATION IF EXISTS mg_ro_pub1; DROP STATISTICS IF EXISTS mg_ro_st1; \
    ALTER TABLE participant DROP COLUMN IF EXISTS mg_ro_c1; COMMENT ON TABLE participant IS NULL;";
