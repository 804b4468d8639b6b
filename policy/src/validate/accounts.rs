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
        let mut ok = true;
        if login.is_empty() || login.contains('\0') {
            ok = false;
            self.error(
                entry.key_pos,
                "account names must be non-empty and must not contain NUL",
                None,
            );
        }
        if login.len() > 63 {
            ok = false;
            self.error(
                entry.key_pos,
                format!(
                    "account name {login:?} is {} bytes long; login names are at most 63 bytes, as in PostgreSQL",
                    login.len()
                ),
                Some("clients' longer names are cut to 63 bytes, so this account could never log in".into()),
            );
        }

        let required = |c: &mut Self, key: &str, hint: String| -> Option<&Node> {
            let found = get(fields, key).map(|e| &e.value);
            if found.is_none() {
                c.error(entry.key_pos, format!("{what} has no {key}"), Some(hint));
            }
            found
        };
        let name = required(
            self,
            "name",
            "add name = \"<who this account belongs to>\"".into(),
        )
        .and_then(|n| self.string(n, "name"))
        .map(str::to_owned);
        let verifier = required(
            self,
            "verifier",
            format!("run `maskgate passwd {login}` and paste the verifier it prints"),
        )
        .and_then(|node| {
            let text = self.string(node, "verifier")?;
            match text.parse::<ScramVerifier>() {
                Ok(v) => Some(v),
                Err(reason) => {
                    self.error(
                        node.pos,
                        format!("invalid verifier for {what}: {reason}"),
                        Some(format!(
                            "run `maskgate passwd {login}` and paste the verifier it prints"
                        )),
                    );
                    None
                }
            }
        });
        let roles_entry = get(fields, "roles");
        outcome.roles_pos = roles_entry.map(|e| e.key_pos);
        let roles = match roles_entry {
            None => {
                self.error(
                    entry.key_pos,
                    format!("{what} has no roles"),
                    Some(format!(
                        "add roles = [...]; known roles: {}",
                        list_or_none(known_roles)
                    )),
                );
                None
            }
            Some(r) => self.strings(&r.value, "roles").map(|list| {
                let mut roles = Vec::new();
                for (role, pos) in list {
                    if known_roles.contains(&role) {
                        roles.push(role.to_owned());
                    } else {
                        ok = false;
                        let suggestion = closest(role, known_roles)
                            .map(|k| format!("did you mean {k:?}? "))
                            .unwrap_or_default();
                        self.error(
                            pos,
                            format!("unknown role {role:?}"),
                            Some(format!(
                                "{suggestion}known roles: {}",
                                list_or_none(known_roles)
                            )),
                        );
                    }
                }
                roles.sort();
                roles.dedup();
                roles
            }),
        };

        let mut attributes = BTreeMap::new();
        let mut attributes_ok = true;
        if let Some(a) = get(fields, "attributes") {
            match self.table(&a.value, "attributes") {
                Some(entries) => {
                    for attr in entries {
                        let Some(value) =
                            self.string(&attr.value, &format!("attribute {}", attr.key))
                        else {
                            attributes_ok = false;
                            continue;
                        };
                        if value.contains('\0') {
                            attributes_ok = false;
                            self.error(
                                attr.value.pos,
                                format!("attribute {} contains a NUL character", attr.key),
                                Some("PostgreSQL cannot carry NUL in a string; remove it".into()),
                            );
                            continue;
                        }
                        attributes.insert(attr.key.clone(), value.to_owned());
                    }
                }
                None => attributes_ok = false,
            }
        }

        if let (Some(roles), Some(roles_pos), true) = (&roles, outcome.roles_pos, attributes_ok) {
            for role in roles {
                for (table, attribute) in needs.get(role).map(Vec::as_slice).unwrap_or_default() {
                    if !attributes.contains_key(attribute) {
                        ok = false;
                        self.error(
                            roles_pos,
                            format!(
                                "{what} lacks attribute {attribute:?}, which the row filter of role {role:?} on {table} uses"
                            ),
                            Some(format!(
                                "add it to the account, e.g. attributes = {{ {attribute} = \"...\" }}"
                            )),
                        );
                    }
                }
            }
        }

        let valid_from =
            get(fields, "valid_from").map(|e| (self.local_date(&e.value, "valid_from"), e));
        let valid_until =
            get(fields, "valid_until").map(|e| (self.local_date(&e.value, "valid_until"), e));
        ok &= valid_from.is_none_or(|(d, _)| d.is_some());
        ok &= valid_until.is_none_or(|(d, _)| d.is_some());
        let valid_from_date = valid_from.and_then(|(d, _)| d);
        let valid_until_date = valid_until.and_then(|(d, _)| d);
        match (
            valid_from_date,
            valid_until.and_then(|(d, e)| Some((d?, e))),
        ) {
            (Some(from), Some((until, until_entry))) if until < from => {
                ok = false;
                self.error(
                    until_entry.value.pos,
                    format!("valid_until ({until}) is before valid_from ({from})"),
                    Some("valid_until is the last day the account may log in".into()),
                );
            }
            (_, Some((until, until_entry))) if until < today => self.diags.warn(
                until_entry.value.pos,
                format!("{what} expired on {until}"),
                Some("it cannot log in; remove it or renew the assignment".into()),
            ),
            _ => {}
        }
        if valid_until.is_none() {
            self.diags.warn(
                entry.key_pos,
                format!("{what} has no valid_until"),
                Some("set the last day of the assignment so access ends by itself".into()),
            );
        }

        let disabled = match get(fields, "disabled") {
            Some(d) => {
                let value = self.boolean(&d.value, "disabled");
                ok &= value.is_some();
                value.unwrap_or(true)
            }
            None => false,
        };

        let assignment = match get(fields, "assignment") {
            None => {
                self.diags.warn(
                    entry.key_pos,
                    format!("{what} has no assignment"),
                    Some(
                        "record the decision that grants the access: assignment = { document = \"...\", date = 2026-01-05, assigned_by = \"...\" }"
                            .into(),
                    ),
                );
                None
            }
            Some(a) => {
                let assignment = self.assignment(&a.value, a.key_pos);
                ok &= assignment.is_some();
                assignment
            }
        };

        let mut networks = Vec::new();
        if let Some(n) = get(fields, "networks") {
            for (text, pos) in self.strings(&n.value, "networks").unwrap_or_default() {
                match text.parse::<IpNet>() {
                    Ok(net) => networks.push(net),
                    Err(error) => {
                        ok = false;
                        self.error(
                            pos,
                            format!("invalid network {text:?}: {error}"),
                            Some(
                                "write CIDR notation, e.g. \"10.1.20.0/24\" or \"127.0.0.1/32\""
                                    .into(),
                            ),
                        );
                    }
                }
            }
        }
        let mut cert_fingerprints = Vec::new();
        if let Some(n) = get(fields, "cert_fingerprints") {
            for (text, pos) in self
                .strings(&n.value, "cert_fingerprints")
                .unwrap_or_default()
            {
                match parse_fingerprint(text) {
                    Some(fp) => cert_fingerprints.push(fp),
                    None => {
                        ok = false;
                        self.error(
                            pos,
                            format!("invalid certificate fingerprint {text:?}"),
                            Some(
                                "write the SHA-256 of the certificate (DER) as 64 hex digits, colons allowed, e.g. from `openssl x509 -noout -fingerprint -sha256`"
                                    .into(),
                            ),
                        );
                    }
                }
            }
        }
        if networks.is_empty() && cert_fingerprints.is_empty() {
            self.diags.warn(
                entry.key_pos,
                format!("{what} may connect from any address"),
                Some(
                    "bind it to its registered machines with networks or cert_fingerprints".into(),
                ),
            );
        }

        let login_hours = get(fields, "login_hours").and_then(|h| {
            let text = self.string(&h.value, "login_hours");
            let parsed = text.and_then(|text| match parse_hours(text) {
                Ok(hours) => Some(hours),
                Err(reason) => {
                    self.error(h.value.pos, reason, Some(
                        "hours are local time in the [policy] timezone; \"22:00-06:00\" spans midnight".into(),
                    ));
                    None
                }
            });
            ok &= parsed.is_some();
            parsed
        });
        let login_days = get(fields, "login_days").and_then(|d| {
            let list = self.strings(&d.value, "login_days")?;
            let mut days = [false; 7];
            let mut days_ok = true;
            for (text, pos) in &list {
                match parse_day(text) {
                    Some(index) => days[index] = true,
                    None => {
                        days_ok = false;
                        self.error(
                            *pos,
                            format!("unknown day {text:?} in login_days"),
                            Some(format!("days are: {}", DAY_NAMES.join(", "))),
                        );
                    }
                }
            }
            if list.is_empty() {
                days_ok = false;
                self.error(
                    d.value.pos,
                    "login_days is empty, so the account could never log in",
                    Some("use disabled = true to switch an account off, or remove login_days to allow every day".into()),
                );
            }
            ok &= days_ok;
            days_ok.then_some(days)
        });
        ok &= get(fields, "login_days").is_none() || login_days.is_some();
        let max_sessions = get(fields, "max_sessions").and_then(|m| {
            let value = self
                .positive(&m.value, "max_sessions")
                .and_then(|v| u32::try_from(v).ok());
            ok &= value.is_some();
            value
        });

        outcome.roles.clone_from(&roles);
        let (Some(name), Some(verifier), Some(roles), true) = (name, verifier, roles, ok) else {
            return outcome;
        };
        outcome.account = Some(Account {
            login: login.clone(),
            name,
            verifier,
            roles,
            attributes,
            valid_from: valid_from_date,
            valid_until: valid_until_date,
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
