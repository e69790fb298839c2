use std::time::{Duration, SystemTime};

use proptest::prelude::*;

use super::*;

fn sample(operation: usize, phase: usize, latency_us: u64, ok: bool, at_ms: u64) -> Sample {
    Sample {
        operation,
        phase,
        latency_us,
        service_us: latency_us / 2,
        late: latency_us > 10_000,
        outcome: if ok {
            Outcome::Ok
        } else {
            Outcome::Error("http_503".into())
        },
        completed_at: Duration::from_millis(at_ms),
    }
}

fn phases() -> Vec<PhaseInfo> {
    vec![
        PhaseInfo {
            name: "warmup".into(),
            start_s: 0.0,
            duration_s: 1.0,
            target_rate_per_s: 10.0,
        },
        PhaseInfo {
            name: "steady".into(),
            start_s: 1.0,
            duration_s: 2.0,
            target_rate_per_s: 10.0,
        },
    ]
}

#[test]
fn phases_and_totals_count_every_sample() {
    let mut r = Recorder::new(vec!["append".into(), "read".into()], phases(), None);
    for i in 0..10 {
        r.record(&sample(0, 0, 100 + i, true, i * 10));
    }
    for i in 0..20 {
        r.record(&sample(
            i as usize % 2,
            1,
            1_000 + i,
            i != 3,
            1_000 + i * 10,
        ));
    }
    let res = r.results(&RunMeta::default(), EngineStats::default(), true);
    let warm = &res.phases[0].operations[0];
    assert_eq!((warm.count, warm.errors), (10, 0));
    assert_eq!(warm.throughput_per_s, 10.0);
    let steady_read = &res.phases[1].operations[1];
    assert_eq!((steady_read.count, steady_read.errors), (10, 1));
    assert_eq!(steady_read.errors_by_kind["http_503"], 1);
    let total = res.total("append").unwrap();
    assert_eq!(total.count, 20);
    assert_eq!(total.latency_us.max, r.totals()[0].latency.max());
    assert!(total.latency_us.p50 >= 100 && total.latency_us.p50 <= 1_020);
}

#[test]
fn operations_carrying_batches_count_their_messages() {
    // `send` carries 1000 messages per successful operation; `read` none.
    let mut r = Recorder::new(vec!["send".into(), "read".into()], phases(), None)
        .count_messages(vec![1000, 0]);
    for i in 0..10 {
        r.record(&sample(0, 0, 100, i != 4, i * 10));
        r.record(&sample(1, 0, 100, true, i * 10));
    }
    let interval = r.close_interval(Duration::from_secs(1)).unwrap();
    assert_eq!(interval.operations[0].messages, Some(9_000));
    assert_eq!(interval.operations[1].messages, None);
    let res = r.results(&RunMeta::default(), EngineStats::default(), true);
    let send = &res.phases[0].operations[0];
    assert_eq!((send.count, send.errors), (10, 1));
    assert_eq!(send.messages, Some(9_000));
    assert_eq!(send.messages_per_s, Some(9_000.0));
    assert_eq!(res.phases[0].operations[1].messages, None);
    assert_eq!(res.total("send").unwrap().messages, Some(9_000));
    // results.json leaves the field out for operations without messages.
    let json = serde_json::to_value(&res).unwrap();
    assert!(json["totals"][1].get("messages").is_none());
    assert_eq!(json["totals"][0]["messages"], 9_000);
}

#[test]
fn throughput_stretches_to_the_last_completion() {
    let mut r = Recorder::new(vec!["append".into()], phases(), None);
    // 10 operations intended in the 1 s warm-up, the last completing at 4 s.
    for i in 0..10 {
        r.record(&sample(0, 0, 100, true, if i == 9 { 4_000 } else { 500 }));
    }
    let res = r.results(&RunMeta::default(), EngineStats::default(), true);
    assert_eq!(res.phases[0].operations[0].throughput_per_s, 2.5);
}

#[test]
fn intervals_go_to_the_hlog_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latency.hlog");
    let writer = hlog::HlogWriter::create(&path, SystemTime::now()).unwrap();
    let mut r = Recorder::new(vec!["append".into(), "read".into()], phases(), Some(writer));
    for i in 0..50 {
        r.record(&sample(0, 0, 200 + i, true, i * 10));
    }
    r.close_interval(Duration::from_secs(1)).unwrap();
    for i in 0..30 {
        r.record(&sample(1, 1, 5_000 + i, true, 1_000 + i * 10));
    }
    let second = r.close_interval(Duration::from_secs(2)).unwrap();
    assert_eq!(second.operations[1].count, 30);
    r.flush().unwrap();

    let text = std::fs::read(&path).unwrap();
    let header = String::from_utf8_lossy(&text);
    assert!(header.contains("#[BaseTime:"));
    assert!(header.contains("\"StartTimestamp\",\"Interval_Length\""));
    let intervals = hlog::read(&text);
    assert_eq!(intervals.len(), 4, "two intervals × two tags");
    let append_first = intervals
        .iter()
        .find(|i| i.tag.as_deref() == Some("append") && i.start.is_zero())
        .unwrap();
    assert_eq!(append_first.histogram.len(), 50);
    let read_second = intervals
        .iter()
        .find(|i| {
            i.tag.as_deref() == Some("read")
                && i.start == Duration::from_secs(2) - Duration::from_secs(1)
        })
        .unwrap();
    assert_eq!(read_second.histogram.len(), 30);
    assert_eq!(read_second.histogram.max(), r.totals()[1].latency.max());

    // A run killed mid-write leaves a torn last line: everything before it still reads.
    let torn = &text[..text.len() - 7];
    assert_eq!(hlog::read(torn).len(), 3);
}

proptest! {
    /// Merging per-phase histograms gives exactly the histogram of all samples.
    #[test]
    fn merging_equals_recording_everything(values in prop::collection::vec(1u64..5_000_000, 1..400), split in 0usize..400) {
        let split = split.min(values.len());
        let mut a = OperationStats::default();
        let mut b = OperationStats::default();
        let mut all = OperationStats::default();
        for (i, v) in values.iter().enumerate() {
            let s = sample(0, 0, *v, true, 0);
            if i < split { a.record(&s) } else { b.record(&s) }
            all.record(&s);
        }
        a.merge(&b);
        prop_assert_eq!(a.count, all.count);
        prop_assert_eq!(a.latency.len(), all.latency.len());
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            prop_assert_eq!(a.latency.value_at_quantile(q), all.latency.value_at_quantile(q));
        }
        prop_assert_eq!(Percentiles::of(&a.latency), Percentiles::of(&all.latency));
    }
}
