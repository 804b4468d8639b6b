//! Accounts: verifiers, roles, attributes, machines, hours, validity and assignments,
//! and how several roles' rules merge.

use super::*;

impl Checker<'_> {
    pub(super) fn account(
        &mut self,
        entry: &Entry,
        known_roles: &[&str],
        needs: &BTreeMap<String, NeededAttributes>,
        today: Date,
    ) -> AccountOutcome {
        let login = &entry.key;
        let what = format!("account {login:?}");
        let mut outcome = AccountOutcome {
            account: None,
            roles: None,
            roles_pos: None,
        };
        let Some(fields) = self.table(&entry.value, &what) else {
            return outcome;
        };
        self.unknown_keys(fields, ACCOUNT_KEYS, &what);
        let before = self.diags.error_count();
        if login.is_empty() || login.contains('\0') {
            self.error(
                entry.key_pos,
                "account names must be non-empty and must not contain NUL",
                None,
            );
        }
        if login.len() > 63 {
            self.error(
                entry.key_pos,
                format!(
                    "account name {login:?} is {} bytes long; login names are at most 63 bytes, as in PostgreSQL",
                    login.len()
                ),
                Some("clients' longer names are cut to 63 bytes, so this account could never log in".into()),
            );
        }

        let name = self.account_name(fields, entry);
        let verifier = self.account_verifier(fields, entry, &what);
        let roles_entry = get(fields, "roles");
        outcome.roles_pos = roles_entry.map(|e| e.key_pos);
        let roles = self.account_roles(roles_entry, entry, &what, known_roles);
        let attributes = self.attributes(fields);
        if let (Some(roles), Some(roles_pos), Some(attributes)) =
            (&roles, outcome.roles_pos, &attributes)
        {
            self.needed_attributes(&what, roles, roles_pos, attributes, needs);
        }
        let (valid_from, valid_until) = self.validity(fields, entry, &what, today);
        let disabled = match get(fields, "disabled") {
            Some(d) => self.boolean(&d.value, "disabled").unwrap_or(true),
            None => false,
        };
        let assignment = self.account_assignment(fields, entry, &what);
        let networks = self.networks(fields);
        let cert_fingerprints = self.cert_fingerprints(fields);
        if networks.is_empty() && cert_fingerprints.is_empty() {
            self.diags.warn(
                entry.key_pos,
                format!("{what} may connect from any address"),
                Some(
                    "bind it to its registered machines with networks or cert_fingerprints".into(),
                ),
            );
        }
        let login_hours = self.login_hours(fields);
        let login_days = self.login_days(fields);
        let max_sessions = get(fields, "max_sessions").and_then(|m| {
            let value = self.positive(&m.value, "max_sessions")?;
            let fits = u32::try_from(value).ok();
            if fits.is_none() {
                self.error(m.value.pos, "max_sessions is too large", None);
            }
            fits
        });

        outcome.roles.clone_from(&roles);
        let ok = self.diags.error_count() == before;
        let (Some(name), Some(verifier), Some(roles), Some(attributes), true) =
            (name, verifier, roles, attributes, ok)
        else {
            return outcome;
        };
        outcome.account = Some(Account {
            login: login.clone(),
            name,
            verifier,
            roles,
            attributes,
            valid_from,
            valid_until,
            disabled,
            assignment,
            networks,
            cert_fingerprints,
            login_days,
            login_hours,
            max_sessions,
        });
        outcome
    }

    pub(super) fn assignment(&mut self, node: &Node, key_pos: Pos) -> Option<Assignment> {
        let fields = self.table(node, "assignment")?;
        self.unknown_keys(fields, ASSIGNMENT_KEYS, "assignment");
        let field = |c: &mut Self, key: &str| {
            let found = get(fields, key);
            if found.is_none() {
                c.error(
                    key_pos,
                    format!("assignment has no {key}"),
                    Some("assignment = { document = \"QĐ-123/2026\", date = 2026-01-05, assigned_by = \"...\" }".into()),
                );
            }
            found.map(|e| &e.value)
        };
        let document = field(self, "document").and_then(|n| self.string(n, "document"));
        let date = field(self, "date").and_then(|n| self.local_date(n, "date"));
        let assigned_by = field(self, "assigned_by").and_then(|n| self.string(n, "assigned_by"));
        Some(Assignment {
            document: document?.to_owned(),
            date: date?,
            assigned_by: assigned_by?.to_owned(),
        })
    }

    pub(super) fn merge_note(&mut self, login: &str, pos: Pos, note: MergeNote) {
        match note {
            MergeNote::VoidGrant {
                table,
                columns,
                granting,
                denying,
                by_default,
            } => self.diags.warn(
                pos,
                format!(
                    "account {login:?}: role {granting:?} grants {table} column(s) {} but role {denying:?} {}, so the grant has no effect",
                    columns.join(", "),
                    if by_default {
                        "does not mention them (denied by default)"
                    } else {
                        "denies them"
                    }
                ),
                Some(format!(
                    "across roles deny wins; allow or mask the columns in role {denying:?} too, or give the account only one of the roles"
                )),
            ),
            MergeNote::MaskConflict {
                table,
                column,
                used,
                ignored,
            } => self.diags.warn(
                pos,
                format!(
                    "account {login:?}: roles {used:?} and {ignored:?} mask {table}.{column} differently; the mask of {used:?} is used"
                ),
                Some("make the roles agree on the mask".into()),
            ),
            MergeNote::Path { table, problem } => self.path_note(login, pos, table, problem),
            MergeNote::MixedModes { monitored } => self.diags.warn(
                pos,
                format!(
                    "account {login:?}: role(s) {} are in monitor mode but its other roles are not, so every statement is enforced",
                    monitored.join(", ")
                ),
                Some("monitor a new role on an account that holds only monitored roles".into()),
            ),
            MergeNote::DisjointLookupKeys { table } => self.diags.warn(
                pos,
                format!(
                    "account {login:?}: its roles make {table} lookup-only on keys that have nothing in common, so the table is denied"
                ),
                Some("give the roles a common lookup key".into()),
            ),
        }
    }
}

impl Checker<'_> {
    /// A row filter through foreign keys that cannot be resolved for an account.
    fn path_note(&mut self, login: &str, pos: Pos, table: QualifiedName, problem: PathProblem) {
        match problem {
            PathProblem::Cycle(tables) => self.error(
                pos,
                format!(
                    "account {login:?}: the row filter paths of its roles go round in a circle: {}",
                    tables.iter().map(ToString::to_string).collect::<Vec<_>>().join(" -> ")
                ),
                Some("a path must end at a table whose filter does not lead back".into()),
            ),
            PathProblem::TooLong { steps } => self.error(
                pos,
                format!(
                    "account {login:?}: the row filter of {table} follows {steps} foreign keys through its parents' own paths; at most {MAX_HOPS} are allowed"
                ),
                Some("filter a table in the middle of the chain by its own columns".into()),
            ),
            PathProblem::ParentUnavailable(parent) => self.diags.warn(
                pos,
                format!(
                    "account {login:?}: the row filter of {table} goes through {parent}, which the account may not use, so {table} is denied"
                ),
                Some(format!("grant {parent} to the account, or drop the path")),
            ),
        }
    }
}

/// Checks run after all accounts are known: unrestricted roles combined with others.
pub(super) fn account_warnings(
    validated: &Validated,
    positions: &BTreeMap<String, Pos>,
    diags: &mut Diags,
) {
    for (login, account) in &validated.accounts {
        let unrestricted: Vec<&str> = account
            .roles
            .iter()
            .filter(|r| {
                validated
                    .roles
                    .get(*r)
                    .is_some_and(|role| role.unrestricted)
            })
            .map(String::as_str)
            .collect();
        if !unrestricted.is_empty() && account.roles.len() > 1 {
            if let Some(pos) = positions.get(login) {
                diags.warn(
                    *pos,
                    format!(
                        "account {login:?} holds unrestricted role {:?} together with other roles, which then have no effect",
                        unrestricted[0]
                    ),
                    Some("give break-glass access through a separate account".into()),
                );
            }
        }
    }
}
