//! Row filters through foreign keys, per-table caps, the `null` column rule, shadow
//! mode and the per-session budget: what they load as, and every way to get them wrong,
//! each on top of the good fixture policy.

use std::path::{Path, PathBuf};

use maskgate_policy::{
    ColumnRule, Diagnostic, OverCap, Policy, PolicySettings, QualifiedName, Severity, TableCap,
};
use time::macros::{date, offset};

fn settings() -> PolicySettings {
    PolicySettings {
        timezone: offset!(+07:00),
        search_path: vec!["public".into()],
        pseudonym_keys: Vec::new(),
    }
}

const ACCOUNT: &str = r#"
[accounts.officer_01]
name = "Test officer"
verifier = "SCRAM-SHA-256$4096:ENqrke4VetwF7BUAvmg9hA==$XT4ez9bx3FeFEtOaDwU7HOOm+wg09SgHW82LS6I/anw=:tPtRELbqA9kZfdWwLP5IzHSqYt7an3afp04AnIrmGCk="
roles = ["officer"]
attributes = { province = "01" }
valid_until = 2027-01-01
assignment = { document = "x", date = 2026-01-01, assigned_by = "y" }
networks = ["127.0.0.1/32"]
"#;

/// The good fixtures, the bank tables, one account of role `officer`, and `extra`.
fn load(extra: &str) -> Result<(Policy, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut files: Vec<(PathBuf, String)> = ["classification.toml", "roles.toml", "accounts.toml"]
        .into_iter()
        .map(|name| {
            let path = Path::new("tests/fixtures/good").join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .collect();
    files.push((
        "bank.toml".into(),
        r#"
[tables."public.bank_account".columns]
id             = { type = "bigint" }
participant_id = { type = "bigint" }
iban           = { type = "text" }
holder_email   = { type = "text" }
[tables."public.payment".columns]
id              = { type = "integer" }
bank_account_id = { type = "bigint" }
amount          = { type = "numeric(12,2)" }
reference       = { type = "text" }
"#
        .into(),
    ));
    files.push(("account.toml".into(), ACCOUNT.into()));
    files.push(("extra.toml".into(), extra.into()));
    match Policy::from_texts(files, settings(), date!(2026 - 03 - 02)) {
        Ok(loaded) => Ok((loaded.policy, loaded.warnings)),
        Err(rejected) => Err(rejected.errors.0),
    }
}

#[track_caller]
fn one_error(extra: &str, line: usize, fragment: &str) -> Diagnostic {
    let errors = load(extra).expect_err("the policy is refused");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let error = errors.into_iter().next().unwrap();
    assert!(error.location.path.ends_with("extra.toml"), "{error}");
    assert_eq!(error.location.line, line, "{error}");
    assert!(error.message.contains(fragment), "{error}");
    assert_eq!(error.severity, Severity::Error);
    error
}

fn name(table: &str) -> QualifiedName {
    QualifiedName::new("public", table)
}

const OFFICER: &str = r#"
[roles.officer]
max_rows = 20
max_rows_per_session = 500
over_cap = "refuse"
[roles.officer.tables."public.participant"]
row_filter = "province_code = :province"
columns = { id = "allow", full_name = "allow", email = "null" }
[roles.officer.tables."public.bank_account"]
row_filter_path = "participant_id -> public.participant(id)"
columns = { id = "allow", participant_id = "allow", iban = { mask = "partial", keep_after = " " }, holder_email = { mask = "email_domain" } }
[roles.officer.tables."public.payment"]
row_filter = "amount > 0"
row_filter_path = ["bank_account_id -> public.bank_account(id)", "participant_id -> public.participant(id)"]
columns = { id = "allow", amount = "allow" }
[roles.officer.tables."public.employer"]
max_rows = "none"
columns = { id = "allow", name = "allow" }
"#;

#[test]
fn a_path_applies_the_parents_filter_inside_one_subquery() {
    let (policy, warnings) = load(OFFICER).unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(warnings.is_empty(), "{warnings:#?}");
    let rules = policy.effective("officer_01").unwrap();
    let bank = rules.tables[&name("bank_account")]
        .row_filter
        .as_ref()
        .unwrap();
    assert_eq!(
        bank.expr("bank_account").to_string(),
        "(\"bank_account\".\"participant_id\" IN (SELECT \"participant\".\"id\" FROM \"public\".\"participant\" \
         WHERE (\"participant\".\"province_code\" = '01')))"
    );
    let payment = rules.tables[&name("payment")].row_filter.as_ref().unwrap();
    assert_eq!(
        payment.qualified("p").to_string(),
        "(\"p\".\"amount\" > 0) AND (\"p\".\"bank_account_id\" IN (SELECT \"bank_account\".\"id\" \
         FROM \"public\".\"bank_account\" WHERE \"bank_account\".\"participant_id\" IN \
         (SELECT \"participant\".\"id\" FROM \"public\".\"participant\" WHERE (\"participant\".\"province_code\" = '01'))))"
    );
    assert_eq!(payment.paths[0].hops.len(), 2);
    let text = policy.explain("officer_01").unwrap();
    assert!(
        text.contains("rows where (participant_id IN (SELECT"),
        "{text}"
    );
}

#[test]
fn caps_budgets_and_null_columns() {
    let (policy, _) = load(OFFICER).unwrap();
    let rules = policy.effective("officer_01").unwrap();
    assert_eq!(rules.max_rows, Some(20));
    assert_eq!(rules.max_rows_per_session, Some(500));
    assert_eq!(rules.over_cap, OverCap::Refuse);
    assert!(!rules.monitor);
    assert_eq!(
        rules.tables[&name("employer")].max_rows,
        Some(TableCap::Exempt)
    );
    assert_eq!(rules.tables[&name("participant")].max_rows, None);
    let email = &rules.tables[&name("participant")].columns["email"];
    assert_eq!(email.to_string(), "null");
    assert!(matches!(email, ColumnRule::Mask(_)));
}

#[test]
fn a_role_in_monitor_mode_is_recorded_not_enforced() {
    let extra = OFFICER.replace("over_cap = \"refuse\"", "mode = \"monitor\"");
    let (policy, _) = load(&extra).unwrap();
    assert!(policy.effective("officer_01").unwrap().monitor);
    let both = ACCOUNT
        .replace("[accounts.officer_01]", "[accounts.officer_02]")
        .replace("roles = [\"officer\"]", "roles = [\"officer\", \"reader\"]");
    let mixed = format!(
        "{extra}\n[roles.reader.tables.\"public.employer\"]\ncolumns = {{ id = \"allow\" }}\n{both}"
    );
    let (policy, warnings) = load(&mixed).unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(!policy.effective("officer_02").unwrap().monitor);
    assert!(
        warnings.iter().any(|w| w.message.contains("monitor mode")),
        "{warnings:#?}"
    );
}

#[test]
fn a_path_must_name_classified_columns_of_the_right_tables() {
    one_error(
        "[roles.officer.tables.\"public.bank_account\"]\nrow_filter_path = \"owner_id -> public.participant(id)\"\ncolumns = { id = \"allow\" }\n[roles.officer.tables.\"public.participant\"]\ncolumns = { id = \"allow\" }\n",
        2,
        "\"owner_id\" is not a column of public.bank_account",
    );
    one_error(
        "[roles.officer.tables.\"public.bank_account\"]\nrow_filter_path = \"participant_id -> public.participant(pk)\"\ncolumns = { id = \"allow\" }\n[roles.officer.tables.\"public.participant\"]\ncolumns = { id = \"allow\" }\n",
        2,
        "\"pk\" is not a column of public.participant",
    );
    one_error(
        "[roles.officer.tables.\"public.bank_account\"]\nrow_filter_path = \"participant_id -> public.person(id)\"\ncolumns = { id = \"allow\" }\n",
        2,
        "public.person, which is not classified",
    );
    one_error(
        "[roles.officer.tables.\"public.bank_account\"]\nrow_filter_path = \"participant_id public.participant(id)\"\ncolumns = { id = \"allow\" }\n",
        2,
        "invalid row_filter_path step",
    );
    one_error(
        "[roles.officer.tables.\"public.bank_account\"]\nrow_filter_path = \"iban -> public.participant(id)\"\ncolumns = { id = \"allow\" }\n[roles.officer.tables.\"public.participant\"]\ncolumns = { id = \"allow\" }\n",
        2,
        "compares public.bank_account.iban (text) with public.participant.id (bigint)",
    );
}

#[test]
fn a_path_ends_at_a_table_the_role_grants() {
    one_error(
        "[roles.officer.tables.\"public.bank_account\"]\nrow_filter_path = \"participant_id -> public.participant(id)\"\ncolumns = { id = \"allow\" }\n",
        2,
        "ends at public.participant, which the role does not grant",
    );
}

#[test]
fn paths_are_at_most_three_steps_and_never_circular() {
    let four = r#"
[roles.officer.tables."public.payment"]
row_filter_path = ["bank_account_id -> public.bank_account(id)", "participant_id -> public.participant(id)", "employer_id -> public.employer(id)", "id -> public.employer(id)"]
columns = { id = "allow" }
"#;
    one_error(four, 3, "row_filter_path has 4 steps");
    let chained = r#"
[roles.officer.tables."public.employer"]
row_filter = "province_code = :province"
columns = { id = "allow" }
[roles.officer.tables."public.participant"]
row_filter_path = ["employer_id -> public.employer(id)", "id -> public.employer(id)"]
columns = { id = "allow" }
[roles.officer.tables."public.bank_account"]
row_filter_path = "participant_id -> public.participant(id)"
columns = { id = "allow" }
[roles.officer.tables."public.payment"]
row_filter_path = ["bank_account_id -> public.bank_account(id)", "participant_id -> public.participant(id)"]
columns = { id = "allow" }
"#;
    let errors = load(chained).expect_err("4 steps through the parents' paths");
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("follows 4 foreign keys")),
        "{errors:#?}"
    );
    let circle = r#"
[roles.officer.tables."public.participant"]
row_filter_path = "employer_id -> public.employer(id)"
columns = { id = "allow" }
[roles.officer.tables."public.employer"]
row_filter_path = "id -> public.participant(employer_id)"
columns = { id = "allow" }
"#;
    let errors = load(circle).expect_err("a circle");
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("go round in a circle")),
        "{errors:#?}"
    );
}

#[test]
fn bad_caps_and_modes_are_errors() {
    one_error(
        "[roles.officer]\nmode = \"shadow\"\n",
        2,
        "unknown mode \"shadow\"",
    );
    one_error(
        "[roles.officer]\nover_cap = \"truncate\"\n",
        2,
        "unknown over_cap \"truncate\"",
    );
    one_error(
        "[roles.officer.tables.\"public.employer\"]\nmax_rows = \"all\"\ncolumns = { id = \"allow\" }\n",
        2,
        "max_rows must be a positive integer or \"none\"",
    );
    one_error(
        "[roles.officer.tables.\"public.participant\"]\nrow_filter = \"province_code = $1\"\ncolumns = { id = \"allow\" }\n",
        2,
        "must not contain the parameter $1",
    );
}
