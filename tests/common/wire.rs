//! A frontend that speaks the protocol message by message, for what drivers
//! do not expose: text results in the extended protocol, several messages in
//! one write (pipelining), COPY data sent before the server asks for it.
//! Logs in as an account of the generated register (its shared password).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use maskgate_testkit::TestProxy;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::enforcement::{Failure, OutRow, Outcome, PASSWORD};

/// How long one read may wait before the test calls it a hang.
pub const WIRE_TIMEOUT: Duration = Duration::from_secs(60);

/// One backend message: its tag and body.
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// The SQLSTATE of an ErrorResponse.
    pub fn code(&self) -> Option<String> {
        (self.tag == b'E').then(|| self.field(b'C').unwrap_or_default())
    }

    /// A field of an ErrorResponse or NoticeResponse.
    pub fn field(&self, kind: u8) -> Option<String> {
        self.body
            .split(|b| *b == 0)
            .find_map(|f| f.strip_prefix(&[kind][..]))
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn failure(&self) -> Failure {
        Failure {
            code: self.code().unwrap_or_default(),
            message: self.field(b'M').unwrap_or_default(),
            has_detail: self.field(b'D').is_some(),
            has_hint: self.field(b'H').is_some(),
            has_where: self.field(b'W').is_some(),
            has_position: self.field(b'P').is_some(),
        }
    }
}

pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstr(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(s.as_bytes());
    b.push(0);
}

pub fn query(sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, sql);
    message(b'Q', &b)
}

pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name);
    cstr(&mut b, sql);
    b.extend_from_slice(&0i16.to_be_bytes());
    message(b'P', &b)
}

/// Bind without parameters; every result column in `format` (0 text, 1 binary).
pub fn bind(portal: &str, statement: &str, format: i16) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    cstr(&mut b, statement);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&1i16.to_be_bytes());
    b.extend_from_slice(&format.to_be_bytes());
    message(b'B', &b)
}

pub fn describe_portal(portal: &str) -> Vec<u8> {
    let mut b = vec![b'P'];
    cstr(&mut b, portal);
    message(b'D', &b)
}

pub fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    b.extend_from_slice(&max_rows.to_be_bytes());
    message(b'E', &b)
}

pub fn sync() -> Vec<u8> {
    message(b'S', &[])
}

pub fn copy_data(data: &str) -> Vec<u8> {
    message(b'd', data.as_bytes())
}

pub fn copy_done() -> Vec<u8> {
    message(b'c', &[])
}

/// Parse, Bind (text results), Describe, Execute and Sync of one unnamed statement.
pub fn extended_text_messages(sql: &str) -> Vec<u8> {
    [
        parse("", sql),
        bind("", "", 0),
        describe_portal(""),
        execute("", 0),
        sync(),
    ]
    .concat()
}

pub struct Wire {
    stream: TcpStream,
    buf: BytesMut,
}

impl Wire {
    /// A logged-in session of `user`, up to its first ReadyForQuery.
    pub async fn login(proxy: &TestProxy, user: &str) -> Result<Wire, String> {
        Wire::login_at(proxy.addr(), proxy.database(), user).await
    }

    pub async fn login_at(
        addr: std::net::SocketAddr,
        database: &str,
        user: &str,
    ) -> Result<Wire, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut wire = Wire {
            stream,
            buf: BytesMut::new(),
        };
        let mut out = BytesMut::new();
        frontend::startup_message([("user", user), ("database", database)], &mut out)
            .map_err(|e| e.to_string())?;
        wire.send(&out).await;
        let sasl = wire.recv_auth().await?;
        if sasl.body.get(..4) != Some(&10i32.to_be_bytes()[..]) {
            return Err("SASL was not requested".into());
        }
        let mut scram = ScramSha256::new(PASSWORD.as_bytes(), ChannelBinding::unsupported());
        let mut out = BytesMut::new();
        frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out)
            .map_err(|e| e.to_string())?;
        wire.send(&out).await;
        let server_first = wire.recv_auth().await?;
        scram
            .update(&server_first.body[4..])
            .map_err(|e| e.to_string())?;
        let mut out = BytesMut::new();
        frontend::sasl_response(scram.message(), &mut out).map_err(|e| e.to_string())?;
        wire.send(&out).await;
        let server_final = wire.recv_auth().await?;
        scram
            .finish(&server_final.body[4..])
            .map_err(|e| e.to_string())?;
        let seen = wire.until_ready().await?;
        if let Some(e) = seen.iter().find(|m| m.tag == b'E') {
            return Err(format!("login refused: {:?}", e.failure()));
        }
        Ok(wire)
    }

    async fn recv_auth(&mut self) -> Result<Msg, String> {
        let m = self.recv().await?;
        match m.tag {
            b'R' => Ok(m),
            b'E' => Err(format!("login refused: {:?}", m.failure())),
            other => Err(format!(
                "unexpected message {:?} during login",
                other as char
            )),
        }
    }

    /// Writes `bytes` in one go; a peer that hung up shows in the next read.
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// The next message; an error when the connection closed or nothing came
    /// within [`WIRE_TIMEOUT`].
    pub async fn recv(&mut self) -> Result<Msg, String> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() > len {
                    let frame = self.buf.split_to(len + 1);
                    return Ok(Msg {
                        tag: frame[0],
                        body: frame[5..].to_vec(),
                    });
                }
            }
            let n = tokio::time::timeout(WIRE_TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| "no answer in time (a hang)".to_string())?
                .map_err(|e| format!("connection error: {e}"))?;
            if n == 0 {
                return Err("the proxy closed the connection".into());
            }
        }
    }

    /// Messages up to and including the next ReadyForQuery.
    pub async fn until_ready(&mut self) -> Result<Vec<Msg>, String> {
        self.until(|m| m.tag == b'Z').await
    }

    /// Messages up to and including the first one `stop` accepts.
    pub async fn until(&mut self, stop: impl Fn(&Msg) -> bool) -> Result<Vec<Msg>, String> {
        let mut seen = Vec::new();
        loop {
            let m = self.recv().await?;
            let done = stop(&m);
            seen.push(m);
            if done {
                return Ok(seen);
            }
        }
    }

    /// Sends `bytes` and reads up to the next ReadyForQuery; a hang or a closed
    /// connection becomes an ErrorResponse of code `connection` at the end.
    pub async fn until_ready_after(&mut self, bytes: &[u8]) -> Vec<Msg> {
        self.send(bytes).await;
        match self.until_ready().await {
            Ok(seen) => seen,
            Err(e) => {
                let mut body = b"Cconnection\0M".to_vec();
                body.extend_from_slice(e.as_bytes());
                body.extend_from_slice(b"\0\0");
                vec![Msg { tag: b'E', body }]
            }
        }
    }

    /// `sql` as a simple Query.
    pub async fn simple(&mut self, sql: &str) -> Outcome {
        self.send(&query(sql)).await;
        outcome(self.until_ready().await)
    }

    /// `sql` in the extended protocol with text results.
    pub async fn extended_text(&mut self, sql: &str) -> Outcome {
        self.send(&extended_text_messages(sql)).await;
        outcome(self.until_ready().await)
    }
}

/// Rows (text format) and the first error of a message sequence; a hang or a
/// closed connection is an error of code `"connection"`.
pub fn outcome(seen: Result<Vec<Msg>, String>) -> Outcome {
    let mut out = Outcome::default();
    let seen = match seen {
        Ok(seen) => seen,
        Err(e) => {
            out.error = Some(connection_failure(e));
            return out;
        }
    };
    let mut columns: Arc<[String]> = Arc::from(Vec::new());
    for m in &seen {
        match m.tag {
            b'T' => columns = row_description(&m.body).into(),
            b'D' => out.rows.push(OutRow {
                columns: columns.clone(),
                values: data_row(&m.body),
            }),
            b'E' if out.error.is_none() => out.error = Some(m.failure()),
            _ => {}
        }
    }
    out
}

pub fn connection_failure(message: String) -> Failure {
    Failure {
        code: "connection".into(),
        message,
        has_detail: false,
        has_hint: false,
        has_where: false,
        has_position: false,
    }
}

fn row_description(body: &[u8]) -> Vec<String> {
    let count = i16::from_be_bytes([body[0], body[1]]).max(0) as usize;
    let mut at = 2;
    let mut names = Vec::with_capacity(count);
    for _ in 0..count {
        let nul = body[at..].iter().position(|b| *b == 0).unwrap_or(0);
        names.push(String::from_utf8_lossy(&body[at..at + nul]).into_owned());
        // name, NUL, table OID, attnum, type OID, size, modifier, format
        at += nul + 1 + 4 + 2 + 4 + 2 + 4 + 2;
    }
    names
}

/// DataRow values as text (lossy UTF-8, so embedded text stays visible to the scanner).
pub fn data_row(body: &[u8]) -> Vec<Option<String>> {
    let count = i16::from_be_bytes([body[0], body[1]]).max(0) as usize;
    let mut at = 2;
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        let len = i32::from_be_bytes(body[at..at + 4].try_into().unwrap());
        at += 4;
        if len < 0 {
            values.push(None);
        } else {
            let end = at + len as usize;
            values.push(Some(String::from_utf8_lossy(&body[at..end]).into_owned()));
            at = end;
        }
    }
    values
}
