//! `maskgate passwd USER`: turns a new password into the `verifier = "…"` line
//! of the account's table in the policy's accounts file.
//!
//! Only that line goes to stdout; prompts and hints go to the terminal or stderr.

use std::io::{self, BufRead, IsTerminal, Write};

use anyhow::{bail, Context as _};
use maskgate_policy::{check_password, ScramVerifier, DEFAULT_ITERATIONS};

/// Reads the password (prompting twice on a terminal, else the first line of stdin),
/// refuses weak ones and prints `verifier = "SCRAM-SHA-256$..."`.
pub fn run(user: &str) -> anyhow::Result<()> {
    validate_user_name(user)?;
    let stdin = io::stdin();
    let password = if stdin.is_terminal() {
        prompt_twice(user)?
    } else {
        first_line(stdin.lock())?
    };
    if password.contains('\0') {
        bail!("the password contains a NUL character, which PostgreSQL clients cannot send");
    }
    check_password(&password, user)
        .with_context(|| format!("the new password for {user:?} was refused"))?;

    let verifier = ScramVerifier::generate(&password, DEFAULT_ITERATIONS);
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "verifier = \"{verifier}\"")
        .and_then(|()| stdout.flush())
        .context("cannot write the verifier line to standard output")?;
    eprintln!(
        "Put the line above in the table [accounts.{}] of the policy's accounts file \
         (replacing its old verifier); a running proxy picks the change up by itself.",
        toml_key(user)
    );
    Ok(())
}

/// The users file and PostgreSQL both reject these; better to say so now than at login.
fn validate_user_name(user: &str) -> anyhow::Result<()> {
    if user.is_empty() {
        bail!("the user name must not be empty");
    }
    if user.chars().any(char::is_control) {
        bail!("the user name must not contain control characters");
    }
    Ok(())
}

fn prompt_twice(user: &str) -> anyhow::Result<String> {
    eprintln!(
        "Choose at least 12 characters; a few unrelated words are easier to remember than symbols."
    );
    let first = rpassword::prompt_password(format!("New password for {user}: "))
        .context("cannot read the password from the terminal")?;
    let second = rpassword::prompt_password("Repeat the password: ")
        .context("cannot read the password from the terminal")?;
    if first != second {
        bail!("the two passwords do not match; nothing was printed");
    }
    Ok(first)
}

/// The first line without its line ending, so `echo "$PW" | maskgate passwd` works.
fn first_line(mut input: impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    let read = input
        .read_line(&mut line)
        .context("cannot read the password from standard input (it must be UTF-8 text)")?;
    if read == 0 {
        bail!("no password on standard input");
    }
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(line)
}

/// The user name as a TOML key: bare when TOML allows it, else a quoted basic string.
fn toml_key(user: &str) -> String {
    let bare = !user.is_empty()
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        return user.to_owned();
    }
    let mut key = String::with_capacity(user.len() + 2);
    key.push('"');
    for c in user.chars() {
        match c {
            '"' => key.push_str("\\\""),
            '\\' => key.push_str("\\\\"),
            c if c.is_control() => key.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => key.push(c),
        }
    }
    key.push('"');
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_keys_stay_bare() {
        assert_eq!(toml_key("alice"), "alice");
        assert_eq!(toml_key("svc_report-01"), "svc_report-01");
    }

    #[test]
    fn other_names_are_quoted_and_parse_back_to_themselves() {
        let verifier = ScramVerifier::generate("pw", 1);
        for user in [
            "bob smith",
            "a.b",
            "nguyễn.văn.an",
            "say \"hi\"",
            "back\\slash",
            "1=2",
            "#x",
        ] {
            let key = toml_key(user);
            assert!(key.starts_with('"'), "{key}");
            let text = format!("[accounts.{key}]\nverifier = \"{verifier}\"\n");
            let parsed: toml::Table = toml::from_str(&text).unwrap();
            let accounts = parsed["accounts"].as_table().unwrap();
            assert_eq!(accounts.keys().collect::<Vec<_>>(), [user]);
            let stored = accounts[user]["verifier"].as_str().unwrap();
            assert_eq!(stored.parse::<ScramVerifier>().unwrap(), verifier);
        }
    }

    #[test]
    fn control_characters_are_escaped_if_they_ever_get_here() {
        assert_eq!(toml_key("a\tb"), "\"a\\u0009b\"");
    }

    #[test]
    fn user_names_must_be_non_empty_without_control_characters() {
        assert!(validate_user_name("alice").is_ok());
        assert!(validate_user_name("bob smith").is_ok());
        assert!(validate_user_name("").is_err());
        for bad in ["a\nb", "a\0b", "tab\t", "\u{7f}"] {
            assert!(validate_user_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_the_first_line_is_read_and_its_ending_dropped() {
        assert_eq!(
            first_line(&b"secret one\nsecond\n"[..]).unwrap(),
            "secret one"
        );
        assert_eq!(first_line(&b"windows\r\n"[..]).unwrap(), "windows");
        assert_eq!(first_line(&b"no newline"[..]).unwrap(), "no newline");
        assert_eq!(
            first_line(&b" spaces kept \n"[..]).unwrap(),
            " spaces kept "
        );
        assert_eq!(first_line(&b"\n"[..]).unwrap(), "");
        assert!(first_line(&b""[..]).is_err());
        assert!(first_line(&b"\xff\xfe\n"[..]).is_err());
    }
}
