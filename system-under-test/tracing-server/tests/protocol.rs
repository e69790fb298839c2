//! The protocol against real PostgreSQL and Redis: commit-before-ack
//! ingest, pipelining, GetTrace through the cache, queries, flow versions,
//! binary frames, the published client.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Client, Env, acked, event, stored};
use futures::SinkExt;
use reflow_tracing_protocol::{
    ErrorCode, ExecutionStatus, FlowId, FlowVersion, TraceEvent, TraceId, TraceQuery,
    TracingRequest, TracingResponse,
};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

fn version(major: u32) -> FlowVersion {
    FlowVersion {
        major,
        minor: 2,
        patch: 3,
        git_hash: Some("abc".into()),
        timestamp: chrono::Utc::now(),
    }
}

async fn start(c: &mut Client, flow: &str, major: u32) -> Uuid {
    match c
        .ask(&TracingRequest::StartTrace {
            flow_id: FlowId::new(flow),
            version: version(major),
        })
        .await
    {
        TracingResponse::TraceStarted { trace_id } => trace_id.0,
        other => panic!("StartTrace answered {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_events_are_in_postgresql_when_acknowledged_and_pipelined_answers_keep_order() {
    let env = Env::boot().await;
    let server = env.server("server", &[]);
    server.wait_ready(200).await;
    let pg = env.pg().await;
    let mut c = Client::connect(&server).await;

    // One event: the row is there as soon as the ack is.
    let trace = start(&mut c, "flow-a", 1).await;
    let e = event("actor-1");
    assert!(acked(&c.record(trace, &e).await));
    let row = pg
        .query_one(
            "SELECT trace_id, event_type, actor_id, payload::text FROM tracing.events WHERE event_id = $1",
            &[&e.event_id.0],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Uuid>(0), trace);
    assert_eq!(row.get::<_, &str>(1), "MessageSent");
    assert_eq!(row.get::<_, &str>(2), "actor-1");
    let back: TraceEvent = serde_json::from_str(row.get::<_, &str>(3)).unwrap();
    assert_eq!(
        serde_json::to_value(&back).unwrap(),
        serde_json::to_value(&e).unwrap(),
        "the payload is the whole event"
    );

    // Re-sending the same event id is a success and stores nothing new.
    assert!(acked(&c.record(trace, &e).await));
    assert_eq!(stored(&pg, &[e.event_id.0]).await, 1);

    // 300 requests pipelined (events, pings, reads mixed): answered in order.
    let mut expected = Vec::new();
    let mut ids = Vec::new();
    for i in 0..300 {
        let req = match i % 10 {
            3 => TracingRequest::Ping,
            7 => TracingRequest::GetTrace {
                trace_id: TraceId(Uuid::new_v4()),
            },
            _ => {
                let e = event(&format!("actor-{i}"));
                ids.push(e.event_id.0);
                TracingRequest::RecordEvent {
                    trace_id: TraceId(trace),
                    event: e,
                }
            }
        };
        expected.push(match &req {
            TracingRequest::Ping => "pong",
            TracingRequest::GetTrace { .. } => "notfound",
            _ => "ack",
        });
        c.ws.feed(Message::Text(serde_json::to_string(&req).unwrap().into()))
            .await
            .unwrap();
    }
    c.ws.flush().await.unwrap();
    for (i, want) in expected.iter().enumerate() {
        let got = c.recv().await;
        let kind = match &got {
            TracingResponse::Pong => "pong",
            TracingResponse::Error {
                code: ErrorCode::NotFound,
                ..
            } => "notfound",
            r if acked(r) => "ack",
            other => panic!("answer {i}: {other:?}"),
        };
        assert_eq!(kind, *want, "answer {i} out of order");
    }
    assert_eq!(stored(&pg, &ids).await, ids.len());

    // Orphan: an unknown trace id is created by its first event and counted.
    let orphan = Uuid::new_v4();
    let before = server.metric("tracing_orphan_events_total").await;
    assert!(acked(&c.record(orphan, &event("lonely")).await));
    assert_eq!(
        server.metric("tracing_orphan_events_total").await,
        before + 1.0
    );
    let orphan_row = pg
        .query_one(
            "SELECT orphan, flow_id FROM tracing.traces WHERE trace_id = $1",
            &[&orphan],
        )
        .await
        .unwrap();
    assert!(orphan_row.get::<_, bool>(0));
    assert_eq!(orphan_row.get::<_, Option<String>>(1), None);
    assert!(server.metric("tracing_events_stored_total").await >= ids.len() as f64 + 2.0);
    let migrations = pg
        .query_one("SELECT count(*) FROM tracing.schema_migrations", &[])
        .await
        .unwrap();
    assert!(migrations.get::<_, i64>(0) >= 1);
    drop(server);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_trace_reads_through_the_cache_and_new_events_invalidate_it() {
    let env = Env::boot().await;
    let server = env.server("server", &[]);
    server.wait_ready(200).await;
    server
        .wait_health("redis ok", |_, v| v["checks"]["redis"] == "ok")
        .await;
    let mut c = Client::connect(&server).await;
    let trace = start(&mut c, "flow-cache", 1).await;
    let mut e1 = event("a");
    e1.timestamp = chrono::Utc::now() - chrono::Duration::seconds(10);
    let e2 = event("b");
    assert!(acked(&c.record(trace, &e2).await));
    assert!(acked(&c.record(trace, &e1).await));
    let get = TracingRequest::GetTrace {
        trace_id: TraceId(trace),
    };
    let events = |r: TracingResponse| match r {
        TracingResponse::TraceData { trace: Some(t) } => {
            t.events.iter().map(|e| e.event_id.0).collect::<Vec<_>>()
        }
        other => panic!("GetTrace answered {other:?}"),
    };
    let hits = server
        .metric("tracing_cache_requests_total{result=\"hit\"}")
        .await;
    assert_eq!(
        events(c.ask(&get).await),
        vec![e1.event_id.0, e2.event_id.0],
        "ordered by timestamp"
    );
    assert_eq!(
        events(c.ask(&get).await),
        vec![e1.event_id.0, e2.event_id.0]
    );
    assert_eq!(
        server
            .metric("tracing_cache_requests_total{result=\"hit\"}")
            .await,
        hits + 1.0,
        "the second read came from Redis"
    );
    // A new event invalidates: the next read sees it.
    let e3 = event("c");
    assert!(acked(&c.record(trace, &e3).await));
    assert_eq!(
        events(c.ask(&get).await),
        vec![e1.event_id.0, e2.event_id.0, e3.event_id.0]
    );
    match c
        .ask(&TracingRequest::GetTrace {
            trace_id: TraceId(Uuid::new_v4()),
        })
        .await
    {
        TracingResponse::Error {
            code: ErrorCode::NotFound,
            message,
        } => assert!(message.contains("not found")),
        other => panic!("unknown trace answered {other:?}"),
    }
    drop(server);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_filter_by_flow_execution_time_status_actor_and_page() {
    let env = Env::boot().await;
    let server = env.server("server", &[]);
    server.wait_ready(200).await;
    let mut c = Client::connect(&server).await;
    let t0 = chrono::Utc::now() - chrono::Duration::seconds(1);
    let mut by_flow: HashMap<&str, Vec<Uuid>> = HashMap::new();
    for (flow, n) in [("q-alpha", 3), ("q-beta", 2)] {
        for _ in 0..n {
            let t = start(&mut c, flow, 1).await;
            by_flow.entry(flow).or_default().push(t);
        }
    }
    let special = by_flow["q-beta"][0];
    assert!(acked(&c.record(special, &event("needle")).await));
    let query = |q: TraceQuery| TracingRequest::QueryTraces { query: q };
    let none = TraceQuery {
        flow_id: None,
        execution_id: None,
        time_range: None,
        status: None,
        actor_filter: None,
        limit: None,
        offset: None,
    };
    let results = |r: TracingResponse| match r {
        TracingResponse::QueryResults {
            traces,
            total_count,
        } => (
            traces.iter().map(|t| t.trace_id.0).collect::<Vec<_>>(),
            total_count,
            traces,
        ),
        other => panic!("QueryTraces answered {other:?}"),
    };
    let (ids, total, traces) = results(
        c.ask(&query(TraceQuery {
            flow_id: Some(FlowId::new("q-alpha")),
            ..none.clone()
        }))
        .await,
    );
    assert_eq!(total, 3);
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| by_flow["q-alpha"].contains(i)));
    assert!(
        traces
            .iter()
            .all(|t| t.flow_id.0 == "q-alpha" && t.version.major == 1)
    );
    // Paging: total stays, the page shrinks.
    let (ids, total, _) = results(
        c.ask(&query(TraceQuery {
            flow_id: Some(FlowId::new("q-alpha")),
            limit: Some(2),
            offset: Some(2),
            ..none.clone()
        }))
        .await,
    );
    assert_eq!((ids.len(), total), (1, 3));
    // Actor filter, execution id, status, time range.
    let (ids, _, traces) = results(
        c.ask(&query(TraceQuery {
            actor_filter: Some("needle".into()),
            ..none.clone()
        }))
        .await,
    );
    assert_eq!(ids, vec![special]);
    let exec = traces[0].execution_id.clone();
    let (ids, _, _) = results(
        c.ask(&query(TraceQuery {
            execution_id: Some(exec),
            ..none.clone()
        }))
        .await,
    );
    assert_eq!(ids, vec![special]);
    let (_, running, _) = results(
        c.ask(&query(TraceQuery {
            status: Some(ExecutionStatus::Running),
            flow_id: Some(FlowId::new("q-beta")),
            ..none.clone()
        }))
        .await,
    );
    assert_eq!(running, 2);
    let (_, failed, _) = results(
        c.ask(&query(TraceQuery {
            status: Some(ExecutionStatus::Failed { error: "x".into() }),
            ..none.clone()
        }))
        .await,
    );
    assert_eq!(failed, 0);
    let (_, in_range, _) = results(
        c.ask(&query(TraceQuery {
            time_range: Some((t0, chrono::Utc::now() + chrono::Duration::seconds(1))),
            flow_id: Some(FlowId::new("q-beta")),
            ..none.clone()
        }))
        .await,
    );
    assert_eq!(in_range, 2);
    let (_, before, _) = results(
        c.ask(&query(TraceQuery {
            time_range: Some((
                t0 - chrono::Duration::hours(2),
                t0 - chrono::Duration::hours(1),
            )),
            ..none.clone()
        }))
        .await,
    );
    assert_eq!(before, 0);
    // Inverted range: InvalidRequest, the connection goes on.
    match c
        .ask(&query(TraceQuery {
            time_range: Some((chrono::Utc::now(), t0)),
            ..none.clone()
        }))
        .await
    {
        TracingResponse::Error {
            code: ErrorCode::InvalidRequest,
            message,
        } => assert!(message.contains("inverted"), "{message}"),
        other => panic!("inverted range answered {other:?}"),
    }
    assert!(matches!(
        c.ask(&TracingRequest::Ping).await,
        TracingResponse::Pong
    ));
    // Flow versions: distinct, oldest first.
    start(&mut c, "q-alpha", 2).await;
    match c
        .ask(&TracingRequest::GetFlowVersions {
            flow_id: FlowId::new("q-alpha"),
        })
        .await
    {
        TracingResponse::FlowVersions { versions } => {
            assert_eq!(
                versions.iter().map(|v| v.major).collect::<Vec<_>>(),
                vec![1, 2]
            );
        }
        other => panic!("GetFlowVersions answered {other:?}"),
    }
    drop(server);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frames_are_zstd_json_answered_in_kind_and_the_published_client_is_stored() {
    let env = Env::boot().await;
    let server = env.server("server", &[]);
    server.wait_ready(200).await;
    let pg = env.pg().await;

    // Binary: zstd JSON in, zstd JSON out.
    let mut c = Client::connect(&server).await;
    let e = event("zipped");
    let req = TracingRequest::RecordEvent {
        trace_id: TraceId::new(),
        event: e.clone(),
    };
    let packed = zstd::bulk::compress(serde_json::to_string(&req).unwrap().as_bytes(), 3).unwrap();
    c.ws.send(Message::Binary(packed.into())).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(30), futures::StreamExt::next(&mut c.ws))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Message::Binary(bytes) = answer else {
        panic!("a binary request is answered with a binary frame: {answer:?}")
    };
    let text = zstd::stream::decode_all(&bytes[..]).unwrap();
    let r: TracingResponse = serde_json::from_slice(&text).unwrap();
    assert!(acked(&r));
    assert_eq!(stored(&pg, &[e.event_id.0]).await, 1);

    // The published 0.2.1 client: its events (each with a new random
    // trace id) are stored.
    use reflow_tracing_protocol::client::{TracingClient, TracingConfig};
    let client = TracingClient::new(TracingConfig {
        server_url: server.url(),
        batch_size: 1,
        ..TracingConfig::default()
    });
    client
        .connect()
        .await
        .expect("the published client connects");
    let events: Vec<TraceEvent> = (0..5).map(|i| event(&format!("published-{i}"))).collect();
    for e in &events {
        client
            .record_event(TraceId::new(), e.clone())
            .await
            .expect("recorded");
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id.0).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while stored(&pg, &ids).await < ids.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "the published client's events were not stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.shutdown().await.unwrap();
    drop(server);
    env.shutdown().await;
}
