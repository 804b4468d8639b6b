//! Connections from the proxy to PostgreSQL, under the service account.
//!
//! Each client session gets one upstream connection for its whole life
//! (session mode). Connections are opened by [`Connector`] and kept, once a
//! session is done with them and they have been reset, in the [`pool::Pool`].

mod auth;
pub mod pool;
pub mod probe;

use std::collections::BTreeMap;
use std::future::Future as _;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use pgwire::messages::startup::Startup;
use pgwire::messages::Message as _;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::{UpstreamConfig, UpstreamTlsMode};
use crate::error::{ClientError, SqlState, UserFacingError};
use crate::protocol::backend_tag;
use crate::protocol::fields::Fields;
use crate::protocol::io::{read_message, ReadError};
use crate::stream::Stream;

/// The largest message the proxy expects from PostgreSQL while setting up.
const MAX_SETUP_MESSAGE: usize = 1 << 20;
const SSL_REQUEST_CODE: i32 = 80_877_103;
const CANCEL_REQUEST_CODE: i32 = 80_877_102;

/// Failures talking to PostgreSQL. `Display` is for the operator's log;
/// clients see [`UserFacingError::to_client_error`].
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to the database server at {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("connecting to the database server at {addr} timed out after {after:?}")]
    Timeout { addr: String, after: Duration },
    #[error("the database server at {addr} does not accept TLS, and upstream tls is verify-full")]
    TlsRefused { addr: String },
    #[error("TLS handshake with the database server at {addr} failed: {source}")]
    Tls {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("the database server rejected the service account: {0}")]
    Authentication(String),
    #[error("the database server reported {sqlstate}: {message}")]
    Server { sqlstate: String, message: String },
    #[error("unexpected message from the database server: {0}")]
    Protocol(String),
    #[error("connection to the database server lost: {0}")]
    Io(#[from] io::Error),
    /// No upstream connection was ready within `checkout_timeout`: the database
    /// does not answer (frozen, overloaded, or the network is).
    #[error(
        "no upstream connection was ready within {after:?}: the database server is not answering"
    )]
    NotReady { after: Duration },
}

impl From<ReadError> for UpstreamError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Closed => UpstreamError::Io(io::ErrorKind::UnexpectedEof.into()),
            ReadError::Frame(e) => UpstreamError::Protocol(e.to_string()),
            ReadError::Io(e) => UpstreamError::Io(e),
        }
    }
}

impl UserFacingError for UpstreamError {
    fn to_client_error(&self) -> ClientError {
        match self {
            // Out of connections (class 53) or starting up (57P03): the client gets
            // PostgreSQL's own SQLSTATE, so applications retry as they would against
            // PostgreSQL. The messages name no data.
            UpstreamError::Server { sqlstate, message }
                if sqlstate.starts_with("53") || sqlstate == "57P03" =>
            {
                ClientError::fatal(
                    SqlState::from_bytes(sqlstate.as_bytes())
                        .unwrap_or(SqlState::CONNECTION_FAILURE),
                    format!("the database server refused a connection: {message}"),
                )
            }
            // Other errors at connection time (shutting down, authentication of the
            // service account) are the proxy's connection failure; the message keeps
            // PostgreSQL's code for the operator reading the client's report.
            UpstreamError::Server { sqlstate, message } => ClientError::fatal(
                SqlState::CONNECTION_FAILURE,
                format!("the database server refused a connection ({sqlstate}): {message}"),
            ),
            UpstreamError::NotReady { .. } => ClientError::fatal(
                SqlState::CONNECTION_FAILURE,
                "the database server is not answering",
            )
            .with_hint("try again later; maskgate gave up waiting for it"),
            _ => ClientError::fatal(
                SqlState::CONNECTION_FAILURE,
                "maskgate could not connect to the database server",
            )
            .with_hint("the database server may be down or unreachable; try again later"),
        }
    }
}

/// An authenticated connection to PostgreSQL, ready for queries.
pub struct UpstreamConn {
    pub(crate) stream: Stream,
    /// Bytes read past the last message handled (normally empty between sessions).
    pub(crate) read_buf: BytesMut,
    /// ParameterStatus values the server has reported, kept current by the relay.
    pub(crate) params: BTreeMap<String, String>,
    pub(crate) cancel_key: CancelKey,
    /// The most prepared statements its sessions held at once: the backend's memory
    /// stays grown after `DISCARD ALL`, so a connection past the bound is not pooled.
    pub(crate) prepared_high_water: usize,
}

/// What PostgreSQL needs to cancel this connection's running statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelKey {
    pub pid: i32,
    pub secret: i32,
}

impl UpstreamConn {
    pub fn cancel_key(&self) -> CancelKey {
        self.cancel_key
    }

    pub fn server_params(&self) -> &BTreeMap<String, String> {
        &self.params
    }

    /// Runs a simple-protocol statement and waits for ReadyForQuery, recording
    /// any ParameterStatus it causes. Used for resets and session settings, never
    /// for client statements.
    pub(crate) async fn run_internal(&mut self, sql: &str) -> Result<u8, UpstreamError> {
        let mut out = BytesMut::new();
        crate::protocol::query(&mut out, sql);
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        let mut error = None;
        loop {
            let msg = read_message(&mut self.stream, &mut self.read_buf, MAX_SETUP_MESSAGE).await?;
            match msg.tag {
                backend_tag::READY_FOR_QUERY => {
                    let status = msg.body.first().copied().unwrap_or(b'I');
                    return match error {
                        Some(e) => Err(e),
                        None => Ok(status),
                    };
                }
                backend_tag::PARAMETER_STATUS => self.record_param(&msg.body),
                backend_tag::ERROR_RESPONSE => error = Some(server_error(&msg.body)),
                _ => {}
            }
        }
    }

    /// A round trip that costs the server nothing: a Sync outside a transaction is
    /// answered by ReadyForQuery alone, and is neither parsed nor logged.
    pub(crate) async fn ping(&mut self) -> Result<(), UpstreamError> {
        self.stream.write_all(&[b'S', 0, 0, 0, 4]).await?;
        self.stream.flush().await?;
        loop {
            let msg = read_message(&mut self.stream, &mut self.read_buf, MAX_SETUP_MESSAGE).await?;
            match msg.tag {
                backend_tag::READY_FOR_QUERY => return Ok(()),
                backend_tag::PARAMETER_STATUS => self.record_param(&msg.body),
                backend_tag::NOTICE_RESPONSE => {}
                backend_tag::ERROR_RESPONSE => return Err(server_error(&msg.body)),
                other => {
                    return Err(UpstreamError::Protocol(format!(
                        "message '{}' in answer to a Sync",
                        other as char
                    )))
                }
            }
        }
    }

    /// Runs a simple-protocol query and returns its rows as text (`None` = NULL).
    /// For tools that read the catalog (`policy check --live`), never for client
    /// statements.
    pub async fn query_rows(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, UpstreamError> {
        let mut out = BytesMut::new();
        crate::protocol::query(&mut out, sql);
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        let malformed =
            |e: crate::protocol::fields::MalformedMessage| UpstreamError::Protocol(e.to_string());
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let msg = read_message(&mut self.stream, &mut self.read_buf, MAX_SETUP_MESSAGE).await?;
            match msg.tag {
                backend_tag::READY_FOR_QUERY => {
                    return match error {
                        Some(e) => Err(e),
                        None => Ok(rows),
                    };
                }
                backend_tag::DATA_ROW if error.is_none() => {
                    let mut f = Fields::new(&msg.body, "DataRow");
                    let count = f.i16().map_err(malformed)?;
                    let mut row = Vec::with_capacity(count.max(0) as usize);
                    for _ in 0..count {
                        let len = f.i32().map_err(malformed)?;
                        if len < 0 {
                            row.push(None);
                            continue;
                        }
                        let bytes = f.bytes(len as usize).map_err(malformed)?;
                        let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                            UpstreamError::Protocol("DataRow value is not UTF-8".into())
                        })?;
                        row.push(Some(text));
                    }
                    rows.push(row);
                }
                backend_tag::PARAMETER_STATUS => self.record_param(&msg.body),
                backend_tag::ERROR_RESPONSE => error = Some(server_error(&msg.body)),
                _ => {}
            }
        }
    }

    pub(crate) fn record_param(&mut self, body: &[u8]) {
        record_param(&mut self.params, body);
    }

    /// Whether the server closed this idle connection (restart, idle timeout,
    /// termination) or sent something unsolicited; checked without waiting.
    pub(crate) fn is_closed_or_dirty(&mut self) -> bool {
        if !self.read_buf.is_empty() {
            return true;
        }
        let mut probe = [0u8; 1];
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut read = std::pin::pin!(self.stream.read(&mut probe));
        !matches!(read.as_mut().poll(&mut cx), std::task::Poll::Pending)
    }
}

/// Records a ParameterStatus body (name, value); the client is greeted with
/// these values when it next attaches to this connection.
pub(crate) fn record_param(params: &mut BTreeMap<String, String>, body: &[u8]) {
    let mut f = Fields::new(body, "ParameterStatus");
    if let (Ok(name), Ok(value)) = (f.str(), f.str()) {
        params.insert(name.to_string(), value.to_string());
    }
}

fn server_error(body: &[u8]) -> UpstreamError {
    let mut sqlstate = String::new();
    let mut message = String::new();
    let mut f = Fields::new(body, "ErrorResponse");
    while let Ok(code) = f.u8() {
        if code == 0 {
            break;
        }
        let Ok(value) = f.str() else { break };
        match code {
            b'C' => sqlstate = value.to_string(),
            b'M' => message = value.to_string(),
            _ => {}
        }
    }
    UpstreamError::Server { sqlstate, message }
}

/// Opens authenticated connections to PostgreSQL.
#[derive(Clone)]
pub struct Connector {
    config: Arc<UpstreamConfig>,
    tls: Option<TlsConnector>,
    /// The `options` startup parameter: the pseudonym key settings, which
    /// travel here rather than in any statement, so they never appear in
    /// statement logs, pg_stat_statements or pg_stat_activity.
    options: Option<String>,
}

impl Connector {
    pub fn new(config: Arc<UpstreamConfig>, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        Self {
            config,
            tls: tls.map(TlsConnector::from),
            options: None,
        }
    }

    /// Connections get the pseudonym key settings that mask expressions read.
    pub fn with_pseudonym_keys(mut self, keys: &maskgate_mask::PseudonymKeys) -> Self {
        let options = keys.upstream_options();
        self.options = (!options.is_empty()).then_some(options);
        self
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.config.host, self.config.port)
    }

    /// Connects, negotiates TLS, authenticates and waits for ReadyForQuery.
    pub async fn connect(&self) -> Result<UpstreamConn, UpstreamError> {
        let after = self.config.connect_timeout;
        tokio::time::timeout(after, self.connect_inner())
            .await
            .unwrap_or_else(|_| {
                Err(UpstreamError::Timeout {
                    addr: self.addr(),
                    after,
                })
            })
    }

    async fn open_stream(&self) -> Result<Stream, UpstreamError> {
        let addr = self.addr();
        let tcp = TcpStream::connect((self.config.host.as_str(), self.config.port))
            .await
            .map_err(|source| UpstreamError::Connect {
                addr: addr.clone(),
                source,
            })?;
        tcp.set_nodelay(true)?;
        if let Some(idle) = self.config.tcp_keepalive {
            set_keepalive(&tcp, idle)?;
        }
        let Some(tls) = &self.tls else {
            return Ok(Stream::Plain(tcp));
        };
        let mut tcp = tcp;
        let mut req = BytesMut::with_capacity(8);
        req.put_i32(8);
        req.put_i32(SSL_REQUEST_CODE);
        tcp.write_all(&req).await?;
        match tcp.read_u8().await? {
            b'S' => {
                let name = ServerName::try_from(self.config.host.clone()).map_err(|e| {
                    UpstreamError::Tls {
                        addr: addr.clone(),
                        source: io::Error::new(io::ErrorKind::InvalidInput, e),
                    }
                })?;
                let tls = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|source| UpstreamError::Tls { addr, source })?;
                Ok(Stream::ClientTls(Box::new(tls)))
            }
            b'N' if self.config.tls == UpstreamTlsMode::Prefer => Ok(Stream::Plain(tcp)),
            b'N' => Err(UpstreamError::TlsRefused { addr }),
            other => Err(UpstreamError::Protocol(format!(
                "answer {other:#04x} to SSLRequest"
            ))),
        }
    }

    async fn connect_inner(&self) -> Result<UpstreamConn, UpstreamError> {
        let mut stream = self.open_stream().await?;
        let mut startup = Startup::new();
        startup
            .parameters
            .insert("user".into(), self.config.user.clone());
        startup
            .parameters
            .insert("database".into(), self.config.database.clone());
        startup
            .parameters
            .insert("application_name".into(), "maskgate".into());
        if let Some(options) = &self.options {
            startup.parameters.insert("options".into(), options.clone());
        }
        let mut out = BytesMut::new();
        startup
            .encode(&mut out)
            .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        stream.write_all(&out).await?;

        let mut read_buf = BytesMut::with_capacity(1024);
        auth::authenticate(&mut stream, &mut read_buf, &self.config).await?;

        let mut params = BTreeMap::new();
        let mut cancel_key = CancelKey { pid: 0, secret: 0 };
        loop {
            let msg = read_message(&mut stream, &mut read_buf, MAX_SETUP_MESSAGE).await?;
            match msg.tag {
                backend_tag::PARAMETER_STATUS => record_param(&mut params, &msg.body),
                backend_tag::BACKEND_KEY_DATA => {
                    let mut f = Fields::new(&msg.body, "BackendKeyData");
                    let pid = f
                        .i32()
                        .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                    let secret = f
                        .i32()
                        .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                    cancel_key = CancelKey { pid, secret };
                }
                backend_tag::READY_FOR_QUERY => break,
                backend_tag::ERROR_RESPONSE => return Err(server_error(&msg.body)),
                backend_tag::NOTICE_RESPONSE | backend_tag::NEGOTIATE_PROTOCOL_VERSION => {}
                other => {
                    return Err(UpstreamError::Protocol(format!(
                        "message '{}' during startup",
                        other as char
                    )))
                }
            }
        }
        Ok(UpstreamConn {
            stream,
            read_buf,
            params,
            cancel_key,
            prepared_high_water: 0,
        })
    }

    /// Asks PostgreSQL to cancel the statement running on the connection `key` names.
    pub async fn cancel(&self, key: CancelKey) -> Result<(), UpstreamError> {
        let after = self.config.connect_timeout;
        let send = async {
            let mut stream = self.open_stream().await?;
            let mut req = BytesMut::with_capacity(16);
            req.put_i32(16);
            req.put_i32(CANCEL_REQUEST_CODE);
            req.put_i32(key.pid);
            req.put_i32(key.secret);
            stream.write_all(&req).await?;
            stream.flush().await?;
            // The server closes the connection once it has read the request.
            let mut sink = [0u8; 64];
            let _ = stream.read(&mut sink).await;
            Ok(())
        };
        tokio::time::timeout(after, send).await.unwrap_or_else(|_| {
            Err(UpstreamError::Timeout {
                addr: self.addr(),
                after,
            })
        })
    }
}

/// TCP keepalives on an upstream connection: a database host that vanished (power
/// loss, a network partition) is noticed after `idle` plus a few probes, and data
/// left unacknowledged as long ends the connection too.
fn set_keepalive(tcp: &TcpStream, idle: Duration) -> io::Result<()> {
    let interval = (idle / 4).max(Duration::from_secs(1));
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(interval)
        .with_retries(4);
    let socket = socket2::SockRef::from(tcp);
    socket.set_tcp_keepalive(&keepalive)?;
    socket.set_tcp_user_timeout(Some(idle + 4 * interval))
}

/// Whether an ErrorResponse body is FATAL or PANIC (the server closes the connection after it).
pub(crate) fn is_fatal(body: &[u8]) -> bool {
    let mut f = Fields::new(body, "ErrorResponse");
    while let Ok(code) = f.u8() {
        if code == 0 {
            break;
        }
        let Ok(value) = f.cstr() else { break };
        if code == b'V' || code == b'S' {
            return value == b"FATAL" || value == b"PANIC";
        }
    }
    false
}
