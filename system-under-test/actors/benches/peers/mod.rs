//! The peers' rows (actix, ractor, kameo) for seed 001's benchmark.
//!
//! Each hook adds one bench function per peer to the caller's criterion
//! group; the group names and order follow `benches/seed001.rs`. All peer
//! row functions are `fn(iters: u64) -> Duration` (for `iter_custom`) and
//! measure until the work was *handled*. See RESULTS.md for the setup.
//!
//! Runtimes: ractor and kameo run on one shared tokio multi-thread runtime
//! with 2 workers (`common::tokio_rt`), the measuring loop itself being a
//! task on it; actix runs on its own `System` (current-thread runtime +
//! LocalSet), i.e. the sender and all actix actors share one thread.

pub mod actix;
pub mod common;
pub mod kameo;
pub mod ractor;

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Throughput};

type Row = fn(u64) -> Duration;

fn add(g: &mut BenchmarkGroup<'_, WallTime>, rows: &[(&str, Row)]) {
    for &(name, f) in rows {
        g.bench_function(name, |b| b.iter_custom(f));
    }
}

/// Row 1: spawn + first message handled.
pub fn spawn(g: &mut BenchmarkGroup<'_, WallTime>) {
    add(
        g,
        &[
            ("actix", self::actix::spawn),
            ("ractor", self::ractor::spawn),
            ("kameo", self::kameo::spawn),
        ],
    );
}

/// Row 2: spawn, one message handled, graceful stop awaited.
pub fn lifecycle(g: &mut BenchmarkGroup<'_, WallTime>) {
    add(
        g,
        &[
            ("actix", self::actix::lifecycle),
            ("ractor", self::ractor::lifecycle),
            ("kameo", self::kameo::lifecycle),
        ],
    );
}

/// Row 3: `<peer>/one` = one message round trip until handled (handle resolved
/// by name once); `<peer>/one/by_name` = name lookup on every send (ractor,
/// kameo; actix has no name registry); `<peer>/batch_1000` = 1,000 sends then
/// wait until all handled (Throughput::Elements(1000): criterion reports per batch,
/// divide by 1000 or read elem/s). Leaves the group's throughput at Elements(1).
pub fn routing(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.throughput(Throughput::Elements(1));
    add(
        g,
        &[
            ("actix/one", self::actix::routing_single),
            ("ractor/one", self::ractor::routing_single),
            ("ractor/one/by_name", self::ractor::routing_single_by_name),
            ("kameo/one", self::kameo::routing_single),
            ("kameo/one/by_name", self::kameo::routing_single_by_name),
        ],
    );
    g.throughput(Throughput::Elements(common::ROUTING_BATCH));
    add(
        g,
        &[
            ("actix/batch_1000", self::actix::routing_batch),
            ("ractor/batch_1000", self::ractor::routing_batch),
            ("kameo/batch_1000", self::kameo::routing_batch),
        ],
    );
    g.throughput(Throughput::Elements(1));
}

/// Row 4: request-response, reply received.
pub fn request_response(g: &mut BenchmarkGroup<'_, WallTime>) {
    add(
        g,
        &[
            ("actix", self::actix::request_response),
            ("ractor", self::ractor::request_response),
            ("kameo", self::kameo::request_response),
        ],
    );
}

/// Row 5: one publish to 100 subscriber actors, all handled.
pub fn fanout_100(g: &mut BenchmarkGroup<'_, WallTime>) {
    add(
        g,
        &[
            ("actix", self::actix::fanout),
            ("ractor", self::ractor::fanout),
            ("kameo", self::kameo::fanout),
        ],
    );
}

/// Row 6: 100,000 messages through stage1 -> stage2 -> sink, handled at the sink
/// (Throughput::Elements(100_000)), plus the batched variant (Vecs of 1,000)
/// and kameo with unbounded mailboxes. NOTE: sets the group's sample size to 10
/// for the peers (a kameo iteration takes ~0.2-0.3 s; 20 samples would take >60 s).
pub fn throughput(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.throughput(Throughput::Elements(common::PIPELINE_N));
    g.sample_size(10);
    add(
        g,
        &[
            ("actix", self::actix::pipeline),
            ("ractor", self::ractor::pipeline),
            ("kameo", self::kameo::pipeline),
            ("kameo/unbounded_mailbox", self::kameo::pipeline_unbounded),
            ("actix/batched_1000", self::actix::pipeline_batched),
            ("ractor/batched_1000", self::ractor::pipeline_batched),
            ("kameo/batched_1000", self::kameo::pipeline_batched),
            (
                "kameo/batched_1000/unbounded_mailbox",
                self::kameo::pipeline_batched_unbounded,
            ),
        ],
    );
}

/// Row 7: lookup by name among 1,000 live named actors. actix has no name
/// registry: `actix/hashmap` is a user-side `HashMap<String, Addr<_>>`;
/// `actix/system_service_by_type` is actix's own registry, keyed by type.
pub fn registry_lookup(g: &mut BenchmarkGroup<'_, WallTime>) {
    add(
        g,
        &[
            ("actix/hashmap", self::actix::registry_lookup),
            (
                "actix/system_service_by_type",
                self::actix::registry_lookup_system_service,
            ),
            ("ractor", self::ractor::registry_lookup),
            ("kameo", self::kameo::registry_lookup),
        ],
    );
}
