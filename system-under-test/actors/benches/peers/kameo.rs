//! kameo peer. Runs on the shared tokio multi-thread runtime (2 workers),
//! default kameo features (`macros`, `tracing`), default mailbox
//! (`Spawn::spawn` = bounded, capacity 64; `tell(..).await` waits for room).
use std::hint::black_box;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ::kameo::prelude::*;
use tokio::sync::oneshot;

use super::common::{
    FANOUT, PIPELINE_BATCH, PIPELINE_N, Progress, REGISTRY_SIZE, ROUTING_BATCH, ok, run_tokio,
    tokio_rt,
};

// ---------------------------------------------------------------- actors

#[derive(Actor)]
pub struct Echo {
    count: u64,
}

pub struct Tick;
pub struct Ping(pub oneshot::Sender<()>);
pub struct Get;

impl Message<Tick> for Echo {
    type Reply = ();
    async fn handle(&mut self, _: Tick, _: &mut Context<Self, ()>) {
        self.count += 1;
    }
}

impl Message<Ping> for Echo {
    type Reply = ();
    async fn handle(&mut self, Ping(tx): Ping, _: &mut Context<Self, ()>) {
        self.count += 1;
        let _ = tx.send(());
    }
}

impl Message<Get> for Echo {
    type Reply = u64;
    async fn handle(&mut self, _: Get, _: &mut Context<Self, u64>) -> u64 {
        self.count += 1;
        self.count
    }
}

#[derive(Actor)]
pub struct Sub {
    progress: Arc<Progress>,
}

#[derive(Clone, Copy)]
pub struct Publish(pub u64);

impl Message<Publish> for Sub {
    type Reply = ();
    async fn handle(&mut self, msg: Publish, _: &mut Context<Self, ()>) {
        black_box(msg.0);
        self.progress.add(1);
    }
}

/// A pipeline stage; `next == None` makes it the sink.
#[derive(Actor)]
pub struct Stage {
    next: Option<ActorRef<Stage>>,
    progress: Arc<Progress>,
}

pub struct One(pub u64);
pub struct Batch(pub Vec<u64>);

impl Message<One> for Stage {
    type Reply = ();
    async fn handle(&mut self, One(x): One, _: &mut Context<Self, ()>) {
        let x = black_box(x + 1);
        match &self.next {
            Some(n) => ok(n.tell(One(x)).await),
            None => self.progress.add(1),
        }
    }
}

impl Message<Batch> for Stage {
    type Reply = ();
    async fn handle(&mut self, Batch(mut v): Batch, _: &mut Context<Self, ()>) {
        for x in v.iter_mut() {
            *x = black_box(*x + 1);
        }
        match &self.next {
            Some(n) => ok(n.tell(Batch(v)).await),
            None => self.progress.add(v.len() as u64),
        }
    }
}

fn echo() -> ActorRef<Echo> {
    Echo::spawn(Echo { count: 0 })
}

async fn stop(a: &ActorRef<impl Actor>) {
    let _ = a.stop_gracefully().await;
    a.wait_for_shutdown().await;
}

// ---------------------------------------------------------------- rows

/// Row 1: spawn + 1 message + wait until handled. Actors stay alive until the
/// end of the sample, then are stopped (untimed).
pub fn spawn(iters: u64) -> Duration {
    run_tokio(async move {
        let mut keep = Vec::with_capacity(iters as usize);
        let start = Instant::now();
        for _ in 0..iters {
            let a = echo();
            let (tx, rx) = oneshot::channel();
            ok(a.tell(Ping(tx)).await);
            ok(rx.await);
            keep.push(a);
        }
        let el = start.elapsed();
        for a in &keep {
            let _ = a.stop_gracefully().await;
        }
        for a in &keep {
            a.wait_for_shutdown().await;
        }
        el
    })
}

/// Row 2: spawn, 1 message handled, `stop_gracefully` + `wait_for_shutdown`.
pub fn lifecycle(iters: u64) -> Duration {
    run_tokio(async move {
        let start = Instant::now();
        for _ in 0..iters {
            let a = echo();
            let (tx, rx) = oneshot::channel();
            ok(a.tell(Ping(tx)).await);
            ok(rx.await);
            stop(&a).await;
        }
        start.elapsed()
    })
}

fn named_route_target(name: &'static str) -> ActorRef<Echo> {
    let a = echo();
    ok(a.register(name));
    // Resolve the handle by name through kameo's registry (once, untimed).
    let r = ok(ActorRef::<Echo>::lookup(name)).expect("registered");
    drop(a);
    r
}

fn unregister(name: &str) {
    ::kameo::registry::ACTOR_REGISTRY
        .lock()
        .unwrap()
        .remove(name);
}

/// Row 3 (batch): per iteration, ROUTING_BATCH tells to a live named actor, then
/// wait until all were handled (the last is a Ping; mailbox is FIFO).
/// Divide by ROUTING_BATCH for per-message time.
pub fn routing_batch(iters: u64) -> Duration {
    run_tokio(async move {
        let a = named_route_target("kameo-route-batch");
        let start = Instant::now();
        for _ in 0..iters {
            for _ in 0..ROUTING_BATCH - 1 {
                ok(a.tell(Tick).await);
            }
            let (tx, rx) = oneshot::channel();
            ok(a.tell(Ping(tx)).await);
            ok(rx.await);
        }
        let el = start.elapsed();
        unregister("kameo-route-batch");
        stop(&a).await;
        el
    })
}

/// Row 3 (single): one tell to a live named actor, wait until handled (round trip).
pub fn routing_single(iters: u64) -> Duration {
    run_tokio(async move {
        let a = named_route_target("kameo-route-single");
        let start = Instant::now();
        for _ in 0..iters {
            let (tx, rx) = oneshot::channel();
            ok(a.tell(Ping(tx)).await);
            ok(rx.await);
        }
        let el = start.elapsed();
        unregister("kameo-route-single");
        stop(&a).await;
        el
    })
}

/// Row 3 (single, by name): like `routing_single` but every send first resolves
/// the name with `ActorRef::lookup` (what "send by name" costs per message).
pub fn routing_single_by_name(iters: u64) -> Duration {
    run_tokio(async move {
        const NAME: &str = "kameo-route-by-name";
        let a = named_route_target(NAME);
        let start = Instant::now();
        for _ in 0..iters {
            let (tx, rx) = oneshot::channel();
            let target = ok(ActorRef::<Echo>::lookup(NAME)).expect("registered");
            ok(target.tell(Ping(tx)).await);
            ok(rx.await);
        }
        let el = start.elapsed();
        unregister(NAME);
        stop(&a).await;
        el
    })
}

/// Row 4: request-response via `ask`, reply received.
pub fn request_response(iters: u64) -> Duration {
    run_tokio(async move {
        let a = echo();
        let start = Instant::now();
        for _ in 0..iters {
            black_box(ok(a.ask(Get).await));
        }
        let el = start.elapsed();
        stop(&a).await;
        el
    })
}

/// Row 5: publish one message to FANOUT subscriber actors (publisher iterates
/// its subscriber handles), wait until every subscriber handled it.
pub fn fanout(iters: u64) -> Duration {
    run_tokio(async move {
        let progress = Progress::new();
        let subs: Vec<_> = (0..FANOUT)
            .map(|_| {
                Sub::spawn(Sub {
                    progress: progress.clone(),
                })
            })
            .collect();
        let start = Instant::now();
        for i in 0..iters {
            let t = progress.expect(FANOUT as u64);
            for s in &subs {
                ok(s.tell(Publish(i)).await);
            }
            progress.wait(t).await;
        }
        let el = start.elapsed();
        for s in &subs {
            stop(s).await;
        }
        el
    })
}

fn build_pipeline(progress: Arc<Progress>, unbounded: bool) -> Vec<ActorRef<Stage>> {
    let sp = |st: Stage| {
        if unbounded {
            Stage::spawn_with_mailbox(st, mailbox::unbounded())
        } else {
            Stage::spawn(st) // default: bounded(64)
        }
    };
    let sink = sp(Stage {
        next: None,
        progress: progress.clone(),
    });
    let s2 = sp(Stage {
        next: Some(sink.clone()),
        progress: progress.clone(),
    });
    let s1 = sp(Stage {
        next: Some(s2.clone()),
        progress,
    });
    vec![s1, s2, sink]
}

/// Row 6: PIPELINE_N messages per iteration, stage1 -> stage2 -> sink, until the sink handled all.
/// Default kameo mailboxes (bounded 64).
pub fn pipeline(iters: u64) -> Duration {
    pipeline_impl(iters, false)
}

/// Row 6, supplementary: same with `mailbox::unbounded()` for every stage.
pub fn pipeline_unbounded(iters: u64) -> Duration {
    pipeline_impl(iters, true)
}

fn pipeline_impl(iters: u64, unbounded: bool) -> Duration {
    run_tokio(async move {
        let progress = Progress::new();
        let all = build_pipeline(progress.clone(), unbounded);
        let head = all[0].clone();
        let start = Instant::now();
        for _ in 0..iters {
            let t = progress.expect(PIPELINE_N);
            for i in 0..PIPELINE_N {
                ok(head.tell(One(i)).await);
            }
            progress.wait(t).await;
        }
        let el = start.elapsed();
        for a in &all {
            stop(a).await;
        }
        el
    })
}

/// Row 6 (batched): Vecs of PIPELINE_BATCH, every element handled individually per stage.
pub fn pipeline_batched(iters: u64) -> Duration {
    pipeline_batched_impl(iters, false)
}

/// Row 6 (batched), supplementary: unbounded mailboxes.
pub fn pipeline_batched_unbounded(iters: u64) -> Duration {
    pipeline_batched_impl(iters, true)
}

fn pipeline_batched_impl(iters: u64, unbounded: bool) -> Duration {
    run_tokio(async move {
        let progress = Progress::new();
        let all = build_pipeline(progress.clone(), unbounded);
        let head = all[0].clone();
        let start = Instant::now();
        for _ in 0..iters {
            let t = progress.expect(PIPELINE_N);
            for b in 0..PIPELINE_N / PIPELINE_BATCH as u64 {
                let base = b * PIPELINE_BATCH as u64;
                let v: Vec<u64> = (base..base + PIPELINE_BATCH as u64).collect();
                ok(head.tell(Batch(v)).await);
            }
            progress.wait(t).await;
        }
        let el = start.elapsed();
        for a in &all {
            stop(a).await;
        }
        el
    })
}

fn registry_names() -> &'static Vec<String> {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        tokio_rt().block_on(async {
            (0..REGISTRY_SIZE)
                .map(|i| {
                    let n = format!("kameo-reg-{i}");
                    let a = echo();
                    ok(a.register(n.clone())); // registry keeps the ref: live for the process
                    n
                })
                .collect()
        })
    })
}

/// Row 7: `ActorRef::<Echo>::lookup(name)` among REGISTRY_SIZE live named actors
/// (global Mutex<HashMap>; returns an owned ActorRef).
pub fn registry_lookup(iters: u64) -> Duration {
    let names = registry_names();
    let start = Instant::now();
    for i in 0..iters as usize {
        black_box(ok(ActorRef::<Echo>::lookup(black_box(
            names[i % REGISTRY_SIZE].as_str(),
        ))));
    }
    start.elapsed()
}
