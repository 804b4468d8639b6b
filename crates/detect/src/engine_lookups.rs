//! Statements: honeytoken reads, enumeration (many distinct keys, sequential keys,
//! lookups that find nothing), and the hourly volume their ends add up to.

use std::collections::HashMap;
use std::time::Duration;

use super::{addresses, Detector, Open, SessionInfo};
use crate::alert::{Alert, Evidence};
use crate::config::{Rule, Severity};
use crate::fingerprint::KeyPrint;
use crate::observe::{Observation, Statement, StatementEnd};
use crate::state::Lookup;

/// Repeated reads of one honeytoken by one account within this are counted into
/// one alert (the next one says how many there were), not alerted each.
pub const CANARY_REPEAT: Duration = Duration::from_secs(600);

/// A key that could not be read: a fingerprint no real key has (the record's seq
/// and the pin's place), so it counts as a person never seen before.
fn unread_key(seq: u64, index: u64) -> KeyPrint {
    KeyPrint {
        k: (seq << 8 | index.min(255)) | 1 << 63,
        n: None,
    }
}

impl Detector {
    pub(super) fn statement(&mut self, o: &Observation, s: &Statement, out: &mut Vec<Alert>) {
        let session = self
            .sessions
            .entry(s.session.clone())
            .or_insert_with(|| SessionInfo {
                user: s.user.clone(),
                client: s.client,
                open: HashMap::new(),
            });
        let lookup = s.is_lookup();
        if s.decision != "denied" {
            // A cursor's rows come with its FETCHes: its DECLARE finds nothing itself.
            let empty_counts = lookup && !s.class.contains("cursor");
            session.open.insert(
                s.stmt,
                Open {
                    seq: o.seq,
                    lookup: empty_counts,
                },
            );
        }
        self.activity_hour(o, &s.user, s.client, out);
        if s.decision == "denied" {
            self.probe(o, &s.user, s.client, out);
        }
        if !lookup {
            return;
        }
        let keys: Vec<KeyPrint> = s
            .keys
            .iter()
            .copied()
            .chain((0..s.unkeyed).map(|i| unread_key(o.seq, i)))
            .collect();
        self.canaries_read(o, s, &keys, out);
        self.enumeration(o, s, &keys, out);
    }

    /// One alert per statement that reads honeytokens not alerted for this account
    /// within [`CANARY_REPEAT`]; reads within it are counted into the next alert.
    fn canaries_read(
        &mut self,
        o: &Observation,
        s: &Statement,
        keys: &[KeyPrint],
        out: &mut Vec<Alert>,
    ) {
        let mut fresh = 0u64;
        let mut reads = 0u64;
        for key in keys.iter().filter(|k| self.canaries.contains(&k.k)) {
            let seen = self
                .canary_reads
                .entry((s.user.clone(), key.k))
                .or_insert((o.time, 0, true));
            if seen.2 || o.time - seen.0 >= CANARY_REPEAT {
                fresh += 1;
                reads += 1 + seen.1;
                *seen = (o.time, 0, false);
            } else {
                seen.1 += 1;
            }
        }
        if fresh == 0 {
            return;
        }
        let mut evidence = Evidence::records([o.seq], reads);
        evidence.sessions = vec![s.session.clone()];
        evidence.addresses = addresses([s.client]);
        let mut summary = match fresh {
            1 => "a honeytoken record marked in the policy was looked up".to_owned(),
            n => format!("{n} honeytoken records marked in the policy were looked up"),
        };
        if reads > fresh {
            summary.push_str(&format!(" ({} reads of them since the last alert)", reads));
        }
        self.raise(
            out,
            Rule::Canary,
            Severity::High,
            (Some(&s.user), s.client),
            o,
            summary,
            evidence,
        );
    }

    /// Distinct keys and keys of one range in the window. The evidence (a walk of
    /// the window) is gathered only when an alert will be raised.
    fn enumeration(
        &mut self,
        o: &Observation,
        s: &Statement,
        keys: &[KeyPrint],
        out: &mut Vec<Alert>,
    ) {
        let t = &self.settings.thresholds;
        let (span, max_keys, max_near) =
            (t.enumeration_window, t.enumeration_keys, t.sequential_keys);
        let cooling = self.cooling(Rule::Enumeration, &s.user, o);
        let account = self.account(&s.user);
        let mut found = None;
        for key in keys {
            let lookup = Lookup {
                time: o.time,
                seq: o.seq,
                key: *key,
            };
            let (distinct, near) = account.lookups.push(lookup, span);
            if found.is_some() || cooling {
                continue;
            }
            if distinct >= max_keys {
                found = Some((None, distinct, max_keys));
            } else if near >= max_near {
                found = Some((key.n, near, max_near));
            }
        }
        let Some((range, count, threshold)) = found else {
            return;
        };
        let start = account.lookups.entries.front().map_or(o.time, |l| l.time);
        let mut evidence = Evidence::records(account.lookups.first_seqs(range), count)
            .threshold(threshold)
            .window(start, o.time);
        evidence.addresses = addresses([s.client]);
        let minutes = span.as_secs() / 60;
        let summary = match range {
            None => format!("{count} distinct lookup keys in {minutes} minutes"),
            Some(_) => format!(
                "{count} distinct sequential lookup keys (one key range) in {minutes} minutes"
            ),
        };
        self.raise(
            out,
            Rule::Enumeration,
            Severity::High,
            (Some(&s.user), s.client),
            o,
            summary,
            evidence,
        );
    }

    pub(super) fn statement_end(
        &mut self,
        o: &Observation,
        end: &StatementEnd,
        out: &mut Vec<Alert>,
    ) {
        let Some(session) = self.sessions.get_mut(&end.session) else {
            return;
        };
        let Some(open) = session.open.remove(&end.stmt) else {
            return;
        };
        let (user, client) = (session.user.clone(), session.client);
        let probe = end
            .stopped_by
            .as_deref()
            .is_some_and(|s| s != "protected_column")
            || (end.outcome == "failed"
                && end.sqlstate.as_deref().is_some_and(|s| s.starts_with("42")));
        if probe {
            self.probe(o, &user, client, out);
        }
        if open.lookup && end.outcome == "completed" && end.rows == 0 {
            self.empty_lookup(o, open.seq, &user, client, out);
        }
        self.volume(o, &user, client, open.seq, end.rows, out);
    }

    fn empty_lookup(
        &mut self,
        o: &Observation,
        seq: u64,
        user: &str,
        client: Option<std::net::IpAddr>,
        out: &mut Vec<Alert>,
    ) {
        let t = &self.settings.thresholds;
        let (span, max_empty) = (t.enumeration_window, t.empty_lookups);
        let cooling = self.cooling(Rule::Enumeration, user, o);
        let window = &mut self.account(user).empty_lookups;
        let count = window.push(o.time, seq, span);
        if count < max_empty || cooling {
            return;
        }
        let start = window.start().unwrap_or(o.time);
        let evidence = Evidence::records(window.seqs(), count)
            .threshold(max_empty)
            .window(start, o.time);
        self.raise(
            out,
            Rule::Enumeration,
            Severity::High,
            (Some(user), client),
            o,
            format!(
                "{count} lookups found nothing in {} minutes",
                span.as_secs() / 60
            ),
            evidence,
        );
    }
}
