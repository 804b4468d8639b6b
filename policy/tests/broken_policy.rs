//! Every class of policy error, each from its own file in tests/fixtures/broken loaded on
//! top of the good policy, with the exact position it is reported at; and the warnings.

use std::path::{Path, PathBuf};

use maskgate_policy::{
    ColumnRule, Diagnostic, Policy, PolicySettings, QualifiedName, Severity, StatementKind,
};
use time::macros::{date, offset};

fn settings() -> PolicySettings {
    PolicySettings {
        timezone: offset!(+07:00),
        search_path: vec!["public".into()],
        pseudonym_keys: Vec::new(),
    }
}

fn read(path: PathBuf) -> (PathBuf, String) {
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

fn with_good(extra: &str) -> Vec<(PathBuf, String)> {
    ["classification.toml", "roles.toml", "accounts.toml"]
        .into_iter()
        .map(|name| read(Path::new("tests/fixtures/good").join(name)))
        .chain(std::iter::once(read(
            Path::new("tests/fixtures").join(extra),
        )))
        .collect()
}

fn errors(case: &str) -> Vec<Diagnostic> {
    match Policy::from_texts(
        with_good(&format!("broken/{case}.toml")),
        settings(),
        date!(2026 - 03 - 02),
    ) {
        Ok(_) => panic!("{case} loaded"),
        Err(rejected) => {
            assert!(rejected
                .errors
                .0
                .iter()
                .all(|d| d.severity == Severity::Error));
            rejected.errors.0
        }
    }
}

/// Asserts the case has exactly one error, at `line:column` of its own file.
#[track_caller]
fn assert_error(case: &str, line: usize, column: usize, fragment: &str) -> Diagnostic {
    let errors = errors(case);
    assert_eq!(errors.len(), 1, "{case}: {errors:#?}");
    let error = errors.into_iter().next().unwrap();
    assert_at(&error, &format!("{case}.toml"), line, column, fragment);
    error
}

#[track_caller]
fn assert_at(d: &Diagnostic, file: &str, line: usize, column: usize, fragment: &str) {
    assert!(
        d.location.path.ends_with(file),
        "{file}: reported in {}",
        d.location
    );
    assert_eq!(
        (d.location.line, d.location.column),
        (line, column),
        "{file}: {d}"
    );
    assert!(d.message.contains(fragment), "{file}: {d}");
}

#[test]
fn toml_syntax() {
    let e = assert_error("syntax", 2, 27, "invalid TOML");
    assert!(e.hint.is_some());
}

#[test]
fn unknown_key_suggests_the_known_ones() {
    let e = assert_error(
        "unknown_key",
        3,
        1,
        "unknown key \"max_row\" in role \"night_shift\"",
    );
    let hint = e.hint.unwrap();
    assert!(hint.contains("did you mean \"max_rows\"?"), "{hint}");
    assert!(
        hint.contains("known keys: description, statements, max_rows"),
        "{hint}"
    );
}

#[test]
fn unknown_role() {
    let e = assert_error("unknown_role", 4, 19, "unknown role \"clerks\"");
    assert!(e.hint.unwrap().contains("known roles: auditor, clerk,"));
}

#[test]
fn login_names_longer_than_postgresql_keeps() {
    let e = assert_error("long_login", 1, 11, "at most 63 bytes");
    assert!(e.hint.unwrap().contains("could never log in"));
}

#[test]
fn unknown_label() {
    let e = assert_error("unknown_label", 3, 36, "unknown label \"pii.phone\"");
    assert!(e.hint.unwrap().contains("pii.contact"));
}

#[test]
fn table_not_classified() {
    assert_error(
        "unclassified_table",
        4,
        23,
        "role \"cashier\" refers to table public.payment, which is not classified",
    );
}

#[test]
fn role_column_not_in_table() {
    let e = assert_error(
        "unknown_column",
        2,
        27,
        "\"fullname\" is not a column of public.participant",
    );
    assert!(e.hint.unwrap().contains("did you mean \"full_name\"?"));
}

#[test]
fn lookup_key_not_a_column() {
    assert_error(
        "lookup_key",
        2,
        30,
        "\"citizen_no\" is not a column of public.participant",
    );
}

#[test]
fn row_filter_does_not_parse() {
    assert_error("filter_parse", 2, 14, "row_filter does not parse");
}

#[test]
fn row_filter_unknown_column_points_into_the_string() {
    assert_error(
        "filter_column",
        2,
        15,
        "row_filter uses \"provice_code\", which is not a column of public.participant",
    );
}

#[test]
fn row_filter_attribute_missing_on_account() {
    let e = assert_error(
        "filter_attribute",
        4,
        1,
        "account \"clerk_hanoi_02\" lacks attribute \"province\", which the row filter of role \"clerk\" on public.participant uses",
    );
    assert!(e.hint.unwrap().contains("attributes = { province = "));
}

#[test]
fn mask_kind_unknown() {
    let e = assert_error("mask_kind", 2, 35, "unknown mask kind \"scramble\"");
    assert!(e.message.contains("invalid mask for column phone"));
}

#[test]
fn mask_params_invalid() {
    assert_error("mask_params", 2, 40, "unknown parameter \"keep_lst\"");
}

#[test]
fn mask_does_not_fit_column_type() {
    assert_error(
        "mask_type",
        2,
        43,
        "does not fit column date_of_birth of type date",
    );
}

#[test]
fn label_mask_checked_against_each_labelled_column() {
    let errors = errors("mask_label_type");
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_at(
        &errors[0],
        "mask_label_type.toml",
        2,
        30,
        "mask initials does not fit column amount",
    );
    assert_at(
        &errors[1],
        "mask_label_type.toml",
        2,
        30,
        "mask initials does not fit column salary_base",
    );
}

#[test]
fn invalid_verifier_is_not_echoed() {
    let e = assert_error(
        "verifier",
        3,
        12,
        "invalid verifier for account \"clerk_hanoi_02\"",
    );
    let shown = e.to_string();
    assert!(!shown.contains("c4ca4238"), "{shown}");
    assert!(e.hint.unwrap().contains("maskgate passwd clerk_hanoi_02"));
}

#[test]
fn invalid_cidr() {
    assert_error(
        "cidr",
        5,
        29,
        "invalid network \"10.1.20.5/24\": host bits are set after the /24 prefix; did you mean 10.1.20.0/24?",
    );
}

#[test]
fn invalid_fingerprint() {
    assert_error("fingerprint", 5, 22, "invalid certificate fingerprint");
}

#[test]
fn invalid_login_hours() {
    assert_error(
        "login_hours",
        5,
        15,
        "login_hours must look like \"07:00-19:00\"",
    );
}

#[test]
fn invalid_login_days() {
    assert_error("login_days", 5, 22, "unknown day \"funday\"");
}

#[test]
fn valid_until_before_valid_from() {
    assert_error(
        "validity",
        6,
        15,
        "valid_until (2026-04-30) is before valid_from (2026-05-01)",
    );
}

#[test]
fn unknown_statement_kind() {
    assert_error("statements", 2, 23, "unknown statement kind \"select\"");
}

#[test]
fn duplicate_across_files_names_both_places() {
    let e = assert_error("duplicate", 2, 8, "role \"clerk\" is defined twice");
    let hint = e.hint.unwrap();
    assert!(
        hint.contains("tests/fixtures/good/roles.toml:3:8"),
        "{hint}"
    );
}

#[test]
fn all_errors_are_collected() {
    let errors = errors("many_errors");
    let file = "many_errors.toml";
    assert_eq!(errors.len(), 6, "{errors:#?}");
    assert_at(&errors[0], file, 2, 23, "unknown statement kind \"write\"");
    assert_at(
        &errors[1],
        file,
        3,
        12,
        "max_rows must be a positive integer",
    );
    assert_at(&errors[2], file, 6, 27, "\"nme\" is not a column");
    assert_at(&errors[3], file, 11, 25, "unknown role \"nobody\"");
    assert_at(&errors[4], file, 12, 13, "prefix length must be 0..=32");
    assert_at(&errors[5], file, 13, 15, "login_hours covers no time");
}

#[test]
fn errors_display_as_file_line_column() {
    let rejected = Policy::from_texts(
        with_good("broken/many_errors.toml"),
        settings(),
        date!(2026 - 03 - 02),
    )
    .unwrap_err();
    let text = rejected.errors.to_string();
    assert!(text.starts_with(
        "tests/fixtures/broken/many_errors.toml:2:23: error: unknown statement kind \"write\""
    ));
    assert!(text.contains("\n  hint: statements are any of"));
    assert_eq!(text.lines().filter(|l| l.contains(": error: ")).count(), 6);
}

#[test]
fn load_dir_reports_an_empty_or_missing_directory() {
    let empty = tempfile::tempdir().unwrap();
    let errors = Policy::load_dir(empty.path(), settings()).unwrap_err();
    assert!(errors.0[0].message.contains("no *.toml files"), "{errors}");
    let errors = Policy::load_dir(&empty.path().join("missing"), settings()).unwrap_err();
    assert!(errors.0[0]
        .message
        .contains("cannot read the policy directory"));
}

#[test]
fn load_dir_collects_errors_of_every_file() {
    let dir = tempfile::tempdir().unwrap();
    for (name, case) in [("a.toml", "syntax"), ("b.toml", "statements")] {
        std::fs::copy(
            Path::new("tests/fixtures/broken").join(format!("{case}.toml")),
            dir.path().join(name),
        )
        .unwrap();
    }
    let errors = Policy::load_dir(dir.path(), settings()).unwrap_err().0;
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].location.path.ends_with("a.toml"));
    assert!(errors[1].location.path.ends_with("b.toml"));
}

fn warnings() -> (Policy, Vec<Diagnostic>) {
    let loaded = Policy::from_texts(
        with_good("warnings/extra.toml"),
        settings(),
        date!(2026 - 03 - 02),
    )
    .unwrap_or_else(|rejected| panic!("{}", rejected.errors));
    (loaded.policy, loaded.warnings)
}

#[test]
fn warnings_for_accounts_that_need_a_second_look() {
    let (_, warnings) = warnings();
    let file = "extra.toml";
    let find = |fragment: &str| {
        warnings
            .iter()
            .find(|w| w.message.contains(fragment))
            .unwrap_or_else(|| panic!("no warning {fragment:?} in {warnings:#?}"))
    };
    assert!(warnings.iter().all(|w| w.severity == Severity::Warning));
    assert_at(
        find("role \"unused\" is not held by any account"),
        file,
        13,
        8,
        "unused",
    );
    assert_at(
        find("account \"former_clerk\" expired on 2026-01-31"),
        file,
        30,
        15,
        "expired",
    );
    assert_at(
        find("account \"loose\" has no assignment"),
        file,
        34,
        11,
        "assignment",
    );
    assert_at(
        find("account \"loose\" has no valid_until"),
        file,
        34,
        11,
        "valid_until",
    );
    assert_at(
        find("account \"loose\" may connect from any address"),
        file,
        34,
        11,
        "any address",
    );
    assert_at(
        find("account \"loose\" holds unrestricted role \"auditor\" together with other roles"),
        file,
        37,
        1,
        "unrestricted",
    );
    assert_at(
        find("role \"phone_desk\" grants public.participant column(s) phone but role \"clerk\" denies them"),
        file,
        19,
        1,
        "no effect",
    );
    assert_at(
        find("roles \"clerk\" and \"phone_desk\" mask public.participant.citizen_id differently"),
        file,
        19,
        1,
        "the mask of \"clerk\" is used",
    );
    assert_at(
        find("role \"clerk\" grants public.participant column(s) date_of_birth, gender, province_code, registered_on, social_insurance_code but role \"phone_desk\" does not mention them (denied by default)"),
        file,
        19,
        1,
        "no effect",
    );
    assert_eq!(warnings.len(), 9, "{warnings:#?}");
}

#[test]
fn roles_merge_most_restrictive() {
    let (policy, _) = warnings();
    let rules = policy.effective("clerk_and_phone").unwrap();
    assert!(!rules.unrestricted);
    assert!(rules.statements.contains(StatementKind::Read));
    assert!(rules.statements.contains(StatementKind::Update));
    assert_eq!(rules.max_rows, Some(20));
    assert_eq!(rules.rows_per_hour, Some(1000));
    assert_eq!(rules.statements_per_minute, Some(60));
    let participant = &rules.tables[&QualifiedName::new("public", "participant")];
    assert_eq!(
        participant.row_filter.as_ref().map(ToString::to_string).as_deref(),
        Some("(province_code = '01') AND (registered_on >= DATE '2020-01-01' AND unit_code_ok('HN-01'))")
    );
    assert_eq!(
        participant.lookup_keys,
        ["citizen_id", "social_insurance_code"]
    );
    // phone: clerk denies (label), phone_desk allows: deny wins.
    assert_eq!(participant.columns["phone"], ColumnRule::Deny);
    // full_name: clerk allows, phone_desk masks: mask wins.
    assert!(matches!(
        participant.columns["full_name"],
        ColumnRule::Mask(_)
    ));
    // citizen_id: two masks, clerk's (first by name) is used.
    assert!(participant.columns["citizen_id"]
        .to_string()
        .contains("keep_last=4"));
    // id: both allow.
    assert_eq!(participant.columns["id"], ColumnRule::Allow);
    // gender: clerk allows, phone_desk does not mention it: fail closed.
    assert_eq!(participant.columns["gender"], ColumnRule::Deny);

    let loose = policy.effective("loose").unwrap();
    assert!(loose.unrestricted);
}
