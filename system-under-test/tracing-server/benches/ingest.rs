//! Ingest benchmark, one run against one PostgreSQL (booted with Redis by
//! Gauntlet's process stack, fsync on):
//!
//! - raw binary `COPY` of N event rows into `tracing.events` (the ceiling);
//! - the server's own batch statement (`unnest` … `ON CONFLICT DO NOTHING`)
//!   and the alternative (binary `COPY` into a temporary table, then
//!   `INSERT … SELECT … ON CONFLICT DO NOTHING`), batches of 100 and 1000;
//! - per-row `INSERT` in autocommit, one connection and C connections
//!   (what a naive server gets), which also gives one commit's p99;
//! - the server: acknowledged (committed) events/s over WebSocket with C
//!   pipelining connections, then `record_event` latency at half that rate.
//!
//! `cargo bench -p tracing-server --bench ingest` (env: BENCH_EVENTS,
//! BENCH_CONNECTIONS, BENCH_BATCH_SIZE, BENCH_COMMIT_PARALLELISM;
//! BENCH_PERF=FILE records the server with `perf record -g` meanwhile).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::{SinkExt, StreamExt, pin_mut};
use gauntlet_stack::ProcessStack;
use gauntlet_stack::bins::Locator;
use gauntlet_stack::gauntlet_control::Stack as _;
use reflow_tracing_protocol::{TraceEvent, TraceId, TracingRequest, TracingResponse};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const SCENARIO: &str = r#"
name: tracing-ingest-bench
stack:
  services:
    db: { kind: postgres }
    cache: { kind: redis }
workload:
  phases:
    - { name: steady, duration: 1s, rate: 1/s }
  operations:
    - { name: probe, http: { service: db, url: / } }
"#;

/// JSON text sent as `jsonb` without parsing it here.
#[derive(Debug)]
struct RawJson<'a>(&'a str);

impl ToSql for RawJson<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.extend_from_slice(&[1]);
        }
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }
    to_sql_checked!();
}

struct Ev {
    event_id: Uuid,
    trace_id: Uuid,
    ts: chrono::DateTime<chrono::Utc>,
    actor: String,
    payload: String,
    event: TraceEvent,
}

fn events(n: usize, traces: &[Uuid]) -> Vec<Ev> {
    (0..n)
        .map(|i| {
            let mut e = TraceEvent::message_sent(
                format!("actor-{}", i % 50),
                "out".into(),
                "Payload".into(),
                256,
            );
            e.data
                .custom_attributes
                .insert("seq".into(), serde_json::json!(i));
            let payload = serde_json::to_string(&e).unwrap();
            Ev {
                event_id: e.event_id.0,
                trace_id: traces[i % traces.len()],
                ts: e.timestamp,
                actor: e.actor_id.clone(),
                payload,
                event: e,
            }
        })
        .collect()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c
}

async fn copy_rows(c: &mut tokio_postgres::Client, rows: &[Ev]) -> Duration {
    let t0 = Instant::now();
    let tx = c.transaction().await.unwrap();
    let sink = tx
        .copy_in("COPY tracing.events (event_id, trace_id, ts, event_type, actor_id, payload) FROM STDIN BINARY")
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::UUID,
            Type::UUID,
            Type::TIMESTAMPTZ,
            Type::TEXT,
            Type::TEXT,
            Type::JSONB,
        ],
    );
    pin_mut!(writer);
    for r in rows {
        writer
            .as_mut()
            .write(&[
                &r.event_id,
                &r.trace_id,
                &r.ts,
                &"MessageSent",
                &r.actor,
                &RawJson(&r.payload),
            ])
            .await
            .unwrap();
    }
    writer.finish().await.unwrap();
    tx.commit().await.unwrap();
    t0.elapsed()
}

async fn unnest_batches(
    c: &tokio_postgres::Client,
    rows: &[Ev],
    batch: usize,
    sql: &str,
) -> Duration {
    let st = c.prepare(sql).await.unwrap();
    let t0 = Instant::now();
    for chunk in rows.chunks(batch) {
        let ids: Vec<Uuid> = chunk.iter().map(|r| r.event_id).collect();
        let traces: Vec<Uuid> = chunk.iter().map(|r| r.trace_id).collect();
        let ts: Vec<_> = chunk.iter().map(|r| r.ts).collect();
        let types: Vec<&str> = chunk.iter().map(|_| "MessageSent").collect();
        let actors: Vec<&str> = chunk.iter().map(|r| r.actor.as_str()).collect();
        let payloads: Vec<&str> = chunk.iter().map(|r| r.payload.as_str()).collect();
        c.query(&st, &[&ids, &traces, &ts, &types, &actors, &payloads])
            .await
            .unwrap();
    }
    t0.elapsed()
}

async fn copy_temp_batches(c: &mut tokio_postgres::Client, rows: &[Ev], batch: usize) -> Duration {
    c.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS incoming (event_id uuid, trace_id uuid, ts timestamptz, event_type text, actor_id text, payload jsonb) ON COMMIT DELETE ROWS",
    )
    .await
    .unwrap();
    let t0 = Instant::now();
    for chunk in rows.chunks(batch) {
        let tx = c.transaction().await.unwrap();
        let sink = tx.copy_in("COPY incoming FROM STDIN BINARY").await.unwrap();
        let writer = BinaryCopyInWriter::new(
            sink,
            &[
                Type::UUID,
                Type::UUID,
                Type::TIMESTAMPTZ,
                Type::TEXT,
                Type::TEXT,
                Type::JSONB,
            ],
        );
        pin_mut!(writer);
        for r in chunk {
            writer
                .as_mut()
                .write(&[
                    &r.event_id,
                    &r.trace_id,
                    &r.ts,
                    &"MessageSent",
                    &r.actor,
                    &RawJson(&r.payload),
                ])
                .await
                .unwrap();
        }
        writer.finish().await.unwrap();
        tx.batch_execute(
            "INSERT INTO tracing.traces (trace_id, start_time, status, orphan)
               SELECT DISTINCT ON (trace_id) trace_id, ts, '\"Running\"'::jsonb, true FROM incoming ORDER BY trace_id, ts
               ON CONFLICT (trace_id) DO NOTHING;
             INSERT INTO tracing.events (event_id, trace_id, ts, event_type, actor_id, payload)
               SELECT * FROM incoming ON CONFLICT (event_id) DO NOTHING",
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    t0.elapsed()
}

/// Per-row INSERT in autocommit; each row's latency.
async fn per_row(c: &tokio_postgres::Client, rows: &[Ev]) -> Vec<Duration> {
    let st = c
        .prepare("INSERT INTO tracing.events (event_id, trace_id, ts, event_type, actor_id, payload) VALUES ($1, $2, $3, $4, $5, $6)")
        .await
        .unwrap();
    let mut lat = Vec::with_capacity(rows.len());
    for r in rows {
        let t = Instant::now();
        c.execute(
            &st,
            &[
                &r.event_id,
                &r.trace_id,
                &r.ts,
                &"MessageSent",
                &r.actor,
                &RawJson(&r.payload),
            ],
        )
        .await
        .unwrap();
        lat.push(t.elapsed());
    }
    lat
}

fn frame(trace: Uuid, e: &TraceEvent) -> Message {
    Message::Text(
        serde_json::to_string(&TracingRequest::RecordEvent {
            trace_id: TraceId(trace),
            event: e.clone(),
        })
        .unwrap()
        .into(),
    )
}

/// Closed loop: C connections, each with `window` requests in flight.
async fn ws_throughput(
    url: &str,
    rows: Arc<Vec<Ev>>,
    conns: usize,
    window: usize,
) -> (Duration, usize) {
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..conns {
        let url = url.to_owned();
        let rows = rows.clone();
        tasks.push(tokio::spawn(async move {
            let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let (mut tx, mut rx) = ws.split();
            let mine: Vec<usize> = (k..rows.len()).step_by(conns).collect();
            let total = mine.len();
            let (credit_tx, mut credit_rx) = tokio::sync::mpsc::channel::<()>(window);
            for _ in 0..window {
                credit_tx.send(()).await.unwrap();
            }
            let rows2 = rows.clone();
            let sender = tokio::spawn(async move {
                for i in mine {
                    if credit_rx.recv().await.is_none() {
                        return;
                    }
                    let r = &rows2[i];
                    tx.feed(frame(r.trace_id, &r.event)).await.unwrap();
                    if credit_rx.is_empty() {
                        tx.flush().await.unwrap();
                    }
                }
                tx.flush().await.unwrap();
            });
            let mut ok = 0;
            for _ in 0..total {
                match rx.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let r: TracingResponse = serde_json::from_str(&t).unwrap();
                        if matches!(r, TracingResponse::EventRecorded { success: true, .. }) {
                            ok += 1;
                        }
                        let _ = credit_tx.try_send(());
                    }
                    other => panic!("{other:?}"),
                }
            }
            sender.await.unwrap();
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    (t0.elapsed(), ok)
}

/// Open loop at `rate` events/s over C connections for `secs`: latencies.
async fn ws_latency(
    url: &str,
    traces: Vec<Uuid>,
    conns: usize,
    rate: f64,
    secs: f64,
) -> Vec<Duration> {
    let per_conn = rate / conns as f64;
    let interval = Duration::from_secs_f64(1.0 / per_conn);
    let count = (per_conn * secs) as usize;
    let mut tasks = Vec::new();
    for k in 0..conns {
        let url = url.to_owned();
        let trace = traces[k % traces.len()];
        tasks.push(tokio::spawn(async move {
            let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let (mut tx, mut rx) = ws.split();
            let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
            let sender = tokio::spawn(async move {
                // Stagger the connections over one interval.
                let start = tokio::time::Instant::now() + interval.mul_f64(k as f64 / conns as f64);
                for i in 0..count {
                    tokio::time::sleep_until(start + interval * i as u32).await;
                    let e = TraceEvent::message_sent(
                        format!("actor-{k}"),
                        "out".into(),
                        "P".into(),
                        256,
                    );
                    let _ = sent_tx.send(Instant::now());
                    tx.send(frame(trace, &e)).await.unwrap();
                }
            });
            let mut lat = Vec::with_capacity(count);
            for _ in 0..count {
                match rx.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let sent = sent_rx.recv().await.unwrap();
                        let r: TracingResponse = serde_json::from_str(&t).unwrap();
                        assert!(
                            matches!(r, TracingResponse::EventRecorded { success: true, .. }),
                            "{r:?}"
                        );
                        lat.push(sent.elapsed());
                    }
                    other => panic!("{other:?}"),
                }
            }
            sender.await.unwrap();
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}

/// CPU seconds (user + system) a process used so far.
fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf(3) has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// CPU of a process and all its descendants (PostgreSQL: postmaster, backends, WAL writer, …).
fn cpu_of_tree(root: u32) -> f64 {
    let mut parent = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
        if let Some(pp) = after
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
        {
            parent.insert(pid, pp);
        }
    }
    let in_tree = |mut pid: u32| {
        for _ in 0..64 {
            if pid == root {
                return true;
            }
            match parent.get(&pid) {
                Some(&pp) if pp != 0 => pid = pp,
                _ => return false,
            }
        }
        false
    };
    parent
        .keys()
        .filter(|p| in_tree(**p))
        .map(|p| cpu_of(*p))
        .sum()
}

struct Cpu {
    server: f64,
    postgres: f64,
    bench: f64,
}

fn cpu_now(server: u32, postgres: u32) -> Cpu {
    Cpu {
        server: cpu_of(server),
        postgres: cpu_of_tree(postgres),
        bench: cpu_of(std::process::id()),
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("ingest: bench");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // binary without it: a small smoke run of every phase.
    let smoke = !std::env::args().any(|a| a == "--bench");
    rt.block_on(run(smoke));
}

async fn run(smoke: bool) {
    let n = if smoke {
        300
    } else {
        env_usize("BENCH_EVENTS", 50_000)
    };
    let conns = if smoke {
        4
    } else {
        env_usize("BENCH_CONNECTIONS", 16)
    };
    let batch = env_usize("BENCH_BATCH_SIZE", 1000);
    let n_row = if smoke { 40 } else { (n / 25).max(500) };
    let warm = if smoke { 50 } else { 2000 };
    let scenario = gauntlet_scenario::load("bench.yaml", SCENARIO, &[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stack = ProcessStack::boot(&scenario, dir.path(), &Locator::default(), true)
        .await
        .expect("postgresql-15 and redis-server are installed");
    let db = stack.endpoint("db").unwrap();
    let cache = stack.endpoint("cache").unwrap();
    let db_url = format!("postgresql://postgres@{}:{}/postgres", db.host, db.port);
    let redis_url = format!("redis://{}:{}", cache.host, cache.port);
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_tracing-server"))
        .env("TRACING_BIND_ADDRESS", "127.0.0.1:0")
        .env("TRACING_DATABASE_URL", &db_url)
        .env("TRACING_REDIS_URL", &redis_url)
        .env("TRACING_BATCH_SIZE", batch.to_string())
        .env(
            "TRACING_COMMIT_PARALLELISM",
            std::env::var("BENCH_COMMIT_PARALLELISM").unwrap_or_else(|_| "2".into()),
        )
        .env("RUST_LOG", "warn")
        .current_dir(dir.path())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let text = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("\"listening\"")) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            break v["addr"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "server did not start: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let url = format!("ws://{addr}/");
    // Ready: the schema exists.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pg = connect(&db_url).await;
    while !pg
        .query_one("SELECT count(*) FROM tracing.schema_migrations", &[])
        .await
        .is_ok_and(|r| r.get::<_, i64>(0) >= 1)
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let traces: Vec<Uuid> = (0..100).map(|_| Uuid::new_v4()).collect();
    pg.execute(
        "INSERT INTO tracing.traces (trace_id, flow_id, start_time, status) SELECT t, 'bench', now(), '\"Running\"' FROM unnest($1::uuid[]) t",
        &[&traces],
    )
    .await
    .unwrap();

    let mut table: Vec<(String, f64, String)> = Vec::new();
    let rate = |rows: usize, d: Duration| rows as f64 / d.as_secs_f64();

    // Warm PostgreSQL's caches once (not measured).
    copy_rows(&mut pg, &events(warm, &traces)).await;

    let copy = copy_rows(&mut pg, &events(n, &traces)).await;
    let copy_rate = rate(n, copy);
    table.push((
        "binary COPY, one transaction".into(),
        copy_rate,
        format!("{n} rows"),
    ));

    for b in [100, 1000] {
        let d = unnest_batches(&pg, &events(n, &traces), b, tracing_server::db::WRITE_BATCH).await;
        table.push((
            format!("server full statement (unnest, creates traces, ON CONFLICT), batches of {b}"),
            rate(n, d),
            "one transaction per batch".into(),
        ));
        let d = unnest_batches(
            &pg,
            &events(n, &traces),
            b,
            tracing_server::db::WRITE_EVENTS,
        )
        .await;
        table.push((
            format!("server fast statement (unnest, traces known, plain INSERT), batches of {b}"),
            rate(n, d),
            "one transaction per batch".into(),
        ));
        let d = copy_temp_batches(&mut pg, &events(n, &traces), b).await;
        table.push((
            format!("COPY to temp + INSERT SELECT, batches of {b}"),
            rate(n, d),
            "one transaction per batch".into(),
        ));
    }

    let rows = events(n_row, &traces);
    let mut lat = per_row(&pg, &rows).await;
    let single: Duration = lat.iter().sum();
    lat.sort();
    let commit_p99 = pct(&lat, 0.99);
    let commit_lat = lat.clone();
    table.push((
        "per-row INSERT, autocommit, 1 connection".into(),
        rate(n_row, single),
        format!("commit p50 {:?} p99 {:?}", pct(&lat, 0.5), commit_p99),
    ));
    let rows = Arc::new(events(n_row, &traces));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..conns {
        let rows = rows.clone();
        let db_url = db_url.clone();
        tasks.push(tokio::spawn(async move {
            let c = connect(&db_url).await;
            let mine: Vec<&Ev> = rows.iter().skip(k).step_by(conns).collect();
            let st = c
                .prepare("INSERT INTO tracing.events (event_id, trace_id, ts, event_type, actor_id, payload) VALUES ($1, $2, $3, $4, $5, $6)")
                .await
                .unwrap();
            for r in mine {
                c.execute(&st, &[&r.event_id, &r.trace_id, &r.ts, &"MessageSent", &r.actor, &RawJson(&r.payload)])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    table.push((
        format!("per-row INSERT, autocommit, {conns} connections"),
        rate(n_row, t0.elapsed()),
        String::new(),
    ));

    // The server: warm-up, then the measured run.
    ws_throughput(&url, Arc::new(events(warm, &traces)), conns, 64).await;
    let pg_pid = stack.pid("db").expect("postgres runs");
    let rows = Arc::new(events(n, &traces));
    // BENCH_PERF=FILE: `perf record -g` of the server during the run.
    let perf = std::env::var("BENCH_PERF").ok().map(|file| {
        std::process::Command::new("perf")
            .args([
                "record",
                "-F",
                "499",
                "-g",
                "-o",
                &file,
                "-p",
                &server.id().to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("perf is installed")
    });
    let before = cpu_now(server.id(), pg_pid);
    let (d, ok) = ws_throughput(&url, rows, conns, 256).await;
    let after = cpu_now(server.id(), pg_pid);
    if let Some(p) = perf {
        unsafe {
            libc::kill(p.id() as i32, libc::SIGINT);
        }
        let _ = p.wait_with_output();
    }
    let per_event = |a: f64, b: f64| (a - b) * 1e6 / n as f64;
    let cpu_note = format!(
        "CPU per acked event: server {:.0} µs, PostgreSQL {:.0} µs, load generator {:.0} µs ({:.1} s wall)",
        per_event(after.server, before.server),
        per_event(after.postgres, before.postgres),
        per_event(after.bench, before.bench),
        d.as_secs_f64()
    );
    assert_eq!(ok, n, "every event acknowledged");
    let ws_rate = rate(n, d);
    table.push((
        format!("tracing-server, acked over WebSocket, {conns} connections × 256 in flight"),
        ws_rate,
        format!(
            "batch_size {batch}, commit_parallelism {}; {:.0} % of COPY",
            std::env::var("BENCH_COMMIT_PARALLELISM").unwrap_or_else(|_| "2".into()),
            100.0 * ws_rate / copy_rate
        ),
    ));
    let half = ws_rate / 2.0;
    let secs = if smoke { 0.5 } else { 5.0 };
    let lat = ws_latency(&url, traces.clone(), conns, half, secs).await;
    let rec_p99 = pct(&lat, 0.99);

    let stored: i64 = pg
        .query_one("SELECT count(*) FROM tracing.events", &[])
        .await
        .unwrap()
        .get(0);
    if smoke {
        println!(
            "\nSMOKE RUN (cargo test without --bench): tiny sizes, debug build; the figures mean nothing"
        );
    }
    println!(
        "\ntracing-server ingest benchmark ({} cores; PostgreSQL 15 fsync on; all rows into tracing.events)\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("| method | rows/s | notes |\n|---|---:|---|");
    for (m, r, note) in &table {
        println!("| {m} | {r:.0} | {note} |");
    }
    println!(
        "\n| latency | p50 | p99 | p99.9 |\n|---|---:|---:|---:|\n| one PostgreSQL commit (per-row INSERT) | {:?} | {:?} | {:?} |\n| record_event at half the acked rate ({half:.0}/s, {} samples) | {:?} | {:?} | {:?} |",
        pct(&commit_lat, 0.5),
        commit_p99,
        pct(&commit_lat, 0.999),
        lat.len(),
        pct(&lat, 0.5),
        rec_p99,
        pct(&lat, 0.999),
    );
    println!("\n{cpu_note}");
    let (_, metrics) = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        ((), buf)
    };
    for l in metrics.lines().filter(|l| {
        l.starts_with("tracing_batch_events_sum")
            || l.starts_with("tracing_batch_events_count")
            || l.starts_with("tracing_db_commit_duration_seconds_sum")
            || l.starts_with("tracing_db_commit_duration_seconds_count")
    }) {
        println!("server {l}");
    }
    println!(
        "\ntargets: acked/COPY = {:.0} % (≥ 50 %); p99 record_event / p99 commit = {:.2} (≤ 2)\nrows in tracing.events: {stored}",
        100.0 * ws_rate / copy_rate,
        rec_p99.as_secs_f64() / commit_p99.as_secs_f64()
    );
    unsafe {
        libc::kill(server.id() as i32, libc::SIGTERM);
    }
    let _ = server.wait();
    stack.shutdown().await;
}
