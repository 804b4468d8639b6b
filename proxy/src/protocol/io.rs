//! Whole-message reads for the connection phases that happen before the relay
//! (TLS negotiation, startup, authentication, pool resets), where the proxy
//! waits for one message at a time.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::frame::{self, FrameError};

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A tagged message: its tag and exactly its body.
#[derive(Debug)]
pub struct Message {
    pub tag: u8,
    pub body: BytesMut,
}

/// Reads one tagged message, keeping any bytes after it in `buf` for the next call.
pub async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max_len: usize,
) -> Result<Message, ReadError> {
    loop {
        if let Some(h) = frame::header(buf, max_len)? {
            if buf.len() >= h.total_len {
                let mut msg = buf.split_to(h.total_len);
                let body = msg.split_off(frame::HEADER_LEN);
                return Ok(Message { tag: h.tag, body });
            }
            buf.reserve(h.total_len - buf.len());
        }
        fill(stream, buf).await?;
    }
}

/// Reads one untagged startup-phase packet and returns it whole (length included).
pub async fn read_startup_packet<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<BytesMut, ReadError> {
    loop {
        if let Some(len) = frame::startup_packet_len(buf)? {
            if buf.len() >= len {
                return Ok(buf.split_to(len));
            }
        }
        fill(stream, buf).await?;
    }
}

async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> Result<(), ReadError> {
    if buf.capacity() - buf.len() < 512 {
        buf.reserve(4096);
    }
    match stream.read_buf(buf).await? {
        0 => Err(ReadError::Closed),
        _ => Ok(()),
    }
}
