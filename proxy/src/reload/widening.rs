//! What a new policy lets in that the one in force did not.
//!
//! A reload that widens access is put in force like any other (it is what an
//! operator who enables an account means), but it is what a half-written or
//! wrong file looks like too: a break-glass account whose `disabled = true` line
//! was not written yet. So each widening is named, loudly, in the log and in the
//! trail's `policy_reload` record.

use std::collections::BTreeSet;

use maskgate_policy::{Account, Policy};

/// Each way `after` lets in more than `before`, for people: accounts added or
/// enabled, networks or client-certificate requirements dropped, networks and
/// roles added, roles made unrestricted.
pub fn widenings(before: &Policy, after: &Policy) -> Vec<String> {
    let mut found = Vec::new();
    for account in after.accounts().filter(|a| !a.disabled) {
        let login = &account.login;
        let Some(old) = before.account(login) else {
            found.push(format!("account {login} added"));
            continue;
        };
        if old.disabled {
            found.push(format!("account {login} enabled"));
        }
        account_widenings(old, account, &mut found);
    }
    for (name, role) in after.roles() {
        let was = before.roles().get(name).is_some_and(|r| r.unrestricted);
        if role.unrestricted && !was {
            found.push(format!("role {name} is unrestricted"));
        }
    }
    found
}

fn account_widenings(old: &Account, new: &Account, found: &mut Vec<String>) {
    let login = &new.login;
    if !old.networks.is_empty() {
        if new.networks.is_empty() {
            found.push(format!("account {login} may connect from anywhere"));
        } else {
            for net in new.networks.iter().filter(|n| !old.networks.contains(n)) {
                found.push(format!("account {login}: network {net} added"));
            }
        }
    }
    if !old.cert_fingerprints.is_empty() && new.cert_fingerprints.is_empty() {
        found.push(format!("account {login} needs no client certificate"));
    }
    let roles: BTreeSet<&String> = old.roles.iter().collect();
    for role in new.roles.iter().filter(|r| !roles.contains(r)) {
        found.push(format!("account {login}: role {role} added"));
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn policy(accounts: &str) -> Policy {
        let verifier = maskgate_policy::ScramVerifier::generate("pw", 4096);
        let text = format!(
            "[roles.relay]\ndescription = \"relays\"\nunrestricted = true\n\
             [roles.other]\ndescription = \"more\"\nunrestricted = true\n{}",
            accounts.replace("VERIFIER", &verifier.to_string())
        );
        Policy::from_texts(
            vec![(PathBuf::from("p.toml"), text)],
            Default::default(),
            time::macros::date!(2026 - 01 - 01),
        )
        .expect("a valid policy")
        .policy
    }

    #[test]
    fn enabled_added_and_opened_accounts_are_named() {
        let account = |login: &str, extra: &str| {
            format!(
                "[accounts.{login}]\nname = \"x\"\nverifier = \"VERIFIER\"\nroles = [\"relay\"]\n{extra}\n"
            )
        };
        let before = policy(&format!(
            "{}{}",
            account("dba", "disabled = true\nnetworks = [\"10.0.0.0/24\"]"),
            account("clerk", "networks = [\"10.0.0.0/24\"]")
        ));
        assert!(widenings(&before, &before).is_empty());
        let after = policy(&format!(
            "{}{}{}",
            account("dba", ""),
            account("clerk", "networks = [\"10.0.0.0/24\", \"0.0.0.0/0\"]")
                .replace("[\"relay\"]", "[\"relay\", \"other\"]"),
            account("new", "")
        ));
        let found = widenings(&before, &after);
        assert_eq!(
            found,
            [
                "account clerk: network 0.0.0.0/0 added",
                "account clerk: role other added",
                "account dba enabled",
                "account dba may connect from anywhere",
                "account new added",
            ],
            "{found:?}"
        );
        // Narrowing is not widening.
        assert!(widenings(&after, &before).is_empty());
    }
}
