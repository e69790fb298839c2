//! The tracing read-back for the checks, after the load and after every
//! fault healed: PostgreSQL is asked directly (not through a tracing
//! server) for every event the history recorded — acknowledged or not —
//! in `tracing.events`, by event id; each stored payload is parsed as the
//! protocol's `TraceEvent` and digested as the driver digested the event
//! it sent ([`super::events::digest`]). Into `readback.json`'s `tracing`.
//!
//! Which PostgreSQL: the service a tracing server's `TRACING_DATABASE_URL`
//! names (`postgresql://USER@{addr:db}/DATABASE`), with that user and
//! database; else the scenario's only `postgres` service, as `postgres`.

use std::collections::BTreeSet;
use std::time::Duration;

use gauntlet_checkers::{History, Invocation, ReadBack, TracingReadBack};
use gauntlet_scenario::{Action, Scenario, ServiceKind, TracingAction};

use crate::{PlannedOperation, Target};

/// Where the tracing servers store their events.
#[derive(Debug, Clone, PartialEq)]
pub struct Store {
    pub service: String,
    pub user: String,
    pub database: String,
}

/// The service a placeholder such as `{addr:db}` names in `text`.
fn referenced_service(text: &str) -> Option<String> {
    ["{addr:", "{host:", "{port:"].iter().find_map(|p| {
        let at = text.find(p)? + p.len();
        let end = text[at..].find('}')?;
        Some(text[at..at + end].to_owned())
    })
}

/// `postgresql://USER[:PASSWORD]@HOST/DATABASE[?…]` → (user, database).
fn user_and_database(url: &str) -> (Option<String>, Option<String>) {
    let Some(rest) = url.split_once("://").map(|(_, r)| r) else {
        return (None, None);
    };
    let user = rest
        .split_once('@')
        .map(|(u, _)| u.split(':').next().unwrap_or(u).to_owned())
        .filter(|u| !u.is_empty());
    let after_host = rest.split_once('@').map_or(rest, |(_, h)| h);
    let database = after_host
        .rsplit_once('/')
        .map(|(_, d)| d.split('?').next().unwrap_or(d).to_owned())
        .filter(|d| !d.is_empty() && !d.contains('}'));
    (user, database)
}

/// The PostgreSQL services the scenario's tracing servers store into.
pub fn stores(scenario: &Scenario) -> Vec<Store> {
    let mut out: Vec<Store> = Vec::new();
    for svc in scenario.stack.services.values() {
        if svc.kind != Some(ServiceKind::Tracing) {
            continue;
        }
        let Some(url) = svc.env.get("TRACING_DATABASE_URL") else {
            continue;
        };
        let Some(service) = referenced_service(url) else {
            continue;
        };
        let (user, database) = user_and_database(url);
        let store = Store {
            service,
            user: user.unwrap_or_else(|| "postgres".to_owned()),
            database: database.unwrap_or_else(|| "postgres".to_owned()),
        };
        if !out.contains(&store) {
            out.push(store);
        }
    }
    if out.is_empty() {
        let mut pg = scenario
            .stack
            .services
            .iter()
            .filter(|(_, s)| s.kind == Some(ServiceKind::Postgres));
        if let (Some((name, _)), None) = (pg.next(), pg.next()) {
            out.push(Store {
                service: name.clone(),
                user: "postgres".to_owned(),
                database: "postgres".to_owned(),
            });
        }
    }
    out
}

/// The largest `notify_within` of the scenario's subscribe operations.
pub fn notify_within(operations: &[PlannedOperation]) -> Duration {
    operations
        .iter()
        .flat_map(|o| o.actions())
        .filter_map(|(a, _)| match a {
            Action::Tracing(TracingAction::Subscribe(s)) => Some(s.notify_within.as_std()),
            _ => None,
        })
        .max()
        .unwrap_or(Duration::from_secs(2))
}

/// How long the read-back waits for PostgreSQL to answer after the faults.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// Event ids per query.
const CHUNK: usize = 5000;

/// Reads back every event of the history (see the module's documentation).
pub async fn read_back(
    stores: &[Store],
    notify_within: Duration,
    history: &History,
    target: &dyn Fn(&str) -> Target,
    rb: &mut ReadBack,
) -> Result<(), String> {
    let ids: BTreeSet<&str> = history
        .operations
        .iter()
        .filter_map(|op| match &op.invocation {
            Invocation::TracingRecord { event_id, .. } => Some(event_id.as_str()),
            _ => None,
        })
        .collect();
    let mut out = TracingReadBack {
        looked_up: ids.len() as u64,
        postgres_services: stores.iter().map(|s| s.service.clone()).collect(),
        notify_within_s: notify_within.as_secs_f64(),
        ..TracingReadBack::default()
    };
    let ids: Vec<uuid::Uuid> = ids.iter().filter_map(|i| i.parse().ok()).collect();
    for store in stores {
        let t = target(&store.service);
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        let client = loop {
            match crate::postgres::connect(&t, &store.user, &store.database).await {
                Ok(c) => break c,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(format!(
                        "read-back: PostgreSQL `{}` did not answer within {}s after the faults: {e}",
                        store.service,
                        READY_WITHIN.as_secs()
                    ));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        for chunk in ids.chunks(CHUNK) {
            let rows = client
                .query(
                    "SELECT event_id::text, payload::text FROM tracing.events WHERE event_id = ANY($1)",
                    &[&chunk],
                )
                .await
                .map_err(|e| {
                    format!(
                        "read-back: reading tracing.events from `{}`: {e} (hint: did the tracing server run its migrations?)",
                        store.service
                    )
                })?;
            for row in rows {
                let id: String = row.get(0);
                let payload: String = row.get(1);
                out.events
                    .insert(id, super::events::digest_of_stored(&payload));
            }
        }
    }
    rb.tracing = Some(out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_url_names_the_store() {
        assert_eq!(
            referenced_service("postgresql://postgres@{addr:db}/postgres").as_deref(),
            Some("db")
        );
        assert_eq!(
            user_and_database("postgresql://app:secret@{addr:db}/traces?sslmode=disable"),
            (Some("app".to_owned()), Some("traces".to_owned()))
        );
        assert_eq!(user_and_database("postgresql://{addr:db}"), (None, None));
    }
}
