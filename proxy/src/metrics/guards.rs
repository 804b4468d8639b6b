//! Counters of the guards that keep clients and slips from taking the proxy down:
//! failed accepts, upstream connections recycled or not ready in time, session
//! caps reached.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::kinds::LimitLabel;

#[derive(Debug)]
pub struct Guards {
    accept_errors: Counter,
    upstream_recycled: Counter,
    checkout_timeouts: Counter,
    prepared_limit: Counter,
    prepared_bytes_limit: Counter,
    portal_limit: Counter,
    messages_refused: Family<LimitLabel, Counter>,
}

impl Guards {
    pub(super) fn register(registry: &mut Registry) -> Guards {
        let accept_errors = Counter::default();
        registry.register(
            "accept_errors",
            "Failed accepts on the client or admin listener (out of file descriptors and the like)",
            accept_errors.clone(),
        );
        let upstream_recycled = Counter::default();
        registry.register(
            "upstream_recycled",
            "Upstream connections closed instead of pooled because their backend grew \
             (too many prepared statements held at once)",
            upstream_recycled.clone(),
        );
        let checkout_timeouts = Counter::default();
        registry.register(
            "upstream_checkout_timeouts",
            "Sessions refused because their upstream connection was not ready within checkout_timeout",
            checkout_timeouts.clone(),
        );
        let limits = Family::<LimitLabel, Counter>::default();
        let prepared_limit = limits.get_or_create_owned(&LimitLabel("prepared_statements"));
        let prepared_bytes_limit =
            limits.get_or_create_owned(&LimitLabel("prepared_statement_bytes"));
        let portal_limit = limits.get_or_create_owned(&LimitLabel("portals"));
        registry.register(
            "session_limit_reached",
            "Statements refused because the session holds its maximum of prepared statements, of their bytes, or of portals",
            limits,
        );
        let messages_refused = Family::<LimitLabel, Counter>::default();
        registry.register(
            "client_messages_refused",
            "Client messages refused unread: a restricted statement longer than \
             max_statement_size by its header (statement_size, answered 54000, the \
             session goes on), no room in message_buffer_bytes or not received whole \
             within message_timeout (both end the session)",
            messages_refused.clone(),
        );
        Guards {
            accept_errors,
            messages_refused,
            upstream_recycled,
            checkout_timeouts,
            prepared_limit,
            prepared_bytes_limit,
            portal_limit,
        }
    }

    pub fn accept_error(&self) {
        self.accept_errors.inc();
    }

    pub fn upstream_recycled(&self) {
        self.upstream_recycled.inc();
    }

    pub fn checkout_timeout(&self) {
        self.checkout_timeouts.inc();
    }

    /// A client message was refused unread: `why` is `statement_size` (the
    /// session goes on), `message_buffer_bytes` or `message_timeout` (it ends).
    pub fn message_refused(&self, why: &'static str) {
        self.messages_refused.get_or_create(&LimitLabel(why)).inc();
    }

    /// A session reached a cap: `limit` is `prepared_statements`,
    /// `prepared_statement_bytes` or `portals`.
    pub fn session_limit(&self, limit: &str) {
        let counter = match limit {
            "portals" => &self.portal_limit,
            "prepared_statement_bytes" => &self.prepared_bytes_limit,
            _ => &self.prepared_limit,
        };
        counter.inc();
    }
}
