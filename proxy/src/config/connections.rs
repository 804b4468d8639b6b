//! The `[tls]` and `[upstream]` sections: how clients and the database are reached.

use super::*;

impl Context<'_> {
    pub(super) fn validate_client_tls(
        &self,
        raw: Option<&RawTls>,
        server: &ServerConfig,
    ) -> Result<ClientTlsConfig, ConfigError> {
        let Some(raw) = raw else {
            return Err(self.error_at(
                self.text.len(),
                "a [tls] section is required: set mode = \"require\" with cert and key, \
                 or mode = \"disable\" on a loopback listener"
                    .into(),
            ));
        };
        let mode = match raw.mode.get_ref().as_str() {
            "require" => ClientTlsMode::Require,
            "prefer" => ClientTlsMode::Prefer,
            "disable" => ClientTlsMode::Disable,
            other => {
                return Err(self.error(
                    &raw.mode,
                    format!(
                        "tls mode `{other}` is unknown; use \"require\", \"prefer\" or \"disable\""
                    ),
                ))
            }
        };
        if mode == ClientTlsMode::Disable && !is_loopback(server.listen.ip()) {
            return Err(self.error(
                &raw.mode,
                format!(
                    "tls mode \"disable\" is only allowed on a loopback listener, and server.listen is {}; \
                     clients would send credentials and personal data in clear",
                    server.listen
                ),
            ));
        }
        let cert = raw.cert.as_ref().map(|c| self.resolve_path(c));
        let key = raw.key.as_ref().map(|k| self.resolve_path(k));
        if mode != ClientTlsMode::Disable && (cert.is_none() || key.is_none()) {
            return Err(self.error(
                &raw.mode,
                "tls mode \"require\" and \"prefer\" need both `cert` and `key` (PEM files)",
            ));
        }
        Ok(ClientTlsConfig { mode, cert, key })
    }

    pub(super) fn validate_upstream(
        &self,
        raw: &RawUpstream,
    ) -> Result<UpstreamConfig, ConfigError> {
        if let Some(p) = &raw.password {
            return Err(self.error(
                p,
                "the upstream password may not be written in the configuration; \
                 use password_env = \"VAR\" or password_file = \"path\"",
            ));
        }
        let password = match (&raw.password_env, &raw.password_file) {
            (Some(_), Some(file)) => {
                return Err(self.error(file, "set either password_env or password_file, not both"))
            }
            (Some(var), None) => match std::env::var(var.get_ref()) {
                Ok(value) => Some(Secret::new(value)),
                Err(_) => {
                    return Err(self.error(
                        var,
                        format!(
                            "password_env names the environment variable {}, which is not set",
                            var.get_ref()
                        ),
                    ))
                }
            },
            (None, Some(file)) => {
                let path = self.resolve_path(file);
                match std::fs::read_to_string(&path) {
                    Ok(text) => Some(Secret::new(text.trim_end_matches(['\r', '\n']).to_string())),
                    Err(e) => {
                        return Err(self.error(
                            file,
                            format!("cannot read password_file {}: {e}", path.display()),
                        ))
                    }
                }
            }
            (None, None) => None,
        };
        let tls = match raw.tls.as_ref().map(|t| (t, t.get_ref().as_str())) {
            None | Some((_, "disable")) => UpstreamTlsMode::Disable,
            Some((_, "prefer")) => UpstreamTlsMode::Prefer,
            Some((_, "verify-full")) => UpstreamTlsMode::VerifyFull,
            Some((t, other)) => {
                return Err(self.error(
                    t,
                    format!(
                        "upstream tls `{other}` is unknown; use \"disable\", \"prefer\" or \"verify-full\""
                    ),
                ))
            }
        };
        let ca_file = raw.ca_file.as_ref().map(|c| self.resolve_path(c));
        if tls == UpstreamTlsMode::VerifyFull && ca_file.is_none() {
            let at = raw.tls.as_ref().expect("verify-full was read from tls");
            return Err(self.error(at, "upstream tls \"verify-full\" needs ca_file (PEM)"));
        }
        let port = match &raw.port {
            None => 5432,
            Some(p) if (1..=65535).contains(p.get_ref()) => *p.get_ref() as u16,
            Some(p) => return Err(self.error(p, "upstream port must be between 1 and 65535")),
        };
        let pool_size = match &raw.pool_size {
            None => 8,
            Some(n) if *n.get_ref() >= 0 => *n.get_ref() as usize,
            Some(n) => return Err(self.error(n, "pool_size must not be negative")),
        };
        let liveness = self.validate_liveness(raw)?;
        Ok(UpstreamConfig {
            host: raw.host.clone(),
            port,
            database: raw.database.clone(),
            user: raw.user.clone(),
            password,
            tls,
            ca_file,
            connect_timeout: self.duration_or(&raw.connect_timeout, Duration::from_secs(5))?,
            pool_size,
            pool_idle_timeout: self
                .duration_or(&raw.pool_idle_timeout, Duration::from_secs(300))?,
            checkout_timeout: liveness.checkout_timeout,
            reset_timeout: liveness.reset_timeout,
            tcp_keepalive: liveness.tcp_keepalive,
            health_check_interval: liveness.health_check_interval,
            recycle_after_prepared: liveness.recycle_after_prepared,
        })
    }
}
