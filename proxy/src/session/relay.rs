//! The relay: moves messages between a client and its upstream connection.
//!
//! Both directions are driven from one poll function that owns both streams,
//! so there is no task, channel or lock per direction. Complete messages pass
//! through [`Intercept`] and are forwarded as the bytes they arrived in.
//! Each direction stops reading once its outgoing buffer holds `HIGH_WATER`
//! bytes, so a slow reader slows the writer (back-pressure) and no result is
//! ever held whole in memory.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep};
use tokio_util::io::poll_read_buf;
use tokio_util::sync::CancellationToken;

use super::account_guard::AccountGuard;
use super::intercept::{ClientVerdict, Intercept, ServerVerdict};
use super::message_budget::{MessageBudget, MessageHold, SMALL_MESSAGE};
use super::message_types;
use super::rules::SessionRules;
use crate::config::SessionLimits;
use crate::error::{ClientError, SqlState};
use crate::metrics::Metrics;
use crate::protocol::frame::{self, FrameError};
use crate::protocol::{backend_tag, frontend_tag};
use crate::stream::Stream;
use crate::upstream::{self, UpstreamConn};

/// Stop reading from one side while this much waits to be written to the other.
const HIGH_WATER: usize = 64 * 1024;
/// Free space kept in a read buffer before each read.
const READ_CHUNK: usize = 8 * 1024;
/// PostgreSQL's own limit on a message it sends.
const MAX_SERVER_MESSAGE: usize = 1 << 30;
/// How long a session the proxy ends waits for the answers it owes the client for
/// the messages before the one that ended it.
const OWED_ANSWERS_WAIT: Duration = Duration::from_secs(2);
/// A Flush: the server sends what it holds back until a Sync.
const FLUSH: [u8; 5] = [b'H', 0, 0, 0, 4];

/// Bytes a Parse may carry besides its statement text: the statement's name and
/// up to 65,535 parameter types.
const PARSE_FRAMING: usize = 64 * 1024 + 4 * u16::MAX as usize + 4;

/// How the session's client messages are bounded.
pub struct ClientLimits<'a> {
    /// The longest message the client may send.
    pub max_message: usize,
    /// What the session may hold upstream.
    pub session: SessionLimits,
    /// The longest statement analyzed, for a restricted account.
    pub statement: Option<usize>,
    /// Large messages buffered at once, all sessions together.
    pub budget: &'a MessageBudget,
    /// A message, once begun, must arrive whole within this time.
    pub message_timeout: Duration,
}

/// How a relay ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// The client sent Terminate.
    ClientTerminated,
    /// The client closed its connection (or it broke).
    ClientGone,
    /// The upstream connection closed; `fatal_sent` tells whether the server
    /// explained why (a FATAL error that was forwarded to the client).
    UpstreamGone { fatal_sent: bool },
    /// The proxy ends the session and tells the client why.
    Closed(ClientError),
}

/// Signals from outside the session.
pub struct Controls<'a> {
    /// Set when the proxy is draining: the session ends when next idle.
    pub draining: &'a CancellationToken,
    /// Set when the drain grace period is over: the session ends now.
    pub force: &'a CancellationToken,
    pub idle_timeout: Option<Duration>,
}

pub struct Relay<'a> {
    client: &'a mut Stream,
    upstream: &'a mut UpstreamConn,
    client_in: BytesMut,
    client_out: BytesMut,
    upstream_out: BytesMut,
    client_flush: bool,
    upstream_flush: bool,
    intercept: Intercept<'a>,
    /// Where the intercept writes a replacement message.
    scratch: BytesMut,
    metrics: &'a Metrics,
    max_client_message: usize,
    /// The longest statement analyzed, for a restricted account.
    max_statement: Option<usize>,
    budget: &'a MessageBudget,
    /// The place in `budget` of the large message being received.
    hold: Option<MessageHold<'a>>,
    /// Bytes of a refused message still to arrive, dropped unread.
    unread: usize,
    message_timeout: Duration,
    /// Runs while a message is partly received.
    message_timer: Option<Pin<Box<Sleep>>>,
    draining: bool,
    idle_timer: Option<Pin<Box<Sleep>>>,
    idle_timeout: Option<Duration>,
    /// A client message ended the session while earlier ones were unanswered: the
    /// error waits for their answers (as PostgreSQL answers in order), at most
    /// until the deadline, and nothing more is read from the client.
    closing: Option<(ClientError, Pin<Box<Sleep>>)>,
}

impl<'a> Relay<'a> {
    pub fn new(
        client: &'a mut Stream,
        upstream: &'a mut UpstreamConn,
        client_in: BytesMut,
        metrics: &'a Metrics,
        account: AccountGuard<'a>,
        rules: SessionRules<'a>,
        limits: ClientLimits<'a>,
    ) -> Self {
        Self {
            client,
            upstream,
            client_in,
            client_out: BytesMut::new(),
            upstream_out: BytesMut::new(),
            client_flush: false,
            upstream_flush: false,
            intercept: Intercept::new(metrics, Some(account), Some(rules))
                .with_limits(limits.session),
            scratch: BytesMut::new(),
            metrics,
            max_client_message: limits.max_message,
            max_statement: limits.statement,
            budget: limits.budget,
            hold: None,
            unread: 0,
            message_timeout: limits.message_timeout,
            message_timer: None,
            draining: false,
            idle_timer: None,
            idle_timeout: None,
            closing: None,
        }
    }

    /// Whether the upstream connection is between transactions with nothing
    /// in flight or buffered, so it can be reset and reused.
    pub fn upstream_reusable(&self) -> bool {
        self.intercept.is_idle()
            && self.upstream_out.is_empty()
            && self.upstream.read_buf.is_empty()
            && !self.intercept.server_sent_fatal()
    }

    /// The most prepared statements the session held at once.
    pub fn prepared_high_water(&self) -> usize {
        self.intercept.prepared_high_water()
    }

    /// Statements were sent upstream and are not answered yet.
    pub fn in_flight(&self) -> bool {
        self.intercept.in_flight()
    }

    /// Relays until the session ends.
    pub async fn run(&mut self, controls: Controls<'_>) -> RelayEnd {
        self.idle_timeout = controls.idle_timeout;
        self.arm_idle_timer();
        // A client may pipeline its first statements behind its last login
        // message; they were read with it and must not wait for more input.
        if !self.client_in.is_empty() {
            if let Some(end) = self.process_client() {
                return match end {
                    RelayEnd::Closed(e) => self.close(e).await,
                    end => end,
                };
            }
        }
        loop {
            tokio::select! {
                biased;
                _ = controls.force.cancelled() => {
                    return self.close(shutdown_error()).await;
                }
                _ = controls.draining.cancelled(), if !self.draining => {
                    self.draining = true;
                }
                end = poll_fn(|cx| self.poll_relay(cx)) => {
                    return match end {
                        RelayEnd::Closed(e) => self.close(e).await,
                        end => {
                            self.flush_client().await;
                            end
                        }
                    };
                }
            }
        }
    }

    /// Sends what is already owed to the client, then `error`.
    async fn close(&mut self, error: ClientError) -> RelayEnd {
        error.encode(&mut self.client_out);
        self.flush_client().await;
        RelayEnd::Closed(error)
    }

    async fn flush_client(&mut self) {
        use tokio::io::AsyncWriteExt;
        // Bounded: a client that does not read its last messages is not waited for.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            if self.client.write_all(&self.client_out).await.is_ok() {
                self.metrics.bytes_to_client(self.client_out.len());
                let _ = self.client.flush().await;
            }
        })
        .await;
        self.client_out.clear();
    }

    fn arm_idle_timer(&mut self) {
        if let Some(timeout) = self.idle_timeout {
            let deadline = Instant::now() + timeout;
            match &mut self.idle_timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.idle_timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
    }

    fn poll_relay(&mut self, cx: &mut Context<'_>) -> Poll<RelayEnd> {
        loop {
            if let Some((_, deadline)) = &mut self.closing {
                if self.intercept.answered() || deadline.as_mut().poll(cx).is_ready() {
                    let (error, _) = self.closing.take().expect("checked");
                    return Poll::Ready(RelayEnd::Closed(error));
                }
            }
            let idle = self.intercept.is_idle() && self.client_in.is_empty();
            if idle && self.draining && self.client_out.is_empty() {
                return Poll::Ready(RelayEnd::Closed(shutdown_error()));
            }
            if idle {
                if let Some(timer) = &mut self.idle_timer {
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(RelayEnd::Closed(ClientError::fatal(
                            SqlState::IDLE_SESSION_TIMEOUT,
                            "terminating connection due to idle timeout",
                        )));
                    }
                }
            }

            let mut progress = false;

            // Client-bound bytes first: answers unblock the client's next request.
            match poll_write_buf(
                self.client,
                cx,
                &mut self.client_out,
                &mut self.client_flush,
            ) {
                Poll::Ready(Ok(n)) => {
                    if n > 0 {
                        self.metrics.bytes_to_client(n);
                        progress = true;
                    }
                }
                Poll::Ready(Err(_)) => return Poll::Ready(RelayEnd::ClientGone),
                Poll::Pending => {}
            }
            match poll_write_buf(
                &mut self.upstream.stream,
                cx,
                &mut self.upstream_out,
                &mut self.upstream_flush,
            ) {
                Poll::Ready(Ok(n)) => progress |= n > 0,
                Poll::Ready(Err(_)) => {
                    return Poll::Ready(RelayEnd::UpstreamGone { fatal_sent: false })
                }
                Poll::Pending => {}
            }

            // Strict audit mode: no result is read before its record is on disk.
            let durable = match self.intercept.poll_durable(cx) {
                Poll::Ready(Ok(())) => true,
                Poll::Ready(Err(e)) => return Poll::Ready(RelayEnd::Closed(e)),
                Poll::Pending => false,
            };
            if durable && self.client_out.len() < HIGH_WATER {
                let buf = &mut self.upstream.read_buf;
                if buf.capacity() - buf.len() < READ_CHUNK / 2 {
                    buf.reserve(READ_CHUNK);
                }
                match poll_read_buf(Pin::new(&mut self.upstream.stream), cx, buf) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        // Forward whatever complete messages arrived first.
                        let _ = self.process_upstream();
                        return Poll::Ready(RelayEnd::UpstreamGone {
                            fatal_sent: self.intercept.server_sent_fatal(),
                        });
                    }
                    Poll::Ready(Ok(_)) => {
                        progress = true;
                        match self.process_upstream() {
                            Ok(None) => {}
                            Ok(Some(e)) => return Poll::Ready(RelayEnd::Closed(e)),
                            Err(e) => {
                                tracing::error!(error = %e, "invalid message from the database server");
                                return Poll::Ready(RelayEnd::Closed(ClientError::fatal(
                                    SqlState::PROTOCOL_VIOLATION,
                                    "invalid message from the database server",
                                )));
                            }
                        }
                    }
                    Poll::Pending => {}
                }
            }

            if let Some(timer) = &mut self.message_timer {
                if self.upstream_out.len() >= HIGH_WATER {
                    // Not read while the server is behind: the client is not late.
                    timer.as_mut().reset(Instant::now() + self.message_timeout);
                } else if timer.as_mut().poll(cx).is_ready() {
                    self.metrics.guards().message_refused("message_timeout");
                    return Poll::Ready(RelayEnd::Closed(message_timeout_error(
                        self.message_timeout,
                    )));
                }
            }
            if self.closing.is_none() && self.upstream_out.len() < HIGH_WATER {
                if self.client_in.capacity() - self.client_in.len() < READ_CHUNK / 2 {
                    self.client_in.reserve(READ_CHUNK);
                }
                match poll_read_buf(Pin::new(&mut *self.client), cx, &mut self.client_in) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        return Poll::Ready(RelayEnd::ClientGone)
                    }
                    Poll::Ready(Ok(n)) => {
                        progress = true;
                        self.metrics.bytes_from_client(n);
                        if let Some(end) = self.process_client() {
                            return Poll::Ready(end);
                        }
                    }
                    Poll::Pending => {}
                }
            }

            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// Passes every complete server message through the intercept and queues what
    /// it lets through for the client. `Some` when the intercept ends the session.
    fn process_upstream(&mut self) -> Result<Option<ClientError>, FrameError> {
        // Bytes at the front of the read buffer that are cleared to go as they are.
        let mut pos = 0;
        let mut became_idle = false;
        let mut close = None;
        loop {
            let buf = &self.upstream.read_buf;
            let Some(h) = frame::header(&buf[pos..], MAX_SERVER_MESSAGE)? else {
                break;
            };
            if buf.len() - pos < h.total_len {
                break;
            }
            let body = &buf[pos + frame::HEADER_LEN..pos + h.total_len];
            let verdict = self
                .intercept
                .server_message(h.tag, body, &mut self.scratch);
            if h.tag == backend_tag::PARAMETER_STATUS {
                upstream::record_param(&mut self.upstream.params, body);
            }
            became_idle |= h.tag == backend_tag::READY_FOR_QUERY;
            if verdict == ServerVerdict::Forward {
                pos += h.total_len;
                continue;
            }
            if pos > 0 {
                append(&mut self.client_out, self.upstream.read_buf.split_to(pos));
                pos = 0;
            }
            self.upstream.read_buf.advance(h.total_len);
            match verdict {
                ServerVerdict::Replace => {
                    self.client_out.extend_from_slice(&self.scratch);
                    self.scratch.clear();
                }
                ServerVerdict::Close(e) => {
                    close = Some(e);
                    break;
                }
                ServerVerdict::Forward | ServerVerdict::Drop => {}
            }
        }
        if pos > 0 {
            append(&mut self.client_out, self.upstream.read_buf.split_to(pos));
        }
        if became_idle && self.intercept.is_idle() {
            self.arm_idle_timer();
        }
        Ok(close)
    }

    /// Passes every complete client message through the intercept and queues
    /// it for the server; returns how the session ends if a message ends it. A
    /// session ended while messages before it are unanswered ends once they are.
    fn process_client(&mut self) -> Option<RelayEnd> {
        match self.process_client_messages() {
            Some(RelayEnd::Closed(error)) if !self.intercept.answered() => {
                self.upstream_out.extend_from_slice(&FLUSH);
                let deadline = Box::pin(tokio::time::sleep(OWED_ANSWERS_WAIT));
                self.closing = Some((error, deadline));
                None
            }
            end => end,
        }
    }

    fn process_client_messages(&mut self) -> Option<RelayEnd> {
        let mut pos = 0;
        let mut end = None;
        if !self.drop_unread() {
            return self.time_message(end);
        }
        loop {
            // Like PostgreSQL, an unknown type is refused from its first byte: its
            // length is not looked at and its body never read or buffered.
            if let Some(&tag) = self.client_in.get(pos) {
                if !message_types::known_tag(tag) {
                    end = Some(RelayEnd::Closed(message_types::invalid_type(tag)));
                    break;
                }
            }
            let h = match frame::header(&self.client_in[pos..], self.max_client_message) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    end = Some(RelayEnd::Closed(framing_error(e)));
                    break;
                }
            };
            if let Some(error) = self.too_long_to_analyze(h) {
                // Refused in its place from the header; the body is dropped as it
                // arrives, never buffered.
                if pos > 0 {
                    append(&mut self.upstream_out, self.client_in.split_to(pos));
                    pos = 0;
                }
                match self
                    .intercept
                    .refuse_unread(h.tag, error, &mut self.scratch)
                {
                    ClientVerdict::Reject(e) => {
                        end = Some(RelayEnd::Closed(e));
                        break;
                    }
                    _ => {
                        self.upstream_out.extend_from_slice(&self.scratch);
                        self.scratch.clear();
                    }
                }
                self.hold = None;
                self.unread = h.total_len;
                if !self.drop_unread() {
                    break;
                }
                continue;
            }
            if self.client_in.len() - pos < h.total_len {
                if let Err(e) = self.admit_partial(h) {
                    end = Some(RelayEnd::Closed(e));
                    break;
                }
                // Make room for the rest of a large message in one allocation.
                self.client_in
                    .reserve(h.total_len - (self.client_in.len() - pos));
                break;
            }
            // Whole: whatever held its place (or timed it) was for this message.
            self.hold = None;
            self.message_timer = None;
            let body = &self.client_in[pos + frame::HEADER_LEN..pos + h.total_len];
            match self
                .intercept
                .client_message(h.tag, body, &mut self.scratch)
            {
                ClientVerdict::Forward => pos += h.total_len,
                ClientVerdict::Replace => {
                    if pos > 0 {
                        append(&mut self.upstream_out, self.client_in.split_to(pos));
                        pos = 0;
                    }
                    self.client_in.advance(h.total_len);
                    self.upstream_out.extend_from_slice(&self.scratch);
                    self.scratch.clear();
                }
                ClientVerdict::Terminate => {
                    end = Some(RelayEnd::ClientTerminated);
                    break;
                }
                ClientVerdict::Reject(e) => {
                    end = Some(RelayEnd::Closed(e));
                    break;
                }
            }
        }
        if pos > 0 {
            append(&mut self.upstream_out, self.client_in.split_to(pos));
        }
        self.time_message(end)
    }

    /// Drops what has arrived of a refused message's body; `true` once all of it
    /// has (the bytes after it are the next message).
    fn drop_unread(&mut self) -> bool {
        if self.unread == 0 {
            return true;
        }
        let n = self.unread.min(self.client_in.len());
        self.client_in.advance(n);
        self.unread -= n;
        if self.unread > 0 {
            return false;
        }
        // Dropped whole: the next message gets a deadline of its own.
        self.message_timer = None;
        true
    }

    /// A message begun (or a refused one still arriving) must arrive whole in time.
    fn time_message(&mut self, end: Option<RelayEnd>) -> Option<RelayEnd> {
        if self.client_in.is_empty() && self.unread == 0 {
            self.message_timer = None;
        } else if self.message_timer.is_none() && end.is_none() {
            let deadline = Instant::now() + self.message_timeout;
            self.message_timer = Some(Box::pin(tokio::time::sleep_until(deadline)));
        }
        end
    }

    /// A restricted account's statement longer than it may be analyzed, known
    /// from its header: the error it is refused with.
    fn too_long_to_analyze(&self, h: frame::Header) -> Option<ClientError> {
        let framing = match h.tag {
            frontend_tag::QUERY => 1,
            frontend_tag::PARSE => PARSE_FRAMING,
            _ => return None,
        };
        let max = self.max_statement?;
        if h.body_len() <= max.saturating_add(framing) {
            return None;
        }
        self.metrics.guards().message_refused("statement_size");
        Some(
            ClientError::error(
                SqlState::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "statement message of {} bytes is longer than the {max} bytes \
                     maskgate analyzes for this account",
                    h.body_len()
                ),
            )
            .with_hint("send shorter statements, or pass long values as parameters"),
        )
    }

    /// Whether the rest of a partly received message may be waited for: a large
    /// one needs a place in the budget.
    fn admit_partial(&mut self, h: frame::Header) -> Result<(), ClientError> {
        if h.total_len > SMALL_MESSAGE && self.hold.is_none() {
            match self.budget.try_hold(h.total_len) {
                Some(hold) => self.hold = Some(hold),
                None => {
                    self.metrics
                        .guards()
                        .message_refused("message_buffer_bytes");
                    return Err(ClientError::fatal(
                        SqlState::OUT_OF_MEMORY,
                        format!(
                            "out of memory: maskgate holds too many large messages at once \
                             to take one of {} bytes; try again later",
                            h.total_len
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn message_timeout_error(timeout: Duration) -> ClientError {
    ClientError::fatal(
        SqlState::PROTOCOL_VIOLATION,
        format!(
            "terminating connection: a message was not received whole within {} s \
             (message_timeout)",
            timeout.as_secs_f32()
        ),
    )
}

fn framing_error(e: FrameError) -> ClientError {
    match e {
        FrameError::TooLarge { max, .. } => ClientError::fatal(
            SqlState::PROTOCOL_VIOLATION,
            format!("message too large: maskgate accepts messages of at most {max} bytes"),
        ),
        FrameError::InvalidLength(_) => {
            ClientError::fatal(SqlState::PROTOCOL_VIOLATION, "invalid message length")
        }
    }
}

fn shutdown_error() -> ClientError {
    ClientError::fatal(
        SqlState::ADMIN_SHUTDOWN,
        "terminating connection because maskgate is shutting down",
    )
}

/// Appends without copying when `dst` is empty or `src` directly follows it.
#[inline]
fn append(dst: &mut BytesMut, src: BytesMut) {
    if dst.is_empty() {
        *dst = src;
    } else {
        dst.unsplit(src);
    }
}

/// Writes as much of `buf` as the stream takes now, then flushes once it is
/// empty. Returns the bytes written; `Pending` only when nothing could be done.
fn poll_write_buf(
    stream: &mut Stream,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
    needs_flush: &mut bool,
) -> Poll<std::io::Result<usize>> {
    let mut written = 0;
    while !buf.is_empty() {
        match Pin::new(&mut *stream).poll_write(cx, buf) {
            Poll::Ready(Ok(0)) => {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                written += n;
                *needs_flush = true;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending if written > 0 => return Poll::Ready(Ok(written)),
            Poll::Pending => return Poll::Pending,
        }
    }
    if *needs_flush {
        match Pin::new(&mut *stream).poll_flush(cx) {
            Poll::Ready(Ok(())) => *needs_flush = false,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending if written == 0 => return Poll::Pending,
            Poll::Pending => {}
        }
    }
    Poll::Ready(Ok(written))
}
