//! PostgreSQL: the pool, the versioned migrations, the batch write and the
//! reads. Every value travels as a parameter (no SQL is built from data).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use reflow_tracing_protocol::{
    ExecutionId, ExecutionStatus, FlowId, FlowTrace, FlowVersion, TraceEvent, TraceId,
    TraceMetadata, TraceQuery,
};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::config::Config;

/// A storage failure, as the client will read it after `unavailable: `.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached, timed out, or the outcome is unknown.
    #[error("{0}")]
    Unavailable(String),
    /// PostgreSQL refused the data itself (a value out of its range, …).
    #[error("{0}")]
    Rejected(String),
    /// A unique key was already stored (the plain insert's signal to retry
    /// with `ON CONFLICT DO NOTHING`).
    #[error("{0}")]
    Duplicate(String),
}

impl DbError {
    fn from_pg(what: &str, e: tokio_postgres::Error) -> DbError {
        if let Some(db) = e.as_db_error() {
            if *db.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION {
                return DbError::Duplicate(format!("{what}: {}", db.message()));
            }
            let class = &db.code().code()[..2];
            // 22: data exception, 23: integrity constraint, 54: program limit.
            if matches!(class, "22" | "23" | "54") {
                return DbError::Rejected(format!("{what}: {}", db.message()));
            }
            return DbError::Unavailable(format!(
                "{what}: {} ({})",
                db.message(),
                db.code().code()
            ));
        }
        DbError::Unavailable(format!("{what}: {e}"))
    }
}

/// The migrations, in order; each runs once in its own transaction and is
/// recorded in `tracing.schema_migrations`.
pub const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE tracing.traces (
        trace_id uuid PRIMARY KEY,
        flow_id text,
        execution_id uuid,
        version jsonb,
        start_time timestamptz,
        end_time timestamptz,
        status jsonb,
        metadata jsonb,
        orphan boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX traces_flow_id_start_time ON tracing.traces (flow_id, start_time);
    CREATE INDEX traces_start_time ON tracing.traces (start_time);
    CREATE TABLE tracing.events (
        event_id uuid PRIMARY KEY,
        trace_id uuid NOT NULL,
        seq bigint GENERATED ALWAYS AS IDENTITY,
        ts timestamptz NOT NULL,
        event_type text NOT NULL,
        actor_id text NOT NULL,
        payload jsonb NOT NULL,
        stored_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX events_trace_id_ts_seq ON tracing.events (trace_id, ts, seq);",
)];

/// Arbitrary key of the advisory lock that serialises replicas' migrations.
const MIGRATION_LOCK: i64 = 0x7472_6163_696e_6701;

/// One event ready for the batch write.
pub struct Row {
    pub event_id: Uuid,
    pub trace_id: Uuid,
    pub ts: DateTime<Utc>,
    pub event_type: &'static str,
    pub actor_id: String,
    /// The whole `TraceEvent` as serde_json writes it.
    pub payload: std::sync::Arc<str>,
}

/// What one batch write did.
#[derive(Debug, Default, Clone)]
pub struct Written {
    /// New event rows (re-sent event ids are not counted).
    pub stored: u64,
    /// Traces created by this batch's events (they were unknown: orphans).
    pub new_traces: Vec<Uuid>,
}

/// One statement, hence one transaction: the traces an event names are
/// created when unknown (returned: orphans), then the events are inserted;
/// a re-sent event id changes nothing. The first column is the number of
/// new event rows, repeated on every row; no row when nothing was new.
pub const WRITE_BATCH: &str = "WITH input AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::text[])
            AS u(event_id, trace_id, ts, event_type, actor_id, payload)
    ), new_traces AS (
        INSERT INTO tracing.traces (trace_id, start_time, status, orphan)
        SELECT DISTINCT ON (trace_id) trace_id, ts, '\"Running\"'::jsonb, true
        FROM input ORDER BY trace_id, ts
        ON CONFLICT (trace_id) DO NOTHING
        RETURNING trace_id
    ), new_events AS (
        INSERT INTO tracing.events (event_id, trace_id, ts, event_type, actor_id, payload)
        SELECT event_id, trace_id, ts, event_type, actor_id, payload::jsonb FROM input
        ON CONFLICT (event_id) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM new_events), (SELECT array_agg(trace_id) FROM new_traces)";

/// The fast path when every trace of the batch is known to exist: a plain
/// insert (a re-sent event id makes it fail with unique_violation, and the
/// batch is written again with [`WRITE_BATCH`]).
pub const WRITE_EVENTS: &str =
    "INSERT INTO tracing.events (event_id, trace_id, ts, event_type, actor_id, payload)
    SELECT event_id, trace_id, ts, event_type, actor_id, payload::jsonb
    FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::text[])
        AS u(event_id, trace_id, ts, event_type, actor_id, payload)";

/// Trace ids known to exist in PostgreSQL (bounded; cleared when full).
#[derive(Default)]
pub struct Known(std::sync::Mutex<std::collections::HashSet<Uuid>>);

const KNOWN_CAP: usize = 200_000;

impl Known {
    pub fn all(&self, ids: &[Uuid]) -> bool {
        let set = self.0.lock().expect("not poisoned");
        ids.iter().all(|i| set.contains(i))
    }

    pub fn add(&self, ids: &[Uuid]) {
        let mut set = self.0.lock().expect("not poisoned");
        if set.len() + ids.len() > KNOWN_CAP {
            set.clear();
        }
        set.extend(ids.iter().copied());
    }
}

#[derive(Clone)]
pub struct Db {
    pool: Pool,
    timeout: Duration,
    known: std::sync::Arc<Known>,
}

pub fn pg_config(cfg: &Config) -> Result<tokio_postgres::Config, String> {
    let mut pg: tokio_postgres::Config = cfg
        .database_url
        .parse()
        .map_err(|e| format!("database URL: {e}"))?;
    pg.connect_timeout(cfg.db_connection_timeout);
    pg.application_name("tracing-server");
    pg.options(format!(
        "-c statement_timeout={}",
        cfg.statement_timeout.as_millis()
    ));
    pg.keepalives(true);
    pg.keepalives_idle(Duration::from_secs(10));
    Ok(pg)
}

impl Db {
    pub fn new(cfg: &Config) -> Result<Db, String> {
        let manager = Manager::from_config(
            pg_config(cfg)?,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let t = Some(cfg.db_connection_timeout);
        let pool = Pool::builder(manager)
            .max_size(cfg.db_max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(t)
            .create_timeout(t)
            .recycle_timeout(t)
            .build()
            .map_err(|e| format!("database pool: {e}"))?;
        Ok(Db {
            pool,
            timeout: cfg.db_connection_timeout,
            known: Default::default(),
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub async fn get(&self) -> Result<Object, DbError> {
        self.pool
            .get()
            .await
            .map_err(|e| DbError::Unavailable(format!("no database connection: {e}")))
    }

    /// Runs `f` on a pooled connection, bounded by the connection timeout;
    /// a connection that timed out is discarded (its state is unknown).
    pub async fn with<T, F>(&self, what: &str, f: F) -> Result<T, DbError>
    where
        F: for<'c> AsyncFnOnce(&'c Object) -> Result<T, tokio_postgres::Error>,
    {
        let client = self.get().await?;
        match tokio::time::timeout(self.timeout, f(&client)).await {
            Ok(r) => r.map_err(|e| DbError::from_pg(what, e)),
            Err(_) => {
                drop(Object::take(client));
                Err(DbError::Unavailable(format!(
                    "{what}: no answer within {} ms",
                    self.timeout.as_millis()
                )))
            }
        }
    }

    /// Keeps `n` connections open (best effort).
    pub async fn warm(&self, n: usize) {
        let mut held = Vec::new();
        for _ in 0..n {
            match self.pool.get().await {
                Ok(c) => held.push(c),
                Err(_) => break,
            }
        }
    }

    pub async fn ping(&self) -> Result<(), DbError> {
        self.with("ping", async |c| {
            c.simple_query("SELECT 1").await.map(|_| ())
        })
        .await
    }

    /// Applies the missing migrations; safe with several replicas starting.
    pub async fn migrate(&self) -> Result<Vec<i32>, DbError> {
        let mut client = self.get().await?;
        let run = async {
            client
                .batch_execute("CREATE SCHEMA IF NOT EXISTS tracing")
                .await
                .or_else(|e| {
                    // Two replicas creating the schema at once: the loser sees a unique violation.
                    if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
            client
                .query("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            let result = async {
                client
                    .batch_execute(
                        "CREATE TABLE IF NOT EXISTS tracing.schema_migrations (
                            version int PRIMARY KEY,
                            applied_at timestamptz NOT NULL DEFAULT now())",
                    )
                    .await?;
                let done: Vec<i32> = client
                    .query("SELECT version FROM tracing.schema_migrations", &[])
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let mut applied = Vec::new();
                for (version, sql) in MIGRATIONS {
                    if done.contains(version) {
                        continue;
                    }
                    let tx = client.transaction().await?;
                    tx.batch_execute(sql).await?;
                    tx.execute(
                        "INSERT INTO tracing.schema_migrations (version) VALUES ($1)",
                        &[version],
                    )
                    .await?;
                    tx.commit().await?;
                    applied.push(*version);
                }
                Ok::<_, tokio_postgres::Error>(applied)
            }
            .await;
            client
                .query("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
                .await?;
            result
        };
        match tokio::time::timeout(self.timeout * 6, run).await {
            Ok(r) => r.map_err(|e| DbError::from_pg("migration", e)),
            Err(_) => {
                drop(Object::take(client));
                Err(DbError::Unavailable("migration: timed out".to_owned()))
            }
        }
    }

    /// Writes one batch in one transaction (one statement): the plain
    /// insert when every trace is known to exist, else (or when an event id
    /// was already stored) the full statement.
    pub async fn write_batch(&self, rows: &[&Row]) -> Result<Written, DbError> {
        let mut event_ids = Vec::with_capacity(rows.len());
        let mut trace_ids = Vec::with_capacity(rows.len());
        let mut ts = Vec::with_capacity(rows.len());
        let mut types = Vec::with_capacity(rows.len());
        let mut actors = Vec::with_capacity(rows.len());
        let mut payloads = Vec::with_capacity(rows.len());
        for r in rows {
            event_ids.push(r.event_id);
            trace_ids.push(r.trace_id);
            ts.push(r.ts);
            types.push(r.event_type);
            actors.push(r.actor_id.as_str());
            payloads.push(&*r.payload);
        }
        let mut distinct = trace_ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if self.known.all(&distinct) {
            let fast = self
                .with("batch write", async |c| {
                    let st = c.prepare_cached(WRITE_EVENTS).await?;
                    c.execute(
                        &st,
                        &[&event_ids, &trace_ids, &ts, &types, &actors, &payloads],
                    )
                    .await
                })
                .await;
            match fast {
                Ok(n) => {
                    return Ok(Written {
                        stored: n,
                        new_traces: Vec::new(),
                    });
                }
                Err(DbError::Duplicate(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let row = self
            .with("batch write", async |c| {
                let st = c.prepare_cached(WRITE_BATCH).await?;
                c.query_one(
                    &st,
                    &[&event_ids, &trace_ids, &ts, &types, &actors, &payloads],
                )
                .await
            })
            .await?;
        let stored: i64 = row.get(0);
        let new_traces: Option<Vec<Uuid>> = row.get(1);
        self.known.add(&distinct);
        Ok(Written {
            stored: stored as u64,
            new_traces: new_traces.unwrap_or_default(),
        })
    }

    pub async fn start_trace(
        &self,
        flow_id: &FlowId,
        version: &FlowVersion,
    ) -> Result<Uuid, DbError> {
        let trace_id = Uuid::new_v4();
        let execution_id = Uuid::new_v4();
        let version = serde_json::to_value(version).expect("a FlowVersion serialises");
        let status = serde_json::to_value(ExecutionStatus::Running).expect("serialises");
        let flow = flow_id.0.as_str();
        self.with("start trace", async |c| {
            c.execute(
                "INSERT INTO tracing.traces (trace_id, flow_id, execution_id, version, start_time, status, orphan)
                 VALUES ($1, $2, $3, $4, now(), $5, false)",
                &[&trace_id, &flow, &execution_id, &version, &status],
            )
            .await
        })
        .await?;
        self.known.add(&[trace_id]);
        Ok(trace_id)
    }

    /// The trace with every event (by timestamp, then arrival), or `None`.
    pub async fn get_trace(&self, trace_id: Uuid) -> Result<Option<FlowTrace>, DbError> {
        let (head, events) = self
            .with("get trace", async |c| {
                let head = c
                    .query_opt(
                        "SELECT trace_id, flow_id, execution_id, version::text, start_time, end_time, status::text, metadata::text
                         FROM tracing.traces WHERE trace_id = $1",
                        &[&trace_id],
                    )
                    .await?;
                let events = c
                    .query(
                        "SELECT payload::text FROM tracing.events WHERE trace_id = $1 ORDER BY ts, seq",
                        &[&trace_id],
                    )
                    .await?;
                Ok((head, events))
            })
            .await?;
        let Some(head) = head else {
            return Ok(None);
        };
        let mut trace = trace_from_row(&head)?;
        trace.events = events
            .iter()
            .map(|r| {
                let text: &str = r.get(0);
                serde_json::from_str::<TraceEvent>(text)
                    .map_err(|e| DbError::Rejected(format!("a stored event does not parse: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(trace))
    }

    /// Trace headers matching the query (newest first; `events` left empty:
    /// `GetTrace` has them) and the number of matches without the page.
    pub async fn query_traces(
        &self,
        q: &TraceQuery,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<FlowTrace>, usize), DbError> {
        let mut conditions: Vec<String> = Vec::new();
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut push = |cond: &str, p: Box<dyn ToSql + Sync + Send>| {
            params.push(p);
            conditions.push(cond.replace('?', &format!("${}", params.len())));
        };
        if let Some(f) = &q.flow_id {
            push("t.flow_id = ?", Box::new(f.0.clone()));
        }
        if let Some(e) = &q.execution_id {
            push("t.execution_id = ?", Box::new(e.0));
        }
        if let Some((from, to)) = &q.time_range {
            push("t.start_time >= ?", Box::new(*from));
            push("t.start_time <= ?", Box::new(*to));
        }
        if let Some(s) = &q.status {
            push(
                "t.status = ?",
                Box::new(serde_json::to_value(s).expect("a status serialises")),
            );
        }
        if let Some(a) = &q.actor_filter {
            push(
                "EXISTS (SELECT 1 FROM tracing.events e WHERE e.trace_id = t.trace_id AND e.actor_id = ?)",
                Box::new(a.clone()),
            );
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let count_sql = format!("SELECT count(*) FROM tracing.traces t {filter}");
        let n = params.len();
        let page_sql = format!(
            "SELECT trace_id, flow_id, execution_id, version::text, start_time, end_time, status::text, metadata::text
             FROM tracing.traces t {filter} ORDER BY t.start_time DESC NULLS LAST, t.trace_id LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let base: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as _).collect();
        let mut paged = base.clone();
        paged.push(&limit);
        paged.push(&offset);
        let (count, rows) = self
            .with("query traces", async |c| {
                let count = c.query_one(count_sql.as_str(), &base).await?;
                let rows = c.query(page_sql.as_str(), &paged).await?;
                Ok((count, rows))
            })
            .await?;
        let total: i64 = count.get(0);
        let traces = rows
            .iter()
            .map(trace_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((traces, total as usize))
    }

    /// The distinct versions started for a flow, oldest first.
    pub async fn flow_versions(&self, flow_id: &FlowId) -> Result<Vec<FlowVersion>, DbError> {
        let flow = flow_id.0.as_str();
        let rows = self
            .with("flow versions", async |c| {
                c.query(
                    "SELECT version::text FROM tracing.traces WHERE flow_id = $1 AND version IS NOT NULL ORDER BY start_time",
                    &[&flow],
                )
                .await
            })
            .await?;
        let mut out: Vec<FlowVersion> = Vec::new();
        for r in &rows {
            let text: &str = r.get(0);
            let v: FlowVersion = serde_json::from_str(text)
                .map_err(|e| DbError::Rejected(format!("a stored version does not parse: {e}")))?;
            let seen = out.iter().any(|o| {
                (o.major, o.minor, o.patch, &o.git_hash) == (v.major, v.minor, v.patch, &v.git_hash)
            });
            if !seen {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Flow id and status of traces (for subscription filters).
    pub async fn trace_heads(
        &self,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, (Option<String>, Option<ExecutionStatus>)>, DbError> {
        let rows = self
            .with("trace heads", async |c| {
                c.query(
                    "SELECT trace_id, flow_id, status::text FROM tracing.traces WHERE trace_id = ANY($1)",
                    &[&ids],
                )
                .await
            })
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let id: Uuid = r.get(0);
                let flow: Option<String> = r.get(1);
                let status: Option<&str> = r.get(2);
                let status = status.and_then(|s| serde_json::from_str(s).ok());
                (id, (flow, status))
            })
            .collect())
    }
}

fn default_metadata() -> TraceMetadata {
    TraceMetadata {
        user_id: None,
        session_id: None,
        environment: String::new(),
        hostname: String::new(),
        process_id: 0,
        thread_id: String::new(),
        tags: HashMap::new(),
    }
}

/// A trace header row (see the SELECTs above) as a `FlowTrace` without events.
/// A trace created by an event has no flow (empty id), a nil execution id and
/// version 0.0.0 at its first event's time.
fn trace_from_row(r: &tokio_postgres::Row) -> Result<FlowTrace, DbError> {
    let bad = |what: &str, e: serde_json::Error| {
        DbError::Rejected(format!("stored {what} does not parse: {e}"))
    };
    let trace_id: Uuid = r.get(0);
    let flow_id: Option<String> = r.get(1);
    let execution_id: Option<Uuid> = r.get(2);
    let version: Option<&str> = r.get(3);
    let start_time: Option<DateTime<Utc>> = r.get(4);
    let end_time: Option<DateTime<Utc>> = r.get(5);
    let status: Option<&str> = r.get(6);
    let metadata: Option<&str> = r.get(7);
    let start_time = start_time.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    Ok(FlowTrace {
        trace_id: TraceId(trace_id),
        flow_id: FlowId(flow_id.unwrap_or_default()),
        execution_id: ExecutionId(execution_id.unwrap_or(Uuid::nil())),
        version: match version {
            Some(v) => serde_json::from_str(v).map_err(|e| bad("version", e))?,
            None => FlowVersion {
                major: 0,
                minor: 0,
                patch: 0,
                git_hash: None,
                timestamp: start_time,
            },
        },
        start_time,
        end_time,
        status: match status {
            Some(s) => serde_json::from_str(s).map_err(|e| bad("status", e))?,
            None => ExecutionStatus::Running,
        },
        events: Vec::new(),
        metadata: match metadata {
            Some(m) => serde_json::from_str(m).map_err(|e| bad("metadata", e))?,
            None => default_metadata(),
        },
    })
}

/// Time since `t` in seconds, for logs.
pub fn since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}
