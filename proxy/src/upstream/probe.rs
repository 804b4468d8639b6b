//! Whether the database answers, for `/health`: a connection of its own runs
//! `SELECT 1` every `interval`; no answer within `timeout` (a frozen or overloaded
//! server, a cut network) or no connection at all makes `/health` say so until an
//! answer comes again. Only changes are logged.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Connector, UpstreamConn, UpstreamError};
use crate::admin::HealthState;

/// The `/health` component this probe reports under.
pub const COMPONENT: &str = "upstream";

/// Probes until `stop`.
pub async fn watch(
    connector: Connector,
    health: Arc<HealthState>,
    (interval, timeout): (Duration, Duration),
    stop: CancellationToken,
) {
    let mut conn: Option<UpstreamConn> = None;
    let mut down = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let answered = tokio::time::timeout(timeout, probe(&connector, &mut conn)).await;
        let problem = match answered {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("the database server cannot be used: {e}")),
            Err(_) => Some(format!(
                "the database server did not answer within {}",
                humantime::format_duration(timeout)
            )),
        };
        match problem {
            None => {
                if std::mem::replace(&mut down, false) {
                    tracing::info!("the database server answers again");
                }
                health.clear(COMPONENT);
            }
            Some(problem) => {
                // A connection that did not answer may be stuck mid-message.
                conn = None;
                if !std::mem::replace(&mut down, true) {
                    tracing::warn!("{problem}");
                }
                health.set(COMPONENT, problem);
            }
        }
    }
}

async fn probe(
    connector: &Connector,
    conn: &mut Option<UpstreamConn>,
) -> Result<(), UpstreamError> {
    if conn.is_none() {
        *conn = Some(connector.connect().await?);
    }
    let live = conn.as_mut().expect("just connected");
    match live.run_internal("SELECT 1").await {
        Ok(_) => Ok(()),
        Err(e) => {
            *conn = None;
            Err(e)
        }
    }
}
