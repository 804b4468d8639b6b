//! The `maskgate` binary itself, serving a copy of a [`TestProxy`]'s configuration:
//! for tests that need the real process (its memory, its open-file limit, its
//! signals, its log).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, TestProxy, TestkitError};

/// A running `maskgate serve`, killed when dropped.
pub struct ServedBinary {
    child: Child,
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    log: PathBuf,
    database: String,
    /// Keeps the configuration directory.
    _template: TestProxy,
}

/// How to run the binary.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Run under `prlimit --nofile=N:N` (soft and hard limit of open files).
    pub nofile: Option<u64>,
    /// `RUST_LOG` for the process (default: the configuration's level).
    pub log_filter: Option<String>,
    /// Listen on this address instead of 127.0.0.1, e.g. `::ffff:127.0.0.1` for a
    /// dual-stack socket (clients still reach it at 127.0.0.1).
    pub listen_host: Option<std::net::IpAddr>,
    /// Environment variables for the process, e.g. allocator settings.
    pub env: Vec<(String, String)>,
}

fn io(context: &str, source: std::io::Error) -> TestkitError {
    TestkitError::Io {
        context: context.into(),
        source,
    }
}

impl ServedBinary {
    /// Stops the in-process `template` (keeping its directory) and starts `exe`
    /// (the test's `CARGO_BIN_EXE_maskgate`) with the same configuration, on
    /// ports of its own; waits until it accepts connections.
    pub async fn start(
        exe: &Path,
        mut template: TestProxy,
        options: ServeOptions,
    ) -> Result<ServedBinary, TestkitError> {
        template.stop().await;
        let dir = template.config_dir().to_path_buf();
        let port = free_port();
        let host = options
            .listen_host
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        let mut config = std::fs::read_to_string(dir.join("maskgate.toml"))
            .map_err(|e| io("reading the harness configuration", e))?
            .replacen(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"{}\"", SocketAddr::new(host, port)),
                1,
            );
        let admin = if config.contains("listen = \"127.0.0.1:0\"") {
            let admin_port = free_port();
            config = config.replacen(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"127.0.0.1:{admin_port}\""),
                1,
            );
            Some(SocketAddr::from(([127, 0, 0, 1], admin_port)))
        } else {
            None
        };
        let path = dir.join("maskgate-binary.toml");
        std::fs::write(&path, config).map_err(|e| io("writing the configuration", e))?;
        let log = dir.join("maskgate-binary.log");
        let log_file = std::fs::File::create(&log).map_err(|e| io("creating the log", e))?;
        let mut command = match options.nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(exe);
                c
            }
            None => Command::new(exe),
        };
        command
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        if let Some(filter) = &options.log_filter {
            command.env("RUST_LOG", filter);
        }
        command.envs(options.env.iter().map(|(k, v)| (k, v)));
        let child = command.spawn().map_err(|e| io("starting maskgate", e))?;
        let served = ServedBinary {
            child,
            addr: SocketAddr::new(host.to_canonical(), port),
            admin,
            log,
            database: template.database().to_string(),
            _template: template,
        };
        served.wait_listening().await?;
        Ok(served)
    }

    async fn wait_listening(&self) -> Result<(), TestkitError> {
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(TestkitError::Proxy(format!(
            "maskgate did not listen within 10 s:\n{}",
            self.log()
        )))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A libpq-style connection string for `user`.
    pub fn conn_string(&self, user: &str, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password='{}' dbname={} sslmode=disable connect_timeout=10",
            self.addr.port(),
            password.replace('\'', "\\'"),
            self.database
        )
    }

    /// The process's resident memory now (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }

    /// Files the process has open now.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    /// Sends `signal` (e.g. "TERM") to the process.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// Waits at most `within` for the process to exit; its exit status.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        for _ in 0..(within.as_millis() / 50).max(1) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for ServedBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
