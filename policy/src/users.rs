//! The interim users file: one `name = "SCRAM-SHA-256$..."` line per account.
//!
//! It exists so clients can authenticate before the full policy format lands; the
//! verifiers are exactly what PostgreSQL stores in `pg_authid.rolpassword`, so they can be
//! copied from an existing server or made with `maskgate` itself.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use toml::{Spanned, Value};

use crate::error::{Location, PolicyError};
use crate::verifier::ScramVerifier;

/// Reads the users file from disk; kept apart from [`Users`] so a later reload can re-read
/// the same source without the rest of the code caring where the accounts came from.
#[derive(Debug, Clone, Copy)]
pub struct UsersFile;

impl UsersFile {
    /// Reads and validates the whole file; any problem rejects the file as a whole, so a
    /// typo can never silently lock out (or leave in) an account.
    pub fn load(path: impl AsRef<Path>) -> Result<Users, PolicyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Users::parse(&text, path)
    }
}

/// The accounts allowed to log in to maskgate and how to check their passwords.
#[derive(Clone, Default)]
pub struct Users {
    by_name: BTreeMap<String, ScramVerifier>,
}

impl Users {
    /// Parses the text of a users file; `origin` is only used to point at errors.
    pub fn parse(text: &str, origin: impl AsRef<Path>) -> Result<Users, PolicyError> {
        let origin = origin.as_ref();
        let at = |offset: usize| Location::at(origin.to_path_buf(), text, offset);

        let entries: BTreeMap<Spanned<String>, Spanned<Value>> =
            toml::from_str(text).map_err(|error| PolicyError::Syntax {
                at: at(error.span().map_or(0, |span| span.start)),
                message: error.message().trim_end().to_owned(),
            })?;

        // Report the first problem in file order, not in name order.
        let mut entries: Vec<_> = entries.into_iter().collect();
        entries.sort_by_key(|(name, _)| name.span().start);

        let mut by_name = BTreeMap::new();
        for (name, value) in entries {
            let name_start = name.span().start;
            let value_start = value.span().start;
            let name = name.into_inner();
            if let Some(reason) = invalid_name(&name) {
                return Err(PolicyError::InvalidUserName {
                    at: at(name_start),
                    reason,
                });
            }
            let text = match value.into_inner() {
                Value::String(text) => text,
                other => {
                    return Err(PolicyError::NotAString {
                        at: at(value_start),
                        user: name,
                        found: other.type_str(),
                    })
                }
            };
            let verifier: ScramVerifier =
                text.parse()
                    .map_err(|reason| PolicyError::InvalidVerifier {
                        at: at(value_start),
                        user: name.clone(),
                        reason,
                    })?;
            by_name.insert(name, verifier);
        }
        Ok(Users { by_name })
    }

    /// `None` means the account does not exist; callers must still run a full (mock)
    /// exchange so the client cannot tell.
    pub fn get(&self, name: &str) -> Option<&ScramVerifier> {
        self.by_name.get(name)
    }

    /// How many accounts are configured, for startup logs and metrics.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// An empty file is valid but means nobody can log in; callers may want to warn.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Account names in sorted order, e.g. for diagnostics; never the verifiers.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// PostgreSQL's startup packet carries the user as a non-empty NUL-terminated string.
fn invalid_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("user names must not be empty")
    } else if name.contains('\0') {
        Some("user names must not contain NUL characters")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verifier::VerifierError;

    fn verifier(password: &str) -> String {
        ScramVerifier::generate(password, 16).to_string()
    }

    fn error(text: &str) -> PolicyError {
        Users::parse(text, "users.toml").unwrap_err()
    }

    fn position(error: &PolicyError) -> (usize, usize) {
        match error {
            PolicyError::Syntax { at, .. }
            | PolicyError::InvalidUserName { at, .. }
            | PolicyError::NotAString { at, .. }
            | PolicyError::InvalidVerifier { at, .. } => (at.line, at.column),
            PolicyError::Read { .. } => panic!("not a parse error"),
        }
    }

    #[test]
    fn parses_accounts_and_keeps_their_verifiers() {
        let alice = verifier("a");
        let bob = verifier("b");
        let text = format!("# who may log in\nalice = \"{alice}\"\n\"bob smith\" = '{bob}'\n");
        let users = Users::parse(&text, "users.toml").unwrap();
        assert_eq!(users.len(), 2);
        assert!(!users.is_empty());
        assert_eq!(users.get("alice").unwrap().to_string(), alice);
        assert_eq!(users.get("bob smith").unwrap().to_string(), bob);
        assert!(users.get("carol").is_none());
        assert_eq!(users.names().collect::<Vec<_>>(), ["alice", "bob smith"]);
    }

    #[test]
    fn an_empty_file_has_no_users() {
        let users = Users::parse("# nobody yet\n", "users.toml").unwrap();
        assert!(users.is_empty());
        assert_eq!(users.len(), 0);
    }

    #[test]
    fn invalid_verifier_names_user_and_position_but_not_the_secret() {
        let good = verifier("a");
        let bad = good.replacen("SCRAM-SHA-256$16:", "SCRAM-SHA-256$0:", 1);
        let text = format!("alice = \"{good}\"\n\n  carol =   \"{bad}\"\n");
        let err = error(&text);
        assert!(matches!(
            &err,
            PolicyError::InvalidVerifier { user, reason: VerifierError::InvalidIterations, .. }
                if user == "carol"
        ));
        assert_eq!(position(&err), (3, 13));
        let message = err.to_string();
        assert!(
            message.starts_with("users.toml:3:13: user \"carol\": "),
            "{message}"
        );
        let secret_part = bad.split('$').nth(2).unwrap();
        assert!(!message.contains(secret_part), "{message}");
        assert!(!format!("{err:?}").contains(secret_part));
    }

    #[test]
    fn non_string_values_are_rejected_with_their_type() {
        let err = error("alice = 42\n");
        assert!(matches!(
            &err,
            PolicyError::NotAString {
                found: "integer",
                ..
            }
        ));
        assert_eq!(position(&err), (1, 9));
        assert_eq!(
            err.to_string(),
            "users.toml:1:9: user \"alice\": expected a string holding a SCRAM-SHA-256 verifier, found integer"
        );

        let err = error(&format!("alice = [\"{}\"]\n", verifier("a")));
        assert!(matches!(
            &err,
            PolicyError::NotAString { found: "array", .. }
        ));

        let err = error(&format!("[alice]\nverifier = \"{}\"\n", verifier("a")));
        assert!(matches!(
            &err,
            PolicyError::NotAString { found: "table", .. }
        ));
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let err = error("alice = \"x\"\nbob \"y\"\n");
        assert!(matches!(err, PolicyError::Syntax { .. }));
        assert_eq!(position(&err), (2, 5));
        assert!(err
            .to_string()
            .starts_with("users.toml:2:5: invalid TOML: "));
    }

    #[test]
    fn syntax_errors_do_not_quote_the_source_line() {
        let secret = verifier("a");
        let err = error(&format!("alice = \"{secret}\" trailing\n"));
        assert!(matches!(err, PolicyError::Syntax { .. }));
        let salt_and_keys = secret.split_once('$').unwrap().1;
        assert!(!err.to_string().contains(salt_and_keys), "{err}");
    }

    #[test]
    fn duplicate_users_are_an_error() {
        let text = format!(
            "alice = \"{}\"\nalice = \"{}\"\n",
            verifier("a"),
            verifier("b")
        );
        let err = error(&text);
        assert!(matches!(err, PolicyError::Syntax { .. }));
        assert_eq!(position(&err).0, 2);
    }

    #[test]
    fn unusable_user_names_are_rejected() {
        let err = error(&format!("\"\" = \"{}\"\n", verifier("a")));
        assert!(matches!(err, PolicyError::InvalidUserName { .. }));
        assert_eq!(position(&err), (1, 1));
        let err = error(&format!("\"a\\u0000b\" = \"{}\"\n", verifier("a")));
        assert!(matches!(err, PolicyError::InvalidUserName { .. }));
    }

    #[test]
    fn the_first_problem_in_the_file_is_reported() {
        let err = error("zed = 1\nadam = 2\n");
        assert!(matches!(&err, PolicyError::NotAString { user, .. } if user == "zed"));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let err = error("\"j\u{f6}rg\" = true\n");
        assert_eq!(position(&err), (1, 10));
    }

    #[test]
    fn load_reads_the_file_and_reports_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        std::fs::write(&path, format!("alice = \"{}\"\n", verifier("a"))).unwrap();
        assert_eq!(UsersFile::load(&path).unwrap().len(), 1);

        let missing = dir.path().join("absent.toml");
        let err = UsersFile::load(&missing).unwrap_err();
        assert!(matches!(err, PolicyError::Read { .. }));
        assert!(err.to_string().contains("absent.toml"));
    }

    #[test]
    fn debug_lists_names_only() {
        let secret = verifier("a");
        let users = Users::parse(&format!("alice = \"{secret}\"\n"), "u.toml").unwrap();
        let debug = format!("{users:?}");
        assert_eq!(debug, "{\"alice\"}");
    }
}
