//! Bad input: each answered with the protocol's error (or refused at the
//! upgrade) on a server that keeps serving everyone else.

mod common;

use std::time::Duration;

use common::{Client, Env, acked, event, stored};
use futures::SinkExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reflow_tracing_protocol::{ErrorCode, TraceId, TracingRequest, TracingResponse};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

fn code_of(r: &TracingResponse) -> Option<&ErrorCode> {
    match r {
        TracingResponse::Error { code, .. } => Some(code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_unknown_oversize_and_injected_input_get_errors_and_the_server_goes_on() {
    let env = Env::boot().await;
    let server = env.server("server", &[("TRACING_MAX_EVENT_SIZE", "4096")]);
    server.wait_ready(200).await;
    let pg = env.pg().await;
    let mut c = Client::connect(&server).await;
    let mut other = Client::connect(&server).await;

    c.send_text("{\"RecordEvent\": {\"trace_id\": ").await;
    let r = c.recv().await;
    assert!(
        matches!(code_of(&r), Some(ErrorCode::SerializationError)),
        "{r:?}"
    );
    c.send_text("{\"DropAllTraces\":{}}").await;
    match c.recv().await {
        TracingResponse::Error {
            code: ErrorCode::InvalidRequest,
            message,
        } => assert!(message.contains("unknown variant"), "{message}"),
        other => panic!("unknown variant answered {other:?}"),
    }
    c.send_text("{\"GetTrace\":{\"trace_id\":\"not-a-uuid\"}}")
        .await;
    assert!(matches!(
        code_of(&c.recv().await),
        Some(ErrorCode::InvalidRequest)
    ));
    // Binary garbage (not zstd).
    c.ws.send(Message::Binary(vec![1, 2, 3, 4].into()))
        .await
        .unwrap();
    assert!(matches!(
        code_of(&c.recv().await),
        Some(ErrorCode::SerializationError)
    ));

    // Over max_event_size.
    let mut big = event("big");
    big.data
        .custom_attributes
        .insert("blob".into(), serde_json::Value::String("x".repeat(5000)));
    match c.record(Uuid::new_v4(), &big).await {
        TracingResponse::Error {
            code: ErrorCode::InvalidRequest,
            message,
        } => assert!(message.starts_with("event too large"), "{message}"),
        other => panic!("oversize answered {other:?}"),
    }
    assert_eq!(stored(&pg, &[big.event_id.0]).await, 0);
    // A NUL PostgreSQL cannot store: refused alone, not the whole batch.
    let nul = event("nul\u{0}actor");
    assert!(matches!(
        code_of(&c.record(Uuid::new_v4(), &nul).await),
        Some(ErrorCode::InvalidRequest)
    ));

    // SQL injection through every string field: stored verbatim, harmless.
    let evil = "x'); DROP TABLE tracing.events; --";
    let mut e = event(evil);
    e.data.port = Some(evil.into());
    e.data.error = Some("'; DELETE FROM tracing.traces; --".into());
    e.causality.span_id = "\" OR 1=1 --".into();
    e.data.custom_attributes.insert(
        "'; TRUNCATE tracing.events; --".into(),
        serde_json::json!(evil),
    );
    let trace = Uuid::new_v4();
    assert!(acked(&c.record(trace, &e).await));
    let row = pg
        .query_one(
            "SELECT actor_id, payload->'data'->>'port' FROM tracing.events WHERE event_id = $1",
            &[&e.event_id.0],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), evil);
    assert_eq!(row.get::<_, &str>(1), evil);
    let query = TracingRequest::QueryTraces {
        query: reflow_tracing_protocol::TraceQuery {
            flow_id: Some(reflow_tracing_protocol::FlowId::new("' OR '1'='1")),
            execution_id: None,
            time_range: None,
            status: None,
            actor_filter: Some(evil.into()),
            limit: Some(10),
            offset: None,
        },
    };
    match c.ask(&query).await {
        TracingResponse::QueryResults { total_count, .. } => assert_eq!(total_count, 0),
        other => panic!("{other:?}"),
    }
    let tables = pg
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'tracing'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        tables.get::<_, i64>(0),
        3,
        "events, traces, schema_migrations"
    );
    assert!(stored(&pg, &[e.event_id.0]).await == 1);
    // The connection still works after all of it.
    assert!(matches!(
        c.ask(&TracingRequest::Ping).await,
        TracingResponse::Pong
    ));
    assert!(
        server
            .metric("tracing_requests_total{type=\"invalid\",status=\"error\"}")
            .await
            >= 4.0
    );

    // A frame over 16 MiB: closed with 1009; others are unaffected.
    let huge = "x".repeat((16 << 20) + 1);
    let _ = c.ws.send(Message::Text(huge.into())).await;
    assert_eq!(c.closed().await, Some(1009));
    let ok = event("survivor");
    assert!(acked(&other.record(Uuid::new_v4(), &ok).await));
    assert!(server.metric("tracing_frames_too_large_total").await >= 1.0);
    // Just under the limit is a frame like any other (here: not JSON).
    let mut third = Client::connect(&server).await;
    third.send_text(&" ".repeat((16 << 20) - 64)).await;
    assert!(matches!(
        code_of(&third.recv().await),
        Some(ErrorCode::SerializationError)
    ));
    drop(server);
    env.shutdown().await;
}

fn token(secret: &str, exp_offset: i64) -> String {
    let claims = serde_json::json!({
        "sub": "test",
        "iss": "reflow-tracing",
        "aud": "reflow-clients",
        "exp": chrono::Utc::now().timestamp() + exp_offset,
    });
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn upgrade_status(url: &str, bearer: Option<&str>) -> u16 {
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = bearer {
        req.headers_mut()
            .insert("Authorization", format!("Bearer {t}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("upgrade failed without a status: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_expired_tokens_get_401_and_extra_connections_503_at_the_upgrade() {
    let env = Env::boot().await;
    let server = env.server(
        "server",
        &[
            ("TRACING_REQUIRE_AUTH", "true"),
            ("JWT_SECRET", "test-secret"),
            ("TRACING_MAX_CONNECTIONS", "2"),
        ],
    );
    server.wait_ready(200).await;
    let url = server.url();
    assert_eq!(upgrade_status(&url, None).await, 401);
    assert_eq!(upgrade_status(&url, Some("not.a.jwt")).await, 401);
    assert_eq!(
        upgrade_status(&url, Some(&token("wrong-secret", 3600))).await,
        401
    );
    assert_eq!(
        upgrade_status(&url, Some(&token("test-secret", -3600))).await,
        401
    );
    // Good tokens, by header and by query: two connections, the third 503.
    let good = token("test-secret", 3600);
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {good}").parse().unwrap());
    let (mut first, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let (_second, _) = tokio_tungstenite::connect_async(format!("{url}?token={good}"))
        .await
        .unwrap();
    assert_eq!(upgrade_status(&url, Some(&good)).await, 503);
    assert!(
        server
            .metric("tracing_connections_refused_total{reason=\"unauthorized\"}")
            .await
            >= 4.0
    );
    // The admitted connections are served.
    first
        .send(Message::Text(
            serde_json::to_string(&TracingRequest::Ping).unwrap().into(),
        ))
        .await
        .unwrap();
    let pong = tokio::time::timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut first),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert_eq!(pong.into_text().unwrap().as_str(), "\"Pong\"");
    // A slot frees when a connection closes.
    first.close(None).await.unwrap();
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.metric("tracing_connections_active").await > 1.0 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(upgrade_status(&url, Some(&good)).await, 101);
    let _ = TraceId::new();
    drop(server);
    env.shutdown().await;
}

#[test]
fn invalid_configuration_exits_2_with_the_key_named() {
    let run = |vars: &[(&str, &str)], args: &[&str]| {
        let mut cmd = std::process::Command::new(common::bin());
        cmd.args(args)
            .env_remove("TRACING_DATABASE_URL")
            .env_remove("TRACING_REDIS_URL");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let db = (
        "TRACING_DATABASE_URL",
        "postgresql://postgres@127.0.0.1:1/db",
    );
    for (vars, want) in [
        (vec![], "TRACING_DATABASE_URL"),
        (
            vec![db, ("TRACING_BIND_ADDRESS", "somewhere")],
            "TRACING_BIND_ADDRESS",
        ),
        (
            vec![db, ("TRACING_MAX_CONNECTIONS", "-1")],
            "TRACING_MAX_CONNECTIONS",
        ),
        (vec![db, ("TRACING_REQUIRE_AUTH", "true")], "JWT_SECRET"),
    ] {
        let out = run(&vars, &[]);
        assert_eq!(out.status.code(), Some(2), "{vars:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("invalid configuration") && err.contains(want),
            "{err}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[tracing]\nbatch_size = 0\n").unwrap();
    let out = run(&[db], &["--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tracing.batch_size"));
    let out = run(&[], &["--config", "/nonexistent.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&[], &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("TRACING_DATABASE_URL"));
    let out = run(&[], &["--bogus"]);
    assert_eq!(out.status.code(), Some(2));
}
