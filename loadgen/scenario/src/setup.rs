//! `setup:`: what a scenario creates before its load starts, per system.
//!
//! ```yaml
//! setup:
//!   actors:
//!     components:
//!       - { name: echo, behavior: echo }
//!       - { name: orders, file: components/orders.toml }   # relative to the scenario
//!     pipelines:                                          # stages NAME-1 → NAME-2 → …
//!       - { name: ingest, stages: [ { behavior: forward }, { behavior: forward }, { behavior: counter } ] }
//!     topics:
//!       - { name: news, subscribers: { count: 100, prefix: news-sub-, behavior: counter } }
//!   postgres:
//!     sql: ["CREATE TABLE IF NOT EXISTS scratch (id uuid primary key, body jsonb)"]
//! ```
//!
//! The harness creates it in order (the actors' components, pipelines from
//! their last stage back, topics with their subscribers; PostgreSQL's
//! statements one by one), through each system's API,
//! after the stack is ready and before the first phase; a failure stops
//! the run (exit 3) naming what could not be created.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::catalog::{Behavior, ComponentSpec, DEFAULT_MAX_RESTARTS};

/// What is created before the load, per system.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Setup {
    /// The actor node's components, pipelines and topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actors: Option<ActorsSetup>,
    /// SQL run on a PostgreSQL service before the load (a scratch table
    /// for `postgres.query`, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSetup>,
}

impl Setup {
    pub fn is_empty(&self) -> bool {
        self.actors.is_none() && self.postgres.is_none()
    }
}

/// Statements run once, in order, on a PostgreSQL service before the load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresSetup {
    /// The `postgres` service (default: the scenario's only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The database (default `postgres`).
    #[serde(default = "default_pg_database")]
    pub database: String,
    /// The statements, e.g. `CREATE TABLE IF NOT EXISTS scratch (…)`.
    pub sql: Vec<String>,
}

fn default_pg_database() -> String {
    "postgres".to_owned()
}

impl PostgresSetup {
    /// The service the set-up is for: its `service`, else the scenario's
    /// only service of kind `postgres`.
    pub fn service_in(&self, s: &crate::model::Scenario) -> Option<String> {
        if let Some(name) = &self.service {
            return Some(name.clone());
        }
        let mut pg = s
            .stack
            .services
            .iter()
            .filter(|(_, svc)| svc.kind == Some(crate::model::ServiceKind::Postgres));
        match (pg.next(), pg.next()) {
            (Some((name, _)), None) => Some(name.clone()),
            _ => None,
        }
    }
}

/// The actor node's topology, created before the load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActorsSetup {
    /// The actors service (default: the scenario's only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Components, each with its `name`, spawned with `PUT /api/v1/components/{name}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentSpec>,
    /// Pipelines: stages `NAME-1` → `NAME-2` → … (each `forward` stage
    /// forwards to the next); messages sent to `NAME` go to `NAME-1`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pipelines: Vec<Pipeline>,
    /// Topics (components of behaviour `topic`) with their subscribers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<TopicSetup>,
}

/// A pipeline: its stages in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Stages are named `NAME-1`, `NAME-2`, …; sending to `NAME` sends to `NAME-1`.
    pub name: String,
    /// At least two; a `forward` stage's `to` is the next stage.
    pub stages: Vec<ComponentSpec>,
}

impl Pipeline {
    /// Stage `i` (0-based) as it is spawned: named, a `forward` wired to the next.
    pub fn stage(&self, i: usize) -> ComponentSpec {
        let s = &self.stages[i];
        let to = s.to.clone().or_else(|| {
            (s.behavior == Some(Behavior::Forward) && i + 1 < self.stages.len())
                .then(|| self.stage_name(i + 1))
        });
        ComponentSpec {
            name: Some(self.stage_name(i)),
            to,
            ..s.clone()
        }
    }

    pub fn stage_name(&self, i: usize) -> String {
        format!("{}-{}", self.name, i + 1)
    }

    /// The component messages sent to the pipeline go to.
    pub fn head(&self) -> String {
        self.stage_name(0)
    }
}

/// A topic and its subscribers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicSetup {
    /// The topic's name (a component of behaviour `topic`).
    pub name: String,
    /// Subscribers spawned for it in one batch: `PREFIX0` … `PREFIX{count-1}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribers: Option<SubscriberBatch>,
    /// Components (declared under `components`) subscribed to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribe: Vec<String>,
}

/// A batch of subscribers from one template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriberBatch {
    pub count: u32,
    /// Their names' prefix (default: the topic's name and `-sub-`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Their behaviour (default `counter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<Behavior>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<u32>,
}

impl TopicSetup {
    /// The names of the batch's subscribers.
    pub fn subscriber_names(&self) -> Vec<String> {
        let Some(b) = &self.subscribers else {
            return Vec::new();
        };
        let prefix = self.subscriber_prefix();
        (0..b.count).map(|i| format!("{prefix}{i}")).collect()
    }

    pub fn subscriber_prefix(&self) -> String {
        self.subscribers
            .as_ref()
            .and_then(|b| b.prefix.clone())
            .unwrap_or_else(|| format!("{}-sub-", self.name))
    }

    /// The subscribers' template.
    pub fn subscriber_spec(&self) -> ComponentSpec {
        ComponentSpec {
            behavior: Some(
                self.subscribers
                    .as_ref()
                    .and_then(|b| b.behavior)
                    .unwrap_or(Behavior::Counter),
            ),
            mailbox: self.subscribers.as_ref().and_then(|b| b.mailbox),
            ..ComponentSpec::default()
        }
    }
}

/// One component the set-up creates, in creation order, and the
/// components a message sent to it is counted at (its sinks).
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Components in creation order (a pipeline's last stage first), each named.
    pub components: Vec<ComponentSpec>,
    /// Topics with their subscribers (every name in `components` or batches).
    pub topics: Vec<(String, Vec<String>)>,
    /// Pipeline names and their heads.
    pub pipelines: Vec<(String, String)>,
    /// Subscribers spawned in batches whose behaviour is `counter`.
    pub batch_counters: std::collections::BTreeSet<String>,
}

impl ActorsSetup {
    /// The service the set-up is for: its `service`, else the scenario's
    /// only service of kind `actors`.
    pub fn service_in(&self, s: &crate::model::Scenario) -> Option<String> {
        if let Some(name) = &self.service {
            return Some(name.clone());
        }
        let mut actors = s
            .stack
            .services
            .iter()
            .filter(|(_, svc)| svc.kind == Some(crate::model::ServiceKind::Actors));
        match (actors.next(), actors.next()) {
            (Some((name, _)), None) => Some(name.clone()),
            _ => None,
        }
    }

    /// Every component the set-up creates, by name, with its spec
    /// (topics' subscriber batches included), in creation order.
    pub fn topology(&self) -> Topology {
        let mut components = self.components.clone();
        for p in &self.pipelines {
            for i in (0..p.stages.len()).rev() {
                components.push(p.stage(i));
            }
        }
        let mut topics = Vec::new();
        let mut batch_counters = std::collections::BTreeSet::new();
        for t in &self.topics {
            if t.subscriber_spec().behavior == Some(Behavior::Counter) {
                batch_counters.extend(t.subscriber_names());
            }
            components.push(ComponentSpec {
                name: Some(t.name.clone()),
                behavior: Some(Behavior::Topic),
                ..ComponentSpec::default()
            });
            let mut subs = t.subscribe.clone();
            subs.extend(t.subscriber_names());
            topics.push((t.name.clone(), subs));
        }
        Topology {
            components,
            topics,
            pipelines: self
                .pipelines
                .iter()
                .map(|p| (p.name.clone(), p.head()))
                .collect(),
            batch_counters,
        }
    }

    /// Each component's restart budget (`max_restarts`, default 10), by name.
    pub fn restart_budgets(&self) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = self
            .topology()
            .components
            .iter()
            .map(|c| {
                (
                    c.name.clone().unwrap_or_default(),
                    c.max_restarts.unwrap_or(DEFAULT_MAX_RESTARTS),
                )
            })
            .collect();
        for t in &self.topics {
            out.extend(
                t.subscriber_names()
                    .into_iter()
                    .map(|n| (n, DEFAULT_MAX_RESTARTS)),
            );
        }
        out
    }
}

impl Topology {
    /// The component a message to `name` goes to first: a pipeline's head, else `name`.
    pub fn entry(&self, name: &str) -> String {
        self.pipelines
            .iter()
            .find(|(p, _)| p == name)
            .map_or_else(|| name.to_owned(), |(_, head)| head.clone())
    }

    /// Where a message sent to `name` is counted: follows `forward`s to
    /// the end of the path; a topic counts at each subscriber. Only
    /// `counter` components keep counts per key (the others are left out).
    pub fn sinks(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![self.entry(name)];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(n) = todo.pop() {
            if !seen.insert(n.clone()) {
                continue;
            }
            if let Some((_, subs)) = self.topics.iter().find(|(t, _)| *t == n) {
                todo.extend(subs.iter().cloned());
                continue;
            }
            match self
                .components
                .iter()
                .find(|c| c.name.as_deref() == Some(&n))
            {
                Some(c) if c.behavior == Some(Behavior::Forward) => {
                    if let Some(to) = &c.to {
                        todo.push(to.clone());
                    }
                }
                Some(c) if c.behavior == Some(Behavior::Counter) => out.push(n),
                Some(_) => {}
                None if self.batch_counters.contains(&n) => out.push(n),
                None => {}
            }
        }
        out.sort();
        out
    }
}
