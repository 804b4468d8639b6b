//! The per-process template data directory that clusters are copied from.
//!
//! `initdb` takes about a second; copying its result takes a fraction of
//! that, so it runs once per test binary and every cluster starts from a
//! copy. All clusters of a process therefore share the superuser password.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use tempfile::TempDir;

use crate::binaries::PgBinaries;
use crate::error::TestkitError;
use crate::process::{self, RunAs};

pub(crate) const SUPERUSER: &str = "postgres";

/// Settings file each cluster writes into its copy (port, socket dir); the
/// template's `postgresql.conf` includes it last so it wins.
pub(crate) const CLUSTER_CONF: &str = "maskgate_cluster.conf";

const SERVER_SETTINGS: &str = "
# maskgate-testkit: throwaway cluster, durability traded for speed
listen_addresses = '127.0.0.1'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 600
shared_buffers = 32MB
password_encryption = 'scram-sha-256'
log_line_prefix = '%m [%p] %q%u@%d '
include_if_exists = 'maskgate_cluster.conf'
";

const PG_HBA: &str = "\
# maskgate-testkit: password (SCRAM) over TCP, trust over the private socket
local all all trust
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
";

pub(crate) struct Template {
    /// Kept only so the directory is not deleted; statics never drop, so the
    /// atexit hook removes `root` instead.
    _dir: TempDir,
    pub root: PathBuf,
    pub data: PathBuf,
    pub password: String,
}

static TEMPLATE: OnceLock<Result<Template, String>> = OnceLock::new();

pub(crate) fn get() -> Result<&'static Template, TestkitError> {
    TEMPLATE
        .get_or_init(|| create().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| TestkitError::Template(e.clone()))
}

/// Called from the atexit hook: must not panic or log.
pub(crate) fn remove_at_exit() {
    if let Some(Ok(t)) = TEMPLATE.get() {
        let _ = fs::remove_dir_all(&t.root);
    }
}

/// Overrides where cluster directories are created.
pub const TMPDIR_ENV: &str = "MASKGATE_TEST_PG_TMPDIR";

/// Copying a data directory (~1000 files) to a disk costs 0.5-1s on a busy
/// machine but well under 0.1s on tmpfs, so `/dev/shm` is preferred when
/// it has room (Docker's default 64 MiB does not); otherwise `$TMPDIR`.
fn base_dir() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        if let Some(dir) = std::env::var_os(TMPDIR_ENV).filter(|v| !v.is_empty()) {
            return PathBuf::from(dir);
        }
        let shm = Path::new("/dev/shm");
        let roomy = nix::sys::statvfs::statvfs(shm)
            .map(|st| u128::from(st.blocks_available()) * u128::from(st.fragment_size()) >= 1 << 30)
            .unwrap_or(false);
        let writable = nix::unistd::access(shm, nix::unistd::AccessFlags::W_OK).is_ok();
        if roomy && writable {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    })
}

/// A fresh temp dir the PostgreSQL user can write into.
pub(crate) fn private_tempdir(
    prefix: &str,
    run_as: Option<RunAs>,
) -> Result<TempDir, TestkitError> {
    let base = base_dir();
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .map_err(|e| TestkitError::io(format!("creating temp dir in {}", base.display()), e))?;
    process::hand_over(dir.path(), run_as)?;
    Ok(dir)
}

fn create() -> Result<Template, TestkitError> {
    let bins = PgBinaries::find()?;
    let run_as = process::run_as()?;
    let dir = private_tempdir("maskgate-pg-template-", run_as)?;
    crate::cleanup::register();
    let root = dir.path().to_path_buf();
    let data = root.join("data");
    process::spawn_watchdog(&root, &data);

    let password = random_password()?;
    let pwfile = root.join("pwfile");
    write_private(&pwfile, &format!("{password}\n"), run_as)?;

    let started = Instant::now();
    let result = initdb(bins, &root, &data, &pwfile, run_as, "C.UTF-8").or_else(|first| {
        tracing::debug!(error = %first, "initdb with C.UTF-8 failed, retrying with locale C");
        let _ = fs::remove_dir_all(&data);
        initdb(bins, &root, &data, &pwfile, run_as, "C")
    });
    let _ = fs::remove_file(&pwfile);
    result?;
    let initdb_time = started.elapsed();
    tracing::debug!(?initdb_time, "template cluster initialised");

    write_owned(&data.join("pg_hba.conf"), PG_HBA, run_as)?;
    let conf_path = data.join("postgresql.conf");
    let mut conf = fs::read_to_string(&conf_path)
        .map_err(|e| TestkitError::io_path("reading", &conf_path, e))?;
    conf.push_str(SERVER_SETTINGS);
    write_owned(&conf_path, &conf, run_as)?;

    Ok(Template {
        _dir: dir,
        root,
        data,
        password,
    })
}

fn initdb(
    bins: &PgBinaries,
    cwd: &Path,
    data: &Path,
    pwfile: &Path,
    run_as: Option<RunAs>,
    locale: &str,
) -> Result<(), TestkitError> {
    let mut cmd = process::pg_command(bins.initdb(), cwd, run_as);
    cmd.arg("-D")
        .arg(data)
        .args(["-U", SUPERUSER])
        .arg(format!("--pwfile={}", pwfile.display()))
        .args([
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
        ])
        .arg(format!("--locale={locale}"))
        // 1 MiB WAL segments instead of 16 make every copy 11 MiB smaller.
        .args(["--wal-segsize=1", "--no-sync"]);
    process::run(&mut cmd, None).map(drop)
}

/// Writes a file readable only by the PostgreSQL user (and root).
fn write_private(path: &Path, contents: &str, run_as: Option<RunAs>) -> Result<(), TestkitError> {
    write_owned(path, contents, run_as)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| TestkitError::io_path("chmod", path, e))
}

/// Writes a file and gives it to the PostgreSQL user.
pub(crate) fn write_owned(
    path: &Path,
    contents: &str,
    run_as: Option<RunAs>,
) -> Result<(), TestkitError> {
    fs::write(path, contents).map_err(|e| TestkitError::io_path("writing", path, e))?;
    process::hand_over(path, run_as)
}

/// 32 hex characters from the kernel's CSPRNG: URL-safe and needs no
/// extra dependency.
fn random_password() -> Result<String, TestkitError> {
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| TestkitError::io("reading /dev/urandom", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_random_hex() {
        let a = random_password().unwrap();
        let b = random_password().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn settings_include_the_cluster_file_last() {
        let last = SERVER_SETTINGS.trim_end().lines().last().unwrap();
        assert!(last.contains(CLUSTER_CONF));
    }
}
