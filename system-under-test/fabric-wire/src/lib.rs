//! Wire types of the fabric's HTTP API, as `spec/fabric.md` states them.
//!
//! This crate owns only the JSON shapes that cross the wire, so that the
//! fabric node and Gauntlet's drivers agree on them without the harness
//! linking the fabric's internals. It must never grow behaviour beyond
//! (de)serialisation and the base64 payload encoding.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Base64 (standard alphabet, padded) as the spec uses for every payload.
pub fn encode_payload(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes a base64 payload; `None` when it is not valid base64.
pub fn decode_payload(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// One event of an append request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventIn {
    /// Base64 of the event's bytes; must decode to a non-empty payload.
    pub payload: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// `POST /api/v1/streams/{t}/{ns}/{s}/events`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppendRequest {
    pub events: Vec<EventIn>,
}

/// 2xx answer to an append: one offset per event, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppendResponse {
    pub status: String,
    pub offsets: Vec<u64>,
}

/// One stored event as reads return it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub offset: u64,
    pub payload: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// RFC 3339 UTC time the event was appended.
    pub created_at: String,
}

/// 2xx answer to `GET …/messages?offset=N&max_messages=M`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadResponse {
    pub status: String,
    pub messages: Vec<Message>,
}

/// 2xx answer to `GET …/offsets/latest` (`-1` when the stream is empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestOffsetResponse {
    pub status: String,
    pub offset: i64,
}

/// Answer to `PUT /api/v1/streams/{t}/{ns}/{s}` (201 created, 200 existed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedResponse {
    pub status: String,
    pub created: bool,
}

/// Error codes of the spec's JSON error format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NotFound,
    InvalidRequest,
    Unauthorized,
    Conflict,
    LeaseExpired,
    Unavailable,
    Internal,
}

/// `{"status":"error","code":"...","message":"..."}` — every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub status: String,
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: "error".to_owned(),
            code,
            message: message.into(),
        }
    }
}

/// Path of a stream's events endpoint, e.g. `/api/v1/streams/acme/orders/events/events`.
pub fn stream_path(stream: &str, tail: &str) -> String {
    format!("/api/v1/streams/{stream}/{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips() {
        let bytes = b"\x00\x01hello\xff";
        assert_eq!(decode_payload(&encode_payload(bytes)).unwrap(), bytes);
        assert!(decode_payload("not base64!").is_none());
    }

    #[test]
    fn error_body_has_the_spec_shape() {
        let body = ErrorBody::new(ErrorCode::InvalidRequest, "bad");
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"status":"error","code":"invalid_request","message":"bad"})
        );
    }
}
