//! The fixture policy and the production mask renderer, shared by the integration tests.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use maskgate_mask::PseudonymKeys;
use maskgate_policy::{Policy, PolicySettings};
use maskgate_sql::{Denial, Enforced, Enforcer, KeyedMasks, Limits};

pub fn policy() -> &'static Arc<Policy> {
    static POLICY: OnceLock<Arc<Policy>> = OnceLock::new();
    POLICY.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let today = time::Date::from_calendar_date(2026, time::Month::March, 2).unwrap();
        Policy::from_texts(vec![(path, text)], PolicySettings::default(), today)
            .unwrap_or_else(|rejected| panic!("{}", rejected.errors))
            .policy
            .into()
    })
}

pub fn enforce(login: &str, sql: &str) -> Result<Enforced, Denial> {
    enforce_within(login, sql, Limits::default())
}

/// [`enforce`] with other analysis limits. Enforcers are built once per account
/// and limits and kept, as the proxy keeps them: building one costs far more than
/// a statement's analysis.
pub fn enforce_within(login: &str, sql: &str, limits: Limits) -> Result<Enforced, Denial> {
    type Kept = HashMap<(String, Limits), Rc<Enforcer>>;
    thread_local! {
        static ENFORCERS: RefCell<Kept> = RefCell::new(HashMap::new());
    }
    let enforcer = ENFORCERS.with(|kept| {
        kept.borrow_mut()
            .entry((login.to_owned(), limits))
            .or_insert_with(|| {
                let rules = policy().effective(login).expect("fixture account");
                let keys = PseudonymKeys::default();
                let masks = KeyedMasks::new(&keys);
                Rc::new(Enforcer::new(policy().clone(), rules, &masks).with_limits(limits))
            })
            .clone()
    });
    enforcer.enforce(sql)
}

/// xorshift64*: deterministic, so a failure is reproducible from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}
