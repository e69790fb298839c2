//! The five actors, declared with `reflow_actor_macro`'s `#[actor]`: each
//! has the inport `input` (the runtime's bounded(64) channel: the macro
//! gives the inport the outport-declared capacity) and, but the sink, the
//! outport `output`. A message travels as an envelope `{"id", "body"}` so
//! the node can tell when every copy of it reached a sink.
//!
//! The test-only fault (a panic, or a stall, after N messages) is armed per
//! node in [`crate::state`]; the panic is a real panic inside the actor's
//! task, which the published runtime does not catch.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use anyhow::Error;
use reflow_actor::message::{EncodableValue, Message};
use reflow_actor::{Actor, ActorBehavior, ActorContext, Port};
use reflow_actor_macro::actor;
use serde_json::{Value, json};

use crate::graph::{ActorKind, Keep, MapOp};
use crate::state::{self, BUCKETS, FaultMode, GraphState};

/// Metadata keys the node puts on each runtime node.
pub const META_INSTANCE: &str = "reflow_node_instance";
pub const META_INDEX: &str = "reflow_node_index";

pub fn envelope(id: u64, body: Value) -> Message {
    Message::Object(Arc::new(EncodableValue::from(
        json!({ "id": id, "body": body }),
    )))
}

#[actor(SourceActor, inports::<64>(input), outports::<64>(output))]
pub async fn source_actor(ctx: ActorContext) -> Result<HashMap<String, Message>, Error> {
    stage(ctx).await
}

#[actor(MapActor, inports::<64>(input), outports::<64>(output))]
pub async fn map_actor(ctx: ActorContext) -> Result<HashMap<String, Message>, Error> {
    stage(ctx).await
}

#[actor(FilterActor, inports::<64>(input), outports::<64>(output))]
pub async fn filter_actor(ctx: ActorContext) -> Result<HashMap<String, Message>, Error> {
    stage(ctx).await
}

#[actor(FanoutActor, inports::<64>(input), outports::<64>(output))]
pub async fn fanout_actor(ctx: ActorContext) -> Result<HashMap<String, Message>, Error> {
    stage(ctx).await
}

#[actor(SinkActor, inports::<64>(input), outports::<64>())]
pub async fn sink_actor(ctx: ActorContext) -> Result<HashMap<String, Message>, Error> {
    stage(ctx).await
}

/// Registers the five actors on a network under their graph-file names.
pub fn register_all(net: &mut reflow_network::network::Network) -> anyhow::Result<()> {
    net.register_actor("source", SourceActor::new())?;
    net.register_actor("map", MapActor::new())?;
    net.register_actor("filter", FilterActor::new())?;
    net.register_actor("fanout", FanoutActor::new())?;
    net.register_actor("sink", SinkActor::new())?;
    Ok(())
}

fn locate(ctx: &ActorContext) -> Option<(Arc<GraphState>, usize)> {
    let c = &ctx.get_config().config;
    let inst = c.get(META_INSTANCE)?.as_u64()? as usize;
    let idx = c.get(META_INDEX)?.as_u64()? as usize;
    Some((state::lookup(inst)?, idx))
}

/// One message through one node.
async fn stage(ctx: ActorContext) -> Result<HashMap<String, Message>, Error> {
    let Some((g, i)) = locate(&ctx) else {
        anyhow::bail!(
            "reflow-node: node {} has no state",
            ctx.get_config().get_node_id()
        );
    };
    let started = Instant::now();
    let n = &g.nodes[i];
    let received = n.received.fetch_add(1, Relaxed) + 1;
    g.progress();
    let fault = *n.fault.lock().unwrap();
    if let Some(f) = fault
        && received > f.at_received
    {
        match f.mode {
            FaultMode::Panic => {
                *n.dead.lock().unwrap() = Some(format!(
                    "its task panicked at message {received} (test fault) and the runtime did not restart it"
                ));
                n.failed.fetch_add(1, Relaxed);
                panic!(
                    "reflow-node test fault: actor `{}` panics at message {received}",
                    n.node.id
                );
            }
            FaultMode::Stall => {
                *n.dead.lock().unwrap() =
                    Some(format!("it stalls from message {received} on (test fault)"));
                n.failed.fetch_add(1, Relaxed);
                std::future::pending::<()>().await;
            }
        }
    }
    let Some(Message::Object(obj)) = ctx.get_payload().get(crate::graph::INPORT) else {
        anyhow::bail!("reflow-node: node {}: no envelope on its inport", n.node.id);
    };
    let env: Value = obj.as_ref().clone().into();
    let id = env.get("id").and_then(Value::as_u64).unwrap_or(0);
    let mut body = env.get("body").cloned().unwrap_or(Value::Null);
    let out = match n.node.kind {
        ActorKind::Source | ActorKind::Fanout => Some(body),
        ActorKind::Map => {
            if n.node.work_us > 0 {
                let until = Instant::now() + std::time::Duration::from_micros(n.node.work_us);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            }
            match &n.node.op {
                MapOp::Identity => Some(body),
                MapOp::Add { field, by } => {
                    match body
                        .get_mut(field.as_str())
                        .and_then(|v| v.as_i64().map(|x| (v, x)))
                    {
                        Some((v, x)) => {
                            *v = json!(x.wrapping_add(*by));
                            Some(body)
                        }
                        None => {
                            n.failed.fetch_add(1, Relaxed);
                            g.finish(id);
                            anyhow::bail!("map {}: field `{field}` is not an integer", n.node.id);
                        }
                    }
                }
            }
        }
        ActorKind::Filter => {
            let keep = match &n.node.keep {
                Some(Keep::Equals { field, value }) => body.get(field.as_str()) == Some(value),
                Some(Keep::Modulo {
                    field,
                    modulo,
                    remainder,
                }) => body
                    .get(field.as_str())
                    .and_then(Value::as_i64)
                    .is_some_and(|x| x.rem_euclid(*modulo) == *remainder),
                None => true,
            };
            if keep {
                Some(body)
            } else {
                n.dropped.fetch_add(1, Relaxed);
                g.finish(id);
                None
            }
        }
        ActorKind::Sink => {
            {
                let mut s = n.sink.lock().unwrap();
                s.count += 1;
                if let Some(k) = body.get(n.node.key_field.as_str()) {
                    let key = match k {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let off = body
                        .get(n.node.offset_field.as_str())
                        .cloned()
                        .unwrap_or(Value::Null);
                    s.last.insert(key, off);
                }
                s.last_message = Some(body);
            }
            g.finish(id);
            None
        }
    };
    n.processed.fetch_add(1, Relaxed);
    if g.tracing {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        *n.per_second.lock().unwrap().entry(now).or_insert(0) += 1;
    }
    let took = started.elapsed();
    n.processing_ns.fetch_add(took.as_nanos() as u64, Relaxed);
    let secs = took.as_secs_f64();
    let b = BUCKETS
        .iter()
        .position(|&le| secs <= le)
        .unwrap_or(BUCKETS.len());
    n.buckets[b].fetch_add(1, Relaxed);
    match out {
        Some(body) => {
            g.fan(id, n.downstream.len());
            n.emitted.fetch_add(1, Relaxed);
            Ok(HashMap::from([(
                crate::graph::OUTPORT.to_owned(),
                envelope(id, body),
            )]))
        }
        None => Ok(HashMap::new()),
    }
}
