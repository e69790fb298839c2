//! A Reflow node's driver: `reflow.send` (a batch into a source's inport,
//! `?wait=sink` for end to end) and `reflow.sink` (a sink's count), over
//! `reflow-node`'s HTTP API (`system-under-test/reflow-node/README.md`);
//! its history taps ([`taps`]) and its read-back for the checks
//! ([`readback`]).

use bytes::Bytes;
use gauntlet_engine::{Connections, http};
use gauntlet_recorder::Outcome;
use gauntlet_scenario::{Payload, ReflowAction, ReflowWait};

use crate::data::{Ctx, KeyGen, PayloadGen};
use crate::request::{bad_response, http_status, seen, send};
use crate::{Call, Chain, Target};

pub mod readback;
pub mod taps;

/// The messages of one send: `{"messages":[{"key","offset"[,"payload"]},…]}`.
struct Messages {
    keys: KeyGen,
    payload: Option<(PayloadGen, bool)>,
    batch: u32,
}

impl Messages {
    /// The body of request `seq`: message `i` has offset `seq × batch + i`.
    fn body(&self, seq: u64) -> Bytes {
        let mut out = String::with_capacity(16 + self.batch as usize * 48);
        out.push_str("{\"messages\":[");
        for i in 0..self.batch {
            if i > 0 {
                out.push(',');
            }
            let n = seq * u64::from(self.batch) + u64::from(i);
            let key = self.keys.key(n);
            out.push_str("{\"key\":");
            out.push_str(&serde_json::to_string(&key).unwrap_or_default());
            out.push_str(",\"offset\":");
            out.push_str(&n.to_string());
            if let Some((generator, json)) = &self.payload {
                let bytes = generator.generate(
                    &Ctx {
                        seq,
                        key: Some(&key),
                    },
                    u64::from(i),
                );
                out.push_str(",\"payload\":");
                if *json {
                    out.push_str(&String::from_utf8_lossy(&bytes));
                } else if matches!(generator, PayloadGen::Template { .. }) {
                    out.push_str(
                        &serde_json::to_string(&String::from_utf8_lossy(&bytes))
                            .unwrap_or_default(),
                    );
                } else {
                    out.push('"');
                    out.push_str(&fabric_wire::encode_payload(&bytes));
                    out.push('"');
                }
            }
            out.push('}');
        }
        out.push_str("]}");
        Bytes::from(out)
    }
}

/// One prepared request to a Reflow node.
pub struct ReflowCall(Req);

enum Req {
    Send {
        target: Target,
        service: String,
        node: String,
        path: String,
        messages: Box<Messages>,
    },
    Sink {
        target: Target,
        path: String,
    },
}

/// Prepares a Reflow action.
pub fn prepare(action: &ReflowAction, at: &crate::PrepareAt) -> Result<ReflowCall, String> {
    let target = at.target.clone();
    Ok(ReflowCall(match action {
        ReflowAction::Send(s) => Req::Send {
            target,
            service: at.service.to_owned(),
            node: s.node.clone(),
            path: format!(
                "/api/v1/inports/{}/{}{}",
                s.node,
                s.port,
                match s.wait {
                    ReflowWait::Accepted => "",
                    ReflowWait::Sink => "?wait=sink",
                }
            ),
            messages: Box::new(Messages {
                keys: KeyGen::new(&s.key, at.seed, at.stream ^ (7 << 48), &at.shared.counters),
                payload: s.payload.as_ref().map(|p: &Payload| {
                    (
                        PayloadGen::new(p, at.seed, at.stream ^ (1 << 48), &at.shared.counters),
                        PayloadGen::is_json(p),
                    )
                }),
                batch: s.batch,
            }),
        },
        ReflowAction::Sink(s) => Req::Sink {
            target,
            path: format!("/api/v1/sinks/{}", s.node),
        },
    }))
}

/// A send's answer.
#[derive(serde::Deserialize)]
struct SendAnswer {
    accepted: u64,
}

impl Call for ReflowCall {
    async fn perform(&self, conns: &Connections, chain: &mut Chain) -> Outcome {
        self.0.run(&conns.http, chain).await
    }
}

impl Req {
    async fn run(&self, client: &http::Client, chain: &mut Chain) -> Outcome {
        match self {
            Req::Send {
                target,
                service,
                node,
                path,
                messages,
            } => {
                let body = messages.body(chain.seq);
                let tap = chain.tap.clone();
                let id = tap
                    .as_ref()
                    .and_then(|t| t.invoke_reflow_send(service, node, u64::from(messages.batch)));
                let answer = send(client, target, "POST", path, &body).await;
                if let Some(t) = &tap {
                    t.complete_reflow_send(id, seen(&answer));
                }
                match &answer {
                    Ok(resp) if resp.is_success() => {
                        match serde_json::from_slice::<SendAnswer>(resp.body()) {
                            Ok(a) if a.accepted == u64::from(messages.batch) => Outcome::Ok,
                            _ => bad_response(),
                        }
                    }
                    Ok(resp) => http_status(resp.status),
                    Err(kind) => Outcome::Error(kind.clone()),
                }
            }
            Req::Sink { target, path } => {
                let answer = send(client, target, "GET", path, b"").await;
                match &answer {
                    Ok(resp) if resp.is_success() => {
                        match serde_json::from_slice::<serde_json::Value>(resp.body()) {
                            Ok(v) if v.get("count").and_then(|c| c.as_u64()).is_some() => {
                                Outcome::Ok
                            }
                            _ => bad_response(),
                        }
                    }
                    Ok(resp) => http_status(resp.status),
                    Err(kind) => Outcome::Error(kind.clone()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gauntlet_scenario::KeySpec;

    #[test]
    fn a_batch_numbers_its_messages_by_offset() {
        let counters = crate::data::Counters::default();
        let m = Messages {
            keys: KeyGen::new(&KeySpec::Template("k".into()), 1, 0, &counters),
            payload: None,
            batch: 3,
        };
        let v: serde_json::Value = serde_json::from_slice(&m.body(2)).unwrap();
        let offsets: Vec<u64> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets, vec![6, 7, 8]);
        assert_eq!(v["messages"][0]["key"], "k");
    }
}
