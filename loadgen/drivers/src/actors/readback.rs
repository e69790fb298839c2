//! The actor node's read-back for the checks, after the load and after
//! every fault healed: waits for each actors service to be ready, reads
//! every component's status (`GET /api/v1/components`), each counter's
//! per-key counts for the counters the history sent to, and, after
//! `readback.stall_within`, every status again (`actors.no_silent_stall`),
//! into `readback.json` next to the fabric's.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use gauntlet_checkers::{ComponentStatus, History, Invocation, ReadBack};
use hyper::Method;

use crate::Target;
use crate::control::{HttpClient, get, json_answer, wait_ready};

/// A component's status as the node answers it.
#[derive(serde::Deserialize)]
struct Status {
    name: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    mailbox_depth: u64,
    #[serde(default)]
    handled: u64,
    #[serde(default)]
    restarts: u64,
    #[serde(default)]
    keys: BTreeMap<String, KeyCount>,
}

#[derive(serde::Deserialize)]
struct KeyCount {
    count: u64,
}

#[derive(serde::Deserialize)]
struct List {
    components: Vec<Status>,
}

impl From<Status> for ComponentStatus {
    fn from(s: Status) -> Self {
        ComponentStatus {
            state: s.state,
            mailbox_depth: s.mailbox_depth,
            handled: s.handled,
            restarts: s.restarts,
            keys: s.keys.into_iter().map(|(k, c)| (k, c.count)).collect(),
        }
    }
}

async fn list(
    client: &HttpClient,
    target: &Target,
    service: &str,
) -> Result<BTreeMap<String, ComponentStatus>, String> {
    let what = format!("listing the components of `{service}`");
    let answer = get(
        client,
        Method::GET,
        &target.url("/api/v1/components"),
        Bytes::new(),
    )
    .await;
    let list: List = json_answer(&what, answer)?;
    Ok(list
        .components
        .into_iter()
        .map(|s| (s.name.clone(), s.into()))
        .collect())
}

/// What the actor read-back needs: the actors services, the restart
/// budgets of the set-up's components, and `readback.stall_within`.
pub struct Wanted<'a> {
    pub services: BTreeSet<&'a String>,
    pub budgets: BTreeMap<String, u32>,
    pub stall_within: Duration,
}

/// Reads the components of every actors service into `rb` (see the
/// module's documentation).
pub async fn read_back(
    client: &HttpClient,
    wanted: &Wanted<'_>,
    history: &History,
    target: &dyn Fn(&str) -> Target,
    rb: &mut ReadBack,
) -> Result<(), String> {
    wait_ready(client, &wanted.services, target).await?;
    let sinks: BTreeSet<&str> = history
        .operations
        .iter()
        .filter_map(|op| match &op.invocation {
            Invocation::ActorSend { sinks, .. } => Some(sinks.iter().map(String::as_str)),
            _ => None,
        })
        .flatten()
        .collect();
    for service in &wanted.services {
        let t = target(service);
        let mut components = list(client, &t, service).await?;
        for sink in &sinks {
            let what = format!("reading counter `{sink}` of `{service}`");
            let answer = get(
                client,
                Method::GET,
                &t.url(&format!("/api/v1/components/{sink}")),
                Bytes::new(),
            )
            .await;
            if matches!(&answer, Ok((s, _)) if *s == hyper::StatusCode::NOT_FOUND) {
                continue;
            }
            let status: Status = json_answer(&what, answer)?;
            components.insert(status.name.clone(), status.into());
        }
        rb.components.extend(components);
    }
    rb.restart_budgets = wanted.budgets.clone();
    rb.stall_within_s = wanted.stall_within.as_secs_f64();
    tokio::time::sleep(wanted.stall_within).await;
    for service in &wanted.services {
        let later = list(client, &target(service), service).await?;
        rb.components_later.extend(later);
    }
    Ok(())
}
