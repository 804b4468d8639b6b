//! Admin HTTP endpoint: `/health` for liveness probes and `/metrics` for
//! Prometheus. Kept on its own listener so scrapes never compete with the
//! PostgreSQL port.

use std::future::IntoFuture;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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

/// Health as reported by `/health`. Components that can degrade the proxy
/// (e.g. a failed policy reload) record their last error here; while one is
/// set, `/health` answers 503 with the message.
#[derive(Debug, Default)]
pub struct HealthState {
    error: RwLock<Option<String>>,
}

impl HealthState {
    /// A healthy state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the proxy unhealthy. The message is served verbatim over HTTP,
    /// so it must not carry secrets or personal data.
    pub fn set_error(&self, message: impl Into<String>) {
        *self.error.write().unwrap_or_else(|e| e.into_inner()) = Some(message.into());
    }

    /// Marks the proxy healthy again.
    pub fn clear_error(&self) {
        *self.error.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The current error, if unhealthy.
    pub fn error(&self) -> Option<String> {
        self.error.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the admin handlers read; cheap to clone.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// Metrics rendered by `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Health reported by `/health`.
    pub health: Arc<HealthState>,
    /// The audit trail's state, when there is a trail.
    pub audit: Option<Arc<crate::audit::TrailState>>,
}

impl AdminState {
    /// Bundles the shared metrics and health handles.
    pub fn new(metrics: Arc<Metrics>, health: Arc<HealthState>) -> Self {
        AdminState {
            metrics,
            health,
            audit: None,
        }
    }

    /// Reports the audit trail too: `/health` fails while it cannot be written.
    pub fn with_audit(mut self, audit: Option<Arc<crate::audit::TrailState>>) -> Self {
        self.audit = audit;
        self
    }
}

/// The admin routes; unknown paths get axum's default 404.
fn router(state: AdminState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn health(State(state): State<AdminState>) -> Response {
    const TEXT: &str = "text/plain; charset=utf-8";
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
    if let Some(audit) = &state.audit {
        append_audit_metrics(&mut text, audit);
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// The trail's counters, in the same OpenMetrics text (before its `# EOF`). They
/// live in the trail's atomics, which the writer thread updates without the registry.
fn append_audit_metrics(text: &mut String, audit: &crate::audit::TrailState) {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering::Relaxed;
    let had_eof = text.ends_with("# EOF\n");
    if had_eof {
        text.truncate(text.len() - "# EOF\n".len());
    }
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
    if had_eof {
        text.push_str("# EOF\n");
    }
}

/// Serves `/health` and `/metrics` on `listener` until `shutdown` is
/// cancelled, then lets in-flight requests finish for a short grace period.
pub async fn serve_admin(
    listener: TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) -> Result<(), AdminError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin endpoint listening");
    }
    serve_router(listener, router(state), shutdown, SHUTDOWN_GRACE).await
}

async fn serve_router(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> Result<(), AdminError> {
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result?,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("admin endpoint: requests still open after the shutdown grace, dropping them");
        }
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
        let task = tokio::spawn(serve_admin(listener, state.clone(), shutdown.clone()));
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
            .set_error("policy reload failed: line 3");
        let reply = request(server.addr, "GET", "/health").await;
        assert_eq!(reply.status, 503);
        assert!(
            reply.body.contains("policy reload failed: line 3"),
            "{}",
            reply.body
        );

        server.state.health.clear_error();
        assert_eq!(request(server.addr, "GET", "/health").await.status, 200);
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
}
