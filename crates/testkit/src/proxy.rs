//! maskgate run in-process in front of a test cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use maskgate_policy::ScramVerifier;
use maskgate_proxy::{Config, Server, ServerHandle};
use tokio::task::JoinHandle;

use crate::{PgCluster, TestkitError};

/// How to configure a [`TestProxy`]; defaults suit most tests.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Accounts as (login, password). Each gets an unrestricted role unless
    /// `policy` defines the roles, and any lines in `account_settings` for it.
    pub users: Vec<(String, String)>,
    /// Extra TOML lines per login, added to its `[accounts.<login>]` table
    /// (e.g. `networks = ["127.0.0.2/32"]`).
    pub account_settings: Vec<(String, String)>,
    /// Roles each test account gets (default: `["relay"]`, an unrestricted role
    /// defined by the harness).
    pub roles: Vec<String>,
    /// Per-login roles as (login, roles), replacing `roles` for that login, so
    /// one proxy can serve a clerk, an analyst and an auditor.
    pub user_roles: Vec<(String, Vec<String>)>,
    /// More policy files as (file name, TOML text): classification, roles, …
    pub policy_files: Vec<(String, String)>,
    /// `[policy] timezone`.
    pub timezone: &'static str,
    /// Text of a pseudonym key file; when set, `[masking] key_file` points at it.
    pub pseudonym_key_file: Option<String>,
    /// Client TLS mode: "disable", "prefer" or "require" (with a fresh self-signed certificate).
    pub tls: &'static str,
    pub max_client_connections: usize,
    pub login_timeout: Duration,
    pub client_idle_timeout: Duration,
    pub shutdown_grace: Duration,
    pub auth_failure_delay: Duration,
    pub max_message_size: usize,
    pub pool_size: usize,
    pub admin: bool,
    /// Write an audit trail (keys made fresh in the proxy directory).
    pub audit: bool,
    /// More lines for the `[audit]` section, e.g. `strict = true`.
    pub audit_settings: String,
    /// More lines for the `[server]` section, e.g. `max_pending_logins = 10`.
    pub server_settings: String,
    /// More lines for the `[upstream]` section, e.g. `checkout_timeout = "1s"`.
    pub upstream_settings: String,
    /// More lines for the `[policy]` section.
    pub policy_settings: String,
    /// More lines for the `[admin]` section (when `admin` is on).
    pub admin_settings: String,
    /// More sections at the end of the configuration, e.g. `[detection]`.
    pub extra_config: String,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            users: vec![("alice".into(), "correct horse battery".into())],
            account_settings: Vec::new(),
            roles: vec!["relay".into()],
            user_roles: Vec::new(),
            policy_files: Vec::new(),
            timezone: "UTC",
            pseudonym_key_file: None,
            tls: "disable",
            max_client_connections: 1000,
            login_timeout: Duration::from_secs(10),
            client_idle_timeout: Duration::ZERO,
            shutdown_grace: Duration::from_secs(5),
            auth_failure_delay: Duration::from_millis(50),
            max_message_size: 1 << 20,
            pool_size: 4,
            admin: true,
            audit: true,
            audit_settings: String::new(),
            server_settings: String::new(),
            upstream_settings: String::new(),
            policy_settings: String::new(),
            admin_settings: String::new(),
            extra_config: String::new(),
        }
    }
}

/// A running maskgate. Dropping it aborts the server; [`TestProxy::shutdown`] stops it gracefully.
pub struct TestProxy {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    handle: ServerHandle,
    task: Option<JoinHandle<()>>,
    dir: tempfile::TempDir,
    database: String,
}

impl TestProxy {
    /// Writes a configuration file for `cluster` and starts maskgate from it.
    pub async fn start(
        cluster: &PgCluster,
        options: ProxyOptions,
    ) -> Result<TestProxy, TestkitError> {
        let dir = tempfile::tempdir().map_err(|e| io("creating the proxy directory", e))?;
        let config_path = write_files(&dir, cluster, &options)?;
        let config = Config::load(&config_path).map_err(|e| TestkitError::Proxy(e.to_string()))?;
        let server = Server::bind(config)
            .await
            .map_err(|e| TestkitError::Proxy(e.to_string()))?;
        let addr = server.local_addr();
        let admin_addr = server.admin_addr();
        let handle = server.handle();
        let task = tokio::spawn(server.run());
        Ok(TestProxy {
            addr,
            admin_addr,
            handle,
            task: Some(task),
            dir,
            database: cluster.database().to_string(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// The database maskgate serves.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The self-signed CA certificate clients can verify the proxy with (TLS modes only).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    /// The audit directory (when [`ProxyOptions::audit`] is on).
    pub fn audit_dir(&self) -> PathBuf {
        self.dir.path().join("audit")
    }

    /// The public key that verifies the audit trail's checkpoints.
    pub fn audit_public_key(&self) -> PathBuf {
        self.dir.path().join("audit-public.pem")
    }

    /// The key file that opens the trail's sealed values.
    pub fn audit_seal_key(&self) -> PathBuf {
        self.dir.path().join("audit-seal.keys")
    }

    /// The directory holding the proxy's configuration files.
    pub fn config_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// A libpq-style connection string for `user`.
    pub fn conn_string(&self, user: &str, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password='{}' dbname={} sslmode=disable connect_timeout=10",
            self.port(),
            password.replace('\'', "\\'"),
            self.database
        )
    }

    /// Connects with tokio-postgres (plain TCP) and drives the connection in a task.
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) =
            tokio_postgres::connect(&self.conn_string(user, password), tokio_postgres::NoTls)
                .await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Stops the proxy gracefully and starts it again from the same directory
    /// (configuration, policy, audit trail, detection state), on a new port.
    pub async fn restart(&mut self) -> Result<(), TestkitError> {
        self.stop().await;
        let config = Config::load(&self.dir.path().join("maskgate.toml"))
            .map_err(|e| TestkitError::Proxy(e.to_string()))?;
        let server = Server::bind(config)
            .await
            .map_err(|e| TestkitError::Proxy(e.to_string()))?;
        self.addr = server.local_addr();
        self.admin_addr = server.admin_addr();
        self.handle = server.handle();
        self.task = Some(tokio::spawn(server.run()));
        Ok(())
    }

    /// Gracefully stops the proxy and waits until it has.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    /// Stops the server gracefully and waits for it, keeping its directory (the
    /// audit trail, the configuration) for inspection.
    pub async fn stop(&mut self) {
        self.handle.shutdown();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn io(context: &'static str, source: std::io::Error) -> TestkitError {
    TestkitError::Io {
        context: context.into(),
        source,
    }
}

/// The `[accounts.*]` tables for the test accounts.
pub fn accounts_toml(options: &ProxyOptions) -> String {
    let list = |roles: &[String]| {
        roles
            .iter()
            .map(|r| format!("\"{r}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = String::new();
    for (login, password) in &options.users {
        let roles = options
            .user_roles
            .iter()
            .find(|(who, _)| who == login)
            .map_or_else(|| list(&options.roles), |(_, roles)| list(roles));
        let verifier = ScramVerifier::generate(password, 4096);
        text.push_str(&format!(
            "[accounts.\"{login}\"]\nname = \"Test account {login}\"\nverifier = \"{verifier}\"\nroles = [{roles}]\n"
        ));
        for (who, lines) in &options.account_settings {
            if who == login {
                text.push_str(lines);
                text.push('\n');
            }
        }
        text.push('\n');
    }
    text
}

/// Rewrites the test accounts file (e.g. to disable an account), which the
/// running proxy picks up as a policy change.
pub fn rewrite_accounts(proxy: &TestProxy, options: &ProxyOptions) -> Result<(), TestkitError> {
    let path = proxy.config_dir().join("policy/accounts.toml");
    let tmp = proxy.config_dir().join("policy/.accounts.toml.tmp");
    std::fs::write(&tmp, accounts_toml(options)).map_err(|e| io("writing the accounts file", e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io("replacing the accounts file", e))
}

fn set_owner_only(path: &std::path::Path) -> Result<(), TestkitError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io("restricting a key file", e))
}

/// Whether some account gets the harness's own `relay` role.
fn uses_harness_role(options: &ProxyOptions) -> bool {
    options.users.iter().any(|(login, _)| {
        options
            .user_roles
            .iter()
            .find(|(l, _)| l == login)
            .map_or(&options.roles, |(_, roles)| roles)
            .iter()
            .any(|role| role == "relay")
    })
}

fn write_files(
    dir: &tempfile::TempDir,
    cluster: &PgCluster,
    options: &ProxyOptions,
) -> Result<PathBuf, TestkitError> {
    let path = |name: &str| dir.path().join(name);
    let write = |name: &str, text: &str| {
        std::fs::write(path(name), text).map_err(|e| io("writing a proxy file", e))
    };

    std::fs::create_dir_all(path("policy")).map_err(|e| io("creating the policy directory", e))?;
    write("policy/accounts.toml", &accounts_toml(options))?;
    // Only when an account holds it: an unused role is a policy warning.
    if uses_harness_role(options) {
        write(
            "policy/harness.toml",
            "[roles.relay]\ndescription = \"Test harness: relays everything\"\nunrestricted = true\n",
        )?;
    }
    for (name, text) in &options.policy_files {
        write(&format!("policy/{name}"), text)?;
    }
    write("upstream.pass", cluster.password())?;

    let tls = if options.tls == "disable" {
        "mode = \"disable\"\n".to_string()
    } else {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .map_err(|e| TestkitError::Proxy(format!("generating a certificate: {e}")))?;
        write("server.crt", &cert.cert.pem())?;
        write("server.key", &cert.key_pair.serialize_pem())?;
        format!(
            "mode = \"{}\"\ncert = \"server.crt\"\nkey = \"server.key\"\n",
            options.tls
        )
    };
    let masking = match &options.pseudonym_key_file {
        Some(text) => {
            write("keys.toml", text)?;
            set_owner_only(&path("keys.toml"))?;
            "[masking]\nkey_file = \"keys.toml\"\n"
        }
        None => "",
    };
    let admin = if options.admin {
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n{}\n",
            options.admin_settings
        )
    } else {
        String::new()
    };
    let audit = if options.audit {
        maskgate_audit::keys::generate_signing_key_files(
            &path("audit-signing.pem"),
            &path("audit-public.pem"),
        )
        .map_err(|e| TestkitError::Proxy(format!("audit signing key: {e}")))?;
        maskgate_audit::keys::generate_seal_key_file(&path("audit-seal.keys"), "k1")
            .map_err(|e| TestkitError::Proxy(format!("audit seal key: {e}")))?;
        format!(
            "[audit]\ndir = \"audit\"\nsigning_key = \"audit-signing.pem\"\nseal_key = \"audit-seal.keys\"\n{}\n",
            options.audit_settings
        )
    } else {
        String::new()
    };
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"
max_client_connections = {max_conn}
login_timeout = "{login}"
client_idle_timeout = "{idle}"
shutdown_grace = "{grace}"
auth_failure_delay = "{delay}"
max_message_size = {max_msg}
{server_settings}

[tls]
{tls}
[upstream]
host = "{host}"
port = {port}
database = "{database}"
user = "{user}"
password_file = "upstream.pass"
connect_timeout = "5s"
pool_size = {pool}
{upstream_settings}

[policy]
dir = "policy"
timezone = "{timezone}"
{policy_settings}

{masking}
{admin}
{audit}
[log]
level = "warn"

{extra}
"#,
        extra = options.extra_config,
        max_conn = options.max_client_connections,
        login = ms(options.login_timeout),
        idle = ms(options.client_idle_timeout),
        grace = ms(options.shutdown_grace),
        delay = ms(options.auth_failure_delay),
        max_msg = options.max_message_size,
        host = cluster.host(),
        port = cluster.port(),
        database = cluster.database(),
        user = cluster.user(),
        pool = options.pool_size,
        timezone = options.timezone,
        server_settings = options.server_settings,
        upstream_settings = options.upstream_settings,
        policy_settings = options.policy_settings,
    );
    write("maskgate.toml", &config)?;
    Ok(path("maskgate.toml"))
}
