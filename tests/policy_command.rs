//! `maskgate policy check` and `maskgate policy explain` run as real processes on a
//! copy of the example policy, `--live` against a real PostgreSQL.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use maskgate_testkit::PgCluster;

/// A configuration and a copy of `examples/policy` in a temporary directory.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    /// `upstream`: the cluster and database `--live` connects to; other commands
    /// never connect, so a placeholder will do for them.
    fn new(upstream: Option<(&PgCluster, &str)>) -> Setup {
        let dir = tempfile::tempdir().expect("temporary directory");
        let policy = dir.path().join("policy");
        fs::create_dir(&policy).unwrap();
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policy");
        for entry in fs::read_dir(&examples).unwrap() {
            let path = entry.unwrap().path();
            fs::copy(&path, policy.join(path.file_name().unwrap())).unwrap();
        }
        let (host, port, user, password, database) = match upstream {
            Some((pg, database)) => (pg.host(), pg.port(), pg.user(), pg.password(), database),
            None => ("127.0.0.1", 1, "maskgate", "unused", "register"),
        };
        fs::write(dir.path().join("upstream.pass"), password).unwrap();
        let config = format!(
            r#"[server]
listen = "127.0.0.1:6432"

[tls]
mode = "disable"

[upstream]
host = "{host}"
port = {port}
database = "{database}"
user = "{user}"
password_file = "upstream.pass"
connect_timeout = "10s"

[policy]
dir = "policy"
timezone = "+07:00"
"#
        );
        fs::write(dir.path().join("maskgate.toml"), config).unwrap();
        Setup { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("maskgate.toml")
    }

    fn policy_file(&self, name: &str) -> PathBuf {
        self.dir.path().join("policy").join(name)
    }

    /// Replaces `from` (which must occur exactly once) in a policy file and returns
    /// the 1-based line and column where `to` now starts.
    fn edit(&self, file: &str, from: &str, to: &str) -> (usize, usize) {
        let path = self.policy_file(file);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches(from).count(), 1, "{from:?} in {file}");
        let offset = text.find(from).unwrap();
        fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
            .chars()
            .count()
            + 1;
        (line, column)
    }

    fn run(&self, args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_maskgate"))
            .arg("policy")
            .args(args)
            .arg("--config")
            .arg(self.config())
            .env_remove("MASKGATE_CONFIG")
            .output()
            .expect("maskgate runs");
        Run::from(output)
    }

    /// Like [`Setup::run`], with `input` on standard input.
    fn run_with_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut child = Command::new(env!("CARGO_BIN_EXE_maskgate"))
            .arg("policy")
            .args(args)
            .arg("--config")
            .arg(self.config())
            .env_remove("MASKGATE_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("maskgate runs");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .expect("write the statement");
        Run::from(child.wait_with_output().expect("maskgate finishes"))
    }

    fn explain_sql(&self, user: &str, sql: &str) -> Run {
        self.run(&["explain", "--user", user, "--sql", sql])
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().expect("maskgate exits normally"),
            stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
        }
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or("")
}

#[test]
fn the_example_policy_passes() {
    let setup = Setup::new(None);
    let run = setup.run(&["check"]);
    assert_eq!(run.code, 0, "{run}");
    let summary = last_line(&run.stdout);
    assert!(
        summary.starts_with("policy OK: 8 accounts, 8 roles, 9 tables; "),
        "{run}"
    );
    assert!(!run.stdout.contains("errors:"), "{run}");
}

#[test]
fn a_broken_policy_is_refused_with_positions_and_warnings_apart() {
    let setup = Setup::new(None);
    let (role_line, role_column) = setup.edit(
        "accounts.toml",
        "roles = [\"province_analyst\"]",
        "roles = [\"province_analyst\", \"statistician\"]",
    );
    let (cidr_line, cidr_column) =
        setup.edit("accounts.toml", "\"10.1.30.15/32\"", "\"10.1.30.15/33\"");
    // Not used by any account: a warning, printed apart from the errors.
    fs::write(
        setup.policy_file("extra.toml"),
        "[roles.archivist]\nstatements = [\"read\"]\n",
    )
    .unwrap();

    let run = setup.run(&["check"]);
    assert_eq!(run.code, 1, "{run}");
    let accounts = setup.policy_file("accounts.toml");
    let role_at = format!(
        "{}:{role_line}:{}: error:",
        accounts.display(),
        role_column + "roles = [\"province_analyst\", ".len()
    );
    let cidr_at = format!("{}:{cidr_line}:{cidr_column}: error:", accounts.display());

    let (errors, warnings) = run
        .stdout
        .split_once("\nwarnings:\n")
        .unwrap_or_else(|| panic!("warnings under their own heading\n{run}"));
    assert!(errors.starts_with("errors:\n"), "{run}");
    assert!(errors.contains(&role_at), "expected {role_at}\n{run}");
    assert!(errors.contains("statistician"), "{run}");
    assert!(errors.contains(&cidr_at), "expected {cidr_at}\n{run}");
    assert!(errors.contains("\n  hint: "), "{run}");
    assert!(!errors.contains(": warning:"), "{run}");
    assert!(warnings.contains("extra.toml:1:"), "{run}");
    assert!(warnings.contains("archivist"), "{run}");
    assert!(!warnings.contains(": error:"), "{run}");

    let summary = last_line(&run.stdout);
    assert!(summary.starts_with("policy REFUSED: 2 errors, "), "{run}");
}

#[test]
fn a_configuration_that_does_not_load_means_the_check_cannot_run() {
    let setup = Setup::new(None);
    fs::remove_file(setup.dir.path().join("upstream.pass")).unwrap();
    let run = setup.run(&["check"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("upstream.pass"), "{run}");
    assert!(run.stdout.is_empty(), "{run}");
}

#[test]
fn live_check_finds_missing_columns_and_changed_types() {
    let pg = PgCluster::shared();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let database = format!("policy_live_{}_{nanos}", std::process::id());
    pg.psql(&format!("CREATE DATABASE {database}"))
        .expect("create the test database");
    pg.psql_in(&database, SCHEMA).expect("create the tables");

    let setup = Setup::new(Some((pg, &database)));
    let run = setup.run(&["check", "--live"]);
    let _ = pg.psql(&format!("DROP DATABASE {database}"));

    assert_eq!(run.code, 1, "{run}");
    let (errors, warnings) = run
        .stdout
        .split_once("\nwarnings:\n")
        .unwrap_or((&run.stdout, ""));
    assert!(
        errors.contains("public.participant.phone: error: the database has no column phone"),
        "{run}"
    );
    assert!(
        errors.contains(
            "public.employer.tax_code: error: declared type varchar(14) but the database has character varying(20)"
        ),
        "{run}"
    );
    assert!(
        errors.contains(
            "public.bank_account.id: error: a row_filter_path refers to this column, which is neither a primary key nor unique on its own"
        ),
        "{run}"
    );
    assert_eq!(errors.matches(": error:").count(), 3, "{run}");
    assert!(
        warnings.contains("public.contribution.note: warning: not classified"),
        "{run}"
    );
    assert!(
        run.stdout
            .contains(&format!("checked against database {database}")),
        "{run}"
    );
    assert!(
        last_line(&run.stdout).starts_with("policy REFUSED: 3 errors"),
        "{run}"
    );
}

#[test]
fn live_check_without_a_database_cannot_run() {
    let setup = Setup::new(None);
    let run = setup.run(&["check", "--live"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr
            .contains("cannot check the policy against the database"),
        "{run}"
    );
}

#[test]
fn explain_shows_effective_rules_without_the_verifier() {
    let setup = Setup::new(None);
    let run = setup.run(&["explain", "--user", "clerk_hanoi_01"]);
    assert_eq!(run.code, 0, "{run}");
    let out = &run.stdout;
    assert!(out.starts_with("account clerk_hanoi_01 ("), "{run}");
    assert!(out.contains("rows where (province_code = '01')"), "{run}");
    assert!(
        out.contains("lookup only: each query must pin one of citizen_id, social_insurance_code"),
        "{run}"
    );
    assert!(
        out.contains("mask partial(keep_first=0, keep_last=4"),
        "{run}"
    );
    assert!(out.contains("mask year"), "{run}");
    assert!(out.contains("QĐ-123/2026"), "{run}");
    assert!(!out.contains("SCRAM-SHA-256$"), "{run}");
    assert!(!run.stderr.contains("SCRAM-SHA-256$"), "{run}");
}

#[test]
fn explain_of_an_unknown_account_fails() {
    let setup = Setup::new(None);
    let run = setup.run(&["explain", "--user", "nobody_at_all"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("no account \"nobody_at_all\""), "{run}");
    assert!(run.stdout.is_empty(), "{run}");
}

/// The indented lines under `sent upstream:` of statement `n` (1-based).
fn sent_upstream(run: &Run, n: usize) -> String {
    let statement = run
        .stdout
        .split("\nstatement ")
        .nth(n)
        .unwrap_or_else(|| panic!("no statement {n}\n{run}"));
    let (_, sql) = statement
        .split_once("  sent upstream:\n")
        .unwrap_or_else(|| panic!("statement {n} shows what is sent\n{run}"));
    sql.lines()
        .take_while(|line| line.starts_with("    "))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn explain_sql_shows_a_lookup_rewritten_with_mask_filter_and_limit() {
    let setup = Setup::new(None);
    let run = setup.explain_sql(
        "clerk_hanoi_01",
        "SELECT id, full_name, citizen_id, date_of_birth FROM participant \
         WHERE citizen_id = '001203004567'",
    );
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout
            .starts_with("account clerk_hanoi_01 (roles: clerk)\ndecision: allowed\n"),
        "{run}"
    );
    assert!(run.stdout.contains("\nstatement 1 of 1: Read\n"), "{run}");
    assert!(run.stdout.contains("\n  row cap: 50 rows\n"), "{run}");
    // The reasons: the table's rules as they apply to this account.
    assert!(run.stdout.contains("\n    public.participant\n"), "{run}");
    assert!(
        run.stdout
            .contains("\n      rows where (province_code = '01')\n"),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("lookup only: pinned by equality on one of citizen_id"),
        "{run}"
    );
    assert!(run.stdout.contains("masked: citizen_id partial("), "{run}");
    assert!(run.stdout.contains("date_of_birth year"), "{run}");
    assert!(run.stdout.contains("not readable: address, email"), "{run}");

    let sql = sent_upstream(&run, 1);
    assert!(
        sql.starts_with("SELECT id, full_name, citizen_id, date_of_birth FROM (SELECT "),
        "{run}"
    );
    assert!(sql.contains("FROM \"public\".\"participant\" WHERE (province_code = '01') AND (\"participant\".\"citizen_id\" = '001203004567')) AS \"participant\""), "{run}");
    assert!(sql.contains("date_trunc('year'"), "{run}");
    assert!(sql.contains("repeat('*'"), "{run}");
    assert!(sql.ends_with(" LIMIT 51"), "{run}");
    // The masked column's raw value is never projected under its own name.
    assert!(!sql.contains("\"participant\".\"citizen_id\" AS"), "{run}");
    assert!(run.stderr.is_empty(), "{run}");
}

#[test]
fn explain_sql_of_a_denied_column_shows_the_sqlstate_and_message() {
    let setup = Setup::new(None);
    let run = setup.explain_sql(
        "clerk_hanoi_01",
        "SELECT phone FROM participant WHERE citizen_id = '001203004567'",
    );
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stdout.contains("\ndecision: denied\n"), "{run}");
    assert!(run.stdout.contains("\nsqlstate: 42501\n"), "{run}");
    assert!(
        run.stdout.contains(
            "\nmessage: column \"phone\" of table \"public.participant\" is not available to this account\n"
        ),
        "{run}"
    );
    assert!(!run.stdout.contains("sent upstream:"), "{run}");
    // The statement's literal is not echoed in the denial.
    assert!(!run.stdout.contains("001203004567"), "{run}");
}

#[test]
fn explain_sql_of_an_unpinned_lookup_is_denied() {
    let setup = Setup::new(None);
    let run = setup.explain_sql(
        "clerk_hanoi_01",
        "SELECT full_name FROM participant WHERE citizen_id LIKE '0012%'",
    );
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stdout.contains("\nsqlstate: 42501\n"), "{run}");
    assert!(run.stdout.contains("lookup-only"), "{run}");
}

#[test]
fn explain_sql_rewrites_every_statement_of_a_string() {
    let setup = Setup::new(None);
    let run = setup.explain_sql(
        "analyst_hcm_01",
        "BEGIN; SELECT gender, count(*) FROM participant GROUP BY gender; COMMIT",
    );
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout.contains("\nstatement 1 of 3: Transaction\n"),
        "{run}"
    );
    assert!(run.stdout.contains("\nstatement 2 of 3: Read\n"), "{run}");
    assert!(
        run.stdout.contains("\nstatement 3 of 3: Transaction\n"),
        "{run}"
    );
    assert_eq!(sent_upstream(&run, 1), "BEGIN", "{run}");
    let read = sent_upstream(&run, 2);
    assert!(read.contains("WHERE (province_code = '79')) AS"), "{run}");
    assert!(read.ends_with("GROUP BY gender LIMIT 10001"), "{run}");
    assert_eq!(sent_upstream(&run, 3), "COMMIT", "{run}");
    assert!(run.stdout.contains("\n  row cap: 10000 rows\n"), "{run}");
    assert!(run.stdout.contains("\n  row cap: none\n"), "{run}");
}

#[test]
fn explain_sql_denies_the_whole_string_when_one_statement_is_denied() {
    let setup = Setup::new(None);
    let run = setup.explain_sql(
        "investigator_01",
        "SELECT count(*) FROM employer; SELECT amount FROM contribution",
    );
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stdout.contains("\ndecision: denied\n"), "{run}");
    // A relation outside the account's policy answers as a missing one.
    assert!(run.stdout.contains("\nsqlstate: 42P01\n"), "{run}");
    assert!(
        run.stdout.contains("\nmessage: statement 2 of 2: "),
        "{run}"
    );
    assert!(!run.stdout.contains("sent upstream:"), "{run}");
}

#[test]
fn explain_sql_for_an_unrestricted_account_passes_statements_unchanged() {
    let setup = Setup::new(None);
    let sql = "SELECT phone, citizen_id FROM participant";
    let run = setup.explain_sql("auditor_01", sql);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("\ndecision: allowed\n"), "{run}");
    assert!(run.stdout.contains("pass through unchanged"), "{run}");
    assert!(run.stdout.contains("\nrow cap: none\n"), "{run}");
    assert!(
        run.stdout
            .ends_with(&format!("sent upstream as written:\n  {sql}\n")),
        "{run}"
    );
}

#[test]
fn explain_sql_reads_the_statement_from_stdin() {
    let setup = Setup::new(None);
    let run = setup.run_with_stdin(
        &["explain", "--user", "clerk_hanoi_01", "--sql", "-"],
        "SELECT full_name\nFROM participant\nWHERE social_insurance_code = $1;\n",
    );
    assert_eq!(run.code, 0, "{run}");
    let sql = sent_upstream(&run, 1);
    assert!(
        sql.contains("AND (\"participant\".\"social_insurance_code\" = $1)) AS"),
        "{run}"
    );
    assert!(sql.ends_with(" LIMIT 51"), "{run}");
}

#[test]
fn explain_sql_of_an_unparsable_statement_is_a_denial() {
    let setup = Setup::new(None);
    let run = setup.explain_sql("investigator_01", "SELEC full_name FROM participant");
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stdout.contains("\nsqlstate: 42501\n"), "{run}");
}

#[test]
fn explain_sql_masks_with_the_configured_pseudonym_keys() {
    use std::os::unix::fs::PermissionsExt as _;

    let setup = Setup::new(None);
    let keys = maskgate_mask::PseudonymKeys::generate_key_file_text("k2026").unwrap();
    let key_file = setup.dir.path().join("keys.toml");
    fs::write(&key_file, &keys).unwrap();
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).unwrap();
    let mut config = fs::read_to_string(setup.config()).unwrap();
    config.push_str("\n[masking]\nkey_file = \"keys.toml\"\n");
    fs::write(setup.config(), config).unwrap();
    fs::write(
        setup.policy_file("linkage.toml"),
        r#"[roles.linkage]
statements = ["read"]

[roles.linkage.tables."public.participant"]
columns = { id = "allow", citizen_id = { mask = "pseudonym", key = "k2026" } }

[accounts.linkage_01]
name = "Record linkage service"
verifier = "SCRAM-SHA-256$4096:ENqrke4VetwF7BUAvmg9hA==$XT4ez9bx3FeFEtOaDwU7HOOm+wg09SgHW82LS6I/anw=:tPtRELbqA9kZfdWwLP5IzHSqYt7an3afp04AnIrmGCk="
roles = ["linkage"]
"#,
    )
    .unwrap();

    let run = setup.explain_sql("linkage_01", "SELECT id, citizen_id FROM participant");
    assert_eq!(run.code, 0, "{run}");
    let sql = sent_upstream(&run, 1);
    assert!(sql.contains("'k2026:' || encode("), "{run}");
    assert!(sql.contains("current_setting('maskgate.pk_"), "{run}");
    let secret = keys
        .lines()
        .find_map(|line| line.strip_prefix("secret = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("the generated file has a secret");
    assert!(!run.stdout.contains(secret), "{run}");
}

#[test]
fn explain_sql_for_an_unknown_account_cannot_run() {
    let setup = Setup::new(None);
    let run = setup.explain_sql("nobody_at_all", "SELECT 1");
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("no account \"nobody_at_all\""), "{run}");
    assert!(run.stdout.is_empty(), "{run}");
}

#[test]
fn explain_sql_without_a_statement_cannot_run() {
    let setup = Setup::new(None);
    let empty = setup.run_with_stdin(
        &["explain", "--user", "clerk_hanoi_01", "--sql", "-"],
        "  \n",
    );
    assert_eq!(empty.code, 2, "{empty}");
    assert!(empty.stdout.is_empty(), "{empty}");
    let separators = setup.explain_sql("clerk_hanoi_01", " ; ");
    assert_eq!(separators.code, 2, "{separators}");
    assert!(separators.stdout.is_empty(), "{separators}");
}

/// The tables of `examples/policy/classification.toml`, except: participant has no
/// `phone`, employer.tax_code is `varchar(20)` instead of `varchar(14)`, and
/// contribution has an extra `note` column.
const SCHEMA: &str = r#"
CREATE TABLE participant (
    id bigint PRIMARY KEY,
    citizen_id char(12),
    social_insurance_code char(10),
    full_name text,
    date_of_birth date,
    gender char(1),
    email text,
    address text,
    province_code char(2),
    employer_id bigint,
    registered_on date
);
CREATE TABLE employer (
    id bigint PRIMARY KEY,
    tax_code varchar(20),
    name text,
    province_code char(2),
    address text,
    contact_phone text
);
CREATE TABLE contribution (
    id bigint PRIMARY KEY,
    participant_id bigint,
    employer_id bigint,
    period date,
    salary_base numeric(12,2),
    amount numeric(12,2),
    province_code char(2),
    paid_on date,
    note text
);
CREATE TABLE health_card (
    id bigint PRIMARY KEY,
    participant_id bigint,
    card_number character varying(15),
    hospital_code varchar(5),
    valid_from date,
    valid_to date,
    province_code character(2)
);
CREATE TABLE benefit_claim (
    id bigint PRIMARY KEY,
    participant_id bigint,
    kind text,
    diagnosis_code varchar(10),
    amount numeric(12,2),
    submitted_on date,
    status text,
    province_code char(2)
);
CREATE TABLE "TheBHYT" (id bigint PRIMARY KEY, nguoi_id bigint, "số thẻ" varchar(15),
    "nơi đăng ký" text, valid_to date);
-- Not unique: a path through it could lead to two parents.
CREATE TABLE bank_account (id bigint, participant_id bigint, bank_code text,
    account_number varchar(20), holder_email text);
CREATE UNIQUE INDEX bank_account_partial ON bank_account (id) WHERE id > 0;
CREATE TABLE benefit_payment (id bigint PRIMARY KEY, bank_account_id bigint,
    amount numeric(12,2), paid_on date);
CREATE TABLE province (code char(2) PRIMARY KEY, name text);
"#;
