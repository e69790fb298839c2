//! The Reflow read-back for the checks, after the load and after every
//! fault: for each `reflow` service, `GET /api/v1/graph` until nothing is
//! in flight, the node reports a stall, or `readback.drain_within` passes;
//! then, for `reflow.trace_events_complete`, the tracing servers'
//! PostgreSQL (as `tracing`'s read-back finds it) for the `ActorCompleted`
//! events stored per graph node and second, read until the count settles.
//! Into `readback.json`'s `reflow`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gauntlet_checkers::ReadBack;
use gauntlet_checkers::reflow::{ReflowNodeState, ReflowReadBack, ReflowStall};
use gauntlet_scenario::{Scenario, ServiceKind};
use hyper::Method;
use tokio::time::Instant;

use crate::Target;
use crate::control::{HttpClient, get, json_answer};

#[derive(serde::Deserialize)]
struct GraphView {
    accepted: u64,
    completed: u64,
    in_flight: u64,
    tracing: bool,
    #[serde(default)]
    problem: Option<ReflowStall>,
    nodes: Vec<NodeView>,
}

#[derive(serde::Deserialize)]
struct NodeView {
    id: String,
    #[serde(default)]
    processed_per_s: Option<BTreeMap<u64, u64>>,
}

/// The `reflow` services of the scenario.
pub fn services(scenario: &Scenario) -> Vec<String> {
    scenario
        .stack
        .services
        .iter()
        .filter(|(_, s)| s.kind == Some(ServiceKind::Reflow))
        .map(|(n, _)| n.clone())
        .collect()
}

async fn graph(client: &HttpClient, target: &Target, service: &str) -> Result<GraphView, String> {
    let answer = get(
        client,
        Method::GET,
        &target.url("/api/v1/graph"),
        Bytes::new(),
    )
    .await;
    json_answer(&format!("reading the graph of `{service}`"), answer)
}

/// Reads back every Reflow node (see the module's documentation).
pub async fn read_back(
    client: &HttpClient,
    scenario: &Scenario,
    trace_events: bool,
    drain_within: Duration,
    run_start: Instant,
    target: &dyn Fn(&str) -> Target,
    rb: &mut ReadBack,
) -> Result<(), String> {
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut out = ReflowReadBack {
        run_start_unix_s: now_unix - run_start.elapsed().as_secs_f64(),
        drain_within_s: drain_within.as_secs_f64(),
        ..ReflowReadBack::default()
    };
    for service in services(scenario) {
        let t = target(&service);
        let deadline = Instant::now() + drain_within;
        let view = loop {
            let v = graph(client, &t, &service).await;
            match v {
                Ok(v) if v.in_flight == 0 || v.problem.is_some() || Instant::now() >= deadline => {
                    break v;
                }
                Err(e) if Instant::now() >= deadline => return Err(format!("read-back: {e}")),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let state = ReflowNodeState {
            accepted: view.accepted,
            completed: view.completed,
            in_flight: view.in_flight,
            stall: view.problem,
            tracing: view.tracing,
            processed_per_s: view
                .nodes
                .into_iter()
                .filter_map(|n| Some((n.id, n.processed_per_s?)))
                .collect(),
            stored_per_s: BTreeMap::new(),
        };
        out.nodes.insert(service, state);
    }
    if trace_events {
        let stored = stored_events(scenario, drain_within, target).await?;
        for state in out.nodes.values_mut() {
            for actor in state.processed_per_s.keys() {
                if let Some(s) = stored.get(actor) {
                    state.stored_per_s.insert(actor.clone(), s.clone());
                }
            }
        }
    }
    rb.reflow = Some(out);
    Ok(())
}

type PerSecond = BTreeMap<String, BTreeMap<u64, u64>>;

/// `ActorCompleted` events per actor id and second of their timestamp, in
/// every tracing store; read until two reads a second apart agree (the
/// tracing client and server may still be delivering), within `bound`.
async fn stored_events(
    scenario: &Scenario,
    bound: Duration,
    target: &dyn Fn(&str) -> Target,
) -> Result<PerSecond, String> {
    let stores = crate::tracing::readback::stores(scenario);
    if stores.is_empty() {
        return Err(
            "read-back: `reflow.trace_events_complete` needs a `tracing` service with TRACING_DATABASE_URL naming a `postgres` service".to_owned(),
        );
    }
    let deadline = Instant::now() + bound.max(Duration::from_secs(2));
    let mut last: Option<PerSecond> = None;
    loop {
        let mut all: PerSecond = BTreeMap::new();
        for store in &stores {
            let t = target(&store.service);
            let client = crate::postgres::connect(&t, &store.user, &store.database)
                .await
                .map_err(|e| format!("read-back: PostgreSQL `{}`: {e}", store.service))?;
            let rows = client
                .query(
                    "SELECT actor_id, floor(extract(epoch FROM ts))::bigint, count(*) \
                     FROM tracing.events WHERE event_type = 'ActorCompleted' GROUP BY 1, 2",
                    &[],
                )
                .await
                .map_err(|e| {
                    format!(
                        "read-back: reading tracing.events from `{}`: {e} (hint: did the tracing server run its migrations?)",
                        store.service
                    )
                })?;
            for row in rows {
                let actor: String = row.get(0);
                let second: i64 = row.get(1);
                let count: i64 = row.get(2);
                *all.entry(actor)
                    .or_default()
                    .entry(second.max(0) as u64)
                    .or_default() += count.max(0) as u64;
            }
        }
        if last.as_ref() == Some(&all) || Instant::now() >= deadline {
            return Ok(all);
        }
        last = Some(all);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
