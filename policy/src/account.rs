//! Login-time checks of an account: validity, disabled flag, address, certificate, hours.

use std::fmt;
use std::net::IpAddr;

use time::{Date, OffsetDateTime};

use crate::model::Account;

/// Why a login with a correct password is still refused. The proxy sends
/// [`LoginDenial::message`] to the client with SQLSTATE 28000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginDenial {
    /// `disabled = true`.
    Disabled,
    /// Before `valid_from`.
    NotYetValid,
    /// After `valid_until`.
    Expired,
    /// The client address is not in the account's networks.
    Address,
    /// No client certificate, or not one registered for the account.
    Certificate,
    /// Outside the login hours or days.
    OutsideHours,
}

impl LoginDenial {
    /// What the person should do, without revealing what the policy says.
    pub fn message(&self) -> &'static str {
        match self {
            LoginDenial::Disabled => {
                "this account is disabled; ask your security officer if you still need access"
            }
            LoginDenial::NotYetValid => {
                "this account is not active yet; try again on the first day of your assignment or ask your security officer"
            }
            LoginDenial::Expired => {
                "this account has expired; ask your security officer to renew your assignment"
            }
            LoginDenial::Address => {
                "this account may not connect from this computer; use your registered workstation or ask your security officer"
            }
            LoginDenial::Certificate => {
                "this account needs its registered client certificate; connect from your registered workstation or ask your security officer"
            }
            LoginDenial::OutsideHours => {
                "this account may not log in at this time; try again during your working hours or ask your security officer"
            }
        }
    }

    /// A stable word for logs and metrics labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            LoginDenial::Disabled => "disabled",
            LoginDenial::NotYetValid => "not_yet_valid",
            LoginDenial::Expired => "expired",
            LoginDenial::Address => "address",
            LoginDenial::Certificate => "certificate",
            LoginDenial::OutsideHours => "outside_hours",
        }
    }
}

impl fmt::Display for LoginDenial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for LoginDenial {}

impl Account {
    /// Checks everything that is decided at login, except the password and the session
    /// count. `now` must already be in the policy's time zone.
    pub fn admit(
        &self,
        now: OffsetDateTime,
        peer: IpAddr,
        client_cert_sha256: Option<&[u8; 32]>,
    ) -> Result<(), LoginDenial> {
        if self.disabled {
            return Err(LoginDenial::Disabled);
        }
        let today = now.date();
        if self.valid_from.is_some_and(|from| today < from) {
            return Err(LoginDenial::NotYetValid);
        }
        if self.valid_until.is_some_and(|until| today > until) {
            return Err(LoginDenial::Expired);
        }
        if !self.networks.is_empty() && !self.networks.iter().any(|net| net.contains(peer)) {
            return Err(LoginDenial::Address);
        }
        if !self.cert_fingerprints.is_empty() {
            let registered = client_cert_sha256
                .is_some_and(|cert| self.cert_fingerprints.iter().any(|fp| fp == cert));
            if !registered {
                return Err(LoginDenial::Certificate);
            }
        }
        if let Some(days) = self.login_days {
            if !days[usize::from(now.weekday().number_days_from_monday())] {
                return Err(LoginDenial::OutsideHours);
            }
        }
        if let Some((start, end)) = self.login_hours {
            let minute = u16::from(now.hour()) * 60 + u16::from(now.minute());
            if !in_window(minute, start, end) {
                return Err(LoginDenial::OutsideHours);
            }
        }
        Ok(())
    }

    /// Not disabled and within validity; used to end open sessions at their next statement.
    pub fn is_active(&self, today: Date) -> bool {
        !self.disabled
            && self.valid_from.is_none_or(|from| today >= from)
            && self.valid_until.is_none_or(|until| today <= until)
    }
}

/// `start <= minute < end`, or across midnight when `start > end`.
fn in_window(minute: u16, start: u16, end: u16) -> bool {
    if start <= end {
        (start..end).contains(&minute)
    } else {
        minute >= start || minute < end
    }
}

/// Parses `"HH:MM-HH:MM"` (end may be `24:00`) into minutes since midnight.
pub(crate) fn parse_hours(text: &str) -> Result<(u16, u16), &'static str> {
    const FORMAT: &str = "login_hours must look like \"07:00-19:00\" (24-hour clock)";
    let (start, end) = text.split_once('-').ok_or(FORMAT)?;
    let start = parse_clock(start.trim(), false).ok_or(FORMAT)?;
    let end = parse_clock(end.trim(), true).ok_or(FORMAT)?;
    if start == end || (start == 0 && end == 24 * 60) {
        return Err(
            "login_hours covers no time or the whole day; remove login_hours to allow any time",
        );
    }
    Ok((start, end % (24 * 60)))
}

fn parse_clock(text: &str, allow_24: bool) -> Option<u16> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.is_empty() || hours.len() > 2 || minutes.len() != 2 {
        return None;
    }
    if !hours
        .bytes()
        .chain(minutes.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let hours: u16 = hours.parse().ok()?;
    let minutes: u16 = minutes.parse().ok()?;
    match (hours, minutes) {
        (24, 0) if allow_24 => Some(24 * 60),
        (0..=23, 0..=59) => Some(hours * 60 + minutes),
        _ => None,
    }
}

/// Day names accepted in `login_days`, Monday first.
pub(crate) const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Index from Monday of a day name (`mon`, `Monday`, case-insensitive).
pub(crate) fn parse_day(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    DAY_NAMES.iter().position(|day| {
        lower == *day
            || (lower.len() > 3
                && lower.starts_with(day)
                && FULL_DAY_NAMES.iter().any(|full| *full == lower))
    })
}

const FULL_DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// `sha256:3a:5f:...`, `3A5F...`: 32 bytes of hex with optional colons and prefix.
pub(crate) fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let hex: Vec<u8> = text
        .strip_prefix("sha256:")
        .or_else(|| text.strip_prefix("SHA256:"))
        .unwrap_or(text)
        .bytes()
        .filter(|b| *b != b':')
        .collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let digits = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(out)
}

/// Inverse of [`parse_fingerprint`], for `explain`.
pub(crate) fn format_fingerprint(fp: &[u8; 32]) -> String {
    let hex: Vec<String> = fp.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{}", hex.join(":"))
}

/// `"07:00-19:00"` again.
pub(crate) fn format_hours((start, end): (u16, u16)) -> String {
    let end = if end == 0 { 24 * 60 } else { end };
    format!(
        "{:02}:{:02}-{:02}:{:02}",
        start / 60,
        start % 60,
        end / 60,
        end % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verifier::ScramVerifier;
    use std::collections::BTreeMap;
    use time::macros::{date, datetime};

    fn account() -> Account {
        Account {
            login: "clerk".into(),
            name: "Clerk".into(),
            verifier: ScramVerifier::generate("correct horse battery", 4096),
            roles: vec![],
            attributes: BTreeMap::new(),
            valid_from: Some(date!(2026 - 01 - 01)),
            valid_until: Some(date!(2026 - 06 - 30)),
            disabled: false,
            assignment: None,
            networks: vec!["127.0.0.1/32".parse().unwrap()],
            cert_fingerprints: vec![],
            login_days: None,
            login_hours: None,
            max_sessions: None,
        }
    }

    const LOCAL: &str = "127.0.0.1";

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn validity_is_inclusive() {
        let a = account();
        let at = |t| a.admit(t, ip(LOCAL), None);
        assert_eq!(
            at(datetime!(2025-12-31 23:59 +07:00)),
            Err(LoginDenial::NotYetValid)
        );
        assert_eq!(at(datetime!(2026-01-01 00:00 +07:00)), Ok(()));
        assert_eq!(at(datetime!(2026-06-30 23:59 +07:00)), Ok(()));
        assert_eq!(
            at(datetime!(2026-07-01 00:00 +07:00)),
            Err(LoginDenial::Expired)
        );
        assert!(a.is_active(date!(2026 - 06 - 30)));
        assert!(!a.is_active(date!(2026 - 07 - 01)));
        assert!(!a.is_active(date!(2025 - 12 - 31)));
    }

    #[test]
    fn disabled_comes_first() {
        let mut a = account();
        a.disabled = true;
        assert_eq!(
            a.admit(datetime!(2030-01-01 12:00 UTC), ip("10.0.0.1"), None),
            Err(LoginDenial::Disabled)
        );
        assert!(!a.is_active(date!(2026 - 02 - 01)));
    }

    #[test]
    fn address_and_certificate() {
        let mut a = account();
        let now = datetime!(2026-03-02 10:00 +07:00);
        assert_eq!(
            a.admit(now, ip("127.0.0.2"), None),
            Err(LoginDenial::Address)
        );
        assert_eq!(a.admit(now, ip("::ffff:127.0.0.1"), None), Ok(()));
        a.networks.clear();
        assert_eq!(a.admit(now, ip("192.0.2.1"), None), Ok(()));
        a.cert_fingerprints = vec![[7; 32]];
        assert_eq!(a.admit(now, ip(LOCAL), None), Err(LoginDenial::Certificate));
        assert_eq!(
            a.admit(now, ip(LOCAL), Some(&[8; 32])),
            Err(LoginDenial::Certificate)
        );
        assert_eq!(a.admit(now, ip(LOCAL), Some(&[7; 32])), Ok(()));
    }

    #[test]
    fn hours_and_days() {
        let mut a = account();
        a.login_hours = Some(parse_hours("07:00-19:00").unwrap());
        // 2026-03-02 is a Monday.
        let at = |a: &Account, t| a.admit(t, ip(LOCAL), None);
        assert_eq!(
            at(&a, datetime!(2026-03-02 06:59 +07:00)),
            Err(LoginDenial::OutsideHours)
        );
        assert_eq!(at(&a, datetime!(2026-03-02 07:00 +07:00)), Ok(()));
        assert_eq!(at(&a, datetime!(2026-03-02 18:59 +07:00)), Ok(()));
        assert_eq!(
            at(&a, datetime!(2026-03-02 19:00 +07:00)),
            Err(LoginDenial::OutsideHours)
        );

        a.login_hours = Some(parse_hours("22:00-06:00").unwrap());
        assert_eq!(at(&a, datetime!(2026-03-02 23:30 +07:00)), Ok(()));
        assert_eq!(at(&a, datetime!(2026-03-02 02:00 +07:00)), Ok(()));
        assert_eq!(
            at(&a, datetime!(2026-03-02 06:00 +07:00)),
            Err(LoginDenial::OutsideHours)
        );
        assert_eq!(
            at(&a, datetime!(2026-03-02 12:00 +07:00)),
            Err(LoginDenial::OutsideHours)
        );

        a.login_hours = None;
        let mut days = [true; 7];
        days[6] = false;
        a.login_days = Some(days);
        assert_eq!(
            at(&a, datetime!(2026-03-08 10:00 +07:00)),
            Err(LoginDenial::OutsideHours)
        );
        assert_eq!(at(&a, datetime!(2026-03-07 10:00 +07:00)), Ok(()));
    }

    #[test]
    fn parses_hours() {
        assert_eq!(parse_hours("07:00-19:00"), Ok((420, 1140)));
        assert_eq!(parse_hours("7:30 - 24:00"), Ok((450, 0)));
        assert_eq!(format_hours((450, 0)), "07:30-24:00");
        assert!(parse_hours("07:00").is_err());
        assert!(parse_hours("25:00-26:00").is_err());
        assert!(parse_hours("07:00-07:00").is_err());
        assert!(parse_hours("00:00-24:00").is_err());
        assert!(parse_hours("07:0-19:00").is_err());
    }

    #[test]
    fn parses_days_and_fingerprints() {
        assert_eq!(parse_day("mon"), Some(0));
        assert_eq!(parse_day("Sunday"), Some(6));
        assert_eq!(parse_day("mond"), None);
        assert_eq!(parse_day("xyz"), None);
        let text = format!("sha256:{}", ["ab"; 32].join(":"));
        assert_eq!(parse_fingerprint(&text), Some([0xab; 32]));
        assert_eq!(parse_fingerprint(&"AB".repeat(32)), Some([0xab; 32]));
        assert_eq!(format_fingerprint(&[0xab; 32]), text);
        assert_eq!(parse_fingerprint("sha256:ab"), None);
        assert_eq!(parse_fingerprint(&"zz".repeat(32)), None);
    }

    #[test]
    fn messages_do_not_reveal_policy() {
        for denial in [
            LoginDenial::Disabled,
            LoginDenial::NotYetValid,
            LoginDenial::Expired,
            LoginDenial::Address,
            LoginDenial::Certificate,
            LoginDenial::OutsideHours,
        ] {
            let m = denial.message();
            assert!(m.contains("security officer"), "{m}");
            assert!(!m.chars().any(|c| c.is_ascii_digit()), "{m}");
        }
    }
}
