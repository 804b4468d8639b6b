//! A SCRAM login by hand, step by step, from a chosen loopback address: tests
//! that race proofs, flood with invented names or hold connections half-way
//! need what no driver offers.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long one answer may take before the test calls it a hang.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP connection to `addr` from `source` (any 127.0.0.0/8 address).
pub async fn connect_from(addr: SocketAddr, source: Ipv4Addr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    socket.connect(addr).await
}

/// One backend message.
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// The SQLSTATE of an ErrorResponse.
    pub fn code(&self) -> Option<String> {
        self.field(b'C')
    }

    pub fn field(&self, kind: u8) -> Option<String> {
        let mut rest = &self.body[..];
        while let Some((&k, tail)) = rest.split_first() {
            if k == 0 {
                break;
            }
            let end = tail.iter().position(|&b| b == 0)?;
            if k == kind {
                return Some(String::from_utf8_lossy(&tail[..end]).into_owned());
            }
            rest = &tail[end + 1..];
        }
        None
    }
}

/// How a login ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Admitted,
    /// An ErrorResponse with this SQLSTATE.
    Refused(String),
    /// The connection closed without an error.
    Closed,
}

/// A SCRAM exchange stopped right before the client's proof.
pub struct Exchange {
    pub stream: TcpStream,
    buf: BytesMut,
    scram: Option<ScramSha256>,
    /// The server's nonce, for a made-up proof.
    nonce: String,
}

pub async fn recv(stream: &mut TcpStream, buf: &mut BytesMut) -> Option<Msg> {
    loop {
        if buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() > len {
                let tag = buf[0];
                buf.advance(5);
                let body = buf.split_to(len - 4).to_vec();
                return Some(Msg { tag, body });
            }
        }
        match tokio::time::timeout(READ_TIMEOUT, stream.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
    }
}

impl Exchange {
    /// Connects from `source` as `user` and runs SCRAM up to the server's first
    /// message. With a `password`, the proof will be computed from it; without, a
    /// made-up proof is sent (a failed login that costs the client nothing).
    pub async fn start(
        addr: SocketAddr,
        source: Ipv4Addr,
        (user, database): (&str, &str),
        password: Option<&str>,
    ) -> Result<Exchange, Outcome> {
        let stream = connect_from(addr, source)
            .await
            .map_err(|_| Outcome::Closed)?;
        let mut ex = Exchange {
            stream,
            buf: BytesMut::new(),
            scram: None,
            nonce: String::new(),
        };
        let mut out = BytesMut::new();
        frontend::startup_message([("user", user), ("database", database)], &mut out).unwrap();
        ex.send(&out).await;
        ex.expect_auth(10).await?;
        let mut out = BytesMut::new();
        match password {
            Some(password) => {
                let scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out)
                    .unwrap();
                ex.scram = Some(scram);
            }
            None => {
                frontend::sasl_initial_response(
                    "SCRAM-SHA-256",
                    b"n,,n=,r=madeupclientnonce",
                    &mut out,
                )
                .unwrap();
            }
        }
        ex.send(&out).await;
        let first = ex.expect_auth(11).await?;
        let first = &first.body[4..];
        match ex.scram.as_mut() {
            Some(scram) => scram.update(first).map_err(|_| Outcome::Closed)?,
            None => {
                let text = String::from_utf8_lossy(first);
                ex.nonce = text
                    .split(',')
                    .find_map(|part| part.strip_prefix("r="))
                    .unwrap_or_default()
                    .to_owned();
            }
        }
        Ok(ex)
    }

    async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// The next message, which must be Authentication `code`.
    async fn expect_auth(&mut self, code: i32) -> Result<Msg, Outcome> {
        let msg = recv(&mut self.stream, &mut self.buf)
            .await
            .ok_or(Outcome::Closed)?;
        match msg.tag {
            b'R' if msg.body.get(..4) == Some(&code.to_be_bytes()[..]) => Ok(msg),
            b'E' => Err(Outcome::Refused(msg.code().unwrap_or_default())),
            _ => Err(Outcome::Closed),
        }
    }

    /// Sends the proof and returns every message of the answer, up to an error,
    /// ReadyForQuery or the end of the connection.
    pub async fn prove_messages(mut self) -> Vec<Msg> {
        self.send_proof().await;
        let mut answer = Vec::new();
        while let Some(msg) = recv(&mut self.stream, &mut self.buf).await {
            let last = matches!(msg.tag, b'E' | b'Z');
            answer.push(msg);
            if last {
                break;
            }
        }
        answer
    }

    async fn send_proof(&mut self) {
        let mut out = BytesMut::new();
        match self.scram.as_ref() {
            Some(scram) => frontend::sasl_response(scram.message(), &mut out).unwrap(),
            None => {
                let proof = format!(
                    "c=biws,r={},p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                    self.nonce
                );
                frontend::sasl_response(proof.as_bytes(), &mut out).unwrap();
            }
        }
        self.send(&out).await;
    }

    /// Sends the proof and reads how the login ends (up to ReadyForQuery).
    pub async fn prove(mut self) -> (Outcome, Option<TcpStream>) {
        self.send_proof().await;
        loop {
            let Some(msg) = recv(&mut self.stream, &mut self.buf).await else {
                return (Outcome::Closed, None);
            };
            match msg.tag {
                b'E' => return (Outcome::Refused(msg.code().unwrap_or_default()), None),
                b'Z' => return (Outcome::Admitted, Some(self.stream)),
                _ => {}
            }
        }
    }
}

/// A whole login: `Admitted`, or how it was refused.
pub async fn login(
    addr: SocketAddr,
    source: Ipv4Addr,
    (user, database): (&str, &str),
    password: Option<&str>,
) -> Outcome {
    match Exchange::start(addr, source, (user, database), password).await {
        Ok(ex) => ex.prove().await.0,
        Err(outcome) => outcome,
    }
}
