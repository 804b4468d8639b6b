//! Which startup parameters a client may set.
//!
//! Harmless session settings pass upstream, whether sent as startup parameters
//! or as `-c name=value` inside `options` (drivers use both). Anything that
//! could change who the session is, how names resolve, or load code is refused
//! with an error naming it; so is anything unknown, since the proxy fails closed.

use crate::error::{ClientError, SqlState};

/// Session settings a client may choose: the same list SET is checked against.
const ALLOWED_SETTINGS: &[&str] = maskgate_sql::SETTABLE;

/// Settings refused with a reason the error spells out.
fn refusal_reason(name: &str) -> Option<&'static str> {
    Some(match name {
        "role" | "session_authorization" | "is_superuser" => {
            "it would change the identity of the session"
        }
        "local_preload_libraries"
        | "session_preload_libraries"
        | "shared_preload_libraries"
        | "dynamic_library_path" => "it would load code into the server",
        "replication" => "replication connections are not relayed",
        "session_replication_role" | "row_security" => "it would bypass triggers or row security",
        _ => return None,
    })
}

/// Connection-level keys that are not settings.
const CONNECTION_KEYS: &[&str] = &["user", "database", "options"];

/// The client's startup request, split into what the proxy uses itself and the
/// settings it applies to the upstream session.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StartupRequest {
    pub user: String,
    pub database: Option<String>,
    /// Settings to apply upstream, names lower-cased, in the order given.
    pub settings: Vec<(String, String)>,
    /// Protocol options (`_pq_.*`) the proxy does not support; reported with NegotiateProtocolVersion.
    pub unsupported_protocol_options: Vec<String>,
}

/// Validates the parameters of a StartupMessage.
pub fn parse_startup<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<StartupRequest, ClientError> {
    let mut req = StartupRequest::default();
    let mut user = None;
    for (key, value) in params {
        if key.starts_with("_pq_.") {
            req.unsupported_protocol_options.push(key.to_string());
            continue;
        }
        match key {
            "user" => user = Some(clip_name(value).to_string()),
            "database" => {
                req.database = Some(clip_name(value).to_string()).filter(|d| !d.is_empty())
            }
            "options" => {
                for (name, value) in parse_options(value)? {
                    add_setting(&mut req.settings, &name, value)?;
                }
            }
            _ => add_setting(&mut req.settings, key, value.to_string())?,
        }
    }
    req.user = user.filter(|u| !u.is_empty()).ok_or_else(|| {
        ClientError::fatal(
            SqlState::INVALID_AUTHORIZATION,
            "no user name specified in the startup packet",
        )
    })?;
    Ok(req)
}

/// The longest name PostgreSQL keeps (NAMEDATALEN - 1).
pub const MAX_NAME_BYTES: usize = 63;

/// A user or database name cut to 63 bytes at a character boundary, as PostgreSQL
/// cuts them: a client cannot make the proxy keep, log or count a longer one.
pub fn clip_name(name: &str) -> &str {
    if name.len() <= MAX_NAME_BYTES {
        return name;
    }
    let mut end = MAX_NAME_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

fn add_setting(
    settings: &mut Vec<(String, String)>,
    name: &str,
    value: String,
) -> Result<(), ClientError> {
    let lower = name.to_ascii_lowercase();
    if let Some(reason) = refusal_reason(&lower) {
        if lower == "replication" && matches!(value.as_str(), "false" | "off" | "no" | "0") {
            return Ok(());
        }
        return Err(ClientError::fatal(
            SqlState::INSUFFICIENT_PRIVILEGE,
            format!("startup parameter \"{name}\" may not be set through maskgate: {reason}"),
        ));
    }
    // search_path: passed through for unrestricted accounts; checked at login and
    // followed by maskgate's own name resolution for restricted ones.
    let allowed = ALLOWED_SETTINGS.contains(&lower.as_str()) || lower == "search_path";
    if CONNECTION_KEYS.contains(&lower.as_str()) || !allowed {
        return Err(ClientError::fatal(
            SqlState::INSUFFICIENT_PRIVILEGE,
            format!("startup parameter \"{name}\" is not allowed through maskgate"),
        )
        .with_hint(format!(
            "allowed session settings are: {}",
            ALLOWED_SETTINGS.join(", ")
        )));
    }
    if value.contains('\0') {
        return Err(ClientError::fatal(
            SqlState::PROTOCOL_VIOLATION,
            format!("startup parameter \"{name}\" has an invalid value"),
        ));
    }
    settings.retain(|(n, _)| *n != lower);
    settings.push((lower, value));
    Ok(())
}

/// Splits the `options` startup parameter the way the server does: words are
/// separated by unescaped white space, and a backslash escapes the next
/// character. Only `-c name=value`, `-cname=value` and `--name=value` are
/// accepted; other server switches are refused.
fn parse_options(options: &str) -> Result<Vec<(String, String)>, ClientError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
                in_word = true;
            }
            c if c.is_ascii_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }

    let bad = |w: &str| {
        ClientError::fatal(
            SqlState::INSUFFICIENT_PRIVILEGE,
            format!("startup option \"{w}\" is not allowed through maskgate"),
        )
        .with_hint("only -c name=value and --name=value settings may be given in options")
    };
    let mut settings = Vec::new();
    let mut words = words.into_iter();
    while let Some(w) = words.next() {
        let assignment = if w == "-c" {
            words.next().ok_or_else(|| bad(&w))?
        } else if let Some(rest) = w.strip_prefix("--") {
            rest.to_string()
        } else if let Some(rest) = w.strip_prefix("-c") {
            rest.to_string()
        } else {
            return Err(bad(&w));
        };
        let (name, value) = assignment.split_once('=').ok_or_else(|| bad(&assignment))?;
        // The server treats dashes in setting names as underscores.
        settings.push((name.replace('-', "_"), value.to_string()));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(params: &[(&str, &str)]) -> Result<StartupRequest, ClientError> {
        parse_startup(params.iter().copied())
    }

    #[test]
    fn harmless_settings_pass_with_lower_case_names() {
        let req = parse(&[
            ("user", "alice"),
            ("database", "register"),
            ("application_name", "counter"),
            ("DateStyle", "ISO, DMY"),
            ("TimeZone", "Asia/Ho_Chi_Minh"),
        ])
        .unwrap();
        assert_eq!(req.user, "alice");
        assert_eq!(req.database.as_deref(), Some("register"));
        assert_eq!(
            req.settings,
            vec![
                ("application_name".to_string(), "counter".to_string()),
                ("datestyle".to_string(), "ISO, DMY".to_string()),
                ("timezone".to_string(), "Asia/Ho_Chi_Minh".to_string()),
            ]
        );
    }

    #[test]
    fn settings_inside_options_pass() {
        let req = parse(&[
            ("user", "alice"),
            (
                "options",
                "-c statement_timeout=5s --lock-timeout=1s -cDateStyle=ISO,\\ YMD",
            ),
        ])
        .unwrap();
        assert_eq!(
            req.settings,
            vec![
                ("statement_timeout".to_string(), "5s".to_string()),
                ("lock_timeout".to_string(), "1s".to_string()),
                ("datestyle".to_string(), "ISO, YMD".to_string()),
            ]
        );
    }

    #[test]
    fn identity_and_code_loading_settings_are_refused_by_name() {
        for (key, value) in [
            ("role", "postgres"),
            ("session_authorization", "postgres"),
            ("local_preload_libraries", "x"),
        ] {
            let e = parse(&[("user", "alice"), (key, value)]).unwrap_err();
            assert_eq!(e.sqlstate, SqlState::INSUFFICIENT_PRIVILEGE);
            assert!(e.message.contains(key), "{e}");
        }
    }

    #[test]
    fn refused_settings_cannot_hide_in_options() {
        for opts in [
            "-c role=postgres",
            "-c session_authorization=postgres",
            "--session-authorization=postgres",
        ] {
            let e = parse(&[("user", "alice"), ("options", opts)]).unwrap_err();
            assert_eq!(e.sqlstate, SqlState::INSUFFICIENT_PRIVILEGE, "{opts}");
        }
    }

    #[test]
    fn search_path_is_a_setting_like_the_others() {
        let req = parse(&[("user", "a"), ("options", "-c search_path=sales,public")]).unwrap();
        assert_eq!(
            req.settings,
            vec![("search_path".to_string(), "sales,public".to_string())]
        );
    }

    #[test]
    fn unknown_settings_and_switches_are_refused() {
        assert!(parse(&[("user", "a"), ("work_mem", "1GB")]).is_err());
        assert!(parse(&[("user", "a"), ("options", "-B 100")]).is_err());
        assert!(parse(&[("user", "a"), ("options", "-c")]).is_err());
        assert!(parse(&[("user", "a"), ("options", "-c novalue")]).is_err());
    }

    #[test]
    fn replication_off_is_accepted_but_on_is_refused() {
        assert!(parse(&[("user", "a"), ("replication", "false")]).is_ok());
        assert!(parse(&[("user", "a"), ("replication", "database")]).is_err());
    }

    #[test]
    fn a_user_is_required() {
        let e = parse(&[("database", "x")]).unwrap_err();
        assert_eq!(e.sqlstate, SqlState::INVALID_AUTHORIZATION);
    }

    #[test]
    fn protocol_options_are_collected_for_negotiation() {
        let req = parse(&[("user", "a"), ("_pq_.compression", "on")]).unwrap();
        assert_eq!(req.unsupported_protocol_options, vec!["_pq_.compression"]);
    }

    #[test]
    fn names_are_cut_to_63_bytes_like_postgresql() {
        let long = "x".repeat(10_000);
        let req = parse(&[("user", &long), ("database", &long)]).unwrap();
        assert_eq!(req.user.len(), 63);
        assert_eq!(req.database.as_deref().map(str::len), Some(63));
        // Never inside a character: 31 two-byte letters, then a cut before the 32nd.
        let accented = "é".repeat(40);
        assert_eq!(clip_name(&accented).len(), 62);
        assert_eq!(clip_name("alice"), "alice");
    }
}
