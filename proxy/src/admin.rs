//! Admin HTTP endpoint: `/health` for liveness probes and `/metrics` for
//! Prometheus. Kept on its own listener so scrapes never compete with the
//! PostgreSQL port.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::AdminLimits;
use crate::metrics::{Metrics, CONTENT_TYPE};

/// How long in-flight admin requests may finish after shutdown is requested;
/// a stuck scraper must not hold up the process exit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Failure of the admin endpoint itself.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The HTTP server stopped with an I/O error.
    #[error("admin endpoint failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Health as reported by `/health`. Components that can degrade the proxy (a
/// refused policy reload, an unresponsive database) record their problem here
/// under their own name; while any is set, or while the proxy drains, `/health`
/// answers 503 with the messages.
#[derive(Debug, Default)]
pub struct HealthState {
    problems: RwLock<BTreeMap<&'static str, String>>,
    draining: AtomicBool,
}

impl HealthState {
    /// A healthy state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `component`'s problem. The message is served verbatim over HTTP,
    /// so it must not carry secrets or personal data.
    pub fn set(&self, component: &'static str, message: impl Into<String>) {
        self.problems
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(component, message.into());
    }

    /// `component` is fine again.
    pub fn clear(&self, component: &'static str) {
        self.problems
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(component);
    }

    /// Whether `component` reports a problem now.
    pub fn has(&self, component: &'static str) -> bool {
        self.problems
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(component)
    }

    /// The proxy drains for a shutdown: load balancers must stop sending clients.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Every current problem, joined; `None` when there is none.
    pub fn error(&self) -> Option<String> {
        let problems = self.problems.read().unwrap_or_else(|e| e.into_inner());
        (!problems.is_empty()).then(|| problems.values().cloned().collect::<Vec<_>>().join("; "))
    }
}

/// Gauges read when `/metrics` is scraped, from state their owners keep anyway
/// (budgets in use, table sizes), in the OpenMetrics text format.
pub trait LiveMetrics: Send + Sync {
    fn append(&self, text: &mut String);
}

/// What the admin handlers read; cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    /// Metrics rendered by `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Health reported by `/health`.
    pub health: Arc<HealthState>,
    /// The audit trail's state, when there is a trail.
    pub audit: Option<Arc<crate::audit::TrailState>>,
    /// Gauges read at each scrape.
    pub live: Option<Arc<dyn LiveMetrics>>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl AdminState {
    /// Bundles the shared metrics and health handles.
    pub fn new(metrics: Arc<Metrics>, health: Arc<HealthState>) -> Self {
        AdminState {
            metrics,
            health,
            audit: None,
            live: None,
        }
    }

    /// Also serves the gauges `live` appends at each scrape.
    pub fn with_live(mut self, live: Arc<dyn LiveMetrics>) -> Self {
        self.live = Some(live);
        self
    }

    /// Reports the audit trail too: `/health` fails while it cannot be written.
    pub fn with_audit(mut self, audit: Option<Arc<crate::audit::TrailState>>) -> Self {
        self.audit = audit;
        self
    }
}

/// The largest request body read (the routes take none).
const MAX_BODY: usize = 16 << 10;

/// The admin routes; unknown paths get axum's default 404. A request's body must
/// arrive within `body_timeout`.
fn router(state: AdminState, body_timeout: Duration) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state)
        .layer(middleware::from_fn_with_state(body_timeout, body_within))
}

/// Reads the whole body within the timeout before the handler runs, so a slow
/// body cannot hold a connection open; answers 408 or 413 and closes otherwise.
async fn body_within(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let refused = |status: StatusCode, text: &'static str| {
        (
            status,
            [(header::CONNECTION, "close"), (header::CONTENT_TYPE, TEXT)],
            text,
        )
            .into_response()
    };
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => refused(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n"),
        Err(_) => refused(StatusCode::REQUEST_TIMEOUT, "request body timed out\n"),
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn health(State(state): State<AdminState>) -> Response {
    if state.health.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, TEXT)],
            "draining: maskgate is shutting down and accepts no new sessions\n",
        )
            .into_response();
    }
    let audit_down = state.audit.as_ref().is_some_and(|a| !a.is_healthy());
    let error = state.health.error().or_else(|| {
        audit_down.then(|| {
            "the audit trail cannot be written; statements are refused until it can".to_owned()
        })
    });
    match error {
        None => (StatusCode::OK, [(header::CONTENT_TYPE, TEXT)], "ok\n").into_response(),
        Some(message) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, TEXT)],
            format!("unhealthy: {message}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let mut text = state.metrics.encode_text();
    let had_eof = text.ends_with("# EOF\n");
    if had_eof {
        text.truncate(text.len() - "# EOF\n".len());
    }
    if let Some(audit) = &state.audit {
        append_audit_metrics(&mut text, audit);
    }
    if let Some(live) = &state.live {
        live.append(&mut text);
    }
    if had_eof {
        text.push_str("# EOF\n");
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// Appends one gauge in the text format.
pub fn append_gauge(text: &mut String, name: &str, help: &str, value: f64) {
    use std::fmt::Write as _;
    let _ = write!(
        text,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
    );
}

/// The trail's counters, in the same OpenMetrics text. They live in the trail's
/// atomics, which the writer thread updates without the registry.
fn append_audit_metrics(text: &mut String, audit: &crate::audit::TrailState) {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering::Relaxed;
    let counters = [
        (
            "maskgate_audit_records_written",
            "Audit records written to the trail.",
            &audit.written,
        ),
        (
            "maskgate_audit_records_refused",
            "Audit records the trail could not take (their statements were refused).",
            &audit.refused,
        ),
        (
            "maskgate_audit_records_lost",
            "Audit records queued but lost with a failed write.",
            &audit.lost,
        ),
        (
            "maskgate_audit_checkpoints",
            "Signed checkpoints written.",
            &audit.checkpoints,
        ),
        (
            "maskgate_detection_records_dropped",
            "Records detection's queue could not take: detection did not see them.",
            &audit.detection_dropped,
        ),
        (
            "maskgate_audit_segments_removed",
            "Audit segments removed by retention, after export.",
            &audit.segments_removed,
        ),
    ];
    for (name, help, value) in counters {
        let _ = write!(
            text,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name}_total {}\n",
            value.load(Relaxed)
        );
    }
    let _ = write!(
        text,
        "# HELP maskgate_audit_writable Whether the audit trail can be written.\n\
         # TYPE maskgate_audit_writable gauge\nmaskgate_audit_writable {}\n",
        u8::from(audit.is_healthy())
    );
    let _ = write!(
        text,
        "# HELP maskgate_audit_segments_overdue Audit segments past retention that are kept (not exported, changed since export, or after one that is kept).\n\
         # TYPE maskgate_audit_segments_overdue gauge\nmaskgate_audit_segments_overdue {}\n",
        audit.segments_overdue.load(Relaxed)
    );
}

/// Serves `/health` and `/metrics` on `listener` until `shutdown` is
/// cancelled, then lets in-flight requests finish for a short grace period.
pub async fn serve_admin(
    listener: TcpListener,
    state: AdminState,
    limits: AdminLimits,
    shutdown: CancellationToken,
) -> Result<(), AdminError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin endpoint listening");
    }
    let app = router(state, limits.body_timeout);
    serve_router(listener, app, limits, shutdown, SHUTDOWN_GRACE).await
}

/// The accept loop: at most `max_connections` connections are served at once
/// (more are closed as soon as they are accepted, so they hold no descriptor),
/// and each must send its request headers within `header_timeout`, which also
/// closes idle keep-alive connections.
async fn serve_router(
    listener: TcpListener,
    app: Router,
    limits: AdminLimits,
    shutdown: CancellationToken,
    grace: Duration,
) -> Result<(), AdminError> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_BODY.max(8192));
    let mut backoff = crate::throttle::AcceptBackoff::new("admin endpoint");
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => {
                backoff.succeeded();
                tcp
            }
            Err(e) => {
                backoff.failed(&e).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(tcp);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let conn = http.serve_connection(TokioIo::new(tcp), service);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "admin endpoint: requests still open after the shutdown grace, dropping them"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::task::JoinHandle;

    struct Server {
        addr: SocketAddr,
        state: AdminState,
        shutdown: CancellationToken,
        task: JoinHandle<Result<(), AdminError>>,
    }

    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AdminState::new(Arc::new(Metrics::new()), Arc::new(HealthState::new()));
        let shutdown = CancellationToken::new();
        let limits = AdminLimits {
            max_connections: 4,
            header_timeout: Duration::from_millis(500),
            body_timeout: Duration::from_millis(500),
        };
        let task = tokio::spawn(serve_admin(
            listener,
            state.clone(),
            limits,
            shutdown.clone(),
        ));
        Server {
            addr,
            state,
            shutdown,
            task,
        }
    }

    impl Server {
        async fn stop(self) {
            self.shutdown.cancel();
            tokio::time::timeout(Duration::from_secs(3), self.task)
                .await
                .expect("admin server did not stop")
                .unwrap()
                .unwrap();
        }
    }

    struct Reply {
        status: u16,
        head: String,
        body: String,
    }

    /// One HTTP/1.1 request over a raw socket, read until the server closes.
    async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let req =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
            .await
            .expect("response timed out")
            .unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("no header end");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("no status code");
        Reply {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }

    #[tokio::test]
    async fn health_reports_ok_then_error() {
        let server = start().await;
        let reply = request(server.addr, "GET", "/health").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body.trim(), "ok");

        server
            .state
            .health
            .set("policy", "policy reload failed: line 3");
        let reply = request(server.addr, "GET", "/health").await;
        assert_eq!(reply.status, 503);
        assert!(
            reply.body.contains("policy reload failed: line 3"),
            "{}",
            reply.body
        );

        server.state.health.clear("policy");
        assert_eq!(request(server.addr, "GET", "/health").await.status, 200);
        server.state.health.set_draining();
        let reply = request(server.addr, "GET", "/health").await;
        assert_eq!(reply.status, 503);
        assert!(reply.body.starts_with("draining"), "{}", reply.body);
        server.stop().await;
    }

    #[tokio::test]
    async fn metrics_are_served_as_prometheus_text() {
        let server = start().await;
        server.state.metrics.client_connected();
        server.state.metrics.statement();
        server.state.metrics.error(b"57014");
        let reply = request(server.addr, "GET", "/metrics").await;
        assert_eq!(reply.status, 200);
        assert!(
            reply
                .head
                .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
            "{}",
            reply.head
        );
        for line in [
            "maskgate_client_connections 1",
            "maskgate_client_connections_total 1",
            "maskgate_statements_total 1",
            "maskgate_errors_total{sqlstate_class=\"57\"} 1",
        ] {
            assert!(
                reply.body.lines().any(|l| l == line),
                "{line}:\n{}",
                reply.body
            );
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn unknown_path_is_404() {
        let server = start().await;
        assert_eq!(request(server.addr, "GET", "/nope").await.status, 404);
        assert_eq!(request(server.addr, "GET", "/").await.status, 404);
        server.stop().await;
    }

    #[tokio::test]
    async fn shutdown_is_not_held_up_by_an_idle_connection() {
        let server = start().await;
        let _idle = TcpStream::connect(server.addr).await.unwrap();
        assert_eq!(request(server.addr, "GET", "/health").await.status, 200);
        server.stop().await;
    }

    #[tokio::test]
    async fn shutdown_gives_up_after_the_grace_period() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let stuck = Router::new().route("/", get(std::future::pending::<&'static str>));
        let task = tokio::spawn(serve_router(
            listener,
            stuck,
            AdminLimits::default(),
            shutdown.clone(),
            Duration::from_millis(200),
        ));
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .expect("grace period not enforced")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn slow_headers_and_idle_connections_are_closed() {
        let server = start().await;
        let mut slow = TcpStream::connect(server.addr).await.unwrap();
        slow.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        let mut idle = TcpStream::connect(server.addr).await.unwrap();
        for stream in [&mut slow, &mut idle] {
            let mut rest = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
                .await
                .expect("closed by the header timeout")
                .ok();
        }
        assert_eq!(request(server.addr, "GET", "/health").await.status, 200);
        server.stop().await;
    }

    #[tokio::test]
    async fn a_slow_body_is_answered_408() {
        let server = start().await;
        let mut client = TcpStream::connect(server.addr).await.unwrap();
        client
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
            .await
            .unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut raw))
            .await
            .expect("answered in time")
            .unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        server.stop().await;
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_at_once() {
        let server = start().await;
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(TcpStream::connect(server.addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut extra = TcpStream::connect(server.addr).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_millis(400), extra.read(&mut buf))
            .await
            .expect("closed before the header timeout")
            .unwrap_or(0);
        assert_eq!(n, 0);
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(request(server.addr, "GET", "/health").await.status, 200);
        server.stop().await;
    }
}
