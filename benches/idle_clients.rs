//! Holds many idle client connections open so that a caller can measure what each
//! one costs the server they point at; `benches/pgbench/idle_memory.sh` uses it to
//! find maskgate's resident memory per idle client. It times nothing itself, so a
//! plain `cargo bench` (no MASKGATE_BENCH_URL) only prints how to use it.
//!
//! Environment: MASKGATE_BENCH_URL (libpq-style URL or key=value string, plain TCP),
//! MASKGATE_BENCH_CLIENTS (default 1000), MASKGATE_BENCH_HOLD_SECS (default 5).
//! `--clients N` and `--hold-secs N` override the environment.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_postgres::{Client, NoTls};

const DEFAULT_CLIENTS: usize = 1000;
const DEFAULT_HOLD_SECS: u64 = 5;
/// Logins run a few at a time: a storm of 1,000 SCRAM handshakes at once would
/// measure the listen backlog, not idle connections.
const CONNECT_CONCURRENCY: usize = 64;

const USAGE: &str = "idle_clients: set MASKGATE_BENCH_URL (and optionally MASKGATE_BENCH_CLIENTS, \
MASKGATE_BENCH_HOLD_SECS) to hold that many idle connections open; see benches/pgbench/README.md";

struct Options {
    url: String,
    clients: usize,
    hold: Duration,
}

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{name} is not a number: {value:?}"))
}

/// `None` means "nothing to do": no URL given, as under a plain `cargo bench`.
fn options() -> Result<Option<Options>, String> {
    let url = match std::env::var("MASKGATE_BENCH_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => return Ok(None),
    };
    let mut clients = match std::env::var("MASKGATE_BENCH_CLIENTS") {
        Ok(v) => parse_number("MASKGATE_BENCH_CLIENTS", &v)?,
        Err(_) => DEFAULT_CLIENTS,
    };
    let mut hold_secs = match std::env::var("MASKGATE_BENCH_HOLD_SECS") {
        Ok(v) => parse_number("MASKGATE_BENCH_HOLD_SECS", &v)?,
        Err(_) => DEFAULT_HOLD_SECS,
    };
    // cargo passes `--bench` to harness = false targets; other flags are ignored too.
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--clients" => {
                let v = args.next().ok_or("--clients needs a value")?;
                clients = parse_number("--clients", &v)?;
            }
            "--hold-secs" => {
                let v = args.next().ok_or("--hold-secs needs a value")?;
                hold_secs = parse_number("--hold-secs", &v)?;
            }
            _ => {}
        }
    }
    if clients == 0 {
        return Err("the number of clients must be at least 1".into());
    }
    Ok(Some(Options {
        url,
        clients,
        hold: Duration::from_secs(hold_secs),
    }))
}

/// tokio-postgres puts the useful part (refused, SQLSTATE, ...) in the source chain.
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

async fn open_one(url: Arc<str>, gate: Arc<Semaphore>) -> Result<Client, tokio_postgres::Error> {
    let _permit = gate.acquire_owned().await.expect("semaphore never closes");
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(async move {
        // Ends when the client is dropped or the server goes away; either is fine here.
        let _ = connection.await;
    });
    client.simple_query("SELECT 1").await?;
    Ok(client)
}

async fn run(opts: Options) -> ExitCode {
    let started = Instant::now();
    let url: Arc<str> = opts.url.into();
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for _ in 0..opts.clients {
        tasks.spawn(open_one(url.clone(), gate.clone()));
    }
    let mut held = Vec::with_capacity(opts.clients);
    let mut failed = 0usize;
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(client)) => held.push(client),
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert_with(|| describe(&e));
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| describe(&e));
            }
        }
    }
    println!(
        "idle_clients: connected {}/{} (each answered SELECT 1) in {:.2}s, {} failed",
        held.len(),
        opts.clients,
        started.elapsed().as_secs_f64(),
        failed
    );
    if let Some(e) = first_error {
        println!("idle_clients: first error: {e}");
    }
    // The caller waits for this line, then measures while the connections sit idle.
    println!(
        "idle_clients: holding {} idle connections for {}s",
        held.len(),
        opts.hold.as_secs()
    );
    tokio::time::sleep(opts.hold).await;
    drop(held);
    println!("idle_clients: released");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let opts = match options() {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("idle_clients: {e}");
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("idle_clients: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(opts))
}
