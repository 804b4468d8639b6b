use super::*;

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:6432"

[tls]
mode = "disable"

[upstream]
host = "127.0.0.1"
database = "register"
user = "maskgate"

[policy]
dir = "policy"
timezone = "+07:00"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/maskgate/maskgate.toml"))
}

fn error_text(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn minimal_config_gets_sane_defaults() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:6432".parse().unwrap());
    assert_eq!(c.server.max_client_connections, 1000);
    assert_eq!(c.server.client_idle_timeout, None);
    assert_eq!(c.server.lockout.max_failures, 5);
    assert_eq!(c.upstream.port, 5432);
    assert_eq!(c.upstream.tls, UpstreamTlsMode::Disable);
    assert_eq!(c.policy.dir, PathBuf::from("/etc/maskgate/policy"));
    assert_eq!(
        c.policy.settings.timezone,
        time::UtcOffset::from_hms(7, 0, 0).unwrap()
    );
    assert_eq!(c.policy.settings.search_path, vec!["public"]);
    assert!(c.admin_listen.is_none());
    // The limits that keep the service up.
    assert_eq!(c.server.max_pending_logins, 512);
    assert_eq!(c.server.max_pending_logins_per_address, 64);
    assert_eq!(c.server.login_step_timeout, Duration::from_secs(5));
    assert_eq!(c.server.lockout.max_failures_per_address, 50);
    assert_eq!(c.server.session_limits, SessionLimits::default());
    assert_eq!(c.server.decision_cache_bytes, 64 << 20);
    assert_eq!(c.upstream.checkout_timeout, Duration::from_secs(5));
    assert_eq!(c.upstream.tcp_keepalive, Some(Duration::from_secs(60)));
    assert_eq!(
        c.upstream.health_check_interval,
        Some(Duration::from_secs(10))
    );
    assert_eq!(c.admin, AdminLimits::default());
    assert_eq!(c.policy.removal_guard, RemovalGuard::default());
}

#[test]
fn limits_are_read_and_checked() {
    let text = GOOD
        .replace(
            "[server]\n",
            "[server]\nmax_pending_logins = 10\nmax_pending_logins_per_address = 50\n\
             max_prepared_statements = 7\n",
        )
        .replace(
            "[policy]\n",
            "[policy]\nmax_account_removal_share = 0.25\nconfirm_account_removal = true\n",
        )
        .replace(
            "user = \"maskgate\"\n",
            "user = \"maskgate\"\nhealth_check_interval = \"0s\"\n",
        );
    let c = parse(&text).unwrap();
    assert_eq!(c.server.max_pending_logins, 10);
    assert_eq!(
        c.server.max_pending_logins_per_address, 10,
        "never more than the total"
    );
    assert_eq!(c.server.session_limits.max_prepared_statements, 7);
    assert_eq!(c.upstream.health_check_interval, None);
    assert_eq!(
        c.policy.removal_guard,
        RemovalGuard {
            max_share: 0.25,
            confirmed: true
        }
    );
    for (bad, message) in [
        (
            "max_pending_logins = 0",
            "max_pending_logins must be between 1",
        ),
        (
            "login_step_timeout = \"0s\"",
            "login_step_timeout must be longer than 0s",
        ),
        (
            "decision_cache_bytes = 1000",
            "decision_cache_bytes must be between",
        ),
    ] {
        let e = error_text(&GOOD.replace("[server]\n", &format!("[server]\n{bad}\n")));
        assert!(e.contains(message), "{bad}: {e}");
    }
    let e = error_text(&GOOD.replace("[policy]\n", "[policy]\nmax_account_removal_share = 1.5\n"));
    assert!(e.contains("max_account_removal_share"), "{e}");
}

#[test]
fn syntax_error_names_file_line_and_column() {
    let text = GOOD.replace("user = \"maskgate\"", "user = maskgate");
    let e = error_text(&text);
    assert!(e.starts_with("/etc/maskgate/maskgate.toml:11:"), "{e}");
}

#[test]
fn unknown_key_is_refused_with_its_line() {
    let text = GOOD.replace("[policy]", "[policy]\ncolour = \"blue\"");
    let e = error_text(&text);
    assert!(e.contains(":14:") && e.contains("colour"), "{e}");
}

#[test]
fn tls_disable_is_refused_off_loopback() {
    let text = GOOD.replace("127.0.0.1:6432", "0.0.0.0:6432");
    let e = error_text(&text);
    assert!(e.contains(":6:") && e.contains("loopback"), "{e}");
}

#[test]
fn clear_text_password_is_refused() {
    let text = GOOD.replace(
        "user = \"maskgate\"",
        "user = \"maskgate\"\npassword = \"hunter2hunter2\"",
    );
    let e = error_text(&text);
    assert!(e.contains(":12:") && e.contains("password_env"), "{e}");
    assert!(
        !e.contains("hunter2"),
        "the error must not echo the password: {e}"
    );
}

#[test]
fn missing_password_variable_is_named() {
    let text = GOOD.replace(
        "user = \"maskgate\"",
        "user = \"maskgate\"\npassword_env = \"MASKGATE_TEST_SURELY_UNSET_VARIABLE\"",
    );
    let e = error_text(&text);
    assert!(e.contains("MASKGATE_TEST_SURELY_UNSET_VARIABLE"), "{e}");
}

#[test]
fn analysis_limits_are_bounded_so_a_slip_cannot_undo_them() {
    let with = |line: &str| {
        GOOD.replace(
            "listen = \"127.0.0.1:6432\"",
            &format!("listen = \"127.0.0.1:6432\"\n{line}"),
        )
    };
    let e = error_text(&with("max_statement_size = 1073741824"));
    assert!(e.contains(":4:") && e.contains("max_statement_size"), "{e}");
    let e = error_text(&with("max_analysis_time = \"10m\""));
    assert!(e.contains(":4:") && e.contains("at most 30s"), "{e}");
    let e = error_text(&with("max_statement_depth = 50000"));
    assert!(
        e.contains(":4:") && e.contains("max_statement_depth"),
        "{e}"
    );
    let c = parse(&with(
        "max_statement_size = 4194304\nmax_analysis_time = \"5s\"",
    ))
    .unwrap();
    assert_eq!(c.server.analysis.max_statement_bytes, 4 << 20);
    assert_eq!(c.server.analysis.max_analysis_time, Duration::from_secs(5));
}

#[test]
fn bad_duration_is_explained() {
    let text = GOOD.replace(
        "listen = \"127.0.0.1:6432\"",
        "listen = \"127.0.0.1:6432\"\nlogin_timeout = \"soon\"",
    );
    let e = error_text(&text);
    assert!(e.contains(":4:") && e.contains("duration"), "{e}");
}

#[test]
fn tls_require_needs_cert_and_key() {
    let text = GOOD.replace("mode = \"disable\"", "mode = \"require\"");
    let e = error_text(&text);
    assert!(e.contains("cert") && e.contains("key"), "{e}");
}

#[test]
fn verify_full_needs_a_ca_file() {
    let text = GOOD.replace(
        "user = \"maskgate\"",
        "user = \"maskgate\"\ntls = \"verify-full\"",
    );
    assert!(error_text(&text).contains("ca_file"));
}

#[test]
fn timezone_offsets_parse() {
    assert_eq!(parse_utc_offset("UTC"), Some(time::UtcOffset::UTC));
    assert_eq!(
        parse_utc_offset("-03:30"),
        Some(time::UtcOffset::from_hms(-3, -30, 0).unwrap())
    );
    assert_eq!(
        parse_utc_offset("+7"),
        Some(time::UtcOffset::from_hms(7, 0, 0).unwrap())
    );
    assert_eq!(parse_utc_offset("Asia/Ho_Chi_Minh"), None);
    let e = error_text(&GOOD.replace("+07:00", "ICT"));
    assert!(e.contains(":15:") && e.contains("UTC offset"), "{e}");
}

#[test]
fn line_column_counts_characters() {
    assert_eq!(line_column("ab\nçd", 5), (2, 2));
    assert_eq!(line_column("", 0), (1, 1));
}

#[test]
fn audit_retention_is_optional_and_bounded() {
    let audit = "\n[audit]\ndir = \"audit\"\nsigning_key = \"k.pem\"\nseal_key = \"s.keys\"\n";
    let c = parse(&format!("{GOOD}{audit}")).unwrap();
    assert_eq!(c.audit.unwrap().retention, None);
    let c = parse(&format!("{GOOD}{audit}retention = \"400d\"\n")).unwrap();
    assert_eq!(
        c.audit.unwrap().retention,
        Some(Duration::from_secs(400 * 86_400))
    );
    let e = error_text(&format!("{GOOD}{audit}retention = \"500ms\"\n"));
    assert!(e.contains("retention must be at least 1s"), "{e}");
    let e = error_text(&format!("{GOOD}{audit}retention = \"forever\"\n"));
    assert!(e.contains("not a duration"), "{e}");
}
