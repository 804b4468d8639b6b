//! Alerts POSTed as JSON to webhooks, retried with back-off, and appended to a
//! dead-letter file when a receiver stays down.
//!
//! Delivery runs on a thread of its own behind a bounded queue: a slow receiver
//! delays later alerts, never a session or detection itself.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Alerts waiting for delivery; past this they go to the dead-letter file at once.
const QUEUE: usize = 1024;
/// First retry delay; doubled on each attempt, at most [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A webhook address: `http://host[:port]/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    url: String,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(
                "only http:// webhooks are supported (put a TLS-terminating relay in front)".into(),
            );
        }
        let authority = uri.authority().ok_or("no host")?.clone();
        Ok(Target {
            url: url.to_owned(),
            host: authority.host().trim_matches(['[', ']']).to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authority: authority.to_string(),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.to_string()),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Delivery counters.
#[derive(Debug, Default)]
pub struct WebhookStats {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
}

/// The sending side. Dropping every clone lets the thread finish what is queued
/// and stop.
#[derive(Clone)]
pub struct Webhooks {
    sender: SyncSender<Vec<u8>>,
    dead_letter: PathBuf,
    stats: Arc<WebhookStats>,
}

struct Delivery {
    targets: Vec<Target>,
    timeout: Duration,
    attempts: u32,
    dead_letter: PathBuf,
    stats: Arc<WebhookStats>,
}

impl Webhooks {
    /// Starts the delivery thread.
    pub fn start(
        targets: Vec<Target>,
        timeout: Duration,
        attempts: u32,
        dead_letter: PathBuf,
    ) -> std::io::Result<Webhooks> {
        let (sender, receiver) = mpsc::sync_channel(QUEUE);
        let stats = Arc::new(WebhookStats::default());
        let delivery = Delivery {
            targets,
            timeout,
            attempts: attempts.max(1),
            dead_letter: dead_letter.clone(),
            stats: stats.clone(),
        };
        std::thread::Builder::new()
            .name("maskgate-webhooks".into())
            .spawn(move || delivery.run(receiver))?;
        Ok(Webhooks {
            sender,
            dead_letter,
            stats,
        })
    }

    pub fn stats(&self) -> &Arc<WebhookStats> {
        &self.stats
    }

    /// Queues an alert's JSON for every webhook.
    pub fn send(&self, body: Vec<u8>) {
        match self.sender.try_send(body) {
            Ok(()) => {}
            Err(TrySendError::Full(body)) | Err(TrySendError::Disconnected(body)) => {
                self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                dead_letter(&self.dead_letter, "*", "the webhook queue is full", &body);
            }
        }
    }
}

impl Delivery {
    fn run(self, receiver: Receiver<Vec<u8>>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "webhooks cannot start; alerts go to the dead-letter file");
                for body in receiver {
                    dead_letter(&self.dead_letter, "*", "webhooks did not start", &body);
                }
                return;
            }
        };
        for body in receiver {
            for target in &self.targets {
                self.deliver(&runtime, target, &body);
            }
        }
    }

    fn deliver(&self, runtime: &tokio::runtime::Runtime, target: &Target, body: &[u8]) {
        let mut backoff = FIRST_BACKOFF;
        let mut last_error = String::new();
        for attempt in 1..=self.attempts {
            let result = runtime.block_on(post(target, body, self.timeout));
            match result {
                Ok(()) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) => last_error = e,
            }
            if attempt < self.attempts {
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        tracing::warn!(url = %target.url, error = %last_error, "an alert could not be delivered; it is in the dead-letter file");
        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        dead_letter(&self.dead_letter, &target.url, &last_error, body);
    }
}

/// One POST; `Ok` on a 2xx answer.
async fn post(target: &Target, body: &[u8], timeout: Duration) -> Result<(), String> {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let driver = tokio::spawn(connection);
        let request = Request::post(target.path.as_str())
            .header(hyper::header::HOST, target.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "maskgate")
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = response.status();
        let _ = response.into_body().collect().await;
        driver.abort();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// Appends `{"at", "url", "error", "alert"}` to the dead-letter file (0600).
fn dead_letter(path: &PathBuf, url: &str, error: &str, body: &[u8]) {
    let alert: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    let entry = serde_json::json!({
        "at": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
        "url": url,
        "error": error,
        "alert": alert,
    });
    let mut line = serde_json::to_vec(&entry).unwrap_or_default();
    line.push(b'\n');
    let written = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(&line));
    if let Err(e) = written {
        tracing::error!(path = %path.display(), error = %e, "an undeliverable alert could not be written to the dead-letter file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("http://127.0.0.1:8080/hook?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8080, "/hook?x=1")
        );
        assert_eq!(Target::parse("http://[::1]/").unwrap().host, "::1");
        assert!(Target::parse("https://siem/").is_err());
        assert!(Target::parse("nope").is_err());
    }

    #[test]
    fn a_receiver_that_is_down_ends_in_the_dead_letter_file() {
        let dir = tempfile::tempdir().unwrap();
        // A port nobody listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = Target::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let hooks = Webhooks::start(
            vec![target],
            Duration::from_secs(1),
            2,
            dir.path().join("dead.jsonl"),
        )
        .unwrap();
        let stats = hooks.stats().clone();
        hooks.send(br#"{"id":"canary-1"}"#.to_vec());
        for _ in 0..100 {
            if stats.dead_lettered.load(Ordering::Relaxed) == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap();
        assert!(text.contains("\"id\":\"canary-1\""), "{text}");
        assert_eq!(stats.retried.load(Ordering::Relaxed), 1);
    }
}
