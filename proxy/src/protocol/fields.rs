//! Bounded readers for the few message bodies the proxy looks inside.
//!
//! Each reader gets exactly one message body (see [`super::frame`]) and fails
//! with [`MalformedMessage`] instead of panicking or reading past it.

/// A message body that does not have the layout its tag promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed {0} message")]
pub struct MalformedMessage(pub &'static str);

/// A cursor over one message body.
pub struct Fields<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Fields<'a> {
    pub fn new(body: &'a [u8], what: &'static str) -> Self {
        Self { buf: body, what }
    }

    fn malformed(&self) -> MalformedMessage {
        MalformedMessage(self.what)
    }

    /// A NUL-terminated string, as bytes without the NUL.
    pub fn cstr(&mut self) -> Result<&'a [u8], MalformedMessage> {
        let nul = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(self.malformed())?;
        let (s, rest) = self.buf.split_at(nul);
        self.buf = &rest[1..];
        Ok(s)
    }

    /// A NUL-terminated UTF-8 string.
    pub fn str(&mut self) -> Result<&'a str, MalformedMessage> {
        let s = self.cstr()?;
        std::str::from_utf8(s).map_err(|_| self.malformed())
    }

    pub fn i32(&mut self) -> Result<i32, MalformedMessage> {
        let bytes = self.bytes(4)?;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub fn i16(&mut self) -> Result<i16, MalformedMessage> {
        let bytes = self.bytes(2)?;
        Ok(i16::from_be_bytes([bytes[0], bytes[1]]))
    }

    pub fn u8(&mut self) -> Result<u8, MalformedMessage> {
        Ok(self.bytes(1)?[0])
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], MalformedMessage> {
        if self.buf.len() < n {
            return Err(self.malformed());
        }
        let (b, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(b)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Succeeds only when the whole body was consumed.
    pub fn finish(self) -> Result<(), MalformedMessage> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.malformed())
        }
    }
}

/// The SQLSTATE of an ErrorResponse or NoticeResponse body, if present.
pub fn sqlstate(body: &[u8]) -> Option<&[u8]> {
    let mut f = Fields::new(body, "ErrorResponse");
    loop {
        let code = f.u8().ok()?;
        if code == 0 {
            return None;
        }
        let value = f.cstr().ok()?;
        if code == b'C' {
            return Some(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_strings_and_integers_within_the_body() {
        let mut f = Fields::new(b"name\0\0\0\0\x07rest", "Test");
        assert_eq!(f.str().unwrap(), "name");
        assert_eq!(f.i32().unwrap(), 7);
        assert_eq!(f.rest(), b"rest");
        assert!(f.finish().is_ok());
    }

    #[test]
    fn never_reads_past_the_body() {
        assert!(Fields::new(b"no terminator", "Query").cstr().is_err());
        assert!(Fields::new(b"\0\0", "Bind").i32().is_err());
        assert!(Fields::new(b"\xff\xfe\0", "Query").str().is_err());
    }

    #[test]
    fn finds_the_sqlstate() {
        assert_eq!(sqlstate(b"SERROR\0C42P01\0Mno\0\0"), Some(&b"42P01"[..]));
        assert_eq!(sqlstate(b"SERROR\0Mno\0\0"), None);
        assert_eq!(sqlstate(b"SERR"), None);
    }
}
