//! `maskgate passwd` run as a real process with the password piped to stdin.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use maskgate_policy::ScramVerifier;
use maskgate_proxy::auth::scram::ScramExchange;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

const STRONG: &str = "vịnh hạ long lúc bình minh, 7 con thuyền";

fn passwd(user: &str, stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_maskgate"))
        .args(["passwd", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("maskgate starts");
    // maskgate may refuse before reading (a bad user name) and close its end.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().expect("maskgate finishes")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("output is UTF-8")
}

/// A full SCRAM-SHA-256 login, the real client against maskgate's server side.
fn logs_in(verifier: &ScramVerifier, password: &str) -> bool {
    let mut server = ScramExchange::new("alice", Some(verifier), &[9; 32]);
    let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
    let server_first = server
        .client_first("SCRAM-SHA-256", client.message())
        .expect("server accepts client-first-message");
    client
        .update(&server_first)
        .expect("client accepts server-first-message");
    match server.client_final(client.message()) {
        Ok(server_final) => {
            client
                .finish(&server_final)
                .expect("client accepts the server signature");
            true
        }
        Err(_) => false,
    }
}

/// Runs a successful `passwd` and returns the one verifier it printed for `user`.
fn accepted(user: &str, stdin: &[u8]) -> (String, ScramVerifier) {
    let output = passwd(user, stdin);
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    assert_eq!(stdout.matches('\n').count(), 1, "{stdout:?}");
    assert!(stdout.ends_with('\n'), "{stdout:?}");
    let _ = user;
    let line: toml::Table = toml::from_str(&stdout).expect("the line parses as TOML");
    let verifier: ScramVerifier = line["verifier"]
        .as_str()
        .expect("a verifier string")
        .parse()
        .expect("a valid SCRAM verifier");
    assert_eq!(verifier.iterations(), 4096);
    assert!(!stdout.contains(STRONG) && !stderr.contains(STRONG));
    (stdout, verifier)
}

#[test]
fn a_strong_password_gives_one_line_that_logs_in() {
    let (line, verifier) = accepted("alice", format!("{STRONG}\n").as_bytes());
    assert!(
        line.starts_with("verifier = \"SCRAM-SHA-256$4096:"),
        "{line}"
    );
    assert!(logs_in(&verifier, STRONG));
    assert!(!logs_in(
        &verifier,
        "vịnh hạ long lúc bình minh, 8 con thuyền"
    ));
}

#[test]
fn only_the_first_line_counts_and_crlf_is_stripped() {
    let (_, verifier) = accepted("alice", format!("{STRONG}\r\nignored\n").as_bytes());
    assert!(logs_in(&verifier, STRONG));
    let (_, verifier) = accepted("alice", STRONG.as_bytes());
    assert!(logs_in(&verifier, STRONG));
}

#[test]
fn the_hint_names_the_account_table_with_a_quoted_key() {
    let output = passwd("nguyễn văn an", format!("{STRONG}\n").as_bytes());
    assert!(output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("[accounts.\"nguyễn văn an\"]"), "{stderr}");
}

#[test]
fn weak_passwords_are_refused_with_the_reason_and_nothing_on_stdout() {
    let cases = [
        ("Tz8#qLm2!", "too short"),
        ("qwertyuiop123", "commonly used"),
        ("Matkhau@2024!", "commonly used"),
        ("anhyeuem123456", "commonly used"),
        ("Tz8#qLm2!Alice", "contains the user name"),
        ("aaaaaaaaaaaaaaaa", "too easy to guess"),
    ];
    for (password, reason) in cases {
        let output = passwd("alice", format!("{password}\n").as_bytes());
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{password}: accepted");
        assert!(output.stdout.is_empty(), "{password}: stdout not empty");
        assert!(stderr.contains(reason), "{password}: {stderr}");
        assert!(stderr.contains("refused"), "{password}: {stderr}");
        assert!(!stderr.contains(password), "{password} echoed: {stderr}");
    }
}

#[test]
fn bad_user_names_and_missing_input_are_errors() {
    for (user, stdin, reason) in [
        ("", STRONG, "must not be empty"),
        ("ali\tce", STRONG, "control characters"),
        ("alice", "", "no password"),
    ] {
        let output = passwd(user, stdin.as_bytes());
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{user:?} accepted");
        assert!(output.stdout.is_empty(), "{user:?}: stdout not empty");
        assert!(stderr.contains(reason), "{user:?}: {stderr}");
    }
}
