//! Table-driven bypass attempts against the real proxy in front of a real
//! cluster holding the synthetic register, under the example policy.
//!
//! Every case runs twice on fresh connections: once in the simple protocol
//! (text results) and once in the extended protocol (binary results). A case
//! passes when it is denied with an expected SQLSTATE, or when what came back
//! holds nothing the account may not see, judged against ground truth read
//! directly from the cluster as superuser: no raw identifier, contact, date,
//! amount or name the account may not see (see `common::enforcement`), masked
//! values in their mask's shape, rows only from the account's province, row
//! caps respected, and no side effect of a denied string. All failures are
//! collected and reported together; messages name the case and the kind of
//! leak, never the leaked values.

#[path = "common/bypass.rs"]
mod bypass;
#[path = "common/enforcement.rs"]
mod enforcement;
#[path = "common/wire.rs"]
mod wire;

use bypass::*;
use enforcement::*;
use maskgate_testkit::register;

fn cases() -> Vec<Case> {
    use After::*;
    use Check::*;
    use Step::{Portal, Sql};
    vec![
        // --- function wrapping and casts -------------------------------------------------
        case("fn-case-functions", A, "SELECT upper(full_name), lower(full_name), initcap(full_name) FROM participant").rows(),
        case("fn-casts-of-identifiers", A, "SELECT citizen_id::text, citizen_id::varchar(20), social_insurance_code::text FROM participant").rows(),
        case("fn-cast-to-bigint", A, "SELECT CAST(citizen_id AS bigint) FROM participant"),
        case("fn-md5-of-name", A, "SELECT md5(full_name) FROM participant")
            .check(Secrets("SELECT md5(full_name) FROM participant", "md5 of a raw full_name")),
        case("fn-hex-of-name", A, "SELECT encode(convert_to(full_name, 'UTF8'), 'hex') FROM participant")
            .check(Secrets("SELECT encode(convert_to(full_name, 'UTF8'), 'hex') FROM participant", "hex of a raw full_name")),
        case("fn-length-of-name", A, "SELECT sum(length(full_name)) FROM participant")
            .check(Secrets("SELECT sum(length(full_name))::text FROM participant WHERE province_code = '79'", "total length of raw names")),
        case("fn-reverse-denied-column", A, "SELECT reverse(phone) FROM participant").denied(PRIV),
        case("fn-translate-identifier", A, "SELECT translate(citizen_id, '0123456789', 'abcdefghij') FROM participant"),
        case("fn-string-agg-names", A, "SELECT string_agg(full_name, '|') FROM participant"),
        case("fn-array-agg-dates", A, "SELECT array_agg(date_of_birth), array_agg(registered_on) FROM participant"),
        case("fn-json-agg-whole-rows", A, "SELECT json_agg(p) FROM participant p"),
        case("fn-format-identifiers", A, "SELECT format('%s/%s', citizen_id, social_insurance_code) FROM participant"),
        case("fn-clerk-concat-identifier", C, "SELECT citizen_id || '', concat(citizen_id, social_insurance_code), left(citizen_id, 12) FROM participant WHERE citizen_id = '{CID01}'").rows(),
        case("fn-clerk-substr-identifier", C, "SELECT substr(citizen_id, 1, 8), right(social_insurance_code, 10) FROM participant WHERE citizen_id = '{CID01}'").rows(),
        case("fn-clerk-date-parts", C, "SELECT date_of_birth, extract(month FROM date_of_birth), to_char(date_of_birth, 'MM-DD') FROM participant WHERE citizen_id = '{CID01}'")
            .rows()
            .check(Secrets("SELECT to_char(date_of_birth, 'MM-DD') FROM participant WHERE id = 10", "raw month and day of birth")),
        case("fn-investigator-diagnosis", I, "SELECT diagnosis_code::text AS d1, upper(diagnosis_code) AS d2, left(diagnosis_code, 5) AS d3 FROM benefit_claim ORDER BY id LIMIT 100"),
        case("fn-analyst-amount-arithmetic", A, "SELECT amount * 1, amount::text, amount - round(amount, -5) FROM contribution ORDER BY id LIMIT 200"),
        case("fn-analyst-amount-mod", A, "SELECT count(*) FROM contribution WHERE amount::numeric % 1 <> 0").check(Same(ZERO)),
        // --- whole-row references ----------------------------------------------------------
        case("row-whole-row", A, "SELECT p FROM participant p").rows(),
        case("row-row-to-json", A, "SELECT row_to_json(p) FROM participant p").rows(),
        case("row-to-jsonb-fields", A, "SELECT to_jsonb(p) ->> 'citizen_id', to_jsonb(p) ->> 'phone', to_jsonb(p) ->> 'full_name' FROM participant p"),
        case("row-star", A, "SELECT * FROM participant").rows().check(ColumnIn("id", IDS_79)),
        case("row-qualified-star", A, "SELECT p.* FROM participant p").rows().check(ColumnIn("id", IDS_79)),
        case("row-composite-star", A, "SELECT (p).* FROM participant p"),
        case("row-text-search-contacts", A, "SELECT count(*) FROM participant p WHERE p::text LIKE '%example.invalid%'").check(Same(ZERO)),
        case("row-clerk-whole-row", C, "SELECT p FROM participant p WHERE p.citizen_id = '{CID01}'").rows(),
        case("row-clerk-json", C, "SELECT row_to_json(p)::text FROM participant p WHERE citizen_id = '{CID01}'").rows(),
        case("row-investigator-claims", I, "SELECT b FROM benefit_claim b ORDER BY id LIMIT 50"),
        case("row-analyst-contributions", A, "SELECT row_to_json(c) FROM contribution c ORDER BY id LIMIT 200"),
        case("row-analyst-claims-json", A, "SELECT to_json(b) FROM benefit_claim b"),
        // --- WHERE / ORDER BY / GROUP BY inference on masked columns -------------------------
        case("infer-name-equality", A, "SELECT count(*) FROM participant WHERE full_name = '{NAME79}'").check(Same(ZERO)),
        case("infer-name-prefix", A, "SELECT count(*) FROM participant WHERE full_name LIKE 'Nguyễn%'").check(Same(ZERO)),
        case("infer-identifier-prefix", A, "SELECT count(*) FROM participant WHERE citizen_id LIKE '079%'").check(Same(ZERO)),
        case("infer-birth-month", A, "SELECT count(*) FROM participant WHERE date_of_birth::text LIKE '%-03-%'").check(Same(ZERO)),
        case("infer-order-by-identifier", A, "SELECT id FROM participant ORDER BY citizen_id, id LIMIT 20")
            .check(SameOrdered("SELECT id FROM participant WHERE province_code = '79' ORDER BY id LIMIT 20")),
        case("infer-order-by-birth", A, "SELECT id FROM participant ORDER BY date_of_birth, id LIMIT 30")
            .check(NotSameOrdered("SELECT id FROM participant WHERE province_code = '79' ORDER BY date_of_birth, id LIMIT 30")),
        case("infer-order-by-name", A, "SELECT id FROM participant ORDER BY full_name DESC, id LIMIT 30")
            .check(NotSameOrdered("SELECT id FROM participant WHERE province_code = '79' ORDER BY full_name DESC, id LIMIT 30")),
        case("infer-group-by-gender", A, "SELECT gender, count(*) FROM participant GROUP BY gender")
            .check(Same("SELECT gender, count(*) FROM participant WHERE province_code = '79' GROUP BY gender")),
        case("infer-group-by-name", A, "SELECT full_name, count(*) FROM participant GROUP BY full_name HAVING count(*) = 1"),
        case("infer-group-by-birth", A, "SELECT date_of_birth, count(*) FROM participant GROUP BY 1"),
        case("infer-distinct-identifiers", A, "SELECT count(DISTINCT citizen_id) FROM participant").check(Same(ZERO)),
        case("infer-min-max", A, "SELECT max(full_name), min(date_of_birth), max(registered_on) FROM participant"),
        case("infer-group-by-province", A, "SELECT province_code, count(*) FROM participant GROUP BY province_code")
            .check(Same("SELECT province_code, count(*) FROM participant WHERE province_code = '79' GROUP BY province_code")),
        case("infer-count", A, "SELECT count(*) FROM participant").rows().check(Same(COUNT_79)),
        case("infer-draft-claims", A, "SELECT count(*) FROM benefit_claim WHERE status = 'draft'").check(Same(ZERO)),
        case("infer-claim-ids", A, "SELECT id, status FROM benefit_claim").check(ColumnIn("id", CLAIMS_79)),
        case("infer-rounded-sum", A, "SELECT sum(amount) FROM contribution WHERE participant_id = 14")
            .check(Same("SELECT sum(round(amount, -5)::numeric(12,2)) FROM contribution WHERE participant_id = 14")),
        case("infer-cents", A, "SELECT count(*) FROM contribution WHERE amount::text NOT LIKE '%.00'").check(Same(ZERO)),
        case("infer-join-counts", A, "SELECT count(*) FROM participant p JOIN contribution c ON c.participant_id = p.id")
            .check(Same("SELECT count(*) FROM participant p JOIN contribution c ON c.participant_id = p.id WHERE p.province_code = '79' AND c.province_code = '79'")),
        case("infer-employer-join", A, "SELECT e.name, count(*) FROM participant p JOIN employer e ON e.id = p.employer_id GROUP BY e.name")
            .check(AnyProvince),
        case("infer-exists-draft", A, "SELECT count(*) FROM participant p WHERE EXISTS (SELECT 1 FROM benefit_claim b WHERE b.participant_id = p.id AND b.status = 'draft')").check(Same(ZERO)),
        case("infer-ids-of-other-province", A, "SELECT count(*) FROM participant WHERE id IN (10, 20, 30, 17)").check(Same(ZERO)),
        case("infer-subquery-draft", A, "SELECT id FROM participant WHERE id IN (SELECT participant_id FROM benefit_claim WHERE status = 'draft')").check(RowCount(0)),
        // --- error oracles on out-of-scope rows -----------------------------------------------
        case("oracle-division-by-province", A, "SELECT count(*) FROM participant WHERE 1 / (CASE WHEN province_code <> '79' THEN 0 ELSE 1 END) = 1").check(Same(COUNT_79)),
        case("oracle-cast-by-province", A, "SELECT id FROM participant WHERE (CASE WHEN province_code = '01' THEN 'x' ELSE '1' END)::int = 1").check(ColumnIn("id", IDS_79)),
        case("oracle-division-by-draft", A, "SELECT count(*) FROM benefit_claim WHERE 1 / (CASE WHEN status = 'draft' THEN 0 ELSE 1 END) = 1")
            .check(Same("SELECT count(*) FROM benefit_claim WHERE province_code = '79' AND status <> 'draft'")),
        case("oracle-division-by-raw-name", A, "SELECT count(*) FROM participant WHERE 1 / (CASE WHEN full_name = '{NAME79}' THEN 0 ELSE 1 END) = 1").check(Same(COUNT_79)),
        case("oracle-denied-column", A, "SELECT count(*) FROM participant WHERE 1 / (CASE WHEN phone IS NULL THEN 0 ELSE 1 END) = 1").denied(PRIV),
        case("oracle-cast-by-id", A, "SELECT count(*) FROM participant WHERE (CASE WHEN id = 10 THEN 'x' || id ELSE '1' END)::int = 1").check(Same(COUNT_79)),
        case("oracle-target-list", A, "SELECT 1 / (id - id) FROM participant WHERE province_code = '01'").check(RowCount(0)),
        case("oracle-contribution-province", A, "SELECT id FROM contribution WHERE 1 / (CASE WHEN province_code <> '79' THEN 0 ELSE 1 END) = 1 ORDER BY id LIMIT 100").check(ColumnIn("id", CONTRIBUTIONS_79)),
        case("oracle-clerk-province", C, "SELECT full_name FROM participant WHERE citizen_id = '{CID01}' AND 1 / (CASE WHEN province_code <> '01' THEN 0 ELSE 1 END) = 1").rows().check(RowCount(1)),
        case("oracle-clerk-raw-sic", C, "SELECT full_name FROM participant WHERE citizen_id = '{CID01}' AND 1 / (CASE WHEN social_insurance_code = '{SIC_OF_CID01}' THEN 0 ELSE 1 END) = 1"),
        case("oracle-clerk-raw-key", C, "SELECT full_name FROM participant WHERE citizen_id = '{CID01}' AND 1 / (CASE WHEN citizen_id = '{CID01}' THEN 0 ELSE 1 END) = 1"),
        case("oracle-investigator-diagnosis", I, "SELECT count(*) FROM benefit_claim WHERE 1 / (CASE WHEN diagnosis_code = '{DIAG}' THEN 0 ELSE 1 END) = 1")
            .check(Same("SELECT count(*) FROM benefit_claim")),
        // --- CTE shadowing -------------------------------------------------------------------
        case("cte-shadow-count", A, "WITH participant AS (SELECT * FROM participant) SELECT count(*) FROM participant").rows().check(Same(COUNT_79)),
        case("cte-shadow-columns", A, "WITH participant AS (SELECT * FROM public.participant) SELECT citizen_id, full_name, date_of_birth FROM participant").rows(),
        case("cte-materialized", A, "WITH p AS MATERIALIZED (SELECT * FROM participant) SELECT * FROM p").check(ColumnIn("id", IDS_79)),
        case("cte-shadow-other-table", A, "WITH employer AS (SELECT * FROM participant) SELECT * FROM employer").check(ColumnIn("id", IDS_79)),
        case("cte-clerk-shadow-unpinned", C, "WITH participant AS (SELECT 1 AS x) SELECT * FROM public.participant").denied(PRIV),
        case("cte-clerk-pin-outside", C, "WITH x AS (SELECT * FROM participant) SELECT * FROM x WHERE citizen_id = '{CID01}'"),
        case("cte-recursive-walk", A, "WITH RECURSIVE r AS (SELECT id, full_name FROM participant WHERE id = 14 UNION ALL SELECT p.id, p.full_name FROM participant p JOIN r ON p.id = r.id + 10 WHERE p.id < 300) SELECT * FROM r")
            .check(ColumnIn("id", IDS_79)),
        case("cte-recursive-join", A, "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 30) SELECT p.id, p.citizen_id FROM r JOIN participant p ON p.id = r.n")
            .check(ColumnIn("id", IDS_79)),
        // --- case, quoting and Unicode identifiers ---------------------------------------------
        case("quote-upper-quoted", A, "SELECT \"PHONE\" FROM participant").harmless(&["42703"]),
        case("quote-mixed-case", A, "SELECT PhOnE FROM PaRtIcIpAnT").denied(PRIV),
        case("quote-quoted-denied", A, "SELECT \"phone\" FROM \"participant\"").denied(PRIV),
        case("quote-qualified-denied", A, "SELECT p.\"phone\" FROM public.\"participant\" p").denied(PRIV),
        case("quote-upper-allowed", A, "SELECT CiTiZeN_Id, FULL_NAME FROM PUBLIC.PARTICIPANT").rows(),
        case("quote-quoted-schema", A, "SELECT * FROM \"public\".\"participant\"").check(ColumnIn("id", IDS_79)),
        case("quote-wrong-case-table", A, "SELECT * FROM \"Participant\"").harmless(&["42P01"]),
        case("quote-string-not-column", A, "SELECT $$phone$$, 'phone' FROM participant"),
        case("quote-clerk-quoted-key", C, "SELECT full_name FROM participant WHERE \"citizen_id\" = '{CID01}'").rows().check(RowCount(1)),
        case("quote-clerk-upper", C, "SELECT FULL_NAME FROM PARTICIPANT WHERE CITIZEN_ID = '{CID01}'").rows().check(RowCount(1)),
        case("quote-clerk-escape-string", C, "SELECT full_name FROM participant WHERE citizen_id = E'{CID01}'"),
        case("unicode-column", A, "SELECT U&\"ph\\006fne\" FROM participant").denied(DENY),
        case("unicode-table", A, "SELECT * FROM U&\"p\\0061rticipant\"").denied(DENY),
        case("unicode-uescape", A, "SELECT U&\"!0070hone\" UESCAPE '!' FROM participant").denied(DENY_OR_SYNTAX),
        case("unicode-clerk-key", C, "SELECT full_name FROM participant WHERE U&\"citizen\\005fid\" = '{CID01}'"),
        case("unicode-string-literal", A, "SELECT U&'\\0070hone' FROM participant"),
        // --- comments inside keywords ---------------------------------------------------------
        case("comment-in-select", A, "SEL/**/ECT phone FROM participant").denied(UNPARSABLE),
        case("comment-in-column", A, "SELECT ph/**/one FROM participant").harmless(&["42703"]),
        case("comment-around", A, "SELECT /* phone */ full_name FROM participant -- phone").rows(),
        case("comment-unterminated", A, "SELECT full_name FROM participant /* unterminated").denied(UNPARSABLE),
        case("comment-nested", A, "SELECT phone FROM participant /* nested /* comment */ still */").denied(DENY_OR_SYNTAX),
        case("comment-hides-separator", A, "SELECT 1 --\n; SELECT phone FROM participant").denied(DENY_OR_SYNTAX).multi(),
        // --- UNION, LATERAL, subqueries ----------------------------------------------------------
        case("union-names", A, "SELECT full_name AS v FROM participant UNION ALL SELECT name FROM employer"),
        case("union-identifiers", A, "SELECT id, citizen_id AS v FROM participant UNION SELECT id, tax_code FROM employer"),
        case("union-denied-column", A, "SELECT phone FROM participant UNION SELECT name FROM employer").denied(PRIV),
        case("lateral-first-name", A, "SELECT e.name, x.full_name FROM employer e, LATERAL (SELECT full_name FROM participant p WHERE p.employer_id = e.id LIMIT 1) x"),
        case("lateral-identifiers", A, "SELECT x.* FROM employer e CROSS JOIN LATERAL (SELECT p.id, p.citizen_id, p.date_of_birth FROM participant p WHERE p.employer_id = e.id) x LIMIT 100")
            .check(ColumnIn("id", IDS_79)),
        case("lateral-amounts", A, "SELECT p.id, c.salary_base FROM participant p LEFT JOIN LATERAL (SELECT c.salary_base FROM contribution c WHERE c.participant_id = p.id) c ON true LIMIT 500"),
        case("lateral-clerk", C, "SELECT x.* FROM employer e, LATERAL (SELECT * FROM participant p WHERE p.employer_id = e.id) x").denied(PRIV),
        case("union-clerk-two-pins", C, "SELECT full_name FROM participant WHERE citizen_id = '{CID01}' UNION ALL SELECT full_name FROM participant WHERE citizen_id = '{CID01B}'"),
        case("union-clerk-unpinned-arm", C, "SELECT full_name FROM participant WHERE citizen_id = '{CID01}' UNION ALL SELECT full_name FROM participant").denied(PRIV),
        case("subquery-clerk-scalar", C, "SELECT (SELECT string_agg(full_name, ',') FROM participant) FROM participant WHERE citizen_id = '{CID01}'").denied(PRIV),
        case("subquery-clerk-exists", C, "SELECT full_name FROM participant WHERE citizen_id = '{CID01}' AND EXISTS (SELECT 1 FROM participant q WHERE q.full_name LIKE 'Nguyễn%')").denied(PRIV),
        case("subquery-scalar-denied", A, "SELECT (SELECT phone FROM participant LIMIT 1)").denied(PRIV),
        case("join-using-ambiguous", A, "SELECT citizen_id FROM public.participant p1 JOIN public.participant p2 USING (id)").harmless(&["42702"]),
        case("natural-join", A, "SELECT * FROM participant NATURAL JOIN employer").check(AnyProvince),
        case("tablesample", A, "SELECT count(*) FROM participant TABLESAMPLE SYSTEM (100)").check(Same(COUNT_79)),
        case("only", A, "SELECT count(*) FROM ONLY participant").check(Same(COUNT_79)),
        case("table-statement", A, "TABLE participant").check(ColumnIn("id", IDS_79)),
        case("for-update", A, "SELECT id FROM participant FOR UPDATE").check(ColumnIn("id", IDS_79)),
        case("alias-column-list", A, "SELECT * FROM public.participant AS p(a, b, c)"),
        case("alias-single-column", A, "SELECT x FROM participant AS p(x)"),
        // --- multi-statement strings: one denied, none runs ----------------------------------
        case("multi-set-then-denied", A, "SET application_name = 'mg_leak_1'; SELECT phone FROM participant")
            .denied(PRIV).multi().after(SettingIsNot("application_name", "mg_leak_1")),
        case("multi-catalog-last", A, "SELECT 1; SET application_name = 'mg_leak_2'; SELECT * FROM pg_authid")
            .denied(PRIV).multi().after(SettingIsNot("application_name", "mg_leak_2")),
        case("multi-clerk-unpinned", C, "SET application_name = 'mg_leak_3'; SELECT * FROM participant")
            .denied(PRIV).multi().after(SettingIsNot("application_name", "mg_leak_3")),
        case("multi-dynamic-sql", A, "SET application_name = 'mg_leak_4'; SELECT query_to_xml('select 1', true, false, '')")
            .denied(PRIV).multi().after(SettingIsNot("application_name", "mg_leak_4")),
        case("multi-unicode", A, "SET application_name = 'mg_leak_5'; SELECT U&\"ph\\006fne\" FROM participant")
            .denied(DENY).multi().after(SettingIsNot("application_name", "mg_leak_5")),
        case("multi-syntax-error", A, "SET application_name = 'mg_leak_6'; SEL/**/ECT 1")
            .denied(UNPARSABLE).multi().after(SettingIsNot("application_name", "mg_leak_6")),
        case("multi-write", A, "SET application_name = 'mg_leak_7'; INSERT INTO employer (id, tax_code, name, province_code) VALUES (9999, 'x', 'mg leak', '79')")
            .denied(DENY).multi()
            .after(SettingIsNot("application_name", "mg_leak_7"))
            .after(Superuser("SELECT count(*) FROM employer WHERE id = 9999", "0")),
        case("multi-investigator-denied-table", I, "SET application_name = 'mg_leak_8'; SELECT salary_base FROM contribution")
            .denied(PRIV).multi().after(SettingIsNot("application_name", "mg_leak_8")),
        case("multi-transaction-wrapped", A, "BEGIN; SET application_name = 'mg_leak_9'; SELECT * FROM pg_shadow; COMMIT")
            .denied(PRIV).multi().after(SettingIsNot("application_name", "mg_leak_9")),
        // --- catalog and statistics views ------------------------------------------------------
        case("catalog-pg-stats", A, "SELECT * FROM pg_stats").denied(PRIV),
        case("catalog-pg-stats-values", A, "SELECT most_common_vals::text FROM pg_catalog.pg_stats WHERE tablename = 'participant'").denied(PRIV),
        case("catalog-pg-stats-histogram", C, "SELECT histogram_bounds::text FROM pg_stats WHERE attname = 'citizen_id'").denied(PRIV),
        case("catalog-pg-statistic", A, "SELECT stavalues1::text FROM pg_statistic").denied(PRIV),
        case("catalog-pg-stats-ext", A, "SELECT * FROM pg_catalog.pg_stats_ext").denied(PRIV),
        case("catalog-activity", C, "SELECT query FROM pg_stat_activity").denied(PRIV),
        case("catalog-activity-qualified", A, "SELECT * FROM \"pg_catalog\".\"pg_stat_activity\"").denied(PRIV),
        case("catalog-activity-function", A, "SELECT * FROM pg_stat_get_activity(NULL)").denied(PRIV),
        case("catalog-authid", A, "SELECT rolname, rolpassword FROM pg_authid").denied(PRIV),
        case("catalog-shadow", I, "SELECT passwd FROM pg_shadow").denied(PRIV),
        case("catalog-settings", A, "SELECT name, setting FROM pg_settings").denied(PRIV),
        case("catalog-maskgate-setting", A, "SELECT current_setting('maskgate.pseudonym_inner')").denied(PRIV),
        case("catalog-maskgate-setting-missing-ok", C, "SELECT current_setting('maskgate.pseudonym_inner', true)").denied(PRIV),
        case("catalog-show-maskgate", A, "SHOW maskgate.pseudonym_inner").denied(PRIV),
        case("catalog-pg-stat-statements", A, "SELECT * FROM pg_stat_statements").denied(PRIV),
        case("catalog-user-tables", A, "SELECT relname, n_live_tup FROM pg_stat_user_tables").check(AnyProvince),
        case("catalog-information-schema", A, "SELECT column_name FROM information_schema.columns WHERE table_name = 'participant'"),
        case("catalog-pg-class", A, "SELECT reltuples FROM pg_class WHERE relname = 'participant'"),
        // --- dynamic-SQL and system functions --------------------------------------------------
        case("dyn-query-to-xml", A, "SELECT query_to_xml('SELECT citizen_id, phone FROM public.participant', true, false, '')").denied(PRIV),
        case("dyn-table-to-xml", A, "SELECT table_to_xml('public.participant', true, false, '')").denied(PRIV),
        case("dyn-cursor-to-xml", A, "SELECT cursor_to_xml('c', 10, true, false, '')").denied(PRIV),
        case("dyn-database-to-xml", A, "SELECT database_to_xml(true, false, '')").denied(PRIV),
        case("dyn-schema-to-xml", A, "SELECT schema_to_xml('public', true, false, '')").denied(PRIV),
        case("dyn-query-to-xml-schema", A, "SELECT query_to_xml_and_xmlschema('SELECT phone FROM participant', true, false, '')").denied(PRIV),
        case("dyn-nested-in-xpath", A, "SELECT xpath('/x', query_to_xml('select phone from participant', true, false, ''))").denied(PRIV),
        case("dyn-ts-stat", A, "SELECT * FROM ts_stat('SELECT to_tsvector(full_name) FROM participant')").denied(PRIV),
        case("dyn-qualified", C, "SELECT pg_catalog.query_to_xml('SELECT full_name FROM participant', true, false, '')").denied(PRIV),
        case("dyn-quoted-name", A, "SELECT \"query_to_xml\"('SELECT phone FROM participant', true, false, '')").denied(PRIV),
        case("dyn-dblink", A, "SELECT * FROM dblink('dbname=postgres', 'SELECT phone FROM participant') AS t(x text)").denied(PRIV),
        case("dyn-read-file", A, "SELECT pg_read_file('postgresql.conf')").denied(PRIV),
        case("dyn-lo-import", A, "SELECT lo_import('/etc/hostname')").denied(PRIV),
        case("dyn-set-config", A, "SELECT set_config('search_path', 'pg_temp, public', false)").denied(PRIV),
        case("dyn-ls-dir", A, "SELECT pg_ls_dir('.')").denied(PRIV),
        case("dyn-xmlagg-masked", A, "SELECT xmlagg(xmlelement(name x, full_name)) FROM participant"),
        case("dyn-format-only-text", A, "SELECT format('SELECT %I FROM participant', 'phone')"),
        // --- session state ----------------------------------------------------------------------
        case("session-set-role", A, "SET ROLE postgres").denied(PRIV),
        case("session-authorization", A, "SET SESSION AUTHORIZATION postgres").denied(DENY_OR_SYNTAX),
        case("session-search-path", A, "SET search_path = pg_temp, public").denied(DENY),
        case("session-explain", A, "EXPLAIN SELECT * FROM participant").rows(),
        case("session-explain-costs", A, "EXPLAIN (COSTS ON) SELECT * FROM participant").denied(PRIV),
        case("session-explain-verbose", A, "EXPLAIN VERBOSE SELECT * FROM participant").denied(PRIV),
        case("session-search-path-catalog-last", A, "SET search_path = public, pg_catalog").denied(DENY),
        case("session-explain-analyze", A, "EXPLAIN ANALYZE SELECT phone FROM participant").denied(PRIV),
        case("session-do", A, "DO $$ BEGIN PERFORM 1; END $$").denied(DENY_OR_SYNTAX),
        case("session-create-function", A, "CREATE FUNCTION mg_f() RETURNS text LANGUAGE sql AS 'SELECT phone FROM participant LIMIT 1'")
            .denied(PRIV).after(Superuser("SELECT count(*) FROM pg_proc WHERE proname = 'mg_f'", "0")),
        // --- cursors ----------------------------------------------------------------------------
        steps("cursor-fetch-past-cap", C, &[Sql("BEGIN"), Sql("DECLARE c CURSOR FOR SELECT g FROM generate_series(1, 200) g"), Sql("FETCH 40 FROM c"), Sql("FETCH 40 FROM c"), Sql("FETCH 40 FROM c")])
            .capped_or_denied(50),
        steps("cursor-fetch-all-past-cap", C, &[Sql("BEGIN"), Sql("DECLARE c CURSOR FOR SELECT g FROM generate_series(1, 200) g"), Sql("FETCH ALL FROM c")])
            .capped_or_denied(50),
        steps("cursor-with-hold", C, &[Sql("BEGIN"), Sql("DECLARE c CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 100) g"), Sql("COMMIT"), Sql("FETCH 60 FROM c")])
            .capped_or_denied(50),
        steps("cursor-investigator-past-cap", I, &[Sql("BEGIN"), Sql("DECLARE c CURSOR FOR SELECT id FROM participant"), Sql("FETCH 300 FROM c"), Sql("FETCH 300 FROM c")])
            .capped_or_denied(500),
        steps("cursor-denied-column", A, &[Sql("BEGIN"), Sql("DECLARE c CURSOR FOR SELECT phone FROM participant")]).denied(DENY),
        steps("cursor-all-rows", A, &[Sql("BEGIN"), Sql("DECLARE c CURSOR FOR SELECT * FROM participant"), Sql("FETCH ALL FROM c")])
            .check(ColumnIn("id", IDS_79)),
        steps("cursor-clerk-unpinned", C, &[Sql("BEGIN"), Sql("DECLARE c CURSOR FOR SELECT * FROM participant"), Sql("FETCH ALL FROM c")]).denied(DENY),
        steps("cursor-scroll", A, &[Sql("BEGIN"), Sql("DECLARE c SCROLL CURSOR FOR SELECT full_name, citizen_id FROM participant"), Sql("FETCH ABSOLUTE 5 FROM c"), Sql("FETCH BACKWARD 3 FROM c")]),
        steps("cursor-dynamic-sql", A, &[Sql("BEGIN"), Sql("DECLARE c CURSOR FOR SELECT query_to_xml('select 1', true, false, '')")]).denied(DENY),
        steps("cursor-outside-transaction", A, &[Sql("DECLARE c CURSOR FOR SELECT phone FROM participant")]).denied(DENY),
        steps("prepare-denied-column", A, &[Sql("PREPARE s AS SELECT phone FROM participant")]).denied(DENY),
        steps("prepare-execute", A, &[Sql("PREPARE s AS SELECT id, full_name FROM participant"), Sql("EXECUTE s")]).check(ColumnIn("id", IDS_79)),
        steps("prepare-clerk-tautology", C, &[Sql("PREPARE s AS SELECT full_name FROM participant WHERE citizen_id = '{CID01}' OR true"), Sql("EXECUTE s")]).denied(DENY),
        // --- RETURNING and writes ---------------------------------------------------------------
        case("returning-delete", A, "DELETE FROM participant WHERE province_code = '01' RETURNING citizen_id")
            .denied(DENY).after(Superuser("SELECT count(*) FROM participant", "3000")),
        case("returning-update", A, "UPDATE participant SET full_name = 'MG LEAK' WHERE id = 14 RETURNING phone")
            .denied(DENY).after(Superuser("SELECT count(*) FROM participant WHERE full_name = 'MG LEAK'", "0")),
        case("returning-insert", A, "INSERT INTO employer (id, tax_code, name, province_code) VALUES (9998, 't', 'MG LEAK', '79') RETURNING *")
            .denied(DENY).after(Superuser("SELECT count(*) FROM employer WHERE id = 9998", "0")),
        case("returning-cte-delete", A, "WITH d AS (DELETE FROM benefit_claim WHERE id = 5 RETURNING *) SELECT * FROM d")
            .denied(DENY).after(Superuser("SELECT count(*) FROM benefit_claim WHERE id = 5", "1")),
        case("returning-investigator-update", I, "UPDATE benefit_claim SET status = status WHERE id = 1 RETURNING diagnosis_code").denied(DENY),
        case("returning-clerk-delete", C, "DELETE FROM participant WHERE citizen_id = '{CID01}' RETURNING *")
            .denied(DENY).after(Superuser("SELECT count(*) FROM participant WHERE id = 10", "1")),
        // --- write-then-read copies ------------------------------------------------------------
        case("copy-create-table-as", A, "CREATE TABLE mg_copy_1 AS SELECT * FROM participant")
            .denied(PRIV).after(Superuser("SELECT to_regclass('public.mg_copy_1') IS NULL", "t")),
        case("copy-select-into", A, "SELECT * INTO mg_copy_2 FROM participant")
            .denied(PRIV).after(Superuser("SELECT to_regclass('public.mg_copy_2') IS NULL", "t")),
        case("copy-temp-table", A, "CREATE TEMP TABLE mg_copy_3 AS SELECT citizen_id FROM participant").denied(PRIV),
        case("copy-insert-select", A, "INSERT INTO mg_scratch SELECT id, full_name FROM participant")
            .denied(DENY).after(Superuser("SELECT count(*) FROM mg_scratch", "0")),
        case("copy-materialized-view", A, "CREATE MATERIALIZED VIEW mg_copy_4 AS SELECT * FROM participant")
            .denied(PRIV).after(Superuser("SELECT to_regclass('public.mg_copy_4') IS NULL", "t")),
        case("copy-view", A, "CREATE VIEW mg_copy_5 AS SELECT citizen_id FROM public.participant")
            .denied(PRIV).after(Superuser("SELECT to_regclass('public.mg_copy_5') IS NULL", "t")),
        case("copy-to-stdout", A, "COPY participant TO STDOUT").denied(PRIV),
        case("copy-query-to-stdout", A, "COPY (SELECT citizen_id FROM participant) TO STDOUT").denied(PRIV),
        case("copy-read-scratch", A, "SELECT * FROM mg_scratch").denied(PRIV),
        // --- lookup-only evasions (the clerk must pin one key by equality) -----------------------
        case("lookup-unpinned", C, "SELECT full_name FROM participant").denied(PRIV),
        case("lookup-in-list", C, "SELECT full_name FROM participant WHERE citizen_id IN ('{CID01}', '{CID01B}')").denied(PRIV),
        case("lookup-any-array", C, "SELECT full_name FROM participant WHERE citizen_id = ANY(ARRAY['{CID01}', '{CID01B}'])").denied(PRIV),
        case("lookup-like", C, "SELECT full_name FROM participant WHERE citizen_id LIKE '001%'").denied(PRIV),
        case("lookup-or-true", C, "SELECT full_name FROM participant WHERE citizen_id = '{CID01}' OR true").denied(PRIV),
        case("lookup-or-second-key", C, "SELECT full_name FROM participant WHERE citizen_id = '{CID01}' OR citizen_id = '{CID01B}'").denied(PRIV),
        case("lookup-or-other-key", C, "SELECT full_name FROM participant p WHERE p.citizen_id = '{CID01}' OR p.social_insurance_code = '{SIC01}'").denied(PRIV),
        case("lookup-tautology", C, "SELECT full_name FROM participant WHERE citizen_id = citizen_id").denied(PRIV),
        case("lookup-subquery", C, "SELECT full_name FROM participant WHERE citizen_id = (SELECT '{CID01}')").denied(PRIV),
        case("lookup-expression", C, "SELECT full_name FROM participant WHERE citizen_id = lower('{CID01}')").denied(PRIV),
        case("lookup-cast-column", C, "SELECT full_name FROM participant WHERE citizen_id::text = '{CID01}'").denied(PRIV),
        case("lookup-range", C, "SELECT full_name FROM participant WHERE citizen_id > ''").denied(PRIV),
        case("lookup-between", C, "SELECT full_name FROM participant WHERE citizen_id BETWEEN '0' AND '9'").denied(PRIV),
        case("lookup-negation", C, "SELECT full_name FROM participant WHERE NOT (citizen_id <> '{CID01}')").denied(PRIV),
        case("lookup-not-null", C, "SELECT full_name FROM participant WHERE citizen_id IS NOT NULL").denied(PRIV),
        case("lookup-by-id", C, "SELECT full_name FROM participant WHERE id = 10").denied(PRIV),
        case("lookup-by-name", C, "SELECT citizen_id FROM participant WHERE full_name = '{NAME01}'").denied(PRIV),
        case("lookup-inequality-count", C, "SELECT count(*) FROM participant WHERE citizen_id <> '{CID01}'").denied(PRIV),
        case("lookup-row-comparison", C, "SELECT full_name FROM participant WHERE (citizen_id, id) = ('{CID01}', 10)"),
        case("lookup-other-predicate-masked", C, "SELECT full_name FROM participant WHERE citizen_id = '{CID01}' AND citizen_id LIKE '0%'").check(RowCount(0)),
        case("lookup-sic-prefix-masked", C, "SELECT count(*) FROM participant WHERE citizen_id = '{CID01}' AND substr(social_insurance_code, 1, 2) = '01'").check(Same(ZERO)),
        case("lookup-other-province", C, "SELECT full_name, citizen_id FROM participant WHERE citizen_id = '{CID79}'").rows().check(RowCount(0)),
        case("lookup-other-province-clerk79", C79, "SELECT full_name, citizen_id FROM participant WHERE citizen_id = '{CID01}'").rows().check(RowCount(0)),
        case("lookup-second-key", C, "SELECT full_name, social_insurance_code FROM participant WHERE social_insurance_code = '{SIC01}'").rows().check(RowCount(1)),
        case("lookup-star", C, "SELECT * FROM participant WHERE citizen_id = '{CID01}'").rows().check(RowCount(1)),
        case("lookup-self-join-two-pins", C, "SELECT p.full_name, q.full_name FROM participant p, participant q WHERE p.citizen_id = '{CID01}' AND q.citizen_id = '{CID01B}'"),
        case("lookup-self-join-one-pin", C, "SELECT q.full_name FROM participant p JOIN participant q ON q.gender = p.gender WHERE p.citizen_id = '{CID01}'").denied(PRIV),
        case("lookup-denied-column", C, "SELECT full_name FROM participant WHERE citizen_id = '{CID01}' AND phone IS NOT NULL").denied(PRIV),
        case("lookup-derived-table", C, "SELECT full_name FROM (SELECT * FROM participant WHERE citizen_id = '{CID01}') s"),
        case("lookup-dollar-quoted", C, "SELECT full_name FROM participant WHERE citizen_id = $${CID01}$$"),
        case("lookup-order-by-subquery", C, "SELECT full_name FROM participant WHERE citizen_id = '{CID01}' ORDER BY (SELECT count(*) FROM participant)").denied(PRIV),
        case("lookup-no-contribution-access", C, "SELECT * FROM contribution").denied(PRIV),
        case("lookup-no-employer-access", C, "SELECT name FROM employer").denied(PRIV),
        case("lookup-no-employer-column", C, "SELECT employer_id FROM participant WHERE citizen_id = '{CID01}'").denied(PRIV),
        // --- paging past the cap -------------------------------------------------------------------
        case("cap-plain", C, "SELECT g FROM generate_series(1, 200) g").capped(50),
        case("cap-limit-above", C, "SELECT g FROM generate_series(1, 200) g LIMIT 100").capped(50),
        case("cap-limit-all", C, "SELECT g FROM generate_series(1, 200) g LIMIT ALL").capped(50),
        case("cap-offset", C, "SELECT g FROM generate_series(1, 200) g OFFSET 10").capped(50),
        case("cap-fetch-first", C, "SELECT g FROM generate_series(1, 200) g FETCH FIRST 120 ROWS ONLY").capped(50),
        case("cap-exactly", C, "SELECT g FROM generate_series(1, 200) g LIMIT 50").rows().check(RowCount(50)),
        case("cap-derived-limit", C, "SELECT * FROM (SELECT g FROM generate_series(1, 200) g LIMIT 150) s").capped(50),
        case("cap-union", C, "SELECT g FROM generate_series(1, 100) g UNION ALL SELECT g FROM generate_series(1, 100) g").capped(50),
        case("cap-limit-subquery", C, "SELECT g FROM generate_series(1, 200) g LIMIT (SELECT 100)").capped_or_denied(50),
        case("cap-limit-expression", C, "SELECT g FROM generate_series(1, 200) g LIMIT 10 * 10").capped_or_denied(50),
        case("cap-recursive", C, "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 500) SELECT n FROM r").capped(50),
        case("cap-srf-in-target", C, "SELECT generate_series(1, 200)").capped_or_denied(50),
        case("cap-unnest", C, "SELECT unnest(array(SELECT generate_series(1, 200)))").capped_or_denied(50),
        steps("cap-portal-clerk", C, &[Portal("SELECT g FROM generate_series(1, 200) g", 20)]).capped(50),
        steps("cap-portal-analyst", A, &[Portal("SELECT g FROM generate_series(1, 20000) g", 3000)]).capped(10_000),
        case("cap-investigator-participants", I, "SELECT id FROM participant").capped(500),
        case("cap-investigator-under", I, "SELECT id, citizen_id, phone FROM participant ORDER BY id LIMIT 400").rows().check(RowCount(400)),
        case("cap-investigator-cross", I, "SELECT p.id FROM participant p, (VALUES (1), (2)) v(x) LIMIT 1000").capped_or_denied(500),
        steps("cap-portal-investigator", I, &[Portal("SELECT id FROM participant", 100)]).capped(500),
        // --- investigator masks --------------------------------------------------------------------
        case("investigator-diagnosis", I, "SELECT diagnosis_code FROM benefit_claim ORDER BY id LIMIT 100").rows(),
        case("investigator-contribution", I, "SELECT salary_base FROM contribution").denied(PRIV),
        case("investigator-diagnosis-shape", I, "SELECT count(*) FROM benefit_claim WHERE diagnosis_code LIKE '%.%'").check(Same(ZERO)),
        // --- more rewrite probes ----------------------------------------------------------------------
        steps("cursor-scroll-refetch", C, &[Sql("BEGIN"), Sql("DECLARE c SCROLL CURSOR FOR SELECT g FROM generate_series(1, 200) g"), Sql("FETCH FORWARD 40 FROM c"), Sql("FETCH BACKWARD 40 FROM c"), Sql("FETCH FORWARD 40 FROM c")])
            .capped_or_denied(50),
        steps("cursor-move-then-fetch", C, &[Sql("BEGIN"), Sql("DECLARE c CURSOR FOR SELECT g FROM generate_series(1, 200) g"), Sql("MOVE 45 IN c"), Sql("FETCH 40 FROM c")])
            .capped_or_denied(50),
        steps("cursor-absolute-past-cap", C, &[Sql("BEGIN"), Sql("DECLARE c SCROLL CURSOR FOR SELECT g FROM generate_series(1, 200) g"), Sql("FETCH ABSOLUTE 51 FROM c")])
            .capped_or_denied(50),
        steps("cursor-last-past-cap", C, &[Sql("BEGIN"), Sql("DECLARE c SCROLL CURSOR FOR SELECT g FROM generate_series(1, 200) g"), Sql("FETCH LAST FROM c")])
            .capped_or_denied(50),
        steps("cursor-relative-past-cap", C, &[Sql("BEGIN"), Sql("DECLARE c SCROLL CURSOR FOR SELECT g FROM generate_series(1, 200) g"), Sql("FETCH RELATIVE 51 FROM c")])
            .capped_or_denied(50),
        steps("cursor-move-absolute-past-cap", C, &[Sql("BEGIN"), Sql("DECLARE c SCROLL CURSOR FOR SELECT g FROM generate_series(1, 200) g"), Sql("MOVE ABSOLUTE 50 IN c"), Sql("FETCH 1 FROM c")])
            .capped_or_denied(50),
        steps("cursor-two-cursors-one-query", C, &[Sql("BEGIN"), Sql("DECLARE a CURSOR FOR SELECT g FROM generate_series(1, 200) g"), Sql("FETCH 45 FROM a"), Sql("FETCH 45 FROM a")])
            .capped_or_denied(50),
        steps("prepare-execute-past-cap", C, &[Sql("PREPARE s AS SELECT g FROM generate_series(1, 200) g"), Sql("EXECUTE s")]).capped_or_denied(50),
        steps("prepare-clerk-parameter", C, &[Sql("PREPARE s(text) AS SELECT full_name, citizen_id FROM participant WHERE citizen_id = $1"), Sql("EXECUTE s('{CID01}')")]),
        steps("discard-all-then-read", A, &[Sql("DISCARD ALL"), Sql("SELECT * FROM participant")]).check(ColumnIn("id", IDS_79)),
        steps("catalog-prepared-statements", C, &[Sql("PREPARE s(text) AS SELECT full_name FROM participant WHERE citizen_id = $1"), Sql("SELECT name, statement FROM pg_prepared_statements")]).denied(PRIV),
        steps("catalog-cursors", A, &[Sql("BEGIN"), Sql("DECLARE c CURSOR FOR SELECT full_name FROM participant"), Sql("SELECT name, statement FROM pg_cursors")]).denied(PRIV),
        case("catalog-backend-activity", A, "SELECT pg_stat_get_backend_activity(s) FROM pg_stat_get_backend_idset() s").denied(PRIV),
        case("catalog-stats-ext-exprs", A, "SELECT * FROM pg_stats_ext_exprs").denied(PRIV),
        case("catalog-largeobject", A, "SELECT data FROM pg_largeobject").denied(PRIV),
        case("catalog-current-query", A, "SELECT current_query()"),
        case("lookup-pin-in-on-clause", C, "SELECT p.full_name FROM participant p JOIN participant q ON q.citizen_id = '{CID01B}' WHERE p.citizen_id = '{CID01}'").denied(PRIV),
        case("lookup-or-precedence", C, "SELECT full_name FROM participant WHERE citizen_id = '{CID01}' AND true OR false").denied(PRIV),
        case("lookup-is-true", C, "SELECT full_name FROM participant WHERE (citizen_id = '{CID01}') IS TRUE").denied(PRIV),
        case("lookup-double-negation", C, "SELECT full_name FROM participant WHERE NOT NOT citizen_id = '{CID01}'"),
        case("lookup-same-pin-twice-or", C, "SELECT full_name FROM participant WHERE citizen_id = '{CID01}' OR citizen_id = '{CID01}'").denied(PRIV),
        case("lookup-collate", C, "SELECT full_name FROM participant WHERE citizen_id = '{CID01}' COLLATE \"C\""),
        case("lookup-notify-payload", C, "SELECT pg_notify('mg_clerk', full_name) FROM participant WHERE citizen_id = '{CID01}'"),
        case("oracle-cast-on-masked-identifier", A, "SELECT count(*) FROM participant WHERE (CASE WHEN citizen_id IS NOT NULL THEN 'x' ELSE '1' END)::int = 1").check(Same(COUNT_79)),
        case("oracle-sleep-by-name", A, "SELECT CASE WHEN full_name LIKE 'N%' THEN pg_sleep(0) END FROM participant"),
        case("infer-filter-clause", A, "SELECT count(*) FILTER (WHERE province_code = '01') FROM participant").check(Same(ZERO)),
        case("infer-employers-of-other-province", A, "SELECT e.id FROM employer e WHERE EXISTS (SELECT 1 FROM participant p WHERE p.employer_id = e.id AND p.province_code = '01')").check(RowCount(0)),
        case("infer-values-subquery", A, "VALUES ((SELECT count(*) FROM participant))").check(Same(COUNT_79)),
        case("infer-window-lag", A, "SELECT id, lag(full_name) OVER (ORDER BY id), lead(date_of_birth) OVER (ORDER BY id) FROM participant").check(ColumnIn("id", IDS_79)),
        case("infer-distinct-on", A, "SELECT DISTINCT ON (full_name) full_name, id FROM participant ORDER BY full_name, id").check(ColumnIn("id", IDS_79)),
        case("row-jsonb-each", A, "SELECT j.key, j.value FROM participant p, jsonb_each_text(to_jsonb(p)) j"),
        case("row-unnest-array-subquery", A, "SELECT * FROM unnest(ARRAY(SELECT full_name FROM participant)) AS u(v)"),
        case("row-lateral-denied-column", A, "SELECT s.x FROM participant p, LATERAL (SELECT p.phone) s(x)").denied(PRIV),
        case("row-cast-to-table-type", A, "SELECT (p::participant).phone FROM participant p").harmless(&["42846"]),
        case("row-union-out-of-scope", A, "SELECT * FROM participant WHERE id = 14 UNION ALL SELECT * FROM participant WHERE id = 10").check(ColumnIn("id", IDS_79)),
        case("cap-analyst-cross-join", A, "SELECT a.id FROM participant a, participant b").capped(10_000),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_attempts_are_denied_or_see_only_what_the_account_may_see() {
    let env = Env::start().await;
    let cases = cases();
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    run_corpus(&env, &cases, BOTH).await;
}

/// The checks must be able to fail: raw rows read by the unrestricted
/// auditor, judged by the analyst's and the clerk's rules, are leaks of every
/// kind the corpus relies on, in both protocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leak_checks_recognise_raw_values_in_both_formats() {
    let cluster = cluster();
    let su = superuser(cluster).await;
    let truth = Truth::fetch(&su).await;
    let proxy = register::start_proxy(cluster).await.expect("proxy starts");
    let auditor = proxy.connect(AUDITOR, PASSWORD).await.unwrap();
    let sql = "SELECT p AS whole, citizen_id, full_name, phone, date_of_birth, province_code, \
               (SELECT amount FROM contribution c WHERE c.participant_id = p.id LIMIT 1) AS amount \
               FROM participant p WHERE id IN (10, 17, 20)";
    for outcome in [simple(&auditor, sql).await, extended(&auditor, sql).await] {
        assert!(outcome.error.is_none(), "{:?}", outcome.error);
        assert_eq!(outcome.rows.len(), 3);
        let as_analyst = leaks(
            ANALYST,
            sql,
            &outcome.rows,
            &secrets_for(ANALYST, &truth),
            &truth,
            true,
        )
        .join("\n");
        for kind in [
            "raw citizen_id",
            "full_name",
            "phone",
            "raw date_of_birth",
            "raw contribution amount",
            "row outside the account's province",
            "identifier not nulled",
            "full_name not reduced to initials",
            "amount not rounded",
        ] {
            assert!(
                as_analyst.contains(kind),
                "{kind} not recognised:\n{as_analyst}"
            );
        }
        assert!(as_analyst.contains("in column \"whole\""), "{as_analyst}");
        // The clerk pinned participant 10 by its key: that name is allowed, the others are not.
        let pinned = format!(
            "{sql} AND citizen_id = '{}'",
            truth.participant(P01).citizen_id
        );
        let as_clerk = leaks(
            CLERK,
            &pinned,
            &outcome.rows,
            &secrets_for(CLERK, &truth),
            &truth,
            true,
        );
        let names = as_clerk
            .iter()
            .filter(|l| l.starts_with("full_name in"))
            .count();
        assert!(names > 0, "{as_clerk:?}");
        assert!(
            as_clerk.iter().any(|l| l.contains("citizen_id not masked")),
            "{as_clerk:?}"
        );
    }
}
