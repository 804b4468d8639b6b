//! The fields of one account, each read and checked on its own: who it is, its
//! verifier, roles and attributes, validity, assignment, machines and hours.

use super::*;

impl Checker<'_> {
    fn required<'n>(
        &mut self,
        fields: &'n [Entry],
        key: &str,
        entry: &Entry,
        hint: String,
    ) -> Option<&'n Node> {
        let found = get(fields, key).map(|e| &e.value);
        if found.is_none() {
            self.error(
                entry.key_pos,
                format!("account {:?} has no {key}", entry.key),
                Some(hint),
            );
        }
        found
    }

    pub(super) fn account_name(&mut self, fields: &[Entry], entry: &Entry) -> Option<String> {
        let hint = "add name = \"<who this account belongs to>\"".to_owned();
        let node = self.required(fields, "name", entry, hint)?;
        self.string(node, "name").map(str::to_owned)
    }

    pub(super) fn account_verifier(
        &mut self,
        fields: &[Entry],
        entry: &Entry,
        what: &str,
    ) -> Option<ScramVerifier> {
        let login = &entry.key;
        let hint = format!("run `maskgate passwd {login}` and paste the verifier it prints");
        let node = self.required(fields, "verifier", entry, hint.clone())?;
        let text = self.string(node, "verifier")?;
        match text.parse::<ScramVerifier>() {
            Ok(v) => Some(v),
            Err(reason) => {
                self.error(
                    node.pos,
                    format!("invalid verifier for {what}: {reason}"),
                    Some(hint),
                );
                None
            }
        }
    }

    /// The roles, sorted and without repeats; unknown ones are errors.
    pub(super) fn account_roles(
        &mut self,
        roles_entry: Option<&Entry>,
        entry: &Entry,
        what: &str,
        known_roles: &[&str],
    ) -> Option<Vec<String>> {
        let Some(r) = roles_entry else {
            self.error(
                entry.key_pos,
                format!("{what} has no roles"),
                Some(format!(
                    "add roles = [...]; known roles: {}",
                    list_or_none(known_roles)
                )),
            );
            return None;
        };
        let list = self.strings(&r.value, "roles")?;
        let mut roles = Vec::new();
        for (role, pos) in list {
            if known_roles.contains(&role) {
                roles.push(role.to_owned());
            } else {
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
        Some(roles)
    }

    /// `None` when an attribute is invalid (reported).
    pub(super) fn attributes(&mut self, fields: &[Entry]) -> Option<BTreeMap<String, String>> {
        let mut attributes = BTreeMap::new();
        let Some(a) = get(fields, "attributes") else {
            return Some(attributes);
        };
        let entries = self.table(&a.value, "attributes")?;
        let mut ok = true;
        for attr in entries {
            let Some(value) = self.string(&attr.value, &format!("attribute {}", attr.key)) else {
                ok = false;
                continue;
            };
            if value.contains('\0') {
                ok = false;
                self.error(
                    attr.value.pos,
                    format!("attribute {} contains a NUL character", attr.key),
                    Some("PostgreSQL cannot carry NUL in a string; remove it".into()),
                );
                continue;
            }
            attributes.insert(attr.key.clone(), value.to_owned());
        }
        ok.then_some(attributes)
    }

    /// Every attribute the row filters of the account's roles use must be set.
    pub(super) fn needed_attributes(
        &mut self,
        what: &str,
        roles: &[String],
        roles_pos: Pos,
        attributes: &BTreeMap<String, String>,
        needs: &BTreeMap<String, NeededAttributes>,
    ) {
        for role in roles {
            for (table, attribute) in needs.get(role).map(Vec::as_slice).unwrap_or_default() {
                if !attributes.contains_key(attribute) {
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

    /// `valid_from` and `valid_until`, in order; an expired account is a warning, a
    /// missing `valid_until` too.
    pub(super) fn validity(
        &mut self,
        fields: &[Entry],
        entry: &Entry,
        what: &str,
        today: Date,
    ) -> (Option<Date>, Option<Date>) {
        let valid_from =
            get(fields, "valid_from").and_then(|e| self.local_date(&e.value, "valid_from"));
        let until_entry = get(fields, "valid_until");
        let valid_until = until_entry.and_then(|e| self.local_date(&e.value, "valid_until"));
        match (valid_from, valid_until, until_entry) {
            (Some(from), Some(until), Some(e)) if until < from => self.error(
                e.value.pos,
                format!("valid_until ({until}) is before valid_from ({from})"),
                Some("valid_until is the last day the account may log in".into()),
            ),
            (_, Some(until), Some(e)) if until < today => self.diags.warn(
                e.value.pos,
                format!("{what} expired on {until}"),
                Some("it cannot log in; remove it or renew the assignment".into()),
            ),
            _ => {}
        }
        if until_entry.is_none() {
            self.diags.warn(
                entry.key_pos,
                format!("{what} has no valid_until"),
                Some("set the last day of the assignment so access ends by itself".into()),
            );
        }
        (valid_from, valid_until)
    }

    pub(super) fn account_assignment(
        &mut self,
        fields: &[Entry],
        entry: &Entry,
        what: &str,
    ) -> Option<Assignment> {
        let Some(a) = get(fields, "assignment") else {
            self.diags.warn(
                entry.key_pos,
                format!("{what} has no assignment"),
                Some(
                    "record the decision that grants the access: assignment = { document = \"...\", date = 2026-01-05, assigned_by = \"...\" }"
                        .into(),
                ),
            );
            return None;
        };
        self.assignment(&a.value, a.key_pos)
    }

    pub(super) fn networks(&mut self, fields: &[Entry]) -> Vec<IpNet> {
        let mut networks = Vec::new();
        let Some(n) = get(fields, "networks") else {
            return networks;
        };
        for (text, pos) in self.strings(&n.value, "networks").unwrap_or_default() {
            match text.parse::<IpNet>() {
                Ok(net) => networks.push(net),
                Err(error) => self.error(
                    pos,
                    format!("invalid network {text:?}: {error}"),
                    Some("write CIDR notation, e.g. \"10.1.20.0/24\" or \"127.0.0.1/32\"".into()),
                ),
            }
        }
        networks
    }

    pub(super) fn cert_fingerprints(&mut self, fields: &[Entry]) -> Vec<[u8; 32]> {
        let mut fingerprints = Vec::new();
        let Some(n) = get(fields, "cert_fingerprints") else {
            return fingerprints;
        };
        for (text, pos) in self
            .strings(&n.value, "cert_fingerprints")
            .unwrap_or_default()
        {
            match parse_fingerprint(text) {
                Some(fp) => fingerprints.push(fp),
                None => self.error(
                    pos,
                    format!("invalid certificate fingerprint {text:?}"),
                    Some(
                        "write the SHA-256 of the certificate (DER) as 64 hex digits, colons allowed, e.g. from `openssl x509 -noout -fingerprint -sha256`"
                            .into(),
                    ),
                ),
            }
        }
        fingerprints
    }

    pub(super) fn login_hours(&mut self, fields: &[Entry]) -> Option<(u16, u16)> {
        let h = get(fields, "login_hours")?;
        let text = self.string(&h.value, "login_hours")?;
        match parse_hours(text) {
            Ok(hours) => Some(hours),
            Err(reason) => {
                self.error(
                    h.value.pos,
                    reason,
                    Some(
                        "hours are local time in the [policy] timezone; \"22:00-06:00\" spans midnight"
                            .into(),
                    ),
                );
                None
            }
        }
    }

    pub(super) fn login_days(&mut self, fields: &[Entry]) -> Option<[bool; 7]> {
        let d = get(fields, "login_days")?;
        let list = self.strings(&d.value, "login_days")?;
        let mut days = [false; 7];
        let mut ok = true;
        for (text, pos) in &list {
            match parse_day(text) {
                Some(index) => days[index] = true,
                None => {
                    ok = false;
                    self.error(
                        *pos,
                        format!("unknown day {text:?} in login_days"),
                        Some(format!("days are: {}", DAY_NAMES.join(", "))),
                    );
                }
            }
        }
        if list.is_empty() {
            ok = false;
            self.error(
                d.value.pos,
                "login_days is empty, so the account could never log in",
                Some("use disabled = true to switch an account off, or remove login_days to allow every day".into()),
            );
        }
        ok.then_some(days)
    }
}
