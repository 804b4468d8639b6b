//! The loaded policy: immutable once built, swapped as a whole on reload.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use time::{Date, OffsetDateTime};

use crate::diagnostics::{Diagnostic, Diags, PolicyErrors, Sources};
use crate::load;
use crate::model::{
    Account, Canary, EffectiveRules, PolicySettings, QualifiedName, Role, TableClass,
};
use crate::validate;

pub use crate::generation::{FileChange, Generation};

/// A validated policy. Built only when there is no error, so everything in it is
/// consistent (every role exists, every filter parses, every mask fits its column).
#[derive(Debug)]
pub struct Policy {
    generation: Generation,
    settings: PolicySettings,
    labels: BTreeMap<String, String>,
    tables: BTreeMap<QualifiedName, TableClass>,
    roles: BTreeMap<String, Role>,
    accounts: BTreeMap<String, Account>,
    effective: BTreeMap<String, EffectiveRules>,
    canaries: Vec<Canary>,
}

/// A policy that loaded, with what a reviewer should still look at.
#[derive(Debug)]
pub struct Loaded {
    /// The policy to use.
    pub policy: Policy,
    /// Findings that do not block loading.
    pub warnings: Vec<Diagnostic>,
}

/// A policy that did not load: all its errors, and the warnings found on the way so
/// `policy check` can print them too.
#[derive(Debug)]
pub struct Rejected {
    /// Every error.
    pub errors: PolicyErrors,
    /// The files that were read, so a refused reload can name what changed.
    pub generation: Generation,
    /// Every warning.
    pub warnings: Vec<Diagnostic>,
}

impl Policy {
    /// Loads every `*.toml` file in `dir` (not recursive), merged. "Today" for expiry
    /// warnings is taken in the policy's time zone.
    pub fn load_dir(dir: &Path, settings: PolicySettings) -> Result<Loaded, PolicyErrors> {
        Policy::check_dir(dir, settings).map_err(|rejected| rejected.errors)
    }

    /// Like [`Policy::load_dir`], but keeps the warnings of a rejected policy, for
    /// `maskgate policy check`.
    pub fn check_dir(dir: &Path, settings: PolicySettings) -> Result<Loaded, Rejected> {
        let today = today(&settings);
        let mut sources = Sources::default();
        let mut diags = Diags::default();
        let roots = load::read_dir(dir, &mut sources, &mut diags);
        build(roots, sources, diags, settings, today)
    }

    /// Loads policy text that is already in memory, as `(path, text)` pairs (the paths
    /// only label diagnostics), judging expiry against `today`. For tests and tools.
    pub fn from_texts(
        files: Vec<(PathBuf, String)>,
        settings: PolicySettings,
        today: Date,
    ) -> Result<Loaded, Rejected> {
        let mut sources = Sources::default();
        let mut diags = Diags::default();
        let roots = load::parse_files(files, &mut sources, &mut diags);
        build(roots, sources, diags, settings, today)
    }

    /// `None` means no such account; callers must still run a full (mock) SCRAM exchange.
    pub fn account(&self, login: &str) -> Option<&Account> {
        self.accounts.get(login)
    }

    /// The account's rules merged across its roles, attributes substituted.
    pub fn effective(&self, login: &str) -> Option<EffectiveRules> {
        self.effective.get(login).cloned()
    }

    /// All accounts, in login order.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    /// The classification, for `--live` catalog checks and result-column checks.
    pub fn tables(&self) -> &BTreeMap<QualifiedName, TableClass> {
        &self.tables
    }

    /// Roles as written, by name.
    pub fn roles(&self) -> &BTreeMap<String, Role> {
        &self.roles
    }

    /// Classification labels and their descriptions.
    /// The honeytoken values the classification marks (`canaries = [...]` on a column).
    pub fn canaries(&self) -> &[Canary] {
        &self.canaries
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// Names this policy in audit records and logs.
    pub fn generation(&self) -> &Generation {
        &self.generation
    }

    /// The settings the policy was loaded with.
    pub fn settings(&self) -> &PolicySettings {
        &self.settings
    }

    /// The current time in the policy's time zone, as [`Account::admit`] expects it.
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc().to_offset(self.settings.timezone)
    }
}

fn today(settings: &PolicySettings) -> Date {
    OffsetDateTime::now_utc()
        .to_offset(settings.timezone)
        .date()
}

fn build(
    roots: Vec<load::Node>,
    sources: Sources,
    mut diags: Diags,
    settings: PolicySettings,
    today: Date,
) -> Result<Loaded, Rejected> {
    let validated = if sources.len() > 0 {
        validate::validate(
            &roots,
            &sources,
            today,
            &settings.pseudonym_keys,
            &mut diags,
        )
    } else {
        validate::Validated::default()
    };
    let generation = Generation::of(&sources, &settings);
    let (errors, warnings) = diags.finish(&sources);
    if !errors.is_empty() {
        return Err(Rejected {
            errors: PolicyErrors(errors),
            generation,
            warnings,
        });
    }
    Ok(Loaded {
        policy: Policy {
            generation,
            settings,
            labels: validated.labels,
            tables: validated.tables,
            roles: validated.roles,
            accounts: validated.accounts,
            effective: validated.effective,
            canaries: validated.canaries,
        },
        warnings,
    })
}
