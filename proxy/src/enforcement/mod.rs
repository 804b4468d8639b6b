//! What the proxy enforces for an account, shared by all of its sessions: the
//! analyzer's decisions (cached per policy generation, account and statement text),
//! the result columns the account may not receive as stored, and rolling quotas.
//!
//! The wire side (rewriting messages, counting rows, replacing errors) lives in
//! `session::intercept`; this module decides and remembers.

mod analysis;
mod columns;
mod quota;

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use maskgate_mask::PseudonymKeys;
use maskgate_policy::{EffectiveRules, Policy};
use maskgate_sql::{Denial, EnforcedStatement, Enforcer, KeyedMasks, Limits};

pub use analysis::Slots;
pub use columns::{ColumnId, ColumnOids};
pub use quota::{AccountUsage, Quotas};

use crate::upstream::{UpstreamConn, UpstreamError};

/// Decisions kept per account; a statement's entry weighs its text and rewrite.
const DECISION_CACHE_BYTES: u64 = 16 << 20;
/// Accounts whose rules are kept built; others are rebuilt on their next session.
const ACCOUNT_CACHE_ENTRIES: u64 = 10_000;

/// The analyzer's answer for one statement text, shared from the cache.
pub type Decision = Arc<Result<Rewritten, Denial>>;

/// An allowed statement text, as it goes upstream.
#[derive(Debug)]
pub struct Rewritten {
    pub statements: Vec<EnforcedStatement>,
    /// The statements joined with `;`, for one simple-protocol Query.
    pub text: String,
}

/// Column identities as loaded for one policy generation.
struct LoadedColumns {
    policy: Arc<Policy>,
    oids: Arc<ColumnOids>,
}

/// Everything enforcement shares across sessions.
pub struct Enforcement {
    keys: Arc<PseudonymKeys>,
    accounts: moka::sync::Cache<String, Arc<AccountRules>>,
    columns: ArcSwapOption<LoadedColumns>,
    pub quotas: Quotas,
    /// Text that replaces a denied statement upstream: it does not parse, and the
    /// server's syntax error quotes it, so the error can be told apart and replaced
    /// by the denial. Random per process, so a client cannot forge one.
    denial_token: String,
    /// Marks the errors of the checks PostgreSQL makes while a restricted statement
    /// runs (packed rows, OFFSET, in-scope parents): random per process.
    guard_token: String,
    /// What one analysis may cost.
    limits: Limits,
    /// Cold analyses run a bounded number at a time, off the async workers.
    slots: Arc<Slots>,
}

impl Enforcement {
    pub fn new(keys: Arc<PseudonymKeys>) -> Self {
        Enforcement {
            limits: Limits::default(),
            slots: Arc::new(Slots::for_this_machine(Limits::default().max_analysis_time)),
            keys,
            accounts: moka::sync::Cache::new(ACCOUNT_CACHE_ENTRIES),
            columns: ArcSwapOption::empty(),
            quotas: Quotas::default(),
            denial_token: format!("maskgate_denied_{:016x}", rand::random::<u64>()),
            guard_token: format!("maskgate_guard_{:016x}", rand::random::<u64>()),
        }
    }

    /// The same, with these analysis limits for restricted accounts' statements.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        // A statement waits for a slot no longer than it may be analyzed.
        self.slots = Arc::new(Slots::for_this_machine(limits.max_analysis_time));
        self
    }

    pub fn denial_token(&self) -> &str {
        &self.denial_token
    }

    pub fn guard_token(&self) -> &str {
        &self.guard_token
    }

    /// Loads the column identities for `policy` unless they are loaded already.
    /// Restricted sessions start only after this succeeded (fail closed).
    pub async fn load_columns(
        &self,
        policy: &Arc<Policy>,
        conn: &mut UpstreamConn,
    ) -> Result<(), UpstreamError> {
        if self
            .columns
            .load()
            .as_ref()
            .is_some_and(|loaded| Arc::ptr_eq(&loaded.policy, policy))
        {
            return Ok(());
        }
        let oids = ColumnOids::load(policy, conn).await?;
        self.columns.store(Some(Arc::new(LoadedColumns {
            policy: policy.clone(),
            oids: Arc::new(oids),
        })));
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn set_columns(&self, policy: &Arc<Policy>, oids: ColumnOids) {
        self.columns.store(Some(Arc::new(LoadedColumns {
            policy: policy.clone(),
            oids: Arc::new(oids),
        })));
    }

    /// The account's rules under `policy`, built once per policy generation and
    /// column load. `None` when the policy has no such account.
    pub fn account(&self, policy: &Arc<Policy>, login: &str) -> Option<Arc<AccountRules>> {
        let columns = self.columns.load_full().map(|loaded| loaded.oids.clone());
        if let Some(rules) = self.accounts.get(login) {
            if rules.is_current(policy, columns.as_ref()) {
                return Some(rules);
            }
        }
        let rules = Arc::new(AccountRules::build(
            policy.clone(),
            login,
            columns,
            &self.keys,
            (self.limits, self.slots.clone(), &self.guard_token),
        )?);
        self.accounts.insert(login.to_owned(), rules.clone());
        Some(rules)
    }
}

/// One account's rules under one policy generation.
pub struct AccountRules {
    policy: Arc<Policy>,
    columns: Option<Arc<ColumnOids>>,
    rules: EffectiveRules,
    /// What each table's rules do, for audit records.
    table_facts:
        std::collections::BTreeMap<maskgate_policy::QualifiedName, Arc<crate::audit::TableFacts>>,
    /// Rows one statement may return (a statement's own cap may differ: see
    /// [`maskgate_sql::EnforcedStatement::row_cap`]).
    pub max_rows: Option<u64>,
    /// Rows one session may read in all.
    pub max_rows_per_session: Option<u64>,
    /// A statement over its cap gets no row at all.
    pub refuse_over_cap: bool,
    pub rows_per_hour: Option<u64>,
    pub statements_per_minute: Option<u64>,
    /// `None` for unrestricted accounts: their statements pass unchanged.
    restricted: Option<Restricted>,
    /// Shadow mode: statements pass unchanged, but are decided and recorded as the
    /// rules would enforce them.
    monitor: bool,
}

struct Restricted {
    enforcer: Enforcer,
    slots: Arc<Slots>,
    decisions: moka::sync::Cache<String, Decision>,
    hidden: HashSet<ColumnId>,
}

impl AccountRules {
    fn build(
        policy: Arc<Policy>,
        login: &str,
        columns: Option<Arc<ColumnOids>>,
        keys: &PseudonymKeys,
        (limits, slots, guard_token): (Limits, Arc<Slots>, &str),
    ) -> Option<AccountRules> {
        let rules = policy.effective(login)?;
        let (max_rows, rows_per_hour, statements_per_minute) = (
            rules.max_rows,
            rules.rows_per_hour,
            rules.statements_per_minute,
        );
        let monitor = rules.monitor && !rules.unrestricted;
        let restricted = (!rules.unrestricted).then(|| {
            let hidden = columns
                .as_ref()
                .map(|c| c.hidden_from(&rules))
                .unwrap_or_default();
            let enforcer = Enforcer::new(policy.clone(), rules.clone(), &KeyedMasks::new(keys))
                .with_limits(limits)
                .with_guard_token(guard_token);
            Restricted {
                enforcer,
                slots,
                decisions: moka::sync::Cache::builder()
                    .max_capacity(DECISION_CACHE_BYTES)
                    .weigher(|text: &String, decision: &Decision| {
                        let rewritten = match decision.as_ref() {
                            Ok(r) => r.text.len(),
                            Err(d) => d.message.len(),
                        };
                        u32::try_from(text.len() + rewritten).unwrap_or(u32::MAX)
                    })
                    .build(),
                hidden,
            }
        });
        let table_facts = crate::audit::table_facts(&policy, login, &rules);
        Some(AccountRules {
            policy,
            columns,
            table_facts,
            max_rows_per_session: rules.max_rows_per_session,
            refuse_over_cap: rules.over_cap == maskgate_policy::OverCap::Refuse,
            rules,
            max_rows,
            rows_per_hour,
            statements_per_minute,
            restricted,
            monitor,
        })
    }

    fn is_current(&self, policy: &Arc<Policy>, columns: Option<&Arc<ColumnOids>>) -> bool {
        Arc::ptr_eq(&self.policy, policy)
            && match (&self.columns, columns) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }

    /// Whether statements are judged the same under `other`: the account's rules,
    /// the classification and the search_path are unchanged. Prepared statements
    /// and cursors rewritten under these rules stay valid only then.
    pub fn same_rules(&self, other: &AccountRules) -> bool {
        self.rules == other.rules
            && self.policy.tables() == other.policy.tables()
            && self.policy.settings().search_path == other.policy.settings().search_path
    }

    /// What the rules of `table` do, for its audit records.
    pub fn table_facts(
        &self,
        table: &maskgate_policy::QualifiedName,
    ) -> Option<&Arc<crate::audit::TableFacts>> {
        self.table_facts.get(table)
    }

    /// The policy generation these rules were built from.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Statements are rewritten and enforced.
    pub fn is_restricted(&self) -> bool {
        self.restricted.is_some() && !self.monitor
    }

    /// Statements pass unchanged and are decided only to be recorded.
    pub fn is_monitored(&self) -> bool {
        self.monitor
    }

    /// The decision for a statement text of a restricted account, from the cache
    /// when this text was seen under this policy generation.
    pub fn decide(&self, sql: &str) -> Decision {
        let restricted = self
            .restricted
            .as_ref()
            .expect("decide is only called for restricted or monitored accounts");
        if let Some(decision) = restricted.decisions.get(sql) {
            return decision;
        }
        let analyzed = restricted
            .slots
            .run(sql.len(), || restricted.enforcer.enforce(sql))
            .and_then(|analyzed| analyzed);
        let transient = analyzed.as_ref().is_err_and(Denial::is_transient);
        let decision = Arc::new(analyzed.map(|enforced| {
            let text = match enforced.statements.as_slice() {
                [one] => one.sql.clone(),
                many => many
                    .iter()
                    .map(|s| s.sql.as_str())
                    .collect::<Vec<_>>()
                    .join(";\n"),
            };
            Rewritten {
                statements: enforced.statements,
                text,
            }
        }));
        // A denial that depends on the load (no slot in time, the time budget) is
        // answered but not remembered: the same text may pass when tried again.
        if !transient {
            restricted
                .decisions
                .insert(sql.to_owned(), decision.clone());
        }
        decision
    }

    /// Whether a result column with this origin may not reach the account.
    #[inline]
    pub fn is_hidden(&self, id: ColumnId) -> bool {
        self.restricted
            .as_ref()
            .is_some_and(|r| r.hidden.contains(&id))
    }

    /// `schema.table.column` of a column identity, for the log.
    pub fn describe_column(&self, id: ColumnId) -> String {
        self.columns
            .as_ref()
            .and_then(|c| c.describe(id))
            .unwrap_or_else(|| format!("table OID {} column {}", id.0, id.1))
    }
}
