//! The PostgreSQL v3 wire protocol as the proxy speaks it on both legs.
//!
//! Messages the proxy produces itself are encoded with pgwire's message types;
//! framing and the few fields the proxy reads from relayed messages are handled
//! by [`frame`] and [`fields`], which never copy or decode more than needed.

pub mod fields;
pub mod frame;
pub mod io;

use bytes::BytesMut;
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::{
    Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey,
};
use pgwire::messages::Message;

/// Protocol version 3.0, the only one the proxy speaks.
pub const PROTOCOL_3_0: i32 = 196_608;

/// Tags of frontend messages.
pub mod frontend_tag {
    pub const QUERY: u8 = b'Q';
    pub const PARSE: u8 = b'P';
    pub const BIND: u8 = b'B';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const CLOSE: u8 = b'C';
    pub const FLUSH: u8 = b'H';
    pub const SYNC: u8 = b'S';
    pub const TERMINATE: u8 = b'X';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
    pub const PASSWORD: u8 = b'p';
    pub const FUNCTION_CALL: u8 = b'F';
}

/// Tags of backend messages.
pub mod backend_tag {
    pub const AUTHENTICATION: u8 = b'R';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    pub const ROW_DESCRIPTION: u8 = b'T';
    pub const DATA_ROW: u8 = b'D';
    pub const COPY_IN_RESPONSE: u8 = b'G';
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    pub const PORTAL_SUSPENDED: u8 = b's';
    pub const PARSE_COMPLETE: u8 = b'1';
    pub const BIND_COMPLETE: u8 = b'2';
    pub const CLOSE_COMPLETE: u8 = b'3';
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    pub const NO_DATA: u8 = b'n';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
}

// The encoders below only fail when a message exceeds pgwire's size limits,
// which the small messages the proxy builds never do.
const ENCODABLE: &str = "a message built by the proxy is always encodable";

pub fn auth_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    Authentication::SASL(mechanisms.iter().map(|m| m.to_string()).collect())
        .encode(buf)
        .expect(ENCODABLE);
}

pub fn auth_sasl_continue(buf: &mut BytesMut, data: Vec<u8>) {
    Authentication::SASLContinue(data.into())
        .encode(buf)
        .expect(ENCODABLE);
}

pub fn auth_sasl_final(buf: &mut BytesMut, data: Vec<u8>) {
    Authentication::SASLFinal(data.into())
        .encode(buf)
        .expect(ENCODABLE);
}

pub fn auth_ok(buf: &mut BytesMut) {
    Authentication::Ok.encode(buf).expect(ENCODABLE);
}

pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    ParameterStatus::new(name.to_string(), value.to_string())
        .encode(buf)
        .expect(ENCODABLE);
}

pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    BackendKeyData::new(pid, SecretKey::I32(secret))
        .encode(buf)
        .expect(ENCODABLE);
}

pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    let status = match status {
        b'T' => TransactionStatus::Transaction,
        b'E' => TransactionStatus::Error,
        _ => TransactionStatus::Idle,
    };
    ReadyForQuery::new(status).encode(buf).expect(ENCODABLE);
}

pub fn negotiate_protocol_version(buf: &mut BytesMut, unsupported_options: Vec<String>) {
    NegotiateProtocolVersion::new(PROTOCOL_3_0, unsupported_options)
        .encode(buf)
        .expect(ENCODABLE);
}

pub fn query(buf: &mut BytesMut, sql: &str) {
    Query::new(sql.to_string()).encode(buf).expect(ENCODABLE);
}

// The rewritten client messages below are framed by hand: they are built on the
// statement path, from borrowed parts, without pgwire's owned message structs.

/// A Query message carrying `sql`.
pub fn write_query(buf: &mut BytesMut, sql: &str) {
    write_message(buf, frontend_tag::QUERY, &[sql.as_bytes(), b"\0"]);
}

/// A Parse message; `param_types` is the count and OIDs exactly as the client sent them.
pub fn write_parse(buf: &mut BytesMut, name: &[u8], sql: &str, param_types: &[u8]) {
    write_message(
        buf,
        frontend_tag::PARSE,
        &[name, b"\0", sql.as_bytes(), b"\0", param_types],
    );
}

/// An ErrorResponse or NoticeResponse (`tag`) with only severity, SQLSTATE and
/// message of `body`: the other fields (detail, hint, where, internal query,
/// position, …) can quote row contents. `Err` when `body` is malformed.
pub fn write_without_detail(
    buf: &mut BytesMut,
    tag: u8,
    body: &[u8],
) -> Result<(), fields::MalformedMessage> {
    let start = buf.len();
    buf.extend_from_slice(&[tag, 0, 0, 0, 0]);
    let mut f = fields::Fields::new(body, "ErrorResponse");
    loop {
        let code = f.u8()?;
        if code == 0 {
            break;
        }
        let value = f.cstr()?;
        if matches!(code, b'S' | b'V' | b'C' | b'M') {
            buf.extend_from_slice(&[code]);
            buf.extend_from_slice(value);
            buf.extend_from_slice(b"\0");
        }
    }
    buf.extend_from_slice(b"\0");
    let len = (buf.len() - start - 1) as u32;
    buf[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// A message of `tag` whose body is `parts` in order.
pub fn write_message(buf: &mut BytesMut, tag: u8, parts: &[&[u8]]) {
    let len: usize = 4 + parts.iter().map(|p| p.len()).sum::<usize>();
    buf.reserve(1 + len);
    buf.extend_from_slice(&[tag]);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    for part in parts {
        buf.extend_from_slice(part);
    }
}
