//! `maskgate audit`: the security team's tools for the audit trail.
//!
//! * `keygen`, `rotate-seal-key` — the key files (`maskgate_audit::keys`).
//! * `verify` — `maskgate_audit::verify` with the public key alone.
//! * `search`, `show` — find records, join statements with their ends, and (with
//!   the seal key) open a statement's sealed constants and parameters.
//! * `export` — copy finished segments to an archive with a receipt each, which
//!   `[audit] retention` requires before it removes a segment.
//!
//! Exit status, for every subcommand: 0 done (for `verify`: clean), 1 `verify`:
//! tampered / `show`: no such record, 2 `verify`: unsealed tail, 3 the command could
//! not run (usage, unreadable files, keys).
//!
//! # The audit of the audit
//!
//! `verify`, `search`, `show` and `export` record their own use: command, OS user, the
//! normalized arguments (filters and record ids, never a decrypted value), whether
//! sealed values were opened, and how many results were given. Where it goes:
//!
//! 1. With `--signing-key`, into the trail itself as an `audit_tool` record, hash
//!    chained and signed like any other: the tool opens a `maskgate_audit::Writer`,
//!    which starts a new segment, appends the record and closes it with a final
//!    checkpoint. That is only possible while no proxy writes the directory (the
//!    proxy's writer holds `audit.lock`), only in a directory a writer made (its
//!    `audit.lock` is there: never an archive or a copy, which would fork the
//!    chain), and only with the trail's own signing key (checked against the last
//!    checkpoint's signer, so a wrong key cannot make the trail look tampered).
//! 2. Otherwise (no key, proxy running, an archive, wrong key, or the trail cannot be
//!    appended), as one JSON line appended to the tool log: `DIR/tool-uses.jsonl`,
//!    or the file named by `--tool-log` (for instance when DIR is a read-only
//!    copy). It is created 0600 and only ever appended to, one `write(2)` per line.
//!    Its name does not start with `audit-`, so the verifier does not take it for a
//!    renamed segment. It is not hash chained: it keeps honest people honest and
//!    tells who looked, but whoever can write the file can also edit it.
//!
//! The use is recorded before any result is printed; if it cannot be recorded
//! anywhere, `search` and `show` print nothing and fail. (`verify` prints its
//! report anyway, with a warning: its report holds no personal data, and refusing
//! it would hide a tampered trail.)

mod export;
mod scan;
mod search;
mod show;

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use maskgate_audit::keys;
use maskgate_audit::{Status, WriteError, Writer, WriterConfig};
use maskgate_proxy::audit::{kind, AuditTool};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use search::{ClientFilter, Query};

/// Exit status: done; `verify`: the trail is clean.
pub const OK: i32 = 0;
/// Exit status of `verify`: tampered.
pub const TAMPERED: i32 = 1;
/// Exit status of `show`: no record with that seq.
pub const NOT_FOUND: i32 = 1;
/// Exit status of `verify`: nothing contradicts the signatures, but records at the
/// end are not (yet) covered by a checkpoint.
pub const UNSEALED_TAIL: i32 = 2;
/// Exit status: the command could not run (usage, files, keys).
pub const CANNOT_RUN: i32 = 3;

/// Text shown under `maskgate audit --help`.
pub const EXIT_CODES: &str =
    "Exit status: 0 done (verify: clean); 1 verify: tampered, show: no such record; \
2 verify: unsealed tail (records after the last checkpoint: proxy running, crashed, or tail cut); \
3 the command could not run (usage, files, keys). export: 1 when the trail is tampered (nothing exported).\n\n\
verify, search, show and export record their own use: in the trail with --signing-key when no proxy \
is writing it, otherwise in DIR/tool-uses.jsonl (or --tool-log). See docs/audit-cli.md.";

/// Names of the files `keygen` writes.
pub const SIGNING_KEY_FILE: &str = "audit-signing.pem";
pub const PUBLIC_KEY_FILE: &str = "audit-public.pem";
pub const SEAL_KEY_FILE: &str = "audit-seal.keys";
/// The tool log in the audit directory.
pub const TOOL_LOG_FILE: &str = "tool-uses.jsonl";

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Create DIR/audit-signing.pem (checkpoint signing key, 0600), DIR/audit-public.pem
    /// (for verifiers) and DIR/audit-seal.keys (seal keys, 0600). Never overwrites.
    Keygen {
        /// Where to write the key files (created 0700 if missing). Not the audit
        /// directory: the seal key must not sit next to the values it opens.
        #[arg(long)]
        dir: PathBuf,
        /// Id of the first seal key (default: today's date, UTC).
        #[arg(long)]
        key_id: Option<String>,
    },
    /// Add a new current key to a seal key file. Older keys stay, so older records
    /// still open; maskgate seals with the new key once restarted.
    RotateSealKey {
        /// The seal key file.
        #[arg(long)]
        seal_key: PathBuf,
        /// Id of the new key (default: today's date, UTC, with a suffix if taken).
        #[arg(long)]
        key_id: Option<String>,
    },
    /// Check the hash chain and the signed checkpoints with the public key alone.
    /// Exit 0 clean, 1 tampered, 2 unsealed tail, 3 could not run.
    Verify(VerifyArgs),
    /// Find records (statements with their outcome, logins, session ends).
    Search(SearchArgs),
    /// Print one record by seq, a statement with its statement_end; with --decrypt,
    /// its sealed constants and parameters.
    Show(ShowArgs),
    /// Verify the trail, copy every finished segment not yet exported to ARCHIVE
    /// (synced, read back, SHA-256 compared) and append a receipt for each to
    /// DIR/export-receipts.jsonl. Exit 0 done, 1 tampered (nothing exported), 3 could not run.
    Export(export::ExportArgs),
}

/// Where the tool's own use is recorded (see `docs/audit-cli.md`).
#[derive(Args, Debug)]
pub struct ToolUse {
    /// Record this use in the trail itself (a new segment) with the trail's
    /// checkpoint signing key; possible only while no proxy writes the directory,
    /// otherwise the tool log is used.
    #[arg(long, value_name = "FILE")]
    signing_key: Option<PathBuf>,
    /// Append the tool-use line to this file instead of DIR/tool-uses.jsonl (for
    /// a read-only copy of a trail).
    #[arg(long, value_name = "FILE", env = "MASKGATE_AUDIT_TOOL_LOG")]
    tool_log: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The audit directory.
    #[arg(env = "MASKGATE_AUDIT_DIR", default_value = ".")]
    dir: PathBuf,
    /// The checkpoint public key (audit-public.pem), obtained by a channel that does
    /// not pass through the audited machine.
    #[arg(long, value_name = "FILE")]
    public_key: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// DIR is an archive made by `maskgate audit export`: its last segment, closed
    /// by a rotation, is expected to be followed by segments not exported yet.
    #[arg(long)]
    archive: bool,
    #[command(flatten)]
    tool: ToolUse,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// The audit directory.
    #[arg(env = "MASKGATE_AUDIT_DIR", default_value = ".")]
    dir: PathBuf,
    /// Login name (statement and session records' user, a login's login name or
    /// account name).
    #[arg(long, value_name = "LOGIN")]
    account: Option<String>,
    /// From this time on: RFC 3339 (2025-01-31T08:00:00Z), a date (2025-01-31, UTC),
    /// a date and time in UTC (2025-01-31T08:00), or a duration ago (90m, 2h, 7d).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Up to this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Statements that read or wrote this policy table: schema.table, or a table
    /// name in any schema.
    #[arg(long, value_name = "TABLE")]
    table: Option<String>,
    /// Statements in which this column (or table.column) was masked or denied.
    #[arg(long, value_name = "COLUMN")]
    column: Option<String>,
    /// Statements with this decision.
    #[arg(long, value_parser = ["allowed", "rewritten", "denied"])]
    decision: Option<String>,
    /// Client address, or network in CIDR notation (10.1.0.0/16, 2001:db8::/32).
    #[arg(long, value_name = "ADDR-OR-CIDR")]
    client: Option<String>,
    /// Session id.
    #[arg(long)]
    session: Option<String>,
    /// Denial reason of a statement (policy, statement_quota, …) or refusal reason
    /// of a login (auth_failed, outside_hours, …).
    #[arg(long)]
    reason: Option<String>,
    /// Record kinds to search, repeatable (default: statement, login, session_end).
    #[arg(long = "kind", value_name = "KIND")]
    kinds: Vec<String>,
    /// Print at most this many records, oldest first (0: no limit).
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// An aligned table for people, or JSON (`{"results": [...], "more": bool}`).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    tool: ToolUse,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The record's seq.
    id: u64,
    /// The audit directory.
    #[arg(env = "MASKGATE_AUDIT_DIR", default_value = ".")]
    dir: PathBuf,
    /// Open the sealed value and print the literals and parameters.
    #[arg(long, requires = "key_file")]
    decrypt: bool,
    /// The seal key file (audit-seal.keys).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tool: ToolUse,
}

/// Runs an `audit` subcommand and returns the process exit status.
pub fn run(command: AuditCommand) -> i32 {
    let result = match command {
        AuditCommand::Keygen { dir, key_id } => keygen(&dir, key_id.as_deref()),
        AuditCommand::RotateSealKey { seal_key, key_id } => {
            rotate_seal_key(&seal_key, key_id.as_deref())
        }
        AuditCommand::Verify(args) => verify(&args),
        AuditCommand::Search(args) => run_search(&args),
        AuditCommand::Show(args) => show::run(&args),
        AuditCommand::Export(args) => export::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("maskgate: {e:#}");
            CANNOT_RUN
        }
    }
}

fn today() -> String {
    let d = OffsetDateTime::now_utc().date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn keygen(dir: &Path, key_id: Option<&str>) -> anyhow::Result<i32> {
    if dir.join(maskgate_audit::segment::LOCK_FILE).exists() || scan::list_segments(dir).is_ok() {
        anyhow::bail!(
            "{} is an audit directory; keep the keys elsewhere (the seal key must not sit next to the values it opens)",
            dir.display()
        );
    }
    let key_id = key_id.map_or_else(today, str::to_owned);
    keys::validate_key_id(&key_id)?;
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let (signing, public, seal) = (
        dir.join(SIGNING_KEY_FILE),
        dir.join(PUBLIC_KEY_FILE),
        dir.join(SEAL_KEY_FILE),
    );
    // Refuse before writing anything, so a refusal leaves no half set of keys.
    for path in [&signing, &public, &seal] {
        if fs::symlink_metadata(path).is_ok() {
            anyhow::bail!(
                "{} already exists; key files are never overwritten",
                path.display()
            );
        }
    }
    let key = keys::generate_signing_key_files(&signing, &public)?;
    // The public key is not secret: readable by all, to be handed to verifiers.
    fs::set_permissions(&public, fs::Permissions::from_mode(0o644))
        .with_context(|| format!("cannot chmod {}", public.display()))?;
    keys::generate_seal_key_file(&seal, &key_id)?;
    println!(
        "wrote {} (checkpoint signing key, keep with maskgate)",
        signing.display()
    );
    println!(
        "wrote {} (public key {}, give it to whoever verifies the trail)",
        public.display(),
        key.fingerprint()
    );
    println!("wrote {} (seal key {key_id:?})", seal.display());
    println!();
    println!("in maskgate.toml:");
    println!("[audit]");
    println!("signing_key = {:?}", signing.display().to_string());
    println!("seal_key = {:?}", seal.display().to_string());
    Ok(OK)
}

fn rotate_seal_key(path: &Path, key_id: Option<&str>) -> anyhow::Result<i32> {
    let existing: Vec<String> = maskgate_audit::Sealer::load(path)?
        .key_ids()
        .map(str::to_owned)
        .collect();
    let id = match key_id {
        Some(id) => id.to_owned(),
        None => {
            let base = today();
            let mut id = base.clone();
            let mut n = 2;
            while existing.contains(&id) {
                id = format!("{base}.{n}");
                n += 1;
            }
            id
        }
    };
    keys::add_seal_key(path, &id)?;
    println!(
        "added seal key {id:?} to {} ({} key(s), the new one is current); maskgate seals with it once restarted",
        path.display(),
        existing.len() + 1
    );
    Ok(OK)
}

fn verify(args: &VerifyArgs) -> anyhow::Result<i32> {
    let key = keys::load_public_key(&args.public_key)?;
    let report = if args.archive {
        maskgate_audit::verify_archive(&args.dir, &key)?
    } else {
        maskgate_audit::verify(&args.dir, &key)?
    };
    let code = match report.status() {
        Status::Clean => OK,
        Status::Tampered => TAMPERED,
        Status::UnsealedTail => UNSEALED_TAIL,
    };
    let use_ = AuditTool {
        command: "verify",
        os_user: os_user(),
        arguments: format!(
            "dir={} public_key={}{}{}",
            args.dir.display(),
            key.fingerprint(),
            if args.json { " json" } else { "" },
            if args.archive { " archive" } else { "" }
        ),
        decrypted: false,
        results: report.records(),
    };
    if let Err(e) = record_use(&args.dir, &args.tool, use_) {
        eprintln!("maskgate: warning: this use could not be recorded: {e:#}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(code)
}

/// Reads `--since`/`--until`.
fn parse_time(s: &str) -> anyhow::Result<scan::TimeKey> {
    scan::TimeKey::from_datetime(parse_instant(s)?)
}

/// A point in time as the commands take it: RFC 3339, a date, a UTC date and
/// time, or a duration ago.
pub(crate) fn parse_instant(s: &str) -> anyhow::Result<OffsetDateTime> {
    use time::macros::format_description;
    use time::{Date, PrimitiveDateTime};
    let t = if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        t
    } else if let Ok(d) = Date::parse(s, format_description!("[year]-[month]-[day]")) {
        d.midnight().assume_utc()
    } else if let Ok(t) = PrimitiveDateTime::parse(
        s,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    ) {
        t.assume_utc()
    } else if let Ok(t) = PrimitiveDateTime::parse(
        s,
        format_description!("[year]-[month]-[day]T[hour]:[minute]"),
    ) {
        t.assume_utc()
    } else if let Ok(ago) = humantime::parse_duration(s) {
        OffsetDateTime::now_utc()
            .checked_sub(time::Duration::try_from(ago).context("duration too long")?)
            .context("duration too long")?
    } else {
        anyhow::bail!(
            "{s:?} is not a time: use RFC 3339 (2025-01-31T08:00:00Z), a date (2025-01-31), \
             a UTC date and time (2025-01-31T08:00) or a duration ago (90m, 2h, 7d)"
        );
    };
    Ok(t)
}

fn run_search(args: &SearchArgs) -> anyhow::Result<i32> {
    let query = Query {
        account: args.account.clone(),
        since: args.since.as_deref().map(parse_time).transpose()?,
        until: args.until.as_deref().map(parse_time).transpose()?,
        table: args.table.clone(),
        column: args.column.clone(),
        decision: args.decision.clone(),
        client: args
            .client
            .as_deref()
            .map(ClientFilter::parse)
            .transpose()?,
        session: args.session.clone(),
        reason: args.reason.clone(),
        kinds: args.kinds.clone(),
        limit: args.limit,
    };
    let segments = scan::list_segments(&args.dir)?;
    let found = search::search(&segments, &query)?;
    // Render before recording, so a failure to render records nothing it did not give.
    let mut out = Vec::new();
    match args.format {
        Format::Table => search::print_table(&found, &mut out)?,
        Format::Json => {
            let results = found
                .hits
                .iter()
                .map(search::hit_json)
                .collect::<anyhow::Result<Vec<_>>>()?;
            let doc = serde_json::json!({ "results": results, "more": found.more });
            serde_json::to_writer_pretty(&mut out, &doc)?;
            out.push(b'\n');
        }
    }
    let use_ = AuditTool {
        command: "search",
        os_user: os_user(),
        arguments: describe_search(args),
        decrypted: false,
        results: found.hits.len() as u64,
    };
    record_use(&args.dir, &args.tool, use_)?;
    if found.unreadable > 0 {
        eprintln!(
            "maskgate: warning: {} line(s) are not records as the writer writes them and were skipped; run `maskgate audit verify`",
            found.unreadable
        );
    }
    std::io::stdout()
        .write_all(&out)
        .context("cannot write the results")?;
    Ok(OK)
}

/// A search's arguments as recorded in the tool-use record.
fn describe_search(args: &SearchArgs) -> String {
    let mut parts = vec![format!("dir={}", args.dir.display())];
    let options = [
        ("account", &args.account),
        ("since", &args.since),
        ("until", &args.until),
        ("table", &args.table),
        ("column", &args.column),
        ("decision", &args.decision),
        ("client", &args.client),
        ("session", &args.session),
        ("reason", &args.reason),
    ];
    for (name, value) in options {
        if let Some(v) = value {
            parts.push(format!("{name}={v:?}"));
        }
    }
    for k in &args.kinds {
        parts.push(format!("kind={k:?}"));
    }
    parts.push(format!("limit={}", args.limit));
    parts.join(" ")
}

/// Who runs the command: the real user id's name (not `$USER`, which anyone
/// sets), and the user who logged in to the
/// machine when that is someone else (the kernel's login uid, which `sudo` and
/// `su` keep and the process cannot change). `SUDO_USER` is not used: whoever runs
/// the command can set it.
pub(crate) fn os_user() -> String {
    let uid = nix::unistd::getuid();
    let mut who = format!("{} (uid {uid})", user_name(uid));
    if let Some(login) = login_uid().filter(|l| *l != uid) {
        who.push_str(&format!(
            ", logged in as {} (uid {login})",
            user_name(login)
        ));
    }
    who
}

fn user_name(uid: nix::unistd::Uid) -> String {
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| "?".to_owned(), |u| u.name)
}

/// `/proc/self/loginuid`, unless unset (no login session, as in a container).
fn login_uid() -> Option<nix::unistd::Uid> {
    let text = std::fs::read_to_string("/proc/self/loginuid").ok()?;
    let uid: u32 = text.trim().parse().ok()?;
    (uid != u32::MAX).then(|| nix::unistd::Uid::from_raw(uid))
}

/// A line of the tool log.
#[derive(Serialize)]
struct ToolLogLine<'a> {
    time: String,
    trail: String,
    #[serde(flatten)]
    tool: &'a AuditTool,
}

/// Records a use of the tool (see the module documentation) and says where.
fn record_use(dir: &Path, tool: &ToolUse, use_: AuditTool) -> anyhow::Result<()> {
    if let Some(key_path) = &tool.signing_key {
        match append_to_trail(dir, key_path, &use_) {
            Ok(segment) => {
                eprintln!("maskgate: this use is recorded in the trail ({segment})");
                return Ok(());
            }
            Err(why) => {
                eprintln!("maskgate: this use goes to the tool log: {why:#}");
            }
        }
    }
    let path = tool
        .tool_log
        .clone()
        .unwrap_or_else(|| dir.join(TOOL_LOG_FILE));
    let line = ToolLogLine {
        time: OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .context("cannot format the time")?,
        trail: fs::canonicalize(dir)
            .unwrap_or_else(|_| dir.to_owned())
            .display()
            .to_string(),
        tool: &use_,
    };
    let mut bytes = serde_json::to_vec(&line)?;
    bytes.push(b'\n');
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| {
            format!(
                "cannot record this use in {} (use --tool-log for a read-only trail)",
                path.display()
            )
        })?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_data())
        .with_context(|| format!("cannot record this use in {}", path.display()))?;
    Ok(())
}

/// Appends an `audit_tool` record to the trail; returns the segment written.
fn append_to_trail(dir: &Path, key_path: &Path, use_: &AuditTool) -> anyhow::Result<String> {
    // Only into a directory a maskgate writer has written (it leaves its lock
    // file): appending to an archive or a copy would fork the chain.
    if !dir.join(maskgate_audit::segment::LOCK_FILE).exists() {
        anyhow::bail!(
            "{} is not a directory maskgate writes (no {}): an archive or a copy",
            dir.display(),
            maskgate_audit::segment::LOCK_FILE
        );
    }
    let key = keys::load_signing_key(key_path)?;
    let fingerprint = key.public_key().fingerprint();
    match last_signer(dir)? {
        Some(signer) if signer == fingerprint => {}
        Some(signer) => anyhow::bail!(
            "the trail is signed with key {signer}, {} is key {fingerprint}",
            key_path.display()
        ),
        None => {
            anyhow::bail!("the last segment has no checkpoint to check the signing key against")
        }
    }
    let mut writer = match Writer::open(dir, WriterConfig::new(key)) {
        Ok(w) => w,
        Err(WriteError::Locked { .. }) => {
            anyhow::bail!("a maskgate proxy is writing {}", dir.display())
        }
        Err(e) => return Err(e.into()),
    };
    let segment = writer.segment_name().to_owned();
    writer.append(kind::AUDIT_TOOL, use_)?;
    writer.close()?;
    Ok(segment)
}

/// The `signer` of the last checkpoint of the last segment.
fn last_signer(dir: &Path) -> anyhow::Result<Option<String>> {
    #[derive(serde::Deserialize)]
    struct Checkpoint {
        signer: String,
    }
    let segments = scan::list_segments(dir)?;
    let Some(last) = segments.last() else {
        return Ok(None);
    };
    let mut buf = Vec::new();
    scan::read_segment(last, &mut buf)?;
    let signer = scan::lines(&buf)
        .filter_map(|line| {
            let env = scan::envelope(line)?;
            (env.kind == b"checkpoint").then_some(line)
        })
        .last()
        .and_then(|line| serde_json::from_slice::<Checkpoint>(line).ok())
        .map(|c| c.signer);
    Ok(signer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let rfc = parse_time("2025-01-31T08:00:00Z").unwrap();
        assert_eq!(parse_time("2025-01-31T09:00:00+01:00").unwrap(), rfc);
        assert_eq!(parse_time("2025-01-31T08:00").unwrap(), rfc);
        assert_eq!(parse_time("2025-01-31T08:00:00").unwrap(), rfc);
        assert!(parse_time("2025-01-31").unwrap() < rfc);
        assert!(parse_time("2h").unwrap() > rfc);
        assert!(parse_time("yesterday-ish").is_err());
    }
}
