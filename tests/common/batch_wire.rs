//! A raw protocol client that writes whole pipelined batches in one write.
//! A frontend that writes protocol messages by hand, so a test can pipeline any mix
//! of them in one write and read every answer, as no driver would.

#![allow(dead_code)]

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use maskgate_testkit::TestProxy;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One server message.
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// The value of an ErrorResponse field (`b'C'` SQLSTATE, `b'M'` message).
    pub fn field(&self, code: u8) -> Option<String> {
        self.body
            .split(|b| *b == 0)
            .find_map(|f| f.strip_prefix(&[code]))
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn code(&self) -> String {
        self.field(b'C').unwrap_or_default()
    }

    pub fn message(&self) -> String {
        self.field(b'M').unwrap_or_default()
    }
}

/// Messages to write together.
#[derive(Default)]
pub struct Batch(pub Vec<u8>);

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    fn message(mut self, tag: u8, body: &[u8]) -> Batch {
        self.0.push(tag);
        self.0
            .extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        self.0.extend_from_slice(body);
        self
    }

    pub fn query(self, sql: &str) -> Batch {
        self.message(b'Q', &cstr(sql))
    }

    pub fn parse(self, name: &str, sql: &str) -> Batch {
        let mut b = cstr(name);
        b.extend(cstr(sql));
        b.extend_from_slice(&0i16.to_be_bytes());
        self.message(b'P', &b)
    }

    /// A Bind without parameters, results in text.
    pub fn bind(self, portal: &str, statement: &str) -> Batch {
        let mut b = cstr(portal);
        b.extend(cstr(statement));
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        self.message(b'B', &b)
    }

    pub fn execute(self, portal: &str, max_rows: i32) -> Batch {
        let mut b = cstr(portal);
        b.extend_from_slice(&max_rows.to_be_bytes());
        self.message(b'E', &b)
    }

    /// Describe (`b'D'`) or Close (`b'C'`) of a statement (`b'S'`) or portal (`b'P'`).
    pub fn describe_or_close(self, tag: u8, kind: u8, name: &str) -> Batch {
        let mut b = vec![kind];
        b.extend(cstr(name));
        self.message(tag, &b)
    }

    pub fn flush(self) -> Batch {
        self.message(b'H', &[])
    }

    pub fn sync(self) -> Batch {
        self.message(b'S', &[])
    }

    pub fn copy_data(self, data: &str) -> Batch {
        self.message(b'd', data.as_bytes())
    }

    pub fn copy_done(self) -> Batch {
        self.message(b'c', &[])
    }

    /// Any message, as `tag` and body.
    pub fn raw(self, tag: u8, body: &[u8]) -> Batch {
        self.message(tag, body)
    }
}

fn cstr(s: &str) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    b.push(0);
    b
}

/// A logged-in raw connection through maskgate.
pub struct Wire {
    stream: TcpStream,
    buf: BytesMut,
}

impl Wire {
    /// Logs in as `user` with SCRAM and reads up to the first ReadyForQuery.
    pub async fn login(proxy: &TestProxy, user: &str, password: &str) -> Wire {
        let stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        let mut wire = Wire {
            stream,
            buf: BytesMut::new(),
        };
        let mut out = BytesMut::new();
        frontend::startup_message([("user", user), ("database", proxy.database())], &mut out)
            .unwrap();
        wire.write(&out).await;
        let msg = wire.recv().await;
        assert_eq!(
            msg.tag,
            b'R',
            "authentication requested: {:?}",
            msg.message()
        );
        let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let mut out = BytesMut::new();
        frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out).unwrap();
        wire.write(&out).await;
        scram.update(&wire.recv().await.body[4..]).unwrap();
        let mut out = BytesMut::new();
        frontend::sasl_response(scram.message(), &mut out).unwrap();
        wire.write(&out).await;
        scram.finish(&wire.recv().await.body[4..]).unwrap();
        wire.until_ready().await;
        wire
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Writes the whole batch at once.
    pub async fn send(&mut self, batch: Batch) {
        self.write(&batch.0).await;
    }

    /// The next message; panics if none comes or the connection closes.
    pub async fn recv(&mut self) -> Msg {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() > len {
                    let frame = self.buf.split_to(len + 1);
                    return Msg {
                        tag: frame[0],
                        body: frame[5..].to_vec(),
                    };
                }
            }
            let mut chunk = [0u8; 16384];
            let n = tokio::time::timeout(Duration::from_secs(30), self.stream.read(&mut chunk))
                .await
                .expect("maskgate answers in time")
                .expect("read");
            assert!(n > 0, "maskgate closed the connection");
            self.buf.put_slice(&chunk[..n]);
        }
    }

    /// Messages up to and including the next ReadyForQuery.
    pub async fn until_ready(&mut self) -> Vec<Msg> {
        self.until(b'Z').await
    }

    /// Messages up to and including the next one tagged `tag`.
    pub async fn until(&mut self, tag: u8) -> Vec<Msg> {
        self.until_any(&[tag]).await
    }

    /// Messages up to and including the next one tagged with one of `tags`.
    pub async fn until_any(&mut self, tags: &[u8]) -> Vec<Msg> {
        let mut seen = Vec::new();
        loop {
            let msg = self.recv().await;
            let last = tags.contains(&msg.tag);
            seen.push(msg);
            if last {
                return seen;
            }
        }
    }

    /// Every message until the connection closes.
    pub async fn until_closed(&mut self) -> Vec<Msg> {
        let mut seen = Vec::new();
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() > len {
                    let frame = self.buf.split_to(len + 1);
                    seen.push(Msg {
                        tag: frame[0],
                        body: frame[5..].to_vec(),
                    });
                    continue;
                }
            }
            let mut chunk = [0u8; 16384];
            let read = tokio::time::timeout(Duration::from_secs(30), self.stream.read(&mut chunk))
                .await
                .expect("maskgate closes in time");
            match read {
                Ok(n) if n > 0 => self.buf.put_slice(&chunk[..n]),
                _ => return seen,
            }
        }
    }

    /// No message arrives within `wait`.
    pub async fn silent_for(&mut self, wait: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut chunk = [0u8; 1];
        tokio::time::timeout(wait, self.stream.peek(&mut chunk))
            .await
            .is_err()
    }
}

/// DataRows among `msgs`.
pub fn data_rows(msgs: &[Msg]) -> usize {
    msgs.iter().filter(|m| m.tag == b'D').count()
}

/// ErrorResponses among `msgs`.
pub fn errors(msgs: &[Msg]) -> Vec<&Msg> {
    msgs.iter().filter(|m| m.tag == b'E').collect()
}
