//! Strength rules for the passwords people choose for their maskgate accounts.
//!
//! maskgate stores only SCRAM verifiers, but a verifier is enough for an offline
//! dictionary attack, so a guessable password is as good as a leaked one. These rules
//! refuse such passwords before a verifier is ever made. Nothing here echoes the password:
//! the reasons are fixed texts, safe for terminals and logs.

use std::collections::HashSet;
use std::sync::OnceLock;

/// Shorter passwords fall to brute force whatever they contain.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// zxcvbn's score 3 means "safely unguessable" (about 10^10 guesses); below that a
/// stolen verifier is cracked in hours.
pub const MIN_PASSWORD_SCORE: u8 = 3;

/// User names shorter than this are too likely to occur by chance to forbid them.
const MIN_USER_NAME_CHARS: usize = 3;

/// Passwords people pick first, lower-case, one per line; bundled so the check works
/// offline on locked-down hosts.
const COMMON_PASSWORDS: &str = include_str!("../data/common-passwords.txt");

/// Why a password was refused, phrased so the person knows what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    /// Counted in characters, not bytes, so Vietnamese and other non-ASCII text is
    /// judged by what the person typed.
    #[error("the password is too short: it has {chars} characters, at least {MIN_PASSWORD_CHARS} are required")]
    TooShort {
        /// How many characters the password has.
        chars: usize,
    },
    /// Attackers try these first, including with digits or symbols appended.
    #[error("the password is a commonly used one (or one with only digits or symbols added); choose something less predictable")]
    Common,
    /// The login is the first thing an attacker who holds the verifier tries.
    #[error("the password contains the user name")]
    ContainsUserName,
    /// The estimator found a guessable pattern (words, dates, keyboard walks, ...).
    #[error("the password is too easy to guess (strength {score} of 4, at least {MIN_PASSWORD_SCORE} is required){}", hint_suffix(.hint))]
    TooGuessable {
        /// zxcvbn's score, 0 to 4.
        score: u8,
        /// zxcvbn's fixed-text advice, if it had any.
        hint: Option<String>,
    },
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_deref()
        .map(|hint| format!(": {hint}"))
        .unwrap_or_default()
}

/// Refuses a password for `user` that is short, common, contains the user name or is
/// otherwise easy to guess; the cheap rules run first so their clearer messages win.
pub fn check_password(password: &str, user: &str) -> Result<(), WeakPassword> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(WeakPassword::TooShort { chars });
    }
    if is_common_password(password) {
        return Err(WeakPassword::Common);
    }
    if contains_user_name(password, user) {
        return Err(WeakPassword::ContainsUserName);
    }
    let estimate = zxcvbn::zxcvbn(password, &[user]);
    let score = u8::from(estimate.score());
    if score < MIN_PASSWORD_SCORE {
        let hint = estimate.feedback().and_then(|feedback| {
            let mut parts: Vec<String> = feedback
                .warning()
                .map(|w| w.to_string())
                .into_iter()
                .collect();
            parts.extend(feedback.suggestions().iter().map(ToString::to_string));
            (!parts.is_empty()).then(|| parts.join(" "))
        });
        return Err(WeakPassword::TooGuessable { score, hint });
    }
    Ok(())
}

/// True if the password, ignoring case, is on the bundled list or is a listed entry
/// followed only by non-letters such as digits, punctuation or spaces (`Matkhau123!`).
pub fn is_common_password(password: &str) -> bool {
    let lower = password.to_lowercase();
    let list = common_passwords();
    if list.contains(lower.as_str()) {
        return true;
    }
    // Every cut where the rest contains no letter: "matkhau123!" -> "matkhau".
    lower
        .char_indices()
        .rev()
        .take_while(|(_, c)| !c.is_alphabetic())
        .any(|(cut, _)| cut > 0 && list.contains(&lower[..cut]))
}

fn contains_user_name(password: &str, user: &str) -> bool {
    let user = user.to_lowercase();
    user.chars().count() >= MIN_USER_NAME_CHARS && password.to_lowercase().contains(&user)
}

fn common_passwords() -> &'static HashSet<&'static str> {
    static LIST: OnceLock<HashSet<&'static str>> = OnceLock::new();
    LIST.get_or_init(|| {
        COMMON_PASSWORDS
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRONG: &str = "vịnh hạ long lúc bình minh, 7 con thuyền";

    #[test]
    fn a_long_unpredictable_password_is_accepted() {
        assert_eq!(check_password(STRONG, "alice"), Ok(()));
        assert_eq!(check_password("Tz8#qLm2!vRw9pXe", "alice"), Ok(()));
    }

    #[test]
    fn fewer_than_twelve_characters_is_too_short() {
        assert_eq!(
            check_password("Tz8#qLm2!vR", "alice"),
            Err(WeakPassword::TooShort { chars: 11 })
        );
        assert_eq!(
            check_password("", "alice"),
            Err(WeakPassword::TooShort { chars: 0 })
        );
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        // 11 characters but 22 bytes: still too short.
        let eleven = "ậậậậậậậậậậậ";
        assert!(eleven.len() > MIN_PASSWORD_CHARS);
        assert_eq!(
            check_password(eleven, "alice"),
            Err(WeakPassword::TooShort { chars: 11 })
        );
    }

    #[test]
    fn listed_passwords_are_common_in_any_case() {
        for password in [
            "password1234",
            "PASSWORD1234",
            "qwertyuiop",
            "matkhau123",
            "AnhYeuEm",
            "1q2w3e4r5t6y",
            "mậtkhẩu",
        ] {
            assert!(is_common_password(password), "{password}");
        }
        assert_eq!(
            check_password("Matkhaucuatoi", "alice"),
            Err(WeakPassword::Common)
        );
    }

    #[test]
    fn listed_passwords_with_digits_or_symbols_appended_are_common() {
        for password in [
            "matkhau123!",
            "Matkhau@2024#",
            "anhyeuem 1990",
            "123456789012",
            "Password!!!!",
            "qwerty_12345",
        ] {
            assert!(is_common_password(password), "{password}");
        }
        assert_eq!(
            check_password("matkhau123!!", "alice"),
            Err(WeakPassword::Common)
        );
    }

    #[test]
    fn listed_words_inside_other_text_are_left_to_the_estimator() {
        assert!(!is_common_password("xmatkhau123!"));
        assert!(!is_common_password("matkhau123!x"));
        assert!(!is_common_password(STRONG));
        assert!(!is_common_password(""));
        assert!(!is_common_password("!!!"));
    }

    #[test]
    fn a_password_containing_the_user_name_is_refused() {
        assert_eq!(
            check_password("Tz8#qLm2!ALICE", "alice"),
            Err(WeakPassword::ContainsUserName)
        );
        assert_eq!(
            check_password("Tz8#nguyenvanbinh", "NguyenVanBinh"),
            Err(WeakPassword::ContainsUserName)
        );
    }

    #[test]
    fn very_short_user_names_do_not_forbid_their_letters() {
        assert_eq!(check_password("Tz8#qLm2!vRw9pXe", "tz"), Ok(()));
    }

    #[test]
    fn the_estimator_refuses_guessable_patterns() {
        let err = check_password("aaaaaaaaaaaaaaaa", "alice").unwrap_err();
        assert!(
            matches!(&err, WeakPassword::TooGuessable { score, hint: Some(_) } if *score < MIN_PASSWORD_SCORE),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("the password is too easy to guess (strength "),
            "{err}"
        );
        assert!(matches!(
            check_password("abcdefghijklmnop", "alice"),
            Err(WeakPassword::TooGuessable { .. })
        ));
    }

    #[test]
    fn the_user_name_counts_as_known_to_the_estimator() {
        // Disguised (l33t, reversed) the name slips past the plain containment rule, but
        // not past the estimator, which was told the name.
        for password in ["z0rv3xk4l-19!", "lakxevroz-19!"] {
            assert_eq!(check_password(password, "bob"), Ok(()), "{password}");
            assert!(
                matches!(
                    check_password(password, "zorvexkal"),
                    Err(WeakPassword::TooGuessable { .. })
                ),
                "{password}"
            );
        }
    }

    #[test]
    fn messages_never_contain_the_password() {
        let cases = [
            ("short-pw", "alice"),
            ("matkhau123!!", "alice"),
            ("Tz8#qLm2!ALICE", "alice"),
            ("aaaaaaaaaaaaaaaa", "alice"),
        ];
        for (password, user) in cases {
            let err = check_password(password, user).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(password), "{shown}");
        }
    }

    #[test]
    fn the_bundled_list_is_clean() {
        let mut seen = HashSet::new();
        for line in COMMON_PASSWORDS.lines() {
            assert!(!line.is_empty(), "blank line");
            assert_eq!(line, line.trim(), "{line:?} has surrounding spaces");
            assert_eq!(line, line.to_lowercase(), "{line:?} is not lower-case");
            assert!(seen.insert(line), "{line:?} is listed twice");
        }
        assert!(seen.len() >= 300, "only {} entries", seen.len());
        assert_eq!(common_passwords().len(), seen.len());
    }
}
