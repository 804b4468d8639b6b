//! Locating the PostgreSQL programs.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::error::TestkitError;

/// Overrides the search with one directory, for machines where several
/// PostgreSQL versions are installed and the default pick is the wrong one.
pub const BINDIR_ENV: &str = "MASKGATE_PG_BINDIR";

const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// Paths of the PostgreSQL programs the test kit drives.
///
/// The server programs come from one directory and the client programs are
/// taken from that same directory when present, so `psql` and `pgbench`
/// match the server version even when PATH holds a wrapper for another one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    bin_dir: PathBuf,
    initdb: PathBuf,
    pg_ctl: PathBuf,
    postgres: PathBuf,
    psql: PathBuf,
    pgbench: Option<PathBuf>,
}

impl PgBinaries {
    /// Searches once per process and caches the outcome, because every
    /// cluster start needs the paths and the search spawns `pg_config`.
    pub fn find() -> Result<&'static PgBinaries, TestkitError> {
        static FOUND: OnceLock<Result<PgBinaries, (&'static str, String)>> = OnceLock::new();
        FOUND
            .get_or_init(|| {
                PgBinaries::discover().map_err(|e| match e {
                    TestkitError::BinaryNotFound { program, searched } => (program, searched),
                    other => ("initdb", other.to_string()),
                })
            })
            .as_ref()
            .map_err(|(program, searched)| TestkitError::BinaryNotFound {
                program,
                searched: searched.clone(),
            })
    }

    /// Uncached search.
    ///
    /// Order: `$MASKGATE_PG_BINDIR` alone if set; otherwise the directories
    /// on PATH, then `pg_config --bindir`, then the highest version under
    /// `/usr/lib/postgresql/*/bin`. `initdb` decides the server directory
    /// (symlinks resolved); the other programs are looked up there first.
    pub fn discover() -> Result<PgBinaries, TestkitError> {
        let search = SearchPath::from_environment();
        let initdb = search.locate("initdb")?;
        let real_initdb = fs::canonicalize(&initdb).unwrap_or(initdb);
        let bin_dir = real_initdb
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        let preferred = |program: &'static str| -> Result<PathBuf, TestkitError> {
            let candidate = bin_dir.join(program);
            if is_executable(&candidate) {
                Ok(candidate)
            } else {
                search.locate(program)
            }
        };
        let bins = PgBinaries {
            pg_ctl: preferred("pg_ctl")?,
            postgres: preferred("postgres")?,
            psql: preferred("psql")?,
            pgbench: preferred("pgbench").ok(),
            initdb: real_initdb,
            bin_dir,
        };
        tracing::debug!(bin_dir = %bins.bin_dir.display(), "found PostgreSQL binaries");
        Ok(bins)
    }

    /// Directory of the server programs.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    pub fn initdb(&self) -> &Path {
        &self.initdb
    }

    pub fn pg_ctl(&self) -> &Path {
        &self.pg_ctl
    }

    pub fn postgres(&self) -> &Path {
        &self.postgres
    }

    pub fn psql(&self) -> &Path {
        &self.psql
    }

    /// `pgbench` is only needed by benchmarks, so its absence is reported
    /// here rather than failing every cluster start.
    pub fn pgbench(&self) -> Result<&Path, TestkitError> {
        self.pgbench
            .as_deref()
            .ok_or_else(|| TestkitError::BinaryNotFound {
                program: "pgbench",
                searched: format!(
                    "{} and {}",
                    self.bin_dir.display(),
                    SearchPath::from_environment().describe()
                ),
            })
    }
}

/// The ordered list of directories to search, with notes for the error.
struct SearchPath {
    dirs: Vec<PathBuf>,
    notes: Vec<String>,
}

impl SearchPath {
    fn from_environment() -> SearchPath {
        if let Some(dir) = env::var_os(BINDIR_ENV).filter(|v| !v.is_empty()) {
            let dir = PathBuf::from(dir);
            return SearchPath {
                notes: vec![format!("${BINDIR_ENV} ({})", dir.display())],
                dirs: vec![dir],
            };
        }
        let mut dirs = Vec::new();
        let mut notes = Vec::new();

        let path_dirs: Vec<PathBuf> = env::split_paths(&env::var_os("PATH").unwrap_or_default())
            .filter(|d| !d.as_os_str().is_empty())
            .collect();
        notes.push(format!("PATH ({})", join_paths(&path_dirs)));
        dirs.extend(path_dirs);

        match pg_config_bindir(&dirs) {
            Some(dir) => {
                notes.push(format!("pg_config --bindir ({})", dir.display()));
                dirs.push(dir);
            }
            None => notes.push("pg_config --bindir (pg_config unavailable)".to_string()),
        }

        match highest_versioned_bindir(Path::new(DEBIAN_ROOT)) {
            Some(dir) => {
                notes.push(format!("{DEBIAN_ROOT}/*/bin (highest: {})", dir.display()));
                dirs.push(dir);
            }
            None => notes.push(format!("{DEBIAN_ROOT}/*/bin (none)")),
        }
        SearchPath { dirs, notes }
    }

    fn locate(&self, program: &'static str) -> Result<PathBuf, TestkitError> {
        self.dirs
            .iter()
            .map(|d| d.join(program))
            .find(|p| is_executable(p))
            .ok_or_else(|| TestkitError::BinaryNotFound {
                program,
                searched: self.describe(),
            })
    }

    fn describe(&self) -> String {
        self.notes.join("; ")
    }
}

fn join_paths(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn pg_config_bindir(path_dirs: &[PathBuf]) -> Option<PathBuf> {
    let pg_config = path_dirs
        .iter()
        .map(|d| d.join("pg_config"))
        .find(|p| is_executable(p))?;
    let output = Command::new(&pg_config).arg("--bindir").output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let dir = PathBuf::from(text.trim());
    dir.is_dir().then_some(dir)
}

/// Picks `<root>/<version>/bin` with the numerically highest version, so
/// "15" beats "9.6" and a lone non-numeric directory is still usable.
fn highest_versioned_bindir(root: &Path) -> Option<PathBuf> {
    let entries = fs::read_dir(root).ok()?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|name| root.join(name).join("bin").is_dir())
        .max_by_key(version_key)
        .map(|name| root.join(name).join("bin"))
}

fn version_key(name: &OsString) -> Vec<u64> {
    name.to_string_lossy()
        .split('.')
        .map(|part| part.parse::<u64>().unwrap_or(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_version_is_numeric_not_lexical() {
        let root = tempfile::tempdir().unwrap();
        for v in ["9.6", "15", "12", "notaversion"] {
            fs::create_dir_all(root.path().join(v).join("bin")).unwrap();
        }
        fs::create_dir_all(root.path().join("99")).unwrap();
        assert_eq!(
            highest_versioned_bindir(root.path()),
            Some(root.path().join("15").join("bin"))
        );
    }

    #[test]
    fn empty_root_has_no_bindir() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(highest_versioned_bindir(root.path()), None);
        assert_eq!(highest_versioned_bindir(&root.path().join("missing")), None);
    }

    #[test]
    fn missing_program_names_the_search() {
        let search = SearchPath {
            dirs: vec![PathBuf::from("/nonexistent-maskgate")],
            notes: vec!["PATH (/nonexistent-maskgate)".to_string()],
        };
        let err = search.locate("initdb").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("initdb"), "{msg}");
        assert!(msg.contains("/nonexistent-maskgate"), "{msg}");
    }

    #[test]
    fn discovers_the_installed_server() {
        let bins = PgBinaries::find().expect("PostgreSQL must be installed for these tests");
        assert!(is_executable(bins.initdb()));
        assert!(is_executable(bins.pg_ctl()));
        assert!(is_executable(bins.postgres()));
        assert!(is_executable(bins.psql()));
        assert!(bins.initdb().starts_with(bins.bin_dir()));
    }
}
