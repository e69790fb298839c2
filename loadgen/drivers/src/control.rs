//! The control path's HTTP client (hyper's pooled client): readiness
//! probes, metrics scrapes and the checks' read-back — never the load,
//! which runs on the engine's own client.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use crate::Target;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A pooled HTTP/1.1 client sized for `max_in_flight` concurrent operations.
pub fn http_client(max_in_flight: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_in_flight)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Bounds of the read-back.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// One read-back request on the control path's client (the engine's
/// client belongs to the engine's runtimes); a non-empty body is JSON.
async fn request(
    client: &HttpClient,
    method: Method,
    url: &str,
    body: Bytes,
) -> Result<(StatusCode, Bytes), String> {
    let mut builder = hyper::Request::builder().method(method).uri(url);
    if !body.is_empty() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let request = builder
        .body(http_body_util::Full::new(body))
        .map_err(|_| "bad_request".to_owned())?;
    let response = client.request(request).await.map_err(|e| {
        if e.is_connect() {
            "connect".to_owned()
        } else {
            "io".to_owned()
        }
    })?;
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map_err(|_| "io".to_owned())?
        .to_bytes();
    Ok((status, body))
}

const READ_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn get(
    client: &HttpClient,
    method: Method,
    url: &str,
    body: Bytes,
) -> Result<(StatusCode, Bytes), String> {
    match tokio::time::timeout(READ_TIMEOUT, request(client, method, url, body)).await {
        Ok(r) => r,
        Err(_) => Err("timeout".to_owned()),
    }
}

/// Waits until `GET /ready` of each service answers 2xx.
pub async fn wait_ready(
    client: &HttpClient,
    services: &BTreeSet<&String>,
    target: &dyn Fn(&str) -> Target,
) -> Result<(), String> {
    let deadline = Instant::now() + READY_WITHIN;
    for service in services {
        loop {
            match get(
                client,
                Method::GET,
                &target(service).url("/ready"),
                Bytes::new(),
            )
            .await
            {
                Ok((s, _)) if s.is_success() => break,
                other if Instant::now() >= deadline => {
                    return Err(format!(
                        "service `{service}` was not ready for the read-back within {} s ({})",
                        READY_WITHIN.as_secs(),
                        match other {
                            Ok((s, _)) => s.to_string(),
                            Err(e) => e,
                        }
                    ));
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    Ok(())
}

pub fn unexpected(what: &str, answer: Result<(StatusCode, Bytes), String>) -> String {
    match answer {
        Ok((s, b)) => format!("{what}: answered {s}: {}", String::from_utf8_lossy(&b)),
        Err(e) => format!("{what}: {e}"),
    }
}

/// The JSON body of a successful answer to `what`; any other answer, or a
/// body that does not parse, is an error naming `what`.
pub fn json_answer<T: serde::de::DeserializeOwned>(
    what: &str,
    answer: Result<(StatusCode, Bytes), String>,
) -> Result<T, String> {
    match &answer {
        Ok((s, b)) if s.is_success() => {
            serde_json::from_slice(b).map_err(|e| format!("{what}: {e}"))
        }
        _ => Err(unexpected(what, answer)),
    }
}
