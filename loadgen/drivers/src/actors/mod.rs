//! The actor node's driver: spawn and stop components, send batches of
//! messages to a component or a pipeline's head, publish to a topic,
//! request-response, registry lookups — over `actor-node`'s HTTP API
//! (`system-under-test/actors/README.md`) — its set-up (the scenario's
//! `setup.actors` topology, created before the load), its history taps
//! ([`taps`]) and its read-back for the checks ([`readback`]).
//!
//! What a step hands the next: the component it spawned or used
//! ([`Chain::key`](crate::Chain)); a batch spawn hands every name it
//! created ([`Chain::items`](crate::Chain)), and an `actors.stop` step
//! stops each of them (one request per component).

use std::collections::BTreeMap;

use bytes::Bytes;
use gauntlet_engine::{Connections, http};
use gauntlet_recorder::Outcome;
use gauntlet_scenario::setup::{ActorsSetup, Topology};
use gauntlet_scenario::{ActorsAction, ComponentSpec, Payload, SendWait};

use crate::data::{Ctx, KeyGen, PayloadGen, Rng, Template};
use crate::request::{bad_response, http_status, seen, send, send_with};
use crate::{Call, Chain, Target};

pub mod readback;
pub mod taps;

/// The actor node's state shared by the operations of a run: the topology
/// the set-up created (where each component's messages are counted).
#[derive(Default)]
pub struct ActorsState {
    pub topology: Option<Topology>,
}

impl ActorsState {
    /// The counters a message sent to `name` is counted at.
    fn sinks(&self, name: &str) -> Vec<String> {
        self.topology
            .as_ref()
            .map_or_else(Vec::new, |t| t.sinks(name))
    }

    /// The component a message to `name` goes to first (a pipeline's head).
    fn entry(&self, name: &str) -> String {
        self.topology
            .as_ref()
            .map_or_else(|| name.to_owned(), |t| t.entry(name))
    }
}

const TOML_HEADER: &[u8] = b"Content-Type: text/toml\r\n";

/// A component name: constant (resolved once: pipeline name → head, sinks
/// known) or a template rendered per request.
enum Name {
    Fixed {
        path_name: String,
        sinks: Vec<String>,
    },
    /// Rendered per request from the operation's seed and generator stream.
    Template {
        template: Template,
        seed: u64,
        stream: u64,
    },
    /// The component the step before handed over.
    Chained,
}

impl Name {
    fn new(name: Option<&str>, at: &crate::PrepareAt) -> Name {
        let state = &at.shared.actors;
        match name {
            None => Name::Chained,
            Some(n) => {
                let template = Template::text(n, &at.shared.counters);
                if template.is_constant() {
                    Name::Fixed {
                        path_name: state.entry(n),
                        sinks: state.sinks(n),
                    }
                } else {
                    Name::Template {
                        template,
                        seed: at.seed,
                        stream: at.stream,
                    }
                }
            }
        }
    }

    /// The name for request `chain.seq`, or `None` when a chained step got none.
    fn resolve(&self, chain: &Chain) -> Option<String> {
        match self {
            Name::Fixed { path_name, .. } => Some(path_name.clone()),
            Name::Template {
                template,
                seed,
                stream,
            } => {
                let seq = chain.seq;
                let mut rng = Rng::for_request(*seed, *stream, seq);
                Some(template.render(&Ctx { seq, key: None }, &mut rng))
            }
            Name::Chained => chain.key.clone(),
        }
    }

    fn sinks(&self) -> &[String] {
        match self {
            Name::Fixed { sinks, .. } => sinks,
            _ => &[],
        }
    }
}

/// A component spec as the node's request body: JSON (inline), or the
/// `Component.toml` file read once.
enum SpecBody {
    Json(serde_json::Value),
    Toml(Bytes),
}

fn spec_body(spec: &ComponentSpec) -> Result<SpecBody, String> {
    match &spec.file {
        Some(file) => std::fs::read(file)
            .map(|b| SpecBody::Toml(Bytes::from(b)))
            .map_err(|e| format!("cannot read component file {file}: {e}")),
        None => Ok(SpecBody::Json(spec.to_json(None).unwrap_or_default())),
    }
}

/// The messages of one send: `{"messages":[{"key":…,"payload":…},…]}`.
struct Messages {
    payload: PayloadGen,
    json_payload: bool,
    keys: KeyGen,
    batch: u32,
}

impl Messages {
    fn new(
        payload: &Payload,
        key: &gauntlet_scenario::KeySpec,
        batch: u32,
        at: &crate::PrepareAt,
    ) -> Self {
        Messages {
            payload: PayloadGen::new(payload, at.seed, at.stream ^ (1 << 48), &at.shared.counters),
            json_payload: PayloadGen::is_json(payload),
            keys: KeyGen::new(key, at.seed, at.stream ^ (7 << 48), &at.shared.counters),
            batch,
        }
    }

    /// Message `i` of request `seq`'s key.
    fn key(&self, seq: u64, i: u32) -> String {
        self.keys.key(seq * u64::from(self.batch) + u64::from(i))
    }

    /// One payload as a JSON value's text: a JSON template as is, text as
    /// a string, random bytes as a base64 string.
    fn payload_json(&self, out: &mut String, seq: u64, i: u32, key: &str) {
        let bytes = self.payload.generate(
            &Ctx {
                seq,
                key: Some(key),
            },
            u64::from(i),
        );
        if self.json_payload {
            out.push_str(&String::from_utf8_lossy(&bytes));
        } else if matches!(self.payload, PayloadGen::Template { .. }) {
            out.push_str(
                &serde_json::to_string(&String::from_utf8_lossy(&bytes)).unwrap_or_default(),
            );
        } else {
            out.push('"');
            out.push_str(&fabric_wire::encode_payload(&bytes));
            out.push('"');
        }
    }

    /// The body of request `seq` and the messages per key it carries.
    fn body(&self, seq: u64) -> (Bytes, BTreeMap<String, u64>) {
        let mut keys: BTreeMap<String, u64> = BTreeMap::new();
        let mut out = String::with_capacity(16 + self.batch as usize * 96);
        out.push_str("{\"messages\":[");
        for i in 0..self.batch {
            if i > 0 {
                out.push(',');
            }
            let key = self.key(seq, i);
            out.push_str("{\"key\":");
            out.push_str(&serde_json::to_string(&key).unwrap_or_default());
            out.push_str(",\"payload\":");
            self.payload_json(&mut out, seq, i, &key);
            out.push('}');
            *keys.entry(key).or_default() += 1;
        }
        out.push_str("]}");
        (Bytes::from(out), keys)
    }
}

/// One prepared request to an actor node.
pub struct ActorsCall(Req);

enum Req {
    Spawn {
        target: Target,
        name: Name,
        /// A batch: `count` from one template, names `prefix{i}`.
        batch: Option<(u32, Name)>,
        spec: SpecBody,
    },
    Stop {
        target: Target,
        component: Name,
    },
    Send {
        target: Target,
        component: Name,
        /// `/api/v1/topics/` (publish) or `/api/v1/components/`.
        collection: &'static str,
        query: &'static str,
        messages: Messages,
    },
    Request {
        target: Target,
        component: Name,
        payload: Messages,
    },
    Lookup {
        target: Target,
        component: Name,
    },
}

/// Prepares an actor action.
pub fn prepare(action: &ActorsAction, at: &crate::PrepareAt) -> Result<ActorsCall, String> {
    let target = at.target.clone();
    // A step naming no component inherits the one the step before named.
    let name = |n: Option<&str>| Name::new(n.or(at.previous), at);
    Ok(ActorsCall(match action {
        ActorsAction::Spawn(s) => Req::Spawn {
            target,
            name: Name::new(s.name.as_deref(), at),
            batch: s
                .count
                .map(|n| (n, Name::new(Some(s.prefix.as_deref().unwrap_or("")), at))),
            spec: spec_body(&s.component)?,
        },
        ActorsAction::Stop(s) => Req::Stop {
            target,
            component: name(s.component.as_deref()),
        },
        ActorsAction::Send(s) => Req::Send {
            target,
            component: name(s.component.as_deref()),
            collection: "/api/v1/components/",
            query: match s.wait {
                SendWait::Handled => "",
                SendWait::Queued => "?wait=queued",
            },
            messages: Messages::new(&s.payload, &s.key, s.batch, at),
        },
        ActorsAction::Publish(p) => Req::Send {
            target,
            component: Name::new(Some(&p.topic), at),
            collection: "/api/v1/topics/",
            query: "",
            messages: Messages::new(&p.payload, &p.key, p.batch, at),
        },
        ActorsAction::Request(r) => Req::Request {
            target,
            component: name(r.component.as_deref()),
            payload: Messages::new(
                &r.payload,
                &gauntlet_scenario::KeySpec::Template(String::new()),
                1,
                at,
            ),
        },
        ActorsAction::Lookup(l) => Req::Lookup {
            target,
            component: name(l.component.as_deref()),
        },
    }))
}

impl Call for ActorsCall {
    fn perform<'a>(
        &'a self,
        conns: &'a Connections,
        chain: &'a mut Chain,
    ) -> impl std::future::Future<Output = Outcome> + Send + 'a {
        self.0.run(&conns.http, chain)
    }

    /// A stop after a batch spawn stops every component spawned.
    fn step_requests(&self, chain: &Chain) -> usize {
        match &self.0 {
            Req::Stop {
                component: Name::Chained,
                ..
            } if !chain.items.is_empty() => chain.items.len(),
            _ if chain.key.is_none() && self.chained() => 0,
            _ => 1,
        }
    }
}

impl ActorsCall {
    fn chained(&self) -> bool {
        matches!(
            &self.0,
            Req::Stop {
                component: Name::Chained,
                ..
            } | Req::Send {
                component: Name::Chained,
                ..
            } | Req::Request {
                component: Name::Chained,
                ..
            } | Req::Lookup {
                component: Name::Chained,
                ..
            }
        )
    }
}

fn outcome_of(answer: &Result<http::Response<'_>, String>) -> Outcome {
    match answer {
        Ok(resp) if resp.is_success() => Outcome::Ok,
        Ok(resp) => http_status(resp.status),
        Err(kind) => Outcome::Error(kind.clone()),
    }
}

impl Req {
    async fn run(&self, client: &http::Client, chain: &mut Chain) -> Outcome {
        let seq = chain.seq;
        match self {
            Req::Spawn {
                target,
                name,
                batch,
                spec,
            } => match batch {
                None => {
                    let Some(n) = name.resolve(chain) else {
                        return bad_response();
                    };
                    let path = format!("/api/v1/components/{n}");
                    let answer = match spec {
                        SpecBody::Json(v) => {
                            let body = serde_json::to_vec(v).unwrap_or_default();
                            send(client, target, "PUT", &path, &body).await
                        }
                        SpecBody::Toml(b) => {
                            send_with(client, target, "PUT", &path, TOML_HEADER, b).await
                        }
                    };
                    let outcome = outcome_of(&answer);
                    if outcome == Outcome::Ok {
                        chain.key = Some(n);
                    }
                    outcome
                }
                Some((count, prefix)) => {
                    let Some(prefix) = prefix.resolve(chain) else {
                        return bad_response();
                    };
                    let SpecBody::Json(template) = spec else {
                        return bad_response();
                    };
                    let body = serde_json::to_vec(&serde_json::json!({
                        "template": template,
                        "count": count,
                        "prefix": prefix,
                    }))
                    .unwrap_or_default();
                    let answer =
                        send(client, target, "POST", "/api/v1/components:spawn", &body).await;
                    let outcome = outcome_of(&answer);
                    if outcome == Outcome::Ok {
                        chain.items = (0..*count)
                            .map(|i| (format!("{prefix}{i}"), None))
                            .collect();
                        chain.key = Some(format!("{prefix}0"));
                    }
                    outcome
                }
            },
            Req::Stop { target, component } => {
                let n = match component {
                    Name::Chained => match chain.items.pop_front() {
                        Some((n, _)) => Some(n),
                        None => chain.key.take(),
                    },
                    other => other.resolve(chain),
                };
                let Some(n) = n else {
                    return bad_response();
                };
                let answer = send(
                    client,
                    target,
                    "DELETE",
                    &format!("/api/v1/components/{n}"),
                    b"",
                )
                .await;
                outcome_of(&answer)
            }
            Req::Send {
                target,
                component,
                collection,
                query,
                messages,
            } => {
                let Some(n) = component.resolve(chain) else {
                    return bad_response();
                };
                let (body, keys) = messages.body(seq);
                let path = format!("{collection}{n}/messages{query}");
                let tap = chain.tap.clone();
                let id = tap
                    .as_ref()
                    .map(|t| t.invoke_send(&n, component.sinks(), keys));
                let answer = send(client, target, "POST", &path, &body).await;
                if let (Some(t), Some(id)) = (&tap, id) {
                    t.complete_send(id, seen(&answer));
                }
                let outcome = match &answer {
                    Ok(resp) if resp.is_success() => {
                        match serde_json::from_slice::<SendAnswer>(resp.body()) {
                            Ok(a) if a.handled.or(a.queued) == Some(u64::from(messages.batch)) => {
                                Outcome::Ok
                            }
                            _ => bad_response(),
                        }
                    }
                    other => outcome_of(other),
                };
                chain.key = Some(n);
                outcome
            }
            Req::Request {
                target,
                component,
                payload,
            } => {
                let Some(n) = component.resolve(chain) else {
                    return bad_response();
                };
                let mut body = String::from("{\"payload\":");
                payload.payload_json(&mut body, seq, 0, "");
                body.push('}');
                let path = format!("/api/v1/components/{n}/request");
                let answer = send(client, target, "POST", &path, body.as_bytes()).await;
                let outcome = match &answer {
                    Ok(resp) if resp.is_success() => {
                        match serde_json::from_slice::<serde_json::Value>(resp.body()) {
                            Ok(v) if v.get("reply").is_some() => Outcome::Ok,
                            _ => bad_response(),
                        }
                    }
                    other => outcome_of(other),
                };
                chain.key = Some(n);
                outcome
            }
            Req::Lookup { target, component } => {
                let Some(n) = component.resolve(chain) else {
                    return bad_response();
                };
                let answer =
                    send(client, target, "GET", &format!("/api/v1/registry/{n}"), b"").await;
                let outcome = match &answer {
                    Ok(resp) if resp.is_success() => {
                        match serde_json::from_slice::<serde_json::Value>(resp.body()) {
                            Ok(v) if v.get("name").and_then(|x| x.as_str()) == Some(&n) => {
                                Outcome::Ok
                            }
                            _ => bad_response(),
                        }
                    }
                    other => outcome_of(other),
                };
                chain.key = Some(n);
                outcome
            }
        }
    }
}

/// A send's answer: `handled` (or `queued` with `?wait=queued`).
#[derive(serde::Deserialize)]
struct SendAnswer {
    #[serde(default)]
    handled: Option<u64>,
    #[serde(default)]
    queued: Option<u64>,
}

/// Creates the scenario's `setup.actors` topology on the node behind
/// `target`, before the load: components (a pipeline's stages from its
/// end, so each `forward` finds its next stage), then each topic with its
/// subscribers (a batch spawn) subscribed. Spawning a component whose
/// identical spec already runs is fine (a node restored from its data
/// directory).
pub async fn setup(
    client: &http::Client,
    setup: &ActorsSetup,
    target: &Target,
) -> Result<(), String> {
    let topology = setup.topology();
    for c in &topology.components {
        // Inline specs carry their name; a file's must match it.
        let name = c.name.as_deref().unwrap_or_default();
        let body = spec_body(c)?;
        let path = format!("/api/v1/components/{name}");
        let answer = match &body {
            SpecBody::Json(v) => {
                send(
                    client,
                    target,
                    "PUT",
                    &path,
                    &serde_json::to_vec(v).unwrap_or_default(),
                )
                .await
            }
            SpecBody::Toml(b) => send_with(client, target, "PUT", &path, TOML_HEADER, b).await,
        };
        expect_success(answer, &format!("spawning component `{name}`"))?;
    }
    for t in &setup.topics {
        if let Some(batch) = &t.subscribers {
            let body = serde_json::json!({
                "template": t.subscriber_spec().to_json(None),
                "count": batch.count,
                "prefix": t.subscriber_prefix(),
            });
            let answer = send(
                client,
                target,
                "POST",
                "/api/v1/components:spawn",
                &serde_json::to_vec(&body).unwrap_or_default(),
            )
            .await;
            expect_success(
                answer,
                &format!(
                    "spawning the {} subscribers of topic `{}`",
                    batch.count, t.name
                ),
            )?;
        }
        let mut subscribers = t.subscribe.clone();
        subscribers.extend(t.subscriber_names());
        for s in subscribers {
            let body =
                serde_json::to_vec(&serde_json::json!({ "component": s })).unwrap_or_default();
            let answer = send(
                client,
                target,
                "POST",
                &format!("/api/v1/topics/{}/subscribers", t.name),
                &body,
            )
            .await;
            expect_success(answer, &format!("subscribing `{s}` to topic `{}`", t.name))?;
        }
    }
    Ok(())
}

fn expect_success(answer: Result<http::Response<'_>, String>, what: &str) -> Result<(), String> {
    match answer {
        Ok(resp) if resp.is_success() => Ok(()),
        Ok(resp) => Err(format!(
            "set-up: {what} answered {}: {} (hint: check `setup.actors` against the node's log)",
            resp.status,
            String::from_utf8_lossy(resp.body())
        )),
        Err(kind) => Err(format!("set-up: {what} failed ({kind})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Counters;
    use gauntlet_scenario::{KeySpec, SizeDist};

    fn messages(payload: Payload, key: KeySpec, batch: u32) -> Messages {
        let counters = Counters::default();
        Messages {
            payload: PayloadGen::new(&payload, 1, 0, &counters),
            json_payload: PayloadGen::is_json(&payload),
            keys: KeyGen::new(&key, 1, 7, &counters),
            batch,
        }
    }

    #[test]
    fn a_batch_is_one_json_body_with_its_messages_counted_per_key() {
        let m = messages(
            Payload::Json(serde_json::json!({ "n": "{{seq}}" })),
            KeySpec::Space {
                prefix: "k-".into(),
                count: 2,
                distribution: gauntlet_scenario::KeyDistribution::Sequential,
            },
            5,
        );
        let (body, keys) = m.body(3);
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let msgs = doc["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 5);
        assert_eq!(msgs[0]["payload"]["n"], 3);
        assert_eq!(keys.values().sum::<u64>(), 5);
        assert_eq!(keys.len(), 2);
        // Random bytes go as a base64 string, text as a string.
        let (body, keys) = messages(
            Payload::Random(SizeDist::Fixed(gauntlet_scenario::Size(16))),
            KeySpec::Template("orders".into()),
            2,
        )
        .body(0);
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let b64 = doc["messages"][1]["payload"].as_str().unwrap();
        assert_eq!(fabric_wire::decode_payload(b64).unwrap().len(), 16);
        assert_eq!(keys["orders"], 2);
        let (body, _) = messages(
            Payload::Text("hi \"{{seq}}\"".into()),
            KeySpec::Template("k".into()),
            1,
        )
        .body(7);
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["messages"][0]["payload"], "hi \"7\"");
    }

    #[test]
    fn a_pipeline_name_goes_to_its_head_and_counts_at_its_end() {
        let setup: ActorsSetup = serde_json::from_value(serde_json::json!({
            "pipelines": [ { "name": "p", "stages": [ { "behavior": "forward" }, { "behavior": "counter" } ] } ]
        }))
        .unwrap();
        let mut shared = crate::Shared::default();
        shared.actors.topology = Some(setup.topology());
        let (_tx, rx) = tokio::sync::watch::channel(gauntlet_control::Endpoint {
            host: "127.0.0.1".into(),
            port: 0,
        });
        let at = crate::PrepareAt {
            service: "actors",
            target: Target::new(rx, ""),
            previous: None,
            seed: 1,
            stream: 0,
            shared: &shared,
            targets: &|_| unreachable!("no second service"),
        };
        let chain = |seq, key: Option<&str>| Chain {
            seq,
            key: key.map(str::to_owned),
            ..Chain::default()
        };
        let name = Name::new(Some("p"), &at);
        assert_eq!(name.resolve(&chain(0, None)).as_deref(), Some("p-1"));
        assert_eq!(name.sinks(), ["p-2".to_owned()]);
        let templated = Name::new(Some("w-{{seq}}"), &at);
        assert_eq!(templated.resolve(&chain(4, None)).as_deref(), Some("w-4"));
        let chained = Name::new(None, &at);
        assert_eq!(
            chained.resolve(&chain(0, Some("spawned"))).as_deref(),
            Some("spawned")
        );
        assert_eq!(chained.resolve(&chain(0, None)), None);
    }
}
