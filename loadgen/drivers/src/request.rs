//! One HTTP request on the engine's client, as the drivers send it, and the
//! outcomes every HTTP driver shares (`http_<status>`, `bad_response`, the
//! client's error kinds).

use bytes::Bytes;
use gauntlet_engine::http;
use gauntlet_recorder::Outcome;

use crate::Target;

pub fn json_bytes<T: serde::Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// Header of requests with a JSON body.
const JSON_HEADER: &[u8] = b"Content-Type: application/json\r\n";

/// A fabric request on the engine's client: a non-empty body is JSON.
pub async fn send<'c>(
    client: &'c http::Client,
    target: &Target,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<http::Response<'c>, String> {
    let headers = if body.is_empty() {
        &b""[..]
    } else {
        JSON_HEADER
    };
    send_with(client, target, method, path, headers, body).await
}

/// A request to `path` at the target's current endpoint; `headers` are
/// header lines (see [`http::header_lines`]).
pub async fn send_with<'c>(
    client: &'c http::Client,
    target: &Target,
    method: &str,
    path: &str,
    headers: &[u8],
    body: &[u8],
) -> Result<http::Response<'c>, String> {
    let endpoint = target.endpoint()?;
    client
        .send(&endpoint, method, &target.path(path), headers, body)
        .await
        .map_err(|f| f.kind().to_owned())
}

/// An answer as the history sees it: status and body, or the error kind.
pub fn seen<'a>(answer: &'a Result<http::Response<'_>, String>) -> crate::history::Answer<'a> {
    answer
        .as_ref()
        .map(|r| (r.status, r.body()))
        .map_err(String::as_str)
}

pub fn http_status(status: u16) -> Outcome {
    Outcome::Error(format!("http_{status}"))
}

pub fn bad_response() -> Outcome {
    Outcome::Error("bad_response".to_owned())
}
