//! The throwaway cluster itself.

use std::env;
use std::fmt;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::binaries::PgBinaries;
use crate::error::TestkitError;
use crate::process::{self, RunAs};
use crate::template::{self, CLUSTER_CONF, SUPERUSER};
use crate::url::ConnParams;

/// When set (`postgres://user:password@host:port/db`), [`PgCluster::shared`]
/// uses that server instead of starting one, e.g. where PostgreSQL binaries
/// are unavailable but a server is. [`PgCluster::start`] ignores it, because
/// its callers rely on an isolated server they may stop and restart.
pub const EXTERNAL_URL_ENV: &str = "MASKGATE_TEST_PG_URL";

const HOST: &str = "127.0.0.1";
const DATABASE: &str = "postgres";
const PORT_ATTEMPTS: u32 = 5;
const PG_CTL_TIMEOUT_SECS: &str = "60";
const TCP_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A PostgreSQL server for one test (or one process, see [`PgCluster::shared`]).
///
/// Locally started clusters listen on `127.0.0.1` with SCRAM password
/// authentication, and on a private unix socket with trust authentication
/// for set-up via [`PgCluster::psql`]. Dropping one stops the server
/// (immediate mode) and deletes its directory, also during a panic.
pub struct PgCluster {
    conn: ConnParams,
    /// `None` for an external server.
    local: Option<Local>,
}

struct Local {
    _dir: TempDir,
    root: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    bins: &'static PgBinaries,
    run_as: Option<RunAs>,
}

impl PgCluster {
    /// Starts a new, isolated cluster on a free port.
    ///
    /// The first call in a process runs `initdb` into a template directory;
    /// later calls copy that template, so all clusters of one process share
    /// the (random) superuser password.
    pub fn start() -> Result<PgCluster, TestkitError> {
        let started = Instant::now();
        let template = template::get()?;
        let bins = PgBinaries::find()?;
        let run_as = process::run_as()?;
        let dir = template::private_tempdir("maskgate-pg-", run_as)?;
        let root = dir.path().to_path_buf();
        let local = Local {
            data_dir: root.join("data"),
            socket_dir: root.join("sock"),
            log_path: root.join("postgres.log"),
            root,
            _dir: dir,
            bins,
            run_as,
        };
        process::spawn_watchdog(&local.root, &local.data_dir);

        let copy_started = Instant::now();
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(&template.data).arg(&local.data_dir);
        process::run(&mut cp, None)?;
        let copy_time = copy_started.elapsed();
        fs::create_dir(&local.socket_dir)
            .map_err(|e| TestkitError::io_path("creating", &local.socket_dir, e))?;
        process::hand_over(&local.socket_dir, run_as)?;

        let port = local.start_on_free_port()?;
        tracing::debug!(
            port,
            data_dir = %local.data_dir.display(),
            ?copy_time,
            total = ?started.elapsed(),
            "PostgreSQL cluster started"
        );
        Ok(PgCluster {
            conn: ConnParams {
                host: HOST.to_string(),
                port,
                user: SUPERUSER.to_string(),
                password: template.password.clone(),
                database: DATABASE.to_string(),
            },
            local: Some(local),
        })
    }

    /// Wraps an already running server; it is never stopped or modified by
    /// this crate except through the SQL you run.
    pub fn external(url: &str) -> Result<PgCluster, TestkitError> {
        Ok(PgCluster {
            conn: ConnParams::parse(url)?,
            local: None,
        })
    }

    /// One cluster per test process, started on first use, so suites that
    /// need no isolation pay for one server instead of one per test.
    ///
    /// Uses [`EXTERNAL_URL_ENV`] if set. Panics if the cluster cannot be
    /// started (see [`PgCluster::try_shared`] for the fallible variant).
    /// Tests share it concurrently: give each test its own database or
    /// schema. It cannot be stopped (`stop` needs `&mut`); it is stopped and
    /// removed when the process exits.
    pub fn shared() -> &'static PgCluster {
        match PgCluster::try_shared() {
            Ok(cluster) => cluster,
            Err(e) => panic!("{e}"),
        }
    }

    /// Fallible [`PgCluster::shared`]; a failure is cached for the process.
    pub fn try_shared() -> Result<&'static PgCluster, TestkitError> {
        SHARED
            .get_or_init(|| {
                let cluster = match env::var(EXTERNAL_URL_ENV) {
                    Ok(url) if !url.trim().is_empty() => PgCluster::external(url.trim()),
                    _ => PgCluster::start(),
                };
                if cluster.is_ok() {
                    crate::cleanup::register();
                }
                cluster.map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| TestkitError::Shared(e.clone()))
    }

    pub fn host(&self) -> &str {
        &self.conn.host
    }

    pub fn port(&self) -> u16 {
        self.conn.port
    }

    pub fn user(&self) -> &str {
        &self.conn.user
    }

    /// The superuser's password for SCRAM logins over TCP.
    pub fn password(&self) -> &str {
        &self.conn.password
    }

    pub fn database(&self) -> &str {
        &self.conn.database
    }

    /// `postgres://user:password@host:port/database`, percent-encoded.
    /// Contains the password: do not log it.
    pub fn url(&self) -> String {
        self.conn.to_url()
    }

    /// True for a server given by URL rather than started here.
    pub fn is_external(&self) -> bool {
        self.local.is_none()
    }

    /// Directory of the server's unix socket (`None` for external servers).
    pub fn socket_dir(&self) -> Option<&Path> {
        self.local.as_ref().map(|l| l.socket_dir.as_path())
    }

    pub fn data_dir(&self) -> Option<&Path> {
        self.local.as_ref().map(|l| l.data_dir.as_path())
    }

    /// Directory of the server programs used (`None` for external servers).
    pub fn bin_dir(&self) -> Option<&Path> {
        self.local.as_ref().map(|l| l.bins.bin_dir())
    }

    /// The server log; worth printing when a test fails.
    pub fn log_path(&self) -> Option<&Path> {
        self.local.as_ref().map(|l| l.log_path.as_path())
    }

    /// Whether the server is up; external servers are assumed to be.
    pub fn is_running(&self) -> bool {
        match &self.local {
            Some(local) => local.is_running(),
            None => true,
        }
    }

    /// Fast shutdown (`pg_ctl stop -m fast`), so tests can observe
    /// "upstream down". Errors if the server is not running. Needs `&mut`,
    /// which keeps the process-wide [`PgCluster::shared`] from being stopped.
    pub fn stop(&mut self) -> Result<(), TestkitError> {
        self.local_mut("stop")?.stop("fast")
    }

    /// Starts a stopped cluster again with the same port, data and password.
    pub fn start_again(&mut self) -> Result<(), TestkitError> {
        let port = self.conn.port;
        self.local_mut("start_again")?.start_on(port)
    }

    /// Stop then start, e.g. to check that new sessions work after an
    /// upstream restart.
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.stop()?;
        self.start_again()
    }

    /// Runs SQL through `psql` as the superuser in [`PgCluster::database`]
    /// and returns its unaligned, tuples-only output without the final
    /// newline. Stops at the first error, whose message (psql's stderr) is
    /// in the returned [`TestkitError::Command`].
    pub fn psql(&self, sql: &str) -> Result<String, TestkitError> {
        self.psql_in(DATABASE, sql)
    }

    /// [`PgCluster::psql`] in another database.
    pub fn psql_in(&self, database: &str, sql: &str) -> Result<String, TestkitError> {
        let mut cmd = self.psql_command(database)?;
        cmd.args(["-f", "-"]);
        process::run(&mut cmd, Some(sql)).map(strip_newline)
    }

    /// Runs a SQL script file like [`PgCluster::psql`].
    pub fn exec_file(&self, path: &Path) -> Result<String, TestkitError> {
        let mut cmd = self.psql_command(DATABASE)?;
        cmd.arg("-f").arg(path);
        process::run(&mut cmd, None).map(strip_newline)
    }

    fn psql_command(&self, database: &str) -> Result<Command, TestkitError> {
        let mut cmd;
        match &self.local {
            Some(local) => {
                cmd = process::pg_command(local.bins.psql(), &local.root, None);
                cmd.arg("-h").arg(&local.socket_dir).args(["-U", SUPERUSER]);
            }
            None => {
                let bins = PgBinaries::find()?;
                cmd = process::pg_command(bins.psql(), &env::temp_dir(), None);
                cmd.args(["-h", &self.conn.host, "-U", &self.conn.user])
                    .env("PGPASSWORD", &self.conn.password)
                    .env("PGCONNECT_TIMEOUT", "10");
            }
        }
        cmd.args(["-p", &self.conn.port.to_string(), "-d", database])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
        Ok(cmd)
    }

    fn local_mut(&mut self, operation: &'static str) -> Result<&mut Local, TestkitError> {
        self.local.as_mut().ok_or(TestkitError::External(operation))
    }
}

impl fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgCluster")
            .field("host", &self.conn.host)
            .field("port", &self.conn.port)
            .field("user", &self.conn.user)
            .field("password", &"<redacted>")
            .field("database", &self.conn.database)
            .field("data_dir", &self.data_dir())
            .finish()
    }
}

static SHARED: OnceLock<Result<PgCluster, String>> = OnceLock::new();

/// Called from the atexit hook: must not panic or log.
pub(crate) fn stop_shared_at_exit() {
    if let Some(Ok(cluster)) = SHARED.get() {
        if let Some(local) = &cluster.local {
            local.kill_server();
            let _ = fs::remove_dir_all(&local.root);
        }
    }
}

fn strip_newline(mut out: String) -> String {
    if out.ends_with('\n') {
        out.pop();
    }
    out
}

impl Local {
    fn pg_ctl(&self) -> Command {
        let mut cmd = process::pg_command(self.bins.pg_ctl(), &self.root, self.run_as);
        cmd.arg("-D").arg(&self.data_dir);
        cmd
    }

    fn write_cluster_conf(&self, port: u16) -> Result<(), TestkitError> {
        let socket_dir = self.socket_dir.display().to_string().replace('\'', "''");
        let conf = format!("port = {port}\nunix_socket_directories = '{socket_dir}'\n");
        template::write_owned(&self.data_dir.join(CLUSTER_CONF), &conf, self.run_as)
    }

    /// Picks a free port by binding port 0; another process may grab it
    /// before the server binds, so a bind failure retries with a new port.
    fn start_on_free_port(&self) -> Result<u16, TestkitError> {
        let mut last = None;
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port()?;
            self.write_cluster_conf(port)?;
            match self.try_start(port, attempt)? {
                Ok(()) => return Ok(port),
                Err(port_taken) => {
                    tracing::debug!(port, attempt, "port taken before the server bound it");
                    last = Some(port_taken);
                }
            }
        }
        Err(last.unwrap_or(TestkitError::Startup {
            attempts: PORT_ATTEMPTS,
            reason: "no attempt made".to_string(),
            log_tail: String::new(),
        }))
    }

    /// Restarts on a fixed port; a client's ephemeral port may occupy it
    /// briefly while the server is down, so "in use" is retried for a while.
    fn start_on(&self, port: u16) -> Result<(), TestkitError> {
        self.write_cluster_conf(port)?;
        let mut attempt = 1;
        loop {
            match self.try_start(port, attempt)? {
                Ok(()) => return Ok(()),
                Err(port_taken) if attempt >= 20 => return Err(port_taken),
                Err(_) => {
                    attempt += 1;
                    thread::sleep(Duration::from_millis(250));
                }
            }
        }
    }

    /// Outer error: the start failed for a reason retrying cannot fix.
    /// Inner error: the port was taken.
    fn try_start(&self, port: u16, attempt: u32) -> Result<Result<(), TestkitError>, TestkitError> {
        let log_offset = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
        let mut cmd = self.pg_ctl();
        cmd.arg("-l")
            .arg(&self.log_path)
            .args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "-s", "start"]);
        let failure = match process::run(&mut cmd, None) {
            Ok(_) => match wait_for_tcp(port) {
                Ok(()) => return Ok(Ok(())),
                Err(reason) => reason,
            },
            Err(e) => e.to_string(),
        };
        let log_tail = process::tail(&self.log_path, log_offset, 4000);
        let error = TestkitError::Startup {
            attempts: attempt,
            reason: failure,
            log_tail: log_tail.clone(),
        };
        if log_tail.contains("Address already in use") || log_tail.contains("could not bind") {
            if self.is_running() {
                self.kill_server();
            }
            Ok(Err(error))
        } else {
            Err(error)
        }
    }

    fn stop(&self, mode: &str) -> Result<(), TestkitError> {
        let mut cmd = self.pg_ctl();
        cmd.args(["-m", mode, "-w", "-t", PG_CTL_TIMEOUT_SECS, "-s", "stop"]);
        process::run(&mut cmd, None).map(drop)
    }

    fn is_running(&self) -> bool {
        let mut cmd = self.pg_ctl();
        cmd.arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.status().map(|s| s.success()).unwrap_or(false)
    }

    /// Immediate shutdown, falling back to SIGKILL. Quiet and panic-free
    /// because it runs from `Drop` (possibly while unwinding) and `atexit`.
    fn kill_server(&self) {
        let pid_file = self.data_dir.join("postmaster.pid");
        let Ok(contents) = fs::read_to_string(&pid_file) else {
            return;
        };
        let pid = contents
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok());
        let mut cmd = self.pg_ctl();
        cmd.args(["-m", "immediate", "-w", "-t", "10", "-s", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let stopped = cmd.status().map(|s| s.success()).unwrap_or(false);
        if stopped {
            return;
        }
        if let Some(pid) = pid.filter(|p| *p > 0).map(Pid::from_raw) {
            if kill(pid, Signal::SIGKILL).is_ok() {
                let deadline = Instant::now() + Duration::from_secs(5);
                while kill(pid, None).is_ok() && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        self.kill_server();
    }
}

fn free_port() -> Result<u16, TestkitError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| TestkitError::io("finding a free TCP port", e))
}

/// `pg_ctl -w` already waits for readiness; this confirms the TCP side,
/// which is what the proxy under test will use.
fn wait_for_tcp(port: u16) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + TCP_READY_TIMEOUT;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("server not accepting TCP on {addr}: {e}"))
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_the_password() {
        let cluster = PgCluster::external("postgres://u:hunter2secret@h:1/d").unwrap();
        let debug = format!("{cluster:?}");
        assert!(!debug.contains("hunter2secret"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }

    #[test]
    fn external_cluster_refuses_lifecycle_operations() {
        let mut cluster = PgCluster::external("postgres://u:p@h:1/d").unwrap();
        assert!(cluster.is_external());
        assert!(cluster.data_dir().is_none());
        let err = cluster.restart().unwrap_err();
        assert!(matches!(err, TestkitError::External("stop")), "{err}");
        assert!(matches!(
            cluster.start_again(),
            Err(TestkitError::External("start_again"))
        ));
    }

    #[test]
    fn external_accessors_come_from_the_url() {
        let cluster = PgCluster::external("postgres://app:pw@db:6000/shop").unwrap();
        assert_eq!(
            (
                cluster.host(),
                cluster.port(),
                cluster.user(),
                cluster.password(),
                cluster.database()
            ),
            ("db", 6000, "app", "pw", "shop")
        );
        assert_eq!(cluster.url(), "postgres://app:pw@db:6000/shop");
    }

    #[test]
    fn strip_newline_removes_only_one() {
        assert_eq!(strip_newline("a\n\n".into()), "a\n");
        assert_eq!(strip_newline("a".into()), "a");
    }
}
