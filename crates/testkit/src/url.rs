//! Just enough `postgres://` URL handling for `MASKGATE_TEST_PG_URL` and
//! for handing connection strings to clients.

use crate::error::TestkitError;

/// Connection parameters of a server reached over TCP.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ConnParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl ConnParams {
    /// Parses `postgres[ql]://[user[:password]@]host[:port][/database][?...]`.
    /// Query parameters are ignored; defaults are user and database
    /// `postgres`, port 5432.
    pub fn parse(url: &str) -> Result<ConnParams, TestkitError> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| invalid("scheme must be postgres:// or postgresql://"))?;
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(info) => match info.split_once(':') {
                Some((u, p)) => (decode(u)?, decode(p)?),
                None => (decode(info)?, String::new()),
            },
            None => (String::new(), String::new()),
        };
        let (host, port) = split_host_port(hostport)?;
        let database = decode(path)?;
        Ok(ConnParams {
            host,
            port,
            user: non_empty_or(user, "postgres"),
            password,
            database: non_empty_or(database, "postgres"),
        })
    }

    pub fn to_url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "postgres://{}:{}@{}:{}/{}",
            encode(&self.user),
            encode(&self.password),
            host,
            self.port,
            encode(&self.database)
        )
    }
}

fn split_host_port(hostport: &str) -> Result<(String, u16), TestkitError> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| invalid("unterminated [ in host"))?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(invalid("unexpected text after ]")),
        };
        (rest[..end].to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (decode(h)?, Some(p)),
            None => (decode(hostport)?, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("host is missing"));
    }
    let port = match port {
        None | Some("") => 5432,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid("port is not a number in 1..=65535"))?,
    };
    Ok((host, port))
}

fn non_empty_or(value: String, default: &str) -> String {
    if value.is_empty() {
        default.to_string()
    } else {
        value
    }
}

fn invalid(reason: &str) -> TestkitError {
    TestkitError::InvalidUrl(reason.to_string())
}

fn decode(text: &str) -> Result<String, TestkitError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid("bad %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid("%-escapes do not form UTF-8"))
}

/// Percent-encodes everything except RFC 3986 unreserved characters.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_url() {
        let p =
            ConnParams::parse("postgres://alice:s%40cr%3At@db.example:6543/shop?sslmode=disable")
                .unwrap();
        assert_eq!(p.host, "db.example");
        assert_eq!(p.port, 6543);
        assert_eq!(p.user, "alice");
        assert_eq!(p.password, "s@cr:t");
        assert_eq!(p.database, "shop");
    }

    #[test]
    fn applies_defaults() {
        let p = ConnParams::parse("postgresql://localhost").unwrap();
        assert_eq!(
            (
                p.host.as_str(),
                p.port,
                p.user.as_str(),
                p.password.as_str(),
                p.database.as_str()
            ),
            ("localhost", 5432, "postgres", "", "postgres")
        );
    }

    #[test]
    fn parses_ipv6_host() {
        let p = ConnParams::parse("postgres://u:p@[::1]:5433/d").unwrap();
        assert_eq!(p.host, "::1");
        assert_eq!(p.port, 5433);
        assert_eq!(
            p.to_url(),
            "postgres://u:p@[::1]:5433/d",
            "round trip keeps brackets"
        );
    }

    #[test]
    fn password_with_at_sign_uses_last_at() {
        let p = ConnParams::parse("postgres://u:a@b@h/d").unwrap();
        assert_eq!(p.password, "a@b");
        assert_eq!(p.host, "h");
    }

    #[test]
    fn rejects_bad_input_without_echoing_it() {
        for bad in [
            "mysql://u:secretpw@h/d",
            "postgres://u:secretpw@h:notaport/d",
            "postgres://u:secretpw@:5432/d",
            "postgres://u:secret%zz@h/d",
            "postgres://u:secretpw@h:0/d",
        ] {
            let err = match ConnParams::parse(bad) {
                Ok(_) => panic!("accepted an invalid URL"),
                Err(e) => e.to_string(),
            };
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn encode_round_trips() {
        let original = "p@ss w/rd:%ü";
        let url = ConnParams {
            host: "127.0.0.1".into(),
            port: 1,
            user: "postgres".into(),
            password: original.into(),
            database: "postgres".into(),
        }
        .to_url();
        assert!(!url.contains(' '));
        assert_eq!(ConnParams::parse(&url).unwrap().password, original);
    }
}
