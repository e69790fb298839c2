//! The rules of `reflow.*`: node and port names as the node takes them,
//! batch limits, payload sizes.

use super::{Report, check_payload, k};
use crate::catalog::ReflowAction;
use crate::data::KeySpec;
use crate::tree::Seg;

/// Most messages one request may carry (the node's `limits.max_batch` default).
const MAX_BATCH: u32 = 100_000;
/// Most bytes of payload one request may carry.
const MAX_REQUEST_BYTES: u64 = 64 << 20;

pub(super) fn check(a: &ReflowAction, path: &[Seg], problem: &mut Report) {
    let at = |key: &str| [path.to_vec(), vec![k(key)]].concat();
    let name = |problem: &mut Report, key: &str, v: &str| {
        if v.is_empty() || v.contains(['/', '.', ' ', '?']) {
            problem(
                at(key),
                None,
                format!("`{key}` `{v}` is not a node or port name"),
                Some("a graph's node id or port, e.g. `src` and `input`"),
            );
        }
    };
    match a {
        ReflowAction::Send(s) => {
            name(problem, "node", &s.node);
            name(problem, "port", &s.port);
            if s.batch == 0 || s.batch > MAX_BATCH {
                problem(
                    at("batch"),
                    None,
                    format!("`batch` {} is out of range", s.batch),
                    Some("the node takes 1 to 100000 messages per request"),
                );
            }
            if let Some(p) = &s.payload {
                check_payload(
                    problem,
                    at("payload"),
                    "payload",
                    p,
                    u64::from(s.batch),
                    MAX_REQUEST_BYTES,
                );
            }
            if let KeySpec::Template(t) = &s.key
                && t.is_empty()
            {
                problem(
                    at("key"),
                    None,
                    "`key` is empty".to_owned(),
                    Some("e.g. `key: gauntlet` or `key: { prefix: k-, count: 100 }`"),
                );
            }
        }
        ReflowAction::Sink(s) => name(problem, "node", &s.node),
    }
}
