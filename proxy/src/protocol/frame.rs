//! Message framing: splitting a byte stream into protocol messages.
//!
//! Written by hand rather than with pgwire's decoders for two reasons: the relay
//! forwards most messages (every DataRow) as the bytes they arrived in, so it
//! needs only a message's tag and length, not a decoded struct per row; and
//! pgwire's decoders read a body from the whole receive buffer and assume it
//! is well formed, while client bytes are hostile. Here a length is checked
//! against its bounds before anything is buffered, and every body is handed
//! out as exactly its own bytes.

/// Bytes in a tagged message header: one tag byte and a four-byte length.
pub const HEADER_LEN: usize = 5;

/// Longest startup-phase packet PostgreSQL itself accepts.
pub const MAX_STARTUP_PACKET: usize = 10_000;

/// A framing violation; the connection cannot continue after one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid message length {0}")]
    InvalidLength(i64),
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
}

/// The header of a complete or partial tagged message at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub tag: u8,
    /// The whole message: tag, length field and body.
    pub total_len: usize,
}

impl Header {
    pub fn body_len(&self) -> usize {
        self.total_len - HEADER_LEN
    }
}

/// Reads the header of the tagged message at the start of `buf`.
///
/// Returns `Ok(None)` until five bytes are there. The length is validated at
/// once, so an oversized message is refused before its body is read.
#[inline]
pub fn header(buf: &[u8], max_len: usize) -> Result<Option<Header>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(FrameError::InvalidLength(len.into()));
    }
    let total_len = len as usize + 1;
    if total_len > max_len {
        return Err(FrameError::TooLarge {
            len: total_len,
            max: max_len,
        });
    }
    Ok(Some(Header {
        tag: buf[0],
        total_len,
    }))
}

/// Length of the untagged startup-phase packet at the start of `buf`
/// (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage), once its four
/// length bytes are there.
pub fn startup_packet_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 8 {
        return Err(FrameError::InvalidLength(len.into()));
    }
    let len = len as usize;
    if len > MAX_STARTUP_PACKET {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_STARTUP_PACKET,
        });
    }
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_whole_header() {
        assert_eq!(header(b"Q\0\0", 100), Ok(None));
    }

    #[test]
    fn reads_tag_and_total_length() {
        let h = header(b"Q\0\0\0\x09SELECT", 100).unwrap().unwrap();
        assert_eq!(h.tag, b'Q');
        assert_eq!(h.total_len, 10);
        assert_eq!(h.body_len(), 5);
    }

    #[test]
    fn refuses_lengths_below_four() {
        assert_eq!(
            header(b"Q\0\0\0\x03", 100),
            Err(FrameError::InvalidLength(3))
        );
        assert_eq!(
            header(b"Q\xff\xff\xff\xff", 100),
            Err(FrameError::InvalidLength(-1))
        );
    }

    #[test]
    fn refuses_oversized_messages_from_the_header_alone() {
        assert!(matches!(
            header(b"Q\x7f\xff\xff\xff", 1 << 20),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn bounds_startup_packets() {
        assert_eq!(startup_packet_len(b"\0\0\0\x08"), Ok(Some(8)));
        assert_eq!(
            startup_packet_len(b"\0\0\0\x07"),
            Err(FrameError::InvalidLength(7))
        );
        assert!(startup_packet_len(b"\0\x01\0\0").is_err());
    }
}
