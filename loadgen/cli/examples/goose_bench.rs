//! A plain goose 0.19 load test for the engine benchmark and the
//! coordinated-omission comparison (`ci/bench/`): every user GETs one path
//! (`BENCH_PATH`, default `/`) on goose's own client, as a goose user would.
//! Arguments are goose's (`--host`, `--users`, `--run-time`,
//! `--throttle-requests`, `--co-mitigation`, …). At the end it prints one
//! JSON line: requests sent, failures, and goose's percentiles (µs) of the
//! raw times and, with `--co-mitigation`, of the mitigated ones.

use goose::prelude::*;

async fn get(user: &mut GooseUser) -> TransactionResult {
    let path = std::env::var("BENCH_PATH").unwrap_or_else(|_| "/".to_owned());
    let _ = user.get(&path).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), GooseError> {
    let metrics = GooseAttack::initialize()?
        .register_scenario(scenario!("bench").register_transaction(transaction!(get)))
        .execute()
        .await?;
    let mut requests = 0;
    let mut failures = 0;
    let mut raw = None;
    let mut co = None;
    for aggregate in metrics.requests.values() {
        requests += aggregate.raw_data.counter;
        failures += aggregate.fail_count;
        raw = Some(&aggregate.raw_data);
        co = aggregate.coordinated_omission_data.as_ref();
    }
    let pct = |d: Option<&goose::metrics::GooseRequestMetricTimingData>, p: f32| {
        d.map(|d| d.percentile_us(p)).unwrap_or(0)
    };
    println!(
        "{{\"requests\":{requests},\"failures\":{failures},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"co_count\":{},\"co_p99_us\":{},\"co_p999_us\":{}}}",
        pct(raw, 0.5),
        pct(raw, 0.99),
        pct(raw, 0.999),
        co.map(|d| d.counter).unwrap_or(0),
        pct(co, 0.99),
        pct(co, 0.999),
    );
    Ok(())
}
