//! Alerts POSTed as JSON to webhooks, retried with back-off, and appended to a
//! dead-letter file when a receiver stays down, from which they are sent again
//! once it is back.
//!
//! Each webhook has its own thread and bounded queue, so a slow or dead receiver
//! delays only its own alerts, never another receiver's, a session or detection.
//! A receiver that failed an alert's every attempt is taken as down: its next
//! alerts go straight to the dead-letter file (no attempts to wait for) until a
//! retry of the dead letters, every `retry_every`, gets through.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Alerts waiting for one webhook; past this they go to the dead-letter file at once.
const QUEUE: usize = 1024;
/// First retry delay; doubled on each attempt, at most [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The dead-letter file stops growing at this size (alerts past it are counted
/// and logged: they are in the audit trail anyway).
const MAX_DEAD_LETTER_BYTES: u64 = 64 << 20;
/// How often the proxy sends dead letters again.
pub const RETRY_EVERY: Duration = Duration::from_secs(30);

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
    /// Dead letters delivered later.
    pub redelivered: AtomicU64,
    /// Alerts neither delivered nor kept (the dead-letter file is full).
    pub lost: AtomicU64,
}

/// How delivery behaves.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub timeout: Duration,
    pub attempts: u32,
    pub retry_every: Duration,
}

/// The sending side. Dropping it lets the threads finish what is queued and stop.
pub struct Webhooks {
    queues: Vec<(SyncSender<Vec<u8>>, String)>,
    dead_letter: DeadLetter,
    stats: Arc<WebhookStats>,
}

/// The dead-letter file, shared by the delivery threads.
#[derive(Clone)]
struct DeadLetter {
    path: PathBuf,
    lock: Arc<Mutex<()>>,
    stats: Arc<WebhookStats>,
}

struct Delivery {
    target: Target,
    settings: DeliverySettings,
    dead_letter: DeadLetter,
    stats: Arc<WebhookStats>,
    /// The receiver failed an alert's every attempt: alerts go to the dead-letter
    /// file until a retry gets through.
    down: bool,
    next_retry: Instant,
}

impl Webhooks {
    /// Starts one delivery thread per target.
    pub fn start(
        targets: Vec<Target>,
        settings: DeliverySettings,
        dead_letter: PathBuf,
    ) -> std::io::Result<Webhooks> {
        let stats = Arc::new(WebhookStats::default());
        let dead_letter = DeadLetter {
            path: dead_letter,
            lock: Arc::default(),
            stats: stats.clone(),
        };
        let mut queues = Vec::new();
        for target in targets {
            let (sender, receiver) = mpsc::sync_channel(QUEUE);
            let url = target.url.clone();
            let delivery = Delivery {
                target,
                settings: DeliverySettings {
                    attempts: settings.attempts.max(1),
                    ..settings.clone()
                },
                dead_letter: dead_letter.clone(),
                stats: stats.clone(),
                down: false,
                // Dead letters of an earlier run are sent again at once.
                next_retry: Instant::now(),
            };
            std::thread::Builder::new()
                .name("maskgate-webhook".into())
                .spawn(move || delivery.run(receiver))?;
            queues.push((sender, url));
        }
        Ok(Webhooks {
            queues,
            dead_letter,
            stats,
        })
    }

    pub fn stats(&self) -> &Arc<WebhookStats> {
        &self.stats
    }

    /// Queues an alert's JSON for every webhook.
    pub fn send(&self, body: Vec<u8>) {
        for (queue, url) in &self.queues {
            match queue.try_send(body.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(body)) | Err(TrySendError::Disconnected(body)) => {
                    self.dead_letter
                        .append(url, "the webhook's queue is full", &body);
                }
            }
        }
    }
}

impl Delivery {
    fn run(mut self, receiver: Receiver<Vec<u8>>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "a webhook cannot start; its alerts go to the dead-letter file");
                for body in receiver {
                    self.dead_letter
                        .append(&self.target.url, "webhooks did not start", &body);
                }
                return;
            }
        };
        loop {
            if Instant::now() >= self.next_retry {
                self.retry_dead_letters(&runtime);
                self.next_retry = Instant::now() + self.settings.retry_every;
            }
            let wait = self.next_retry.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(wait) {
                Ok(body) if self.down => {
                    self.dead_letter
                        .append(&self.target.url, "the receiver is down", &body);
                }
                Ok(body) => self.deliver(&runtime, &body),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn deliver(&mut self, runtime: &tokio::runtime::Runtime, body: &[u8]) {
        let mut backoff = FIRST_BACKOFF;
        let mut last_error = String::new();
        for attempt in 1..=self.settings.attempts {
            match runtime.block_on(post(&self.target, body, self.settings.timeout)) {
                Ok(()) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) => last_error = e,
            }
            if attempt < self.settings.attempts {
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        tracing::warn!(url = %self.target.url, error = %last_error, "an alert could not be delivered; it is in the dead-letter file, and the receiver's next alerts go there until a retry gets through");
        self.down = true;
        self.next_retry = Instant::now() + self.settings.retry_every;
        self.dead_letter.append(&self.target.url, &last_error, body);
    }

    /// Sends this receiver's dead letters again, oldest first, one attempt each,
    /// until one fails; those delivered leave the file.
    fn retry_dead_letters(&mut self, runtime: &tokio::runtime::Runtime) {
        let url = self.target.url.clone();
        let (target, timeout) = (&self.target, self.settings.timeout);
        let result = self.dead_letter.retry(&url, |alert| {
            runtime.block_on(post(target, alert, timeout)).is_ok()
        });
        match result {
            Ok((delivered, failed)) => {
                self.stats
                    .redelivered
                    .fetch_add(delivered, Ordering::Relaxed);
                if delivered > 0 {
                    tracing::info!(url = %url, delivered, "dead-lettered alerts were delivered");
                }
                // Back up once a retry went through, or nothing was waiting and
                // the receiver never failed since.
                self.down = failed;
            }
            Err(e) => {
                tracing::error!(path = %self.dead_letter.path.display(), error = %e, "the dead-letter file cannot be read back");
            }
        }
    }
}

impl DeadLetter {
    /// Appends `{"at", "url", "error", "alert"}` (0600).
    fn append(&self, url: &str, error: &str, body: &[u8]) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if size >= MAX_DEAD_LETTER_BYTES {
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!(path = %self.path.display(), "the dead-letter file is full; an undeliverable alert is only in the audit trail");
            return;
        }
        let alert: serde_json::Value =
            serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
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
            .open(&self.path)
            .and_then(|mut f| f.write_all(&line));
        match written {
            // Counted once it is in the file, so whoever reads the count finds it.
            Ok(()) => self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "an undeliverable alert could not be written to the dead-letter file; it is only in the audit trail");
                self.stats.lost.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// Offers the entries for `url` to `send`, in order, until it fails; rewrites
    /// the file without those sent. Returns (sent, whether one failed). The file is
    /// locked only to read it and to rewrite it, never while `send` waits on a
    /// receiver: other receivers' alerts (and the detection thread, when a queue is
    /// full) are never held up by this one's retry.
    fn retry(
        &self,
        url: &str,
        mut send: impl FnMut(&[u8]) -> bool,
    ) -> std::io::Result<(u64, bool)> {
        let text = match self.read() {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, false)),
            Err(e) => return Err(e),
        };
        let mut sent: Vec<&[u8]> = Vec::new();
        let mut failed = false;
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let entry: Option<serde_json::Value> = serde_json::from_slice(line).ok();
            let alert = entry
                .as_ref()
                .filter(|e| e["url"] == url)
                .and_then(|e| serde_json::to_vec(&e["alert"]).ok());
            let Some(alert) = alert else { continue };
            if !send(&alert) {
                failed = true;
                break;
            }
            sent.push(line);
        }
        let sent_count = sent.len() as u64;
        if !sent.is_empty() {
            // Lines appended (or removed by another receiver's retry) meanwhile are
            // kept as they are now: only the lines sent leave the file.
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            let now = std::fs::read(&self.path)?;
            let mut kept = Vec::with_capacity(now.len());
            for line in now.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                match sent.iter().position(|s| *s == line) {
                    Some(i) => {
                        sent.swap_remove(i);
                    }
                    None => {
                        kept.extend_from_slice(line);
                        kept.push(b'\n');
                    }
                }
            }
            replace(&self.path, &kept)?;
        }
        Ok((sent_count, failed))
    }

    fn read(&self) -> std::io::Result<Vec<u8>> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        std::fs::read(&self.path)
    }
}

/// Writes `path` anew through a temporary file and a rename.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
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

    fn settings(timeout: Duration, attempts: u32, retry_every: Duration) -> DeliverySettings {
        DeliverySettings {
            timeout,
            attempts,
            retry_every,
        }
    }

    /// A receiver answering 200 to every POST; counts the bodies it got.
    fn good_receiver(listener: std::net::TcpListener) -> Arc<Mutex<Vec<String>>> {
        use std::io::{BufRead, BufReader, Read};
        let got: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(50) {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
            }
        });
        got
    }

    /// Waits for `done` up to 20 s: a bound for a loaded machine, not a timing.
    fn wait_until(what: &str, done: impl Fn() -> bool) {
        for _ in 0..800 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("{what}");
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
            settings(Duration::from_secs(1), 2, RETRY_EVERY),
            dir.path().join("dead.jsonl"),
        )
        .unwrap();
        let stats = hooks.stats().clone();
        hooks.send(br#"{"id":"canary-1"}"#.to_vec());
        wait_until("dead-lettered", || {
            stats.dead_lettered.load(Ordering::Relaxed) == 1
        });
        let text = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap();
        assert!(text.contains("\"id\":\"canary-1\""), "{text}");
        assert_eq!(stats.retried.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_receiver_that_never_answers_does_not_hold_up_another() {
        let dir = tempfile::tempdir().unwrap();
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        std::thread::spawn(move || {
            // Accepts and never answers.
            let held: Vec<_> = silent.incoming().take(20).collect();
            std::thread::sleep(Duration::from_secs(60));
            drop(held);
        });
        let good = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let good_port = good.local_addr().unwrap().port();
        let got = good_receiver(good);
        let targets = [silent_port, good_port]
            .iter()
            .map(|p| Target::parse(&format!("http://127.0.0.1:{p}/")).unwrap())
            .collect();
        let hooks = Webhooks::start(
            targets,
            settings(Duration::from_secs(30), 3, RETRY_EVERY),
            dir.path().join("dead.jsonl"),
        )
        .unwrap();
        for i in 0..3 {
            hooks.send(format!(r#"{{"id":"canary-{i}"}}"#).into_bytes());
        }
        // The silent receiver holds its first alert for minutes; the good one
        // has all three long before.
        wait_until("the good receiver got every alert", || {
            got.lock().unwrap().len() == 3
        });
    }

    #[test]
    fn a_retry_waiting_on_its_receiver_does_not_lock_the_dead_letter_file() {
        let dir = tempfile::tempdir().unwrap();
        let dead = DeadLetter {
            path: dir.path().join("dead.jsonl"),
            lock: Arc::default(),
            stats: Arc::default(),
        };
        dead.append("http://a/", "down", br#"{"id":"canary-1"}"#);
        let (started, wait_started) = mpsc::channel();
        let (release, wait_release) = mpsc::channel::<()>();
        let retrying = {
            let dead = dead.clone();
            std::thread::spawn(move || {
                dead.retry("http://a/", |_| {
                    started.send(()).unwrap();
                    wait_release.recv().unwrap();
                    true
                })
                .unwrap()
            })
        };
        wait_started.recv().unwrap();
        // Another receiver's alert is dead-lettered while the retry waits.
        let (appended, wait_appended) = mpsc::channel();
        let other = dead.clone();
        std::thread::spawn(move || {
            other.append("http://b/", "down", br#"{"id":"canary-2"}"#);
            appended.send(()).unwrap();
        });
        let not_held_up = wait_appended.recv_timeout(Duration::from_secs(10)).is_ok();
        release.send(()).unwrap();
        assert_eq!(retrying.join().unwrap(), (1, false));
        assert!(not_held_up, "the append waited for the retry's receiver");
        let text = std::fs::read_to_string(&dead.path).unwrap();
        assert!(
            !text.contains("canary-1") && text.contains("canary-2"),
            "{text}"
        );
    }

    #[test]
    fn dead_letters_are_sent_again_once_the_receiver_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("dead.jsonl");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let target = Target::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let hooks = Webhooks::start(
            vec![target],
            settings(Duration::from_secs(1), 1, Duration::from_millis(300)),
            dead.clone(),
        )
        .unwrap();
        let stats = hooks.stats().clone();
        hooks.send(br#"{"id":"canary-1"}"#.to_vec());
        wait_until("dead-lettered", || {
            stats.dead_lettered.load(Ordering::Relaxed) == 1
        });
        // Down: the next alert goes to the file without attempts.
        hooks.send(br#"{"id":"canary-2"}"#.to_vec());
        wait_until("dead-lettered at once", || {
            stats.dead_lettered.load(Ordering::Relaxed) == 2
        });
        assert_eq!(stats.delivered.load(Ordering::Relaxed), 0);
        let got = good_receiver(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
        wait_until("the dead letters were sent again", || {
            got.lock().unwrap().len() == 2
        });
        let got = got.lock().unwrap().clone();
        assert!(
            got[0].contains("canary-1") && got[1].contains("canary-2"),
            "{got:?}"
        );
        wait_until("the file is emptied", || {
            std::fs::read_to_string(&dead).is_ok_and(|t| t.trim().is_empty())
        });
        assert_eq!(stats.redelivered.load(Ordering::Relaxed), 2);
    }
}
