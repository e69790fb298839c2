//! The rules of the fabric's actions (`fabric.*`): resource paths, batch
//! and payload limits, leases, and what a chained step needs from the one
//! before it.

use super::{MAX_APPEND_BYTES, Report, check_payload, is_name, is_stream_path, k};
use crate::catalog::{Catalog, FabricAction, ReadFrom};
use crate::data::{KeySpec, Payload};
use crate::tree::Seg;
use crate::units::Duration;

/// The rules of one fabric action; `previous` is the step before it in a
/// chain, when that is a fabric action too.
pub(super) fn check(
    action: &FabricAction,
    previous: Option<&FabricAction>,
    path: &[Seg],
    problem: &mut impl FnMut(Vec<Seg>, Option<&str>, String, Option<&str>),
) {
    let at = |key: &str| [path.to_vec(), vec![k(key)]].concat();
    let resource = |problem: &mut Report, key: &str, value: &str| {
        if !is_stream_path(value) {
            problem(
                at(key),
                None,
                format!("`{value}` is not a {key} path"),
                Some("write `tenant/namespace/name`, e.g. `acme/orders/events`"),
            );
        }
    };
    let payload = |problem: &mut Report, key: &str, p: &Payload, times: u64, limit: u64| {
        check_payload(problem, at(key), key, p, times, limit)
    };
    // What the previous step of a chain hands over.
    let from_queue = matches!(
        previous,
        Some(FabricAction::QueueReserve(_) | FabricAction::QueueReceive(_))
    );
    let from_kv = matches!(
        previous,
        Some(FabricAction::KvPut(_) | FabricAction::KvGet(_) | FabricAction::KvDelete(_))
    );
    let from_stream = matches!(
        previous,
        Some(FabricAction::StreamAppend(_) | FabricAction::StreamRead(_))
    );
    match action {
        FabricAction::StreamAppend(a) => {
            resource(problem, "stream", &a.stream);
            if a.batch == 0 || a.batch > 1000 {
                problem(
                    at("batch"),
                    None,
                    format!("`batch` {} is out of range", a.batch),
                    Some("the fabric takes 1 to 1000 events per append"),
                );
            }
            payload(
                problem,
                "payload",
                &a.payload,
                a.batch as u64,
                MAX_APPEND_BYTES,
            );
        }
        FabricAction::StreamRead(r) => {
            resource(problem, "stream", &r.stream);
            if r.max == 0 || r.max > 1000 {
                problem(
                    at("max"),
                    None,
                    format!("`max` {} is out of range", r.max),
                    Some("the fabric returns 1 to 1000 messages per read"),
                );
            }
            if let ReadFrom::Latest(n) = r.from
                && n > 1000
            {
                problem(
                    at("from"),
                    None,
                    format!("`latest-{n}` reaches further back than one read returns"),
                    Some("use at most `latest-1000`"),
                );
            }
        }
        FabricAction::StreamCommit(c) => {
            match &c.stream {
                Some(stream) => resource(problem, "stream", stream),
                None if !from_stream => problem(
                    path.to_vec(),
                    None,
                    "`fabric.stream.commit` names no `stream`".to_owned(),
                    Some(
                        "add `stream: tenant/namespace/name`, or chain it after a read or an append",
                    ),
                ),
                None => {}
            }
            if !is_name(&c.group) {
                problem(
                    at("group"),
                    None,
                    format!("consumer group `{}` is not a plain name", c.group),
                    Some("use letters, digits, `-` and `_`"),
                );
            }
        }
        FabricAction::QueueEnqueue(e) => {
            resource(problem, "queue", &e.queue);
            payload(problem, "payload", &e.payload, 1, MAX_JOB_BYTES);
            if e.delay.as_secs_f64() > MAX_DELAY_SECS {
                problem(
                    at("delay"),
                    None,
                    format!("`delay: {}` is longer than the fabric's 7 days", e.delay),
                    Some("use at most `168h`"),
                );
            }
        }
        FabricAction::QueueReserve(r) => {
            resource(problem, "queue", &r.queue);
            check_lease(problem, path, r.visibility, r.wait);
        }
        FabricAction::QueueReceive(r) => {
            resource(problem, "queue", &r.queue);
            if r.max == 0 || r.max > 100 {
                problem(
                    at("max"),
                    None,
                    format!("`max` {} is out of range", r.max),
                    Some("the fabric leases 1 to 100 jobs per receive"),
                );
            }
            check_lease(problem, path, r.visibility, r.wait);
        }
        FabricAction::QueueAck(_) | FabricAction::QueueNack(_) => {
            if !from_queue {
                problem(
                    path.to_vec(),
                    None,
                    format!(
                        "`{}` acts on the jobs a reserve or receive got, and has none here",
                        action.key()
                    ),
                    Some(
                        "chain it: `fabric.queue.reserve: { queue: … }` then `then: [ { fabric.queue.ack: {} } ]`",
                    ),
                );
            }
            if let FabricAction::QueueNack(n) = action
                && let Some(d) = n.delay
                && d.as_secs_f64() > MAX_DELAY_SECS
            {
                problem(
                    at("delay"),
                    None,
                    format!("`delay: {d}` is longer than the fabric's 7 days"),
                    Some("use at most `168h`"),
                );
            }
            if let Some((_, q)) = action.resource() {
                resource(problem, "queue", q);
            }
        }
        FabricAction::KvPut(_) | FabricAction::KvGet(_) | FabricAction::KvDelete(_) => {
            let (store, key) = match action {
                FabricAction::KvPut(p) => (&p.store, &p.key),
                FabricAction::KvGet(g) => (&g.store, &g.key),
                FabricAction::KvDelete(d) => (&d.store, &d.key),
                _ => unreachable!("matched above"),
            };
            match store {
                Some(store) => resource(problem, "store", store),
                None if !from_kv => problem(
                    path.to_vec(),
                    None,
                    format!("`{}` names no `store`", action.key()),
                    Some(
                        "add `store: tenant/namespace/name`, or chain it after another KV operation",
                    ),
                ),
                None => {}
            }
            match key {
                Some(KeySpec::Template(t)) if t.is_empty() => problem(
                    at("key"),
                    None,
                    "an empty key".to_owned(),
                    Some("the fabric takes keys of 1 to 512 bytes"),
                ),
                Some(KeySpec::Template(t)) if t.len() > 512 => problem(
                    at("key"),
                    None,
                    "a key longer than 512 bytes".to_owned(),
                    Some("the fabric takes keys of 1 to 512 bytes"),
                ),
                Some(KeySpec::Space { prefix, .. }) if prefix.len() > 490 => problem(
                    at("key"),
                    None,
                    "a key prefix longer than 490 bytes".to_owned(),
                    Some("the fabric takes keys of 1 to 512 bytes"),
                ),
                None if !from_kv => problem(
                    path.to_vec(),
                    None,
                    format!("`{}` names no `key`", action.key()),
                    Some(
                        "add `key: user-1` or a key space `key: { prefix: user-, count: 1000, distribution: { zipf: 1.1 } }`, or chain it after another KV operation",
                    ),
                ),
                _ => {}
            }
            if let FabricAction::KvPut(p) = action {
                payload(problem, "value", &p.value, 1, MAX_JOB_BYTES);
            }
        }
    }
}

const MAX_JOB_BYTES: u64 = 4 << 20;
const MAX_DELAY_SECS: f64 = 7.0 * 86400.0;

fn check_lease(
    problem: &mut impl FnMut(Vec<Seg>, Option<&str>, String, Option<&str>),
    path: &[Seg],
    visibility: Duration,
    wait: Duration,
) {
    let v = visibility.as_secs_f64();
    if !(0.001..=43_200.0).contains(&v) {
        problem(
            [path.to_vec(), vec![k("visibility")]].concat(),
            None,
            format!("`visibility: {visibility}` is out of range"),
            Some("the fabric leases jobs for 1ms to 12h"),
        );
    }
    if wait.as_secs_f64() > 20.0 {
        problem(
            [path.to_vec(), vec![k("wait")]].concat(),
            None,
            format!("`wait: {wait}` is longer than the fabric's 20s long poll"),
            Some("use at most `20s`"),
        );
    }
}
