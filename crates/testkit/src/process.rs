//! Spawning PostgreSQL programs, as the right OS user.

use std::env;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;

use nix::unistd::{Gid, Uid, User};

use crate::error::TestkitError;

/// The unprivileged identity PostgreSQL runs as when we are root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// `None` when not root: then everything runs as the current user.
/// PostgreSQL refuses to run as root, hence the switch.
pub(crate) fn run_as() -> Result<Option<RunAs>, TestkitError> {
    static RUN_AS: OnceLock<Result<Option<RunAs>, String>> = OnceLock::new();
    RUN_AS
        .get_or_init(|| {
            if !nix::unistd::geteuid().is_root() {
                return Ok(None);
            }
            match User::from_name("postgres") {
                Ok(Some(user)) => Ok(Some(RunAs {
                    uid: user.uid.as_raw(),
                    gid: user.gid.as_raw(),
                })),
                Ok(None) => Err("no such user".to_string()),
                Err(e) => Err(format!("user lookup failed: {e}")),
            }
        })
        .clone()
        .map_err(TestkitError::PostgresUserMissing)
}

/// Gives `path` to the PostgreSQL user, so the server can write there.
pub(crate) fn hand_over(path: &Path, run_as: Option<RunAs>) -> Result<(), TestkitError> {
    if let Some(r) = run_as {
        nix::unistd::chown(path, Some(Uid::from_raw(r.uid)), Some(Gid::from_raw(r.gid)))
            .map_err(|e| TestkitError::io_path("chown", path, e.into()))?;
    }
    Ok(())
}

/// A command for a PostgreSQL program with a clean `PG*` environment, so a
/// developer's PGHOST/PGPORT/PGPASSWORD cannot redirect the test kit.
pub(crate) fn pg_command(program: &Path, cwd: &Path, run_as: Option<RunAs>) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd).stdin(Stdio::null());
    for (key, _) in env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    if let Some(r) = run_as {
        cmd.uid(r.uid).gid(r.gid);
    }
    cmd
}

/// Runs `cmd` to completion, optionally feeding `stdin`, and returns its
/// stdout; a non-zero exit becomes [`TestkitError::Command`] with stderr.
///
/// Arguments are logged, so callers must never put secrets in them.
pub(crate) fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<String, TestkitError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    tracing::debug!(program = %program, args = ?cmd.get_args().collect::<Vec<_>>(), "running");
    let output = output_with_stdin(cmd, stdin)
        .map_err(|e| TestkitError::io(format!("spawning {program}"), e))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&output.stdout).trim().to_string();
        }
        Err(TestkitError::Command {
            program,
            status: output.status.to_string(),
            stderr,
        })
    }
}

fn output_with_stdin(cmd: &mut Command, stdin: Option<&str>) -> std::io::Result<Output> {
    let Some(input) = stdin else {
        return cmd.output();
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut pipe = child.stdin.take();
    let input = input.to_owned();
    // A separate writer avoids a deadlock when the program fills its stdout
    // pipe before it has read all of its input.
    let writer = thread::spawn(move || {
        if let Some(p) = pipe.as_mut() {
            let _ = p.write_all(input.as_bytes());
        }
    });
    let output = child.wait_with_output();
    let _ = writer.join();
    output
}

/// Returns the last `max` bytes of a (log) file, for error messages.
pub(crate) fn tail(path: &Path, from: u64, max: usize) -> String {
    let Ok(mut file) = fs::File::open(path) else {
        return String::from("(log file missing)");
    };
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return String::from("(log file unreadable)");
    }
    let start = usize::try_from(from).unwrap_or(0).min(bytes.len());
    let slice = &bytes[start..];
    let slice = &slice[slice.len().saturating_sub(max)..];
    String::from_utf8_lossy(slice).into_owned()
}

/// Starts a detached shell that removes `root` (after stopping the server
/// whose pid is in `data/postmaster.pid`) once this process is gone.
///
/// `Drop` and `atexit` cover normal exits and panics; this covers SIGKILL,
/// Ctrl-C and aborts, which skip both. It lives in its own process group so
/// a terminal's Ctrl-C does not take it down with the tests, polls once a
/// second, and exits on its own as soon as `root` disappears.
pub(crate) fn spawn_watchdog(root: &Path, data: &Path) {
    watch(std::process::id(), root, data);
}

fn watch(pid: u32, root: &Path, data: &Path) {
    const SCRIPT: &str = r#"( while kill -0 "$1" 2>/dev/null && [ -d "$2" ]; do sleep 1; done
[ -d "$2" ] || exit 0
pid=$(head -n 1 "$3/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null; then
  i=0
  while [ -f "$3/postmaster.pid" ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  kill -KILL "$pid" 2>/dev/null
fi
rm -rf "$2" ) >/dev/null 2>&1 </dev/null &"#;
    let result = Command::new("/bin/sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("maskgate-testkit-watchdog")
        .arg(pid.to_string())
        .arg(root)
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .status();
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not start cleanup watchdog; a killed test may leak a server");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_reports_stderr_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("/bin/sh");
        cmd.current_dir(dir.path())
            .args(["-c", "echo boom >&2; exit 3"]);
        let err = run(&mut cmd, None).unwrap_err().to_string();
        assert!(err.contains("boom"), "{err}");
    }

    #[test]
    fn run_feeds_large_stdin_without_deadlock() {
        let input = "x".repeat(1 << 20);
        let out = run(&mut Command::new("/bin/cat"), Some(&input)).unwrap();
        assert_eq!(out.len(), input.len());
    }

    #[test]
    fn tail_keeps_only_the_end_after_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        fs::write(&path, "old stuff\nnew line one\nnew line two\n").unwrap();
        assert_eq!(tail(&path, 10, 1000), "new line one\nnew line two\n");
        assert_eq!(tail(&path, 0, 13), "new line two\n");
        assert_eq!(tail(&dir.path().join("nope"), 0, 10), "(log file missing)");
    }

    #[test]
    fn watchdog_removes_dir_once_the_watched_process_is_gone() {
        let parent = tempfile::tempdir().unwrap();
        let root = parent.path().join("cluster");
        fs::create_dir_all(root.join("data")).unwrap();
        let mut child = Command::new("/bin/sleep").arg("0.3").spawn().unwrap();
        watch(child.id(), &root, &root.join("data"));
        assert!(root.exists(), "removed while the process was alive");
        child.wait().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while root.exists() && std::time::Instant::now() < deadline {
            thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(!root.exists(), "watchdog did not clean up");
    }
}
