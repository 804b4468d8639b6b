//! The `maskgate` command.

mod account_cmd;
mod audit_cmd;
mod demo;
mod passwd;
mod policy_cmd;
mod report_cmd;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use maskgate_proxy::{Config, Server};

#[derive(Parser)]
#[command(name = "maskgate", version, about = "A data-masking PostgreSQL proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// The configuration file.
        #[arg(long, short, default_value = "maskgate.toml", env = "MASKGATE_CONFIG")]
        config: PathBuf,
        /// Log format, overriding the configuration: human or json.
        #[arg(long)]
        log_format: Option<String>,
    },
    /// Start a throwaway PostgreSQL with sample data and maskgate in front of
    /// it, print how to connect, and run until Ctrl-C.
    Demo {
        /// Stop after this many seconds instead of waiting for Ctrl-C.
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Read a new password for USER (prompt, or stdin when it is not a terminal),
    /// refuse weak ones, and print the line to add to the users file.
    Passwd {
        /// The account's login name.
        user: String,
    },
    /// Check the policy files, or explain what an account may do.
    Policy {
        #[command(subcommand)]
        command: policy_cmd::PolicyCommand,
    },
    /// Accounts as the security officer sees them; lift a suspension.
    Account {
        #[command(subcommand)]
        command: account_cmd::AccountCommand,
    },
    /// Reports from the audit trail: the daily review, a breach notification.
    Report {
        #[command(subcommand)]
        command: report_cmd::ReportCommand,
    },
    /// Keys, verification and investigation of the audit trail.
    #[command(after_help = audit_cmd::EXIT_CODES)]
    Audit {
        #[command(subcommand)]
        command: audit_cmd::AuditCommand,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `audit` keeps exit status 2 for "unsealed tail": its usage errors exit 3.
            let audit = std::env::args_os().nth(1).is_some_and(|a| a == "audit");
            let code = if audit && e.use_stderr() {
                audit_cmd::CANNOT_RUN
            } else {
                e.exit_code()
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let command = match cli.command {
        // No async runtime needed.
        Command::Audit { command } => std::process::exit(audit_cmd::run(command)),
        Command::Account { command } => return account_cmd::run(command),
        Command::Report { command } => std::process::exit(report_cmd::run(command)),
        other => other,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match command {
        Command::Serve { config, log_format } => runtime.block_on(serve(config, log_format)),
        Command::Demo { seconds } => runtime.block_on(demo::run(seconds)),
        Command::Passwd { user } => passwd::run(&user),
        Command::Policy { command } => std::process::exit(policy_cmd::run(command, &runtime)),
        Command::Audit { .. } | Command::Account { .. } | Command::Report { .. } => {
            unreachable!("handled above")
        }
    }
}

async fn serve(path: PathBuf, log_format: Option<String>) -> anyhow::Result<()> {
    let mut config = Config::load(&path)?;
    match log_format.as_deref() {
        None => {}
        Some("json") => config.log.format = maskgate_proxy::config::LogFormat::Json,
        Some("human") => config.log.format = maskgate_proxy::config::LogFormat::Human,
        Some(other) => anyhow::bail!("--log-format {other} is unknown; use human or json"),
    }
    maskgate_proxy::logging::init(&config.log);
    ignore_file_size_signal()?;
    let server = Server::bind(config).await?;
    run_until_signalled(server).await
}

/// A write past the file-size limit (RLIMIT_FSIZE) must fail like a full disk, which
/// the audit trail handles (statements refused until it can write again), rather
/// than kill the process and every session with it through SIGXFSZ.
fn ignore_file_size_signal() -> anyhow::Result<()> {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: ignoring a signal installs no handler code, and nothing else in the
    // process sets a disposition for SIGXFSZ.
    unsafe { signal(Signal::SIGXFSZ, SigHandler::SigIgn) }.context("cannot ignore SIGXFSZ")?;
    Ok(())
}

/// Runs the server; SIGTERM and Ctrl-C start a graceful shutdown, SIGHUP reloads the policy.
pub(crate) async fn run_until_signalled(server: Server) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handle = server.handle();
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let signals = async move {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                // reload_policy logs the outcome itself.
                _ = hup.recv() => { let _ = handle.reload_policy_settled().await; }
            }
        }
        tracing::info!("shutdown requested");
        handle.shutdown();
    };
    let signals = tokio::spawn(signals);
    server.run().await;
    signals.abort();
    Ok(())
}
