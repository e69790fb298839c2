//! actix peer. actix actors run on actix's own `System` (actix-rt): a
//! current-thread tokio runtime + LocalSet; every actor here is started on the
//! System arbiter, i.e. everything (sender included) runs on ONE thread.
//! Sends use `Addr::do_send` (fire-and-forget, ignores mailbox capacity) and
//! `Addr::send(..).await` for request-response.
use std::collections::HashMap;
use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::actix::prelude::*;
use tokio::sync::oneshot;

use super::common::{
    FANOUT, PIPELINE_BATCH, PIPELINE_N, Progress, REGISTRY_SIZE, ROUTING_BATCH, ok,
};

thread_local! {
    static SYSTEM: actix_rt::SystemRunner = actix_rt::System::new();
}

/// Run a measuring future on this thread's actix System.
pub fn run_actix<F: Future<Output = Duration>>(f: F) -> Duration {
    SYSTEM.with(|s| s.block_on(f))
}

// ---------------------------------------------------------------- actors

#[derive(Default)]
pub struct Echo {
    count: u64,
    on_stop: Option<oneshot::Sender<()>>,
}

impl Actor for Echo {
    type Context = Context<Self>;
    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(tx) = self.on_stop.take() {
            let _ = tx.send(());
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Tick;

#[derive(Message)]
#[rtype(result = "()")]
pub struct Ping(pub oneshot::Sender<()>);

#[derive(Message)]
#[rtype(result = "u64")]
pub struct Get;

#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Tick> for Echo {
    type Result = ();
    fn handle(&mut self, _: Tick, _: &mut Context<Self>) {
        self.count += 1;
    }
}

impl Handler<Ping> for Echo {
    type Result = ();
    fn handle(&mut self, Ping(tx): Ping, _: &mut Context<Self>) {
        self.count += 1;
        let _ = tx.send(());
    }
}

impl Handler<Get> for Echo {
    type Result = u64;
    fn handle(&mut self, _: Get, _: &mut Context<Self>) -> u64 {
        self.count += 1;
        self.count
    }
}

impl Handler<Stop> for Echo {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

pub struct Sub {
    progress: Arc<Progress>,
}

impl Actor for Sub {
    type Context = Context<Self>;
}

#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Publish(pub u64);

impl Handler<Publish> for Sub {
    type Result = ();
    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) {
        black_box(msg.0);
        self.progress.add(1);
    }
}

/// A pipeline stage; `next == None` makes it the sink.
pub struct Stage {
    next: Option<Addr<Stage>>,
    progress: Arc<Progress>,
}

impl Actor for Stage {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct One(pub u64);

#[derive(Message)]
#[rtype(result = "()")]
pub struct Batch(pub Vec<u64>);

impl Handler<One> for Stage {
    type Result = ();
    fn handle(&mut self, One(x): One, _: &mut Context<Self>) {
        let x = black_box(x + 1);
        match &self.next {
            Some(n) => n.do_send(One(x)),
            None => self.progress.add(1),
        }
    }
}

impl Handler<Batch> for Stage {
    type Result = ();
    fn handle(&mut self, Batch(mut v): Batch, _: &mut Context<Self>) {
        for x in v.iter_mut() {
            *x = black_box(*x + 1);
        }
        match &self.next {
            Some(n) => n.do_send(Batch(v)),
            None => self.progress.add(v.len() as u64),
        }
    }
}

/// Registry row: actix has no name registry; `SystemService` is a per-type singleton registry.
#[derive(Default)]
pub struct Svc;
impl Actor for Svc {
    type Context = Context<Self>;
}
impl Supervised for Svc {}
impl SystemService for Svc {}

fn echo_with_stop_signal() -> (Addr<Echo>, oneshot::Receiver<()>) {
    let (stx, srx) = oneshot::channel();
    let a = Echo {
        count: 0,
        on_stop: Some(stx),
    }
    .start();
    (a, srx)
}

// ---------------------------------------------------------------- rows

/// Row 1: start + 1 message + wait until handled. Actors stay alive until the
/// end of the sample, then are stopped (untimed).
pub fn spawn(iters: u64) -> Duration {
    run_actix(async move {
        let mut keep = Vec::with_capacity(iters as usize);
        let start = Instant::now();
        for _ in 0..iters {
            let (a, srx) = echo_with_stop_signal();
            let (tx, rx) = oneshot::channel();
            a.do_send(Ping(tx));
            ok(rx.await);
            keep.push((a, srx));
        }
        let el = start.elapsed();
        for (a, _) in &keep {
            a.do_send(Stop);
        }
        for (_, srx) in keep {
            let _ = srx.await;
        }
        el
    })
}

/// Row 2: start, 1 message handled, Stop message (`ctx.stop()`), wait until `stopped()` ran.
pub fn lifecycle(iters: u64) -> Duration {
    run_actix(async move {
        let start = Instant::now();
        for _ in 0..iters {
            let (a, srx) = echo_with_stop_signal();
            let (tx, rx) = oneshot::channel();
            a.do_send(Ping(tx));
            ok(rx.await);
            a.do_send(Stop);
            ok(srx.await);
        }
        start.elapsed()
    })
}

/// Row 3 (batch): per iteration, ROUTING_BATCH `do_send`s to a live actor (by Addr:
/// actix has no name registry), then wait until all were handled (last is a Ping; FIFO).
/// Divide by ROUTING_BATCH for per-message time.
pub fn routing_batch(iters: u64) -> Duration {
    run_actix(async move {
        let (a, srx) = echo_with_stop_signal();
        let start = Instant::now();
        for _ in 0..iters {
            for _ in 0..ROUTING_BATCH - 1 {
                a.do_send(Tick);
            }
            let (tx, rx) = oneshot::channel();
            a.do_send(Ping(tx));
            ok(rx.await);
        }
        let el = start.elapsed();
        a.do_send(Stop);
        let _ = srx.await;
        el
    })
}

/// Row 3 (single): one `do_send` to a live actor, wait until handled (round trip).
pub fn routing_single(iters: u64) -> Duration {
    run_actix(async move {
        let (a, srx) = echo_with_stop_signal();
        let start = Instant::now();
        for _ in 0..iters {
            let (tx, rx) = oneshot::channel();
            a.do_send(Ping(tx));
            ok(rx.await);
        }
        let el = start.elapsed();
        a.do_send(Stop);
        let _ = srx.await;
        el
    })
}

/// Row 4: request-response via `Addr::send(..).await`, reply received.
pub fn request_response(iters: u64) -> Duration {
    run_actix(async move {
        let (a, srx) = echo_with_stop_signal();
        let start = Instant::now();
        for _ in 0..iters {
            black_box(ok(a.send(Get).await));
        }
        let el = start.elapsed();
        a.do_send(Stop);
        let _ = srx.await;
        el
    })
}

/// Row 5: publish one message to FANOUT subscriber actors (publisher iterates
/// its subscriber Addrs), wait until every subscriber handled it.
pub fn fanout(iters: u64) -> Duration {
    run_actix(async move {
        let progress = Progress::new();
        let subs: Vec<Addr<Sub>> = (0..FANOUT)
            .map(|_| {
                Sub {
                    progress: progress.clone(),
                }
                .start()
            })
            .collect();
        let start = Instant::now();
        for i in 0..iters {
            let t = progress.expect(FANOUT as u64);
            for s in &subs {
                s.do_send(Publish(i));
            }
            progress.wait(t).await;
        }
        let el = start.elapsed();
        drop(subs); // last Addr dropped -> actors stop
        el
    })
}

fn build_pipeline(progress: Arc<Progress>) -> Addr<Stage> {
    let sink = Stage {
        next: None,
        progress: progress.clone(),
    }
    .start();
    let s2 = Stage {
        next: Some(sink),
        progress: progress.clone(),
    }
    .start();
    Stage {
        next: Some(s2),
        progress,
    }
    .start()
}

/// Row 6: PIPELINE_N messages per iteration, stage1 -> stage2 -> sink, until the sink handled all.
pub fn pipeline(iters: u64) -> Duration {
    run_actix(async move {
        let progress = Progress::new();
        let head = build_pipeline(progress.clone());
        let start = Instant::now();
        for _ in 0..iters {
            let t = progress.expect(PIPELINE_N);
            for i in 0..PIPELINE_N {
                head.do_send(One(i));
            }
            progress.wait(t).await;
        }
        start.elapsed()
    })
}

/// Row 6 (batched): Vecs of PIPELINE_BATCH, every element handled individually per stage.
pub fn pipeline_batched(iters: u64) -> Duration {
    run_actix(async move {
        let progress = Progress::new();
        let head = build_pipeline(progress.clone());
        let start = Instant::now();
        for _ in 0..iters {
            let t = progress.expect(PIPELINE_N);
            for b in 0..PIPELINE_N / PIPELINE_BATCH as u64 {
                let base = b * PIPELINE_BATCH as u64;
                let v: Vec<u64> = (base..base + PIPELINE_BATCH as u64).collect();
                head.do_send(Batch(v));
            }
            progress.wait(t).await;
        }
        start.elapsed()
    })
}

/// Row 7: actix has NO name registry. User-level equivalent: a
/// `HashMap<String, Addr<Echo>>` of REGISTRY_SIZE live actors, `get(name).cloned()`.
pub fn registry_lookup(iters: u64) -> Duration {
    run_actix(async move {
        let names: Vec<String> = (0..REGISTRY_SIZE)
            .map(|i| format!("actix-reg-{i}"))
            .collect();
        let map: HashMap<String, Addr<Echo>> = names
            .iter()
            .map(|n| (n.clone(), Echo::default().start()))
            .collect();
        let start = Instant::now();
        for i in 0..iters as usize {
            black_box(
                map.get(black_box(names[i % REGISTRY_SIZE].as_str()))
                    .cloned(),
            );
        }
        let el = start.elapsed();
        for a in map.values() {
            a.do_send(Stop);
        }
        el
    })
}

/// Row 7 (alt): actix's built-in `SystemRegistry`, keyed by TYPE not name:
/// `Svc::from_registry()` (returns an owned Addr).
pub fn registry_lookup_system_service(iters: u64) -> Duration {
    run_actix(async move {
        black_box(Svc::from_registry()); // create the singleton, untimed
        let start = Instant::now();
        for _ in 0..iters {
            black_box(Svc::from_registry());
        }
        start.elapsed()
    })
}
