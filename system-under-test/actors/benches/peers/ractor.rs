//! ractor peer. Runs on the shared tokio multi-thread runtime (2 workers),
//! default ractor features (`tokio_runtime`, `message_span_propogation`).
use std::hint::black_box;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ::ractor::rpc::CallResult;
use ::ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, registry};
use tokio::sync::oneshot;

use super::common::{
    FANOUT, PIPELINE_BATCH, PIPELINE_N, Progress, REGISTRY_SIZE, ROUTING_BATCH, ok, run_tokio,
    tokio_rt,
};

// ---------------------------------------------------------------- actors

pub enum EchoMsg {
    /// Handled (counted), no reply.
    Tick,
    /// Handled, then signals the sender.
    Ping(oneshot::Sender<()>),
    /// Request-response: replies with the handled count.
    Get(RpcReplyPort<u64>),
}

pub struct Echo;

impl Actor for Echo {
    type Msg = EchoMsg;
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<EchoMsg>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _: ActorRef<EchoMsg>,
        msg: EchoMsg,
        count: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        *count += 1;
        match msg {
            EchoMsg::Tick => {}
            EchoMsg::Ping(tx) => {
                let _ = tx.send(());
            }
            EchoMsg::Get(port) => {
                let _ = port.send(*count);
            }
        }
        Ok(())
    }
}

pub struct Sub(pub Arc<Progress>);

impl Actor for Sub {
    type Msg = u64;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<u64>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<u64>,
        msg: u64,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        black_box(msg);
        self.0.add(1);
        Ok(())
    }
}

pub enum PipeMsg {
    One(u64),
    Batch(Vec<u64>),
}

/// A pipeline stage; `next == None` makes it the sink.
pub struct Stage {
    pub next: Option<ActorRef<PipeMsg>>,
    pub progress: Arc<Progress>,
}

impl Actor for Stage {
    type Msg = PipeMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<PipeMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<PipeMsg>,
        msg: PipeMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PipeMsg::One(x) => {
                let x = black_box(x + 1);
                match &self.next {
                    Some(n) => {
                        if n.cast(PipeMsg::One(x)).is_err() {
                            return Err("pipeline send failed".into());
                        }
                    }
                    None => self.progress.add(1),
                }
            }
            PipeMsg::Batch(mut v) => {
                for x in v.iter_mut() {
                    *x = black_box(*x + 1);
                }
                match &self.next {
                    Some(n) => {
                        if n.cast(PipeMsg::Batch(v)).is_err() {
                            return Err("pipeline send failed".into());
                        }
                    }
                    None => self.progress.add(v.len() as u64),
                }
            }
        }
        Ok(())
    }
}

async fn spawn_echo(name: Option<String>) -> (ActorRef<EchoMsg>, tokio::task::JoinHandle<()>) {
    ok(Actor::spawn(name, Echo, ()).await)
}

// ---------------------------------------------------------------- rows

/// Row 1: spawn + 1 message + wait until handled. Spawned actors stay alive
/// until the end of the sample, then are stopped (untimed).
pub fn spawn(iters: u64) -> Duration {
    run_tokio(async move {
        let mut keep = Vec::with_capacity(iters as usize);
        let start = Instant::now();
        for _ in 0..iters {
            let (a, h) = spawn_echo(None).await;
            let (tx, rx) = oneshot::channel();
            ok(a.cast(EchoMsg::Ping(tx)));
            ok(rx.await);
            keep.push((a, h));
        }
        let el = start.elapsed();
        for (a, _) in &keep {
            a.stop(None);
        }
        for (_, h) in keep {
            let _ = h.await;
        }
        el
    })
}

/// Row 2: spawn, 1 message handled, graceful stop, wait until stopped (task joined).
pub fn lifecycle(iters: u64) -> Duration {
    run_tokio(async move {
        let start = Instant::now();
        for _ in 0..iters {
            let (a, h) = spawn_echo(None).await;
            let (tx, rx) = oneshot::channel();
            ok(a.cast(EchoMsg::Ping(tx)));
            ok(rx.await);
            a.stop(None);
            ok(h.await);
        }
        start.elapsed()
    })
}

async fn named_route_target(name: &str) -> (ActorRef<EchoMsg>, tokio::task::JoinHandle<()>) {
    let (_a, h) = spawn_echo(Some(name.to_string())).await;
    // Resolve the handle by name through ractor's registry (once, untimed).
    let cell = registry::where_is(name).expect("registered");
    (ActorRef::<EchoMsg>::from(cell), h)
}

/// Row 3 (batch): per iteration, ROUTING_BATCH sends to a live named actor,
/// then wait until all were handled (the last is a Ping; mailbox is FIFO).
/// Divide by ROUTING_BATCH for per-message time.
pub fn routing_batch(iters: u64) -> Duration {
    run_tokio(async move {
        let (a, h) = named_route_target("peer-route-batch").await;
        let start = Instant::now();
        for _ in 0..iters {
            for _ in 0..ROUTING_BATCH - 1 {
                ok(a.cast(EchoMsg::Tick));
            }
            let (tx, rx) = oneshot::channel();
            ok(a.cast(EchoMsg::Ping(tx)));
            ok(rx.await);
        }
        let el = start.elapsed();
        a.stop(None);
        let _ = h.await;
        el
    })
}

/// Row 3 (single): one message to a live named actor, wait until handled (round trip).
pub fn routing_single(iters: u64) -> Duration {
    run_tokio(async move {
        let (a, h) = named_route_target("peer-route-single").await;
        let start = Instant::now();
        for _ in 0..iters {
            let (tx, rx) = oneshot::channel();
            ok(a.cast(EchoMsg::Ping(tx)));
            ok(rx.await);
        }
        let el = start.elapsed();
        a.stop(None);
        let _ = h.await;
        el
    })
}

/// Row 3 (single, by name): like `routing_single` but every send first resolves
/// the name with `registry::where_is` (what "send by name" costs per message).
pub fn routing_single_by_name(iters: u64) -> Duration {
    run_tokio(async move {
        const NAME: &str = "peer-route-by-name";
        let (a, h) = named_route_target(NAME).await;
        let start = Instant::now();
        for _ in 0..iters {
            let (tx, rx) = oneshot::channel();
            let target = ActorRef::<EchoMsg>::from(registry::where_is(NAME).expect("registered"));
            ok(target.cast(EchoMsg::Ping(tx)));
            ok(rx.await);
        }
        let el = start.elapsed();
        a.stop(None);
        let _ = h.await;
        el
    })
}

/// Row 4: request-response via `ActorRef::call`, reply received.
pub fn request_response(iters: u64) -> Duration {
    run_tokio(async move {
        let (a, h) = spawn_echo(None).await;
        let start = Instant::now();
        for _ in 0..iters {
            match ok(a.call(EchoMsg::Get, None).await) {
                CallResult::Success(v) => {
                    black_box(v);
                }
                _ => panic!("call failed"),
            }
        }
        let el = start.elapsed();
        a.stop(None);
        let _ = h.await;
        el
    })
}

/// Row 5: publish one message to FANOUT subscriber actors (publisher iterates
/// its subscriber handles), wait until every subscriber handled it.
pub fn fanout(iters: u64) -> Duration {
    run_tokio(async move {
        let progress = Progress::new();
        let mut subs = Vec::with_capacity(FANOUT);
        for _ in 0..FANOUT {
            subs.push(ok(Actor::spawn(None, Sub(progress.clone()), ()).await));
        }
        let start = Instant::now();
        for i in 0..iters {
            let t = progress.expect(FANOUT as u64);
            for (s, _) in &subs {
                ok(s.cast(i));
            }
            progress.wait(t).await;
        }
        let el = start.elapsed();
        for (s, _) in &subs {
            s.stop(None);
        }
        for (_, h) in subs {
            let _ = h.await;
        }
        el
    })
}

async fn build_pipeline(
    progress: Arc<Progress>,
) -> (
    ActorRef<PipeMsg>,
    Vec<(ActorRef<PipeMsg>, tokio::task::JoinHandle<()>)>,
) {
    let sink = ok(Actor::spawn(
        None,
        Stage {
            next: None,
            progress: progress.clone(),
        },
        (),
    )
    .await);
    let s2 = ok(Actor::spawn(
        None,
        Stage {
            next: Some(sink.0.clone()),
            progress: progress.clone(),
        },
        (),
    )
    .await);
    let s1 = ok(Actor::spawn(
        None,
        Stage {
            next: Some(s2.0.clone()),
            progress,
        },
        (),
    )
    .await);
    (s1.0.clone(), vec![s1, s2, sink])
}

async fn teardown(all: Vec<(ActorRef<PipeMsg>, tokio::task::JoinHandle<()>)>) {
    for (a, h) in all {
        a.stop(None);
        let _ = h.await;
    }
}

/// Row 6: PIPELINE_N messages per iteration, stage1 -> stage2 -> sink, until the sink handled all.
pub fn pipeline(iters: u64) -> Duration {
    run_tokio(async move {
        let progress = Progress::new();
        let (head, all) = build_pipeline(progress.clone()).await;
        let start = Instant::now();
        for _ in 0..iters {
            let t = progress.expect(PIPELINE_N);
            for i in 0..PIPELINE_N {
                ok(head.cast(PipeMsg::One(i)));
            }
            progress.wait(t).await;
        }
        let el = start.elapsed();
        teardown(all).await;
        el
    })
}

/// Row 6 (batched): same PIPELINE_N elements, sent as Vecs of PIPELINE_BATCH; each
/// stage handles every element individually and forwards the Vec as one message.
pub fn pipeline_batched(iters: u64) -> Duration {
    run_tokio(async move {
        let progress = Progress::new();
        let (head, all) = build_pipeline(progress.clone()).await;
        let start = Instant::now();
        for _ in 0..iters {
            let t = progress.expect(PIPELINE_N);
            for b in 0..PIPELINE_N / PIPELINE_BATCH as u64 {
                let base = b * PIPELINE_BATCH as u64;
                let v: Vec<u64> = (base..base + PIPELINE_BATCH as u64).collect();
                ok(head.cast(PipeMsg::Batch(v)));
            }
            progress.wait(t).await;
        }
        let el = start.elapsed();
        teardown(all).await;
        el
    })
}

fn registry_names() -> &'static Vec<String> {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        tokio_rt().block_on(async {
            let mut names = Vec::with_capacity(REGISTRY_SIZE);
            for i in 0..REGISTRY_SIZE {
                let n = format!("ractor-reg-{i}");
                // Live for the whole process.
                let _ = spawn_echo(Some(n.clone())).await;
                names.push(n);
            }
            names
        })
    })
}

/// Row 7: `ractor::registry::where_is(name)` among REGISTRY_SIZE live named actors
/// (returns an owned ActorCell).
pub fn registry_lookup(iters: u64) -> Duration {
    let names = registry_names();
    let start = Instant::now();
    for i in 0..iters as usize {
        black_box(registry::where_is(black_box(
            names[i % REGISTRY_SIZE].as_str(),
        )));
    }
    start.elapsed()
}
