//! `maskgate policy check` and `maskgate policy explain` run as real processes on a
//! copy of the example policy, `--live` against a real PostgreSQL.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
        summary.starts_with("policy OK: 5 accounts, 5 roles, 5 tables; "),
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
    assert_eq!(errors.matches(": error:").count(), 2, "{run}");
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
        last_line(&run.stdout).starts_with("policy REFUSED: 2 errors"),
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

#[test]
fn explain_with_sql_says_rewriting_is_not_available() {
    let setup = Setup::new(None);
    let run = setup.run(&["explain", "--user", "clerk_hanoi_01", "--sql", "SELECT 1"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr
            .contains("statement rewriting is not available yet"),
        "{run}"
    );
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
"#;
