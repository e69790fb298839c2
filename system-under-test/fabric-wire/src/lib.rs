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

/// `{"status":"success"}` — the answer of writes that return nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResponse {
    pub status: String,
}

/// `POST …/consumer-groups/{g}/offsets`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitOffsetRequest {
    pub offset: u64,
}

/// `GET …/consumer-groups/{g}/state` (`-1` means none / empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupStateResponse {
    pub status: String,
    pub group: String,
    pub committed_offset: i64,
    pub latest_offset: i64,
    pub lag: i64,
}

/// `POST /api/v1/queues/{t}/{ns}/{q}/jobs`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnqueueRequest {
    /// Base64 of the job's bytes.
    pub payload: String,
    #[serde(default)]
    pub delay_seconds: f64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// 2xx answer to an enqueue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnqueueResponse {
    pub status: String,
    pub job_id: String,
    pub seq: u64,
}

/// `POST …/reserve` (one job) and, with `max_jobs`, `POST …/receive`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReserveRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_jobs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility_timeout_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_poll_timeout_seconds: Option<f64>,
}

/// A job as reserve, receive and the DLQ listing return it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub seq: u64,
    pub payload: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub created_at: String,
    pub visible_at: String,
    /// End of the current lease (RFC 3339); `null` when not in flight.
    pub reserve_until: Option<String>,
    pub attempts: u32,
    /// Identifies this delivery; pass it to ack/nack to act only on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    /// When the job moved to the dead-letter queue (DLQ listings only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<String>,
}

/// 2xx answer to `POST …/reserve`: no `job` when the queue had none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReserveResponse {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Job>,
}

/// 2xx answer to `POST …/receive` and `GET …/dlq/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobsResponse {
    pub status: String,
    pub jobs: Vec<Job>,
}

/// Optional body of `POST …/jobs/{id}/ack` and `…/nack`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AckRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    /// Nack only: seconds until the job is visible again (default: the
    /// retry policy's backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<f64>,
}

/// Backoff between attempts of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackoffStrategy {
    Fixed,
    Exponential,
}

/// `GET/PUT …/retry-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff_seconds: f64,
    pub max_backoff_seconds: f64,
    pub backoff_multiplier: f64,
    pub backoff_strategy: BackoffStrategy,
}

/// 2xx answer to `GET/PUT …/retry-policy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicyResponse {
    pub status: String,
    #[serde(flatten)]
    pub policy: RetryPolicy,
}

/// 2xx answer to `GET …/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStatsResponse {
    pub status: String,
    pub pending: u64,
    pub in_flight: u64,
    pub completed: u64,
    pub failed: u64,
    pub dlq: u64,
    pub oldest_job_age_seconds: f64,
}

/// `PUT /api/v1/kv/{t}/{ns}/{store}/keys/{key}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvPutRequest {
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<f64>,
}

/// 2xx answer to a KV get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvGetResponse {
    pub status: String,
    pub value: String,
    /// Expiry time (RFC 3339) when the key has a TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// 2xx answer to `GET …/keys?prefix=`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvListResponse {
    pub status: String,
    pub keys: Vec<String>,
}

/// `POST /admin/snapshot`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRequest {
    pub dir: String,
}

/// 2xx answer to a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotResponse {
    pub status: String,
    pub dir: String,
    pub files: u64,
    pub bytes: u64,
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
