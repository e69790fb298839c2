//! `postgres.query`'s driver: one prepared statement per request on a
//! PostgreSQL service (tokio-postgres, no TLS: loopback or the run's own
//! network), every parameter sent as text; `setup.postgres`'s statements;
//! and the connection the tracing read-back uses.
//!
//! Connections are pooled per engine runtime (a tokio-postgres connection
//! is driven by a task of the runtime that opened it): one request in
//! flight per connection, at most [`MAX_CONNECTIONS`] per runtime (more
//! requests wait for one), each with the statement prepared once. A
//! connection PostgreSQL closed (a kill, a restart) is dropped and the next
//! request opens a new one.
//!
//! Outcomes: `pg_<SQLSTATE>` for an error PostgreSQL answered (`pg_23505`,
//! `pg_57P01`, …), `pg_closed` for a connection lost mid-request,
//! `connect` when none could be opened, `wrong_rows` when `rows` was given
//! and the statement returned or affected another number.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gauntlet_engine::Connections;
use gauntlet_recorder::Outcome;
use gauntlet_scenario::PostgresQuery;
use gauntlet_scenario::setup::PostgresSetup;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Statement};

use crate::data::{Ctx, Rng, Template};
use crate::pool::Pools;
use crate::tracing::events::EventGen;
use crate::{Call, Chain, Target};

/// Most connections one engine runtime opens per operation.
pub const MAX_CONNECTIONS: usize = 32;

/// Opens a connection to the PostgreSQL behind `target`, its task spawned
/// on the current runtime.
pub async fn connect(target: &Target, user: &str, database: &str) -> Result<Client, String> {
    let endpoint = target.endpoint()?;
    let mut config = tokio_postgres::Config::new();
    config
        .host(endpoint.addr.ip().to_string())
        .port(endpoint.addr.port())
        .user(user)
        .dbname(database)
        .application_name("gauntlet")
        .connect_timeout(Duration::from_secs(5));
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| format!("connect ({e})"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The outcome kind of a tokio-postgres error.
pub fn error_kind(e: &tokio_postgres::Error) -> String {
    match e.code() {
        Some(code) => format!("pg_{}", code.code()),
        None if e.is_closed() => "pg_closed".to_owned(),
        None => "pg_error".to_owned(),
    }
}

/// A prepared `postgres.query`.
pub struct PostgresCall {
    target: Target,
    sql: String,
    params: Vec<Template>,
    event: Option<EventGen>,
    types: Vec<Type>,
    rows: Option<u64>,
    user: String,
    database: String,
    seed: u64,
    stream: u64,
    next: AtomicU64,
    pools: Pools<(Client, Statement)>,
}

/// Prepares a `postgres.query`.
pub fn prepare(q: &PostgresQuery, at: &crate::PrepareAt) -> Result<PostgresCall, String> {
    let params: Vec<Template> = q
        .params
        .iter()
        .map(|p| Template::text(p, &at.shared.counters))
        .collect();
    let n = params.len() + if q.event.is_some() { 6 } else { 0 };
    Ok(PostgresCall {
        target: at.target.clone(),
        sql: q.sql.clone(),
        params,
        event: q.event.as_ref().map(|e| {
            EventGen::new(
                e,
                at.seed,
                at.stream,
                at.shared.tracing.nonce,
                &at.shared.counters,
            )
        }),
        types: vec![Type::TEXT; n],
        rows: q.rows,
        user: q.user.clone(),
        database: q.database.clone(),
        seed: at.seed,
        stream: at.stream,
        next: AtomicU64::new(0),
        pools: Pools::new(MAX_CONNECTIONS),
    })
}

impl PostgresCall {
    /// The parameters of request `n`: the event's six, then the templates.
    fn values(&self, n: u64, seq: u64) -> Vec<String> {
        let mut out = Vec::with_capacity(self.types.len());
        if let Some(g) = &self.event {
            let e = g.generate(n);
            let mut rng = Rng::for_request(self.seed ^ 0x7ace, self.stream, n);
            out.push(e.event_id.to_string());
            out.push(crate::tracing::events::uuid_from(&mut rng).to_string());
            out.push(e.event.timestamp.to_rfc3339());
            out.push(e.type_name.to_owned());
            out.push(e.actor_id.clone());
            out.push(serde_json::to_string(&e.event).unwrap_or_default());
        }
        let mut rng = Rng::for_request(self.seed, self.stream, seq);
        for p in &self.params {
            out.push(p.render(&Ctx { seq, key: None }, &mut rng));
        }
        out
    }

    async fn run(&self, conns: &Connections, chain: &mut Chain) -> Outcome {
        let pool = self.pools.of(conns);
        let Ok(_permit) = pool.permits.acquire().await else {
            return Outcome::Error("pg_closed".to_owned());
        };
        let idle = loop {
            match pool.take() {
                Some((c, _)) if c.is_closed() => continue,
                other => break other,
            }
        };
        let (client, statement) = match idle {
            Some(pair) => pair,
            None => {
                let client = match connect(&self.target, &self.user, &self.database).await {
                    Ok(c) => c,
                    Err(_) => return Outcome::Error("connect".to_owned()),
                };
                match client.prepare_typed(&self.sql, &self.types).await {
                    Ok(s) => (client, s),
                    Err(e) => return Outcome::Error(error_kind(&e)),
                }
            }
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let values = self.values(n, chain.seq);
        let refs: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let result = client.execute(&statement, &refs).await;
        let outcome = match result {
            Ok(rows) if self.rows.is_some_and(|want| want != rows) => {
                Outcome::Error("wrong_rows".to_owned())
            }
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Error(error_kind(&e)),
        };
        if !client.is_closed() {
            pool.put((client, statement));
        }
        outcome
    }
}

impl Call for PostgresCall {
    fn perform<'a>(
        &'a self,
        conns: &'a Connections,
        chain: &'a mut Chain,
    ) -> impl std::future::Future<Output = Outcome> + Send + 'a {
        self.run(conns, chain)
    }
}

/// Runs `setup.postgres`'s statements, in order, before the load.
pub async fn setup(setup: &PostgresSetup, target: &Target) -> Result<(), String> {
    let client = connect(target, "postgres", &setup.database)
        .await
        .map_err(|e| format!("set-up: PostgreSQL: {e}"))?;
    for sql in &setup.sql {
        client
            .batch_execute(sql)
            .await
            .map_err(|e| format!("set-up: PostgreSQL refused `{sql}`: {e}"))?;
    }
    Ok(())
}
