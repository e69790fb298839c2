//! Faults against real processes: PostgreSQL stopped, killed and paused,
//! Redis killed, the server's SIGTERM and SIGKILL; subscriptions across two
//! replicas through Redis; backup and restore.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Env, Server, acked, event, stored};
use futures::{SinkExt, StreamExt};
use gauntlet_stack::gauntlet_control::{Signal, Stack as _};
use reflow_tracing_protocol::{
    ErrorCode, FlowId, FlowVersion, SubscriptionFilters, TraceEventType, TraceId, TracingRequest,
    TracingResponse,
};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

fn unavailable(r: &TracingResponse) -> bool {
    matches!(r, TracingResponse::Error { code: ErrorCode::StorageError, message } if message.starts_with("unavailable: "))
}

fn record(trace: Uuid, e: &reflow_tracing_protocol::TraceEvent) -> Message {
    Message::Text(
        serde_json::to_string(&TracingRequest::RecordEvent {
            trace_id: TraceId(trace),
            event: e.clone(),
        })
        .unwrap()
        .into(),
    )
}

/// A server whose database timeout is short (events wait 1.5 s for it).
fn quick_server(env: &Env, name: &str, vars: &[(&str, &str)]) -> Server {
    let config = env.dir.path().join(format!("{name}.toml"));
    std::fs::write(
        &config,
        "[database]\nconnection_timeout = 1500\n[redis]\nconnection_timeout = 500\n",
    )
    .unwrap();
    let mut all: Vec<(String, String)> = vec![
        ("TRACING_BIND_ADDRESS".into(), "127.0.0.1:0".into()),
        ("TRACING_DATABASE_URL".into(), env.db_url()),
        ("TRACING_REDIS_URL".into(), env.redis_url()),
    ];
    for (k, v) in vars {
        all.push((k.to_string(), v.to_string()));
    }
    Server::start(env.dir.path(), name, &all, Some(&config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_answers_errors_never_success_and_the_server_recovers() {
    let env = Env::boot().await;
    let server = quick_server(&env, "server", &[("TRACING_MAX_PENDING_EVENTS", "5")]);
    server.wait_ready(200).await;
    let mut c = Client::connect(&server).await;
    assert!(acked(&c.record(Uuid::new_v4(), &event("before")).await));

    // Killed: every event is refused with `unavailable`, /ready and /health 503.
    env.stack.kill("db", Signal::Kill).await.unwrap();
    let e = event("during");
    let r = c.record(Uuid::new_v4(), &e).await;
    assert!(unavailable(&r), "{r:?}");
    server.wait_ready(503).await;
    let health = server
        .wait_health("database down", |code, v| {
            code == 503 && v["checks"]["database"] == "down"
        })
        .await;
    assert_eq!(health["status"], "unhealthy");
    // Pipelined while known down: the bounded buffer refuses at once past 5.
    let mut refused_full = 0;
    let mut down_ids = vec![e.event_id.0];
    for _ in 0..30 {
        let e = event("burst");
        down_ids.push(e.event_id.0);
        c.ws.feed(record(Uuid::new_v4(), &e)).await.unwrap();
    }
    c.ws.flush().await.unwrap();
    for _ in 0..30 {
        match c.recv().await {
            TracingResponse::Error {
                code: ErrorCode::StorageError,
                message,
            } if message.starts_with("unavailable: ") => {
                if message.contains("pending buffer is full") {
                    refused_full += 1;
                }
            }
            other => panic!("a success or other answer while PostgreSQL is down: {other:?}"),
        }
    }
    assert!(refused_full > 0, "the pending buffer is bounded");
    // Queries fail the same way; the connection stays usable.
    let r = c
        .ask(&TracingRequest::StartTrace {
            flow_id: FlowId::new("f"),
            version: FlowVersion {
                major: 1,
                minor: 0,
                patch: 0,
                git_hash: None,
                timestamp: chrono::Utc::now(),
            },
        })
        .await;
    assert!(unavailable(&r), "{r:?}");
    assert!(matches!(
        c.ask(&TracingRequest::Ping).await,
        TracingResponse::Pong
    ));

    // Back: ready again, events acknowledged and stored, none of the refused ones.
    env.stack.start("db").await.unwrap();
    server.wait_ready(200).await;
    let after = event("after");
    assert!(acked(&c.record(Uuid::new_v4(), &after).await));
    let pg = env.pg().await;
    assert_eq!(stored(&pg, &[after.event_id.0]).await, 1);
    assert_eq!(
        stored(&pg, &down_ids).await,
        0,
        "refused events were not stored"
    );

    // Paused (SIGSTOP): no answer from PostgreSQL is an error too, not a hang.
    env.stack.pause("db").await.unwrap();
    let t0 = Instant::now();
    let r = c.record(Uuid::new_v4(), &event("paused")).await;
    assert!(unavailable(&r), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(20));
    env.stack.unpause("db").await.unwrap();
    server.wait_ready(200).await;
    let last = event("unpaused");
    assert!(acked(&c.record(Uuid::new_v4(), &last).await));
    assert!(server.metric("tracing_db_commit_failures_total").await > 0.0);
    drop(server);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_degrades_ingest_goes_on_and_it_comes_back() {
    let env = Env::boot().await;
    let server = quick_server(&env, "server", &[]);
    server.wait_ready(200).await;
    server
        .wait_health("redis ok", |code, v| {
            code == 200 && v["checks"]["redis"] == "ok"
        })
        .await;
    let mut c = Client::connect(&server).await;
    let mut sub = Client::connect(&server).await;
    assert!(matches!(
        sub.ask(&TracingRequest::Subscribe {
            filters: SubscriptionFilters {
                flow_ids: None,
                actor_ids: Some(vec!["redisless".into()]),
                event_types: None,
                status_filter: None,
            },
        })
        .await,
        TracingResponse::Pong
    ));
    let trace = Uuid::new_v4();
    assert!(acked(&c.record(trace, &event("warm")).await));
    let get = TracingRequest::GetTrace {
        trace_id: TraceId(trace),
    };
    assert!(matches!(
        c.ask(&get).await,
        TracingResponse::TraceData { trace: Some(_) }
    ));

    env.stack.kill("cache", Signal::Kill).await.unwrap();
    let e = event("redisless");
    assert!(
        acked(&c.record(trace, &e).await),
        "ingest goes on without Redis"
    );
    let v = server
        .wait_health("redis degraded", |code, v| {
            code == 200 && v["checks"]["redis"] == "degraded"
        })
        .await;
    assert_eq!(v["status"], "degraded");
    match c.ask(&get).await {
        TracingResponse::TraceData { trace: Some(t) } => assert_eq!(t.events.len(), 2),
        other => panic!("GetTrace without Redis answered {other:?}"),
    }
    // Subscriptions fall back to this replica's own events.
    match sub.recv().await {
        TracingResponse::EventNotification { event, .. } => assert_eq!(event.event_id, e.event_id),
        other => panic!("expected a notification, got {other:?}"),
    }

    env.stack.start("cache").await.unwrap();
    server
        .wait_health("redis back", |code, v| {
            code == 200 && v["checks"]["redis"] == "ok"
        })
        .await;
    let e2 = event("redisless");
    assert!(acked(&c.record(trace, &e2).await));
    // The cache is used again, and shows the event written while Redis was down.
    let hits = server
        .metric("tracing_cache_requests_total{result=\"hit\"}")
        .await;
    for _ in 0..2 {
        match c.ask(&get).await {
            TracingResponse::TraceData { trace: Some(t) } => assert_eq!(t.events.len(), 3),
            other => panic!("GetTrace answered {other:?}"),
        }
    }
    assert!(
        server
            .metric("tracing_cache_requests_total{result=\"hit\"}")
            .await
            > hits
    );
    assert!(server.metric("tracing_redis_errors_total").await > 0.0);
    drop(server);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_on_either_replica_see_committed_events_through_redis() {
    let env = Env::boot().await;
    let a = env.server("replica-a", &[]);
    let b = env.server("replica-b", &[]);
    a.wait_ready(200).await;
    b.wait_ready(200).await;
    for s in [&a, &b] {
        s.wait_health("redis ok", |_, v| v["checks"]["redis"] == "ok")
            .await;
    }
    let mut writer = Client::connect(&a).await;
    let trace = match writer
        .ask(&TracingRequest::StartTrace {
            flow_id: FlowId::new("watched"),
            version: FlowVersion {
                major: 1,
                minor: 0,
                patch: 0,
                git_hash: None,
                timestamp: chrono::Utc::now(),
            },
        })
        .await
    {
        TracingResponse::TraceStarted { trace_id } => trace_id.0,
        other => panic!("{other:?}"),
    };
    let none = SubscriptionFilters {
        flow_ids: None,
        actor_ids: None,
        event_types: None,
        status_filter: None,
    };
    // On B: everything. On A: only the flow `watched`, MessageSent events.
    let mut on_b = Client::connect(&b).await;
    assert!(matches!(
        on_b.ask(&TracingRequest::Subscribe {
            filters: none.clone()
        })
        .await,
        TracingResponse::Pong
    ));
    let mut on_a = Client::connect(&a).await;
    assert!(matches!(
        on_a.ask(&TracingRequest::Subscribe {
            filters: SubscriptionFilters {
                flow_ids: Some(vec![FlowId::new("watched")]),
                event_types: Some(vec![TraceEventType::MessageSent]),
                ..none.clone()
            },
        })
        .await,
        TracingResponse::Pong
    ));
    assert!(b.metric("tracing_subscribers_active").await >= 1.0);
    // The subscription on B reaches Redis before anything is published.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut probe = Client::connect(&a).await;
    loop {
        let p = event("probe");
        assert!(acked(&probe.record(Uuid::new_v4(), &p).await));
        let got = tokio::time::timeout(Duration::from_millis(500), on_b.recv()).await;
        if let Ok(TracingResponse::EventNotification { event, .. }) = got
            && event.event_id == p.event_id
        {
            break;
        }
        assert!(Instant::now() < deadline, "B never saw A's events");
    }
    let matching = event("m");
    let orphan = event("o");
    let other_type = reflow_tracing_protocol::TraceEvent::actor_created("c".into());
    assert!(acked(&writer.record(trace, &matching).await));
    assert!(acked(&writer.record(Uuid::new_v4(), &orphan).await));
    assert!(acked(&writer.record(trace, &other_type).await));
    let mut seen_b = Vec::new();
    while seen_b.len() < 3 {
        match on_b.recv().await {
            TracingResponse::EventNotification { event, trace_id } => {
                if event.actor_id != "probe" {
                    seen_b.push((trace_id.0, event.event_id.0));
                }
            }
            other => panic!("B got {other:?}"),
        }
    }
    assert_eq!(
        seen_b,
        vec![
            (trace, matching.event_id.0),
            (seen_b[1].0, orphan.event_id.0),
            (trace, other_type.event_id.0)
        ]
    );
    match on_a.recv().await {
        TracingResponse::EventNotification { event, .. } => {
            assert_eq!(event.event_id, matching.event_id, "only the matching event")
        }
        other => panic!("A got {other:?}"),
    }
    // Unsubscribe: Pong, then nothing more.
    assert!(matches!(
        on_a.ask(&TracingRequest::Unsubscribe).await,
        TracingResponse::Pong
    ));
    assert!(acked(&writer.record(trace, &event("late")).await));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(
        on_a.ask(&TracingRequest::Ping).await,
        TracingResponse::Pong
    ));

    // Redis restarted: both replicas resubscribe and B sees A's events again.
    env.stack.kill("cache", Signal::Kill).await.unwrap();
    assert!(acked(
        &writer.record(trace, &event("while-redis-down")).await
    ));
    env.stack.start("cache").await.unwrap();
    for s in [&a, &b] {
        s.wait_health("redis back", |_, v| v["checks"]["redis"] == "ok")
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut probes = Vec::new();
    'seen: loop {
        let p = event("after-restart");
        probes.push(p.event_id.0);
        assert!(acked(&probe.record(Uuid::new_v4(), &p).await));
        // Read what B has (older notifications first) until it goes quiet.
        while let Ok(r) = tokio::time::timeout(Duration::from_millis(500), on_b.recv()).await {
            if let TracingResponse::EventNotification { event, .. } = r
                && probes.contains(&event.event_id.0)
            {
                break 'seen;
            }
        }
        assert!(
            Instant::now() < deadline,
            "B never saw A's events after Redis came back\nA:\n{}\nB:\n{}",
            a.log_text(),
            b.log_text()
        );
    }
    assert!(b.metric("tracing_pubsub_reconnects_total").await >= 1.0);
    drop((a, b));
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_and_answers_every_pending_event_closes_1001_and_exits_0() {
    let env = Env::boot().await;
    let mut server = env.server("server", &[]);
    server.wait_ready(200).await;
    let pg = env.pg().await;
    let mut c = Client::connect(&server).await;
    assert!(acked(&c.record(Uuid::new_v4(), &event("first")).await));
    // PostgreSQL paused: the events are read and wait in the batcher.
    env.stack.pause("db").await.unwrap();
    let n = 200;
    let mut ids = Vec::new();
    for _ in 0..n {
        let e = event("pending");
        ids.push(e.event_id.0);
        c.ws.feed(record(Uuid::new_v4(), &e)).await.unwrap();
    }
    c.ws.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("tracing_pending_events").await < n as f64 {
        assert!(Instant::now() < deadline, "the events were not all read");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.signal(libc::SIGTERM);
    server.wait_ready(503).await;
    // New connections are refused while it drains.
    assert!(
        tokio_tungstenite::connect_async(server.url())
            .await
            .is_err()
    );
    env.stack.unpause("db").await.unwrap();
    let mut acks = 0;
    for _ in 0..n {
        let r = c.recv().await;
        assert!(acked(&r), "{r:?}");
        acks += 1;
    }
    assert_eq!(acks, n);
    assert_eq!(c.closed().await, Some(1001));
    assert_eq!(
        server.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        server.log_text()
    );
    assert_eq!(stored(&pg, &ids).await, n);
    assert!(server.log_text().contains("graceful shutdown complete"));
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_acks_loses_no_acknowledged_event() {
    let env = Env::boot().await;
    let mut server = env.server("server", &[]);
    server.wait_ready(200).await;
    let pg = env.pg().await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = server.url();
        tasks.push(tokio::spawn(async move {
            let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let (mut tx, mut rx) = ws.split();
            let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel();
            let sender = tokio::spawn(async move {
                for _ in 0..20_000 {
                    let e = event("doomed");
                    let _ = sent_tx.send(e.event_id.0);
                    if tx.send(record(Uuid::new_v4(), &e)).await.is_err() {
                        return;
                    }
                }
            });
            let mut acked_ids = Vec::new();
            while let Some(Ok(Message::Text(t))) = rx.next().await {
                let r: TracingResponse = serde_json::from_str(&t).unwrap();
                let id = sent_rx.recv().await.unwrap();
                if acked(&r) {
                    acked_ids.push(id);
                }
            }
            sender.abort();
            acked_ids
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.metric("tracing_events_stored_total").await < 500.0 {
        assert!(Instant::now() < deadline, "no ingest");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.signal(libc::SIGKILL);
    assert_eq!(server.wait_exit(Duration::from_secs(10)), None, "killed");
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert!(all.len() >= 100, "{} acks", all.len());
    assert_eq!(
        stored(&pg, &all).await,
        all.len(),
        "every acknowledged event is in PostgreSQL"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_round_trip() {
    let env = Env::boot().await;
    let server = env.server("server", &[]);
    server.wait_ready(200).await;
    let mut c = Client::connect(&server).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let e = event(&format!("kept-{i}"));
        ids.push(e.event_id.0);
        assert!(acked(&c.record(Uuid::new_v4(), &e).await));
    }
    let dump = env.dir.path().join("tracing.dump");
    let tool = |args: &[&str]| {
        std::process::Command::new(common::bin())
            .args(args)
            .env("TRACING_DATABASE_URL", env.db_url())
            .env("TRACING_REDIS_URL", env.redis_url())
            .output()
            .unwrap()
    };
    let out = tool(&["backup", "--out", dump.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read(&dump).unwrap().starts_with(b"PGDMP"),
        "pg_dump -Fc"
    );
    // Lose data after the backup, then restore: exactly the backed-up events.
    let pg = env.pg().await;
    pg.execute(
        "DELETE FROM tracing.events WHERE event_id = ANY($1)",
        &[&&ids[..10]],
    )
    .await
    .unwrap();
    let extra = event("after-backup");
    assert!(acked(&c.record(Uuid::new_v4(), &extra).await));
    drop(c);
    drop(server);
    let out = tool(&["restore", "--from", dump.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stored(&pg, &ids).await, ids.len());
    assert_eq!(stored(&pg, &[extra.event_id.0]).await, 0);
    let versions = pg
        .query_one("SELECT count(*) FROM tracing.schema_migrations", &[])
        .await
        .unwrap();
    assert!(versions.get::<_, i64>(0) >= 1);
    // A server starts on the restored database and serves its events.
    let server = env.server("restored", &[]);
    server.wait_ready(200).await;
    let mut c = Client::connect(&server).await;
    let trace: Uuid = pg
        .query_one(
            "SELECT trace_id FROM tracing.events WHERE event_id = $1",
            &[&ids[0]],
        )
        .await
        .unwrap()
        .get(0);
    match c
        .ask(&TracingRequest::GetTrace {
            trace_id: TraceId(trace),
        })
        .await
    {
        TracingResponse::TraceData { trace: Some(t) } => assert_eq!(t.events[0].event_id.0, ids[0]),
        other => panic!("{other:?}"),
    }
    // Bad use: a missing dump is a clear error, exit 1.
    let out = tool(&["restore", "--from", "/nonexistent.dump"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));
    drop(server);
    env.shutdown().await;
}
