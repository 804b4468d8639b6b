//! A small pool of idle, authenticated upstream connections.
//!
//! Opening a PostgreSQL connection costs a process fork and a SCRAM exchange;
//! reusing one costs a `DISCARD ALL`. A connection returns to the pool only
//! when its session ended cleanly between transactions, and only after the
//! reset succeeded within `reset_timeout`, so no state of one session reaches the
//! next and a database that stopped answering holds no session for long. A
//! connection whose sessions held many prepared statements at once is closed
//! instead: its backend keeps the memory they took.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Connector, UpstreamConn, UpstreamError};
use crate::metrics::Metrics;

/// Idle upstream connections ready for the next session.
pub struct Pool {
    connector: Connector,
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    reset_timeout: Duration,
    recycle_after_prepared: usize,
    metrics: Arc<Metrics>,
}

struct Idle {
    conn: UpstreamConn,
    since: Instant,
}

impl Pool {
    pub fn new(connector: Connector, metrics: Arc<Metrics>) -> Self {
        let config = connector.config();
        Self {
            max_idle: config.pool_size,
            idle_timeout: config.pool_idle_timeout,
            reset_timeout: config.reset_timeout,
            recycle_after_prepared: config.recycle_after_prepared,
            connector,
            idle: Mutex::new(Vec::new()),
            metrics,
        }
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// A live connection by `deadline`: the most recently used idle one that
    /// answers a round trip, or a new one. An idle connection proves it is alive
    /// before it is handed out: a frozen server would otherwise take the session in
    /// at once and hang its first statement. [`UpstreamError::NotReady`] when the
    /// server did not answer by `deadline`.
    pub async fn get(&self, deadline: tokio::time::Instant) -> Result<UpstreamConn, UpstreamError> {
        let after = self.connector.config().checkout_timeout;
        loop {
            let candidate = {
                let mut idle = self.idle.lock().expect("pool lock");
                let c = idle.pop();
                self.metrics.upstream_idle_set(idle.len());
                c
            };
            let Some(Idle { mut conn, since }) = candidate else {
                break;
            };
            if since.elapsed() >= self.idle_timeout || conn.is_closed_or_dirty() {
                self.discard(conn);
                continue;
            }
            match tokio::time::timeout_at(deadline, conn.ping()).await {
                Ok(Ok(())) => return Ok(conn),
                Ok(Err(_)) => self.discard(conn),
                Err(_) => {
                    self.discard(conn);
                    return Err(UpstreamError::NotReady { after });
                }
            }
        }
        let connected = tokio::time::timeout_at(deadline, self.connector.connect())
            .await
            .unwrap_or(Err(UpstreamError::NotReady { after }));
        match connected {
            Ok(conn) => {
                self.metrics.upstream_opened();
                Ok(conn)
            }
            Err(e) => {
                self.metrics.upstream_connect_error();
                Err(e)
            }
        }
    }

    /// Resets a connection whose session ended between transactions and keeps
    /// it for reuse; a connection that cannot be reset is closed.
    pub async fn put(&self, mut conn: UpstreamConn) {
        if self.max_idle == 0 || !conn.read_buf.is_empty() {
            self.discard(conn);
            return;
        }
        if conn.prepared_high_water > self.recycle_after_prepared {
            self.metrics.guards().upstream_recycled();
            self.discard(conn);
            return;
        }
        let reset = tokio::time::timeout(self.reset_timeout, conn.run_internal("DISCARD ALL"));
        match reset.await {
            Ok(Ok(b'I')) => {}
            _ => {
                self.discard(conn);
                return;
            }
        }
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < self.max_idle {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
            self.metrics.upstream_idle_set(idle.len());
        } else {
            drop(idle);
            self.discard(conn);
        }
    }

    /// Closes a connection that will not be reused.
    pub fn discard(&self, conn: UpstreamConn) {
        drop(conn);
        self.metrics.upstream_closed();
    }

    /// Closes connections idle longer than the idle timeout, until `shutdown`.
    pub async fn reap_idle(self: Arc<Self>, shutdown: CancellationToken) {
        let period = (self.idle_timeout / 2).max(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(period) => {}
            }
            let expired: Vec<Idle> = {
                let mut idle = self.idle.lock().expect("pool lock");
                let (keep, expired) = std::mem::take(&mut *idle)
                    .into_iter()
                    .partition(|i| i.since.elapsed() < self.idle_timeout);
                *idle = keep;
                self.metrics.upstream_idle_set(idle.len());
                expired
            };
            for i in expired {
                self.discard(i.conn);
            }
        }
        self.close_all();
    }

    /// Closes every idle connection (shutdown).
    pub fn close_all(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().expect("pool lock"));
        self.metrics.upstream_idle_set(0);
        for i in idle {
            self.discard(i.conn);
        }
    }
}
