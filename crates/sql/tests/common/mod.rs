//! The fixture policy and the production mask renderer, shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use maskgate_mask::PseudonymKeys;
use maskgate_policy::{Policy, PolicySettings};
use maskgate_sql::{Denial, Enforced, Enforcer, KeyedMasks};

pub fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let today = time::Date::from_calendar_date(2026, time::Month::March, 2).unwrap();
        Policy::from_texts(vec![(path, text)], PolicySettings::default(), today)
            .unwrap_or_else(|rejected| panic!("{}", rejected.errors))
            .policy
    })
}

pub fn enforce(login: &str, sql: &str) -> Result<Enforced, Denial> {
    let rules = policy().effective(login).expect("fixture account");
    let keys = PseudonymKeys::default();
    let masks = KeyedMasks::new(&keys);
    let search_path = policy().settings().search_path.clone();
    Enforcer::new(&rules, policy().tables(), &search_path, &masks).enforce(sql)
}
