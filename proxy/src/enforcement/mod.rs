//! What the proxy enforces for an account, shared by all of its sessions: the
//! analyzer's decisions (one cache for all accounts, keyed by an account's rules of
//! one policy generation and the statement text),
//! the result columns the account may not receive as stored, and rolling quotas.
//!
//! The wire side (rewriting messages, counting rows, replacing errors) lives in
//! `session::intercept`; this module decides and remembers.

mod analysis;
mod columns;
mod decisions;
mod quota;

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use maskgate_mask::PseudonymKeys;
use maskgate_policy::{EffectiveRules, Policy};
use maskgate_sql::{Denial, EnforcedStatement, Enforcer, KeyedMasks, Limits};

pub use analysis::Slots;
pub use columns::{ColumnId, ColumnOids};
pub use decisions::Decisions;
pub use quota::{AccountUsage, Quotas};

use crate::upstream::{UpstreamConn, UpstreamError};

/// Decisions kept for all accounts together, unless configured otherwise.
const DECISION_CACHE_BYTES: u64 = 64 << 20;
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
    /// Every account's decisions, under one byte budget.
    decisions: Arc<Decisions>,
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
            decisions: Arc::new(Decisions::new(DECISION_CACHE_BYTES)),
            guard_token: format!("maskgate_guard_{:016x}", rand::random::<u64>()),
        }
    }

    /// The same, with a decision cache of `bytes` for all accounts together.
    pub fn with_cache_bytes(mut self, bytes: u64) -> Self {
        self.decisions = Arc::new(Decisions::new(bytes));
        self
    }

    /// The decision cache's size by its weigher (for the metrics).
    pub fn cached_bytes(&self) -> u64 {
        self.decisions.weighted_bytes()
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
            (
                self.limits,
                self.slots.clone(),
                self.decisions.clone(),
                &self.guard_token,
            ),
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

impl Restricted {
    /// Decisions depend on the search_path names resolve through (and, for a RESET
    /// of it, on the one it resets to): both are part of the key unless they are the
    /// policy's.
    fn decision_key<'s>(
        &self,
        sql: &'s str,
        path: &maskgate_sql::SearchPath,
    ) -> std::borrow::Cow<'s, str> {
        let policy_path = self.enforcer.policy_search_path();
        if path.current == policy_path && path.default == policy_path {
            std::borrow::Cow::Borrowed(sql)
        } else {
            std::borrow::Cow::Owned(format!(
                "\u{1}{:?}\u{1}{:?}\u{1}{sql}",
                path.current, path.default
            ))
        }
    }
}

struct Restricted {
    /// The account's login: analyses are shared fairly between accounts.
    login: Arc<str>,
    enforcer: Enforcer,
    slots: Arc<Slots>,
    decisions: Arc<Decisions>,
    /// Numbers these rules in the shared cache (rules are rebuilt per policy generation).
    id: u64,
    /// What these rules hold in the shared cache.
    share: Arc<decisions::Share>,
    hidden: HashSet<ColumnId>,
}

/// Numbers each built [`AccountRules`] for the decision cache's keys.
static NEXT_RULES_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl AccountRules {
    fn build(
        policy: Arc<Policy>,
        login: &str,
        columns: Option<Arc<ColumnOids>>,
        keys: &PseudonymKeys,
        (limits, slots, decisions, guard_token): (Limits, Arc<Slots>, Arc<Decisions>, &str),
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
            let order = columns
                .as_ref()
                .map(|c| c.column_order())
                .unwrap_or_default();
            let enforcer = Enforcer::with_column_order(
                policy.clone(),
                rules.clone(),
                &KeyedMasks::new(keys),
                &order,
            )
            .with_limits(limits)
            .with_guard_token(guard_token);
            Restricted {
                login: login.into(),
                enforcer,
                slots,
                decisions,
                id: NEXT_RULES_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                share: Arc::default(),
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

    /// The policy's search_path: a session's default unless its startup packet set one.
    pub fn policy_search_path(&self) -> &[String] {
        &self.policy.settings().search_path
    }

    /// What of a restricted session's search_path goes upstream: the schemas holding
    /// one of the account's policy tables, and `pg_catalog` (see the analyzer's
    /// `search_path` module for why).
    pub fn upstream_search_path(&self, path: &[String]) -> Vec<String> {
        path.iter()
            .filter(|schema| {
                *schema == "pg_catalog" || self.rules.tables.keys().any(|t| &t.schema == *schema)
            })
            .cloned()
            .collect()
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
    pub fn decide(&self, sql: &str, path: &maskgate_sql::SearchPath) -> Decision {
        self.cached(sql, path)
            .unwrap_or_else(|| self.analyze(sql, path))
    }

    /// The cached decision for a statement text under `path`, if it was seen under
    /// this policy.
    pub fn cached(&self, sql: &str, path: &maskgate_sql::SearchPath) -> Option<Decision> {
        let restricted = self.restricted();
        let key = restricted.decision_key(sql, path);
        restricted.decisions.get(restricted.id, key.as_ref())
    }

    /// Analyzes a statement text (a slot, the budget and the time it takes) and
    /// caches the decision unless it depended on the load.
    pub fn analyze(&self, sql: &str, path: &maskgate_sql::SearchPath) -> Decision {
        let restricted = self.restricted();
        let key = restricted.decision_key(sql, path);
        let analyzed = restricted
            .slots
            .run(&restricted.login, sql.len(), || {
                restricted.enforcer.enforce_in(sql, path)
            })
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
            restricted.decisions.insert(
                (restricted.id, &restricted.share),
                key.as_ref(),
                decision.clone(),
            );
        }
        decision
    }

    fn restricted(&self) -> &Restricted {
        self.restricted
            .as_ref()
            .expect("decisions are only made for restricted or monitored accounts")
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
