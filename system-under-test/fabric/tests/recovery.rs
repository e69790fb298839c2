//! Recovery of the segment log and the stream store from files: torn tails,
//! corruption, empty or missing segments, stray temp files, rotation, and
//! the `interval` high-water mark.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fabric::config::FsyncPolicy;
use fabric::frame::{Entry, HEADER_LEN};
use fabric::metrics::Metrics;
use fabric::segment_log::{LogOptions, SegmentLog, segment_name};
use fabric::stream_store::{StoreOptions, StreamKey, StreamStore};
use proptest::prelude::*;

fn opts(segment_bytes: u64) -> LogOptions {
    LogOptions {
        segment_bytes,
        metrics: Some(Arc::new(Metrics::new())),
    }
}

fn batch(tag: u64, n: usize) -> Vec<Entry> {
    (0..n)
        .map(|i| {
            let mut e = Entry::new(format!("b{tag}-e{i}").into_bytes());
            e.headers.insert("batch".into(), tag.to_string());
            e
        })
        .collect()
}

/// Writes `sizes.len()` batches; returns each batch's (base, count) and the
/// file length after it.
fn write_batches(dir: &Path, sizes: &[usize], segment_bytes: u64) -> Vec<(u64, usize, u64)> {
    let (mut log, _) = SegmentLog::open(dir, opts(segment_bytes), 0).unwrap();
    let mut out = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let bases = log
            .append(&[batch(i as u64, n)], 1_700_000_000_000_000)
            .unwrap();
        log.publish();
        let len = fs::metadata(dir.join(segment_name(0))).unwrap().len();
        out.push((bases[0], n, len));
    }
    log.sync().unwrap();
    out
}

/// Asserts the log in `dir` holds exactly the first `kept` batches, each
/// entry once, and that the next append continues densely after them.
fn assert_prefix(dir: &Path, batches: &[(u64, usize, u64)], kept: usize, segment_bytes: u64) {
    let (mut log, rep) = SegmentLog::open(dir, opts(segment_bytes), 0).unwrap();
    let expected_end: u64 = batches[..kept].iter().map(|b| b.1 as u64).sum();
    assert_eq!(rep.records, kept);
    assert_eq!(rep.next_offset, expected_end);
    let all = log.reader().read(0, 100_000).unwrap();
    assert_eq!(all.len() as u64, expected_end);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.offset, i as u64);
    }
    let mut off = 0;
    for (b, &(base, n, _)) in batches[..kept].iter().enumerate() {
        assert_eq!(base, off);
        for j in 0..n {
            let e = &all[(off + j as u64) as usize];
            assert_eq!(e.entry.payload, format!("b{b}-e{j}").into_bytes());
            assert_eq!(e.entry.headers["batch"], b.to_string());
        }
        off += n as u64;
    }
    let next = log.append(&[batch(999, 2)], 0).unwrap();
    assert_eq!(next, vec![expected_end]);
    log.sync().unwrap();
    log.publish();
    assert_eq!(log.reader().latest(), Some(expected_end + 1));
}

fn seg_path(dir: &Path) -> PathBuf {
    dir.join(segment_name(0))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Truncating the log anywhere keeps exactly the batches wholly before the cut.
    #[test]
    fn any_truncation_keeps_the_valid_prefix(sizes in proptest::collection::vec(1usize..5, 1..8),
                                             cut in any::<prop::sample::Index>()) {
        let dir = tempfile::tempdir().unwrap();
        let batches = write_batches(dir.path(), &sizes, 1 << 20);
        let total = batches.last().unwrap().2;
        let cut = cut.index(total as usize + 1) as u64;
        OpenOptions::new().write(true).open(seg_path(dir.path())).unwrap().set_len(cut).unwrap();
        let kept = batches.iter().take_while(|b| b.2 <= cut).count();
        assert_prefix(dir.path(), &batches, kept, 1 << 20);
    }

    /// Corrupting one byte keeps exactly the batches before the damaged one.
    #[test]
    fn any_single_byte_corruption_keeps_the_valid_prefix(sizes in proptest::collection::vec(1usize..5, 1..8),
                                                         at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let dir = tempfile::tempdir().unwrap();
        let batches = write_batches(dir.path(), &sizes, 1 << 20);
        let total = batches.last().unwrap().2;
        let at = at.index(total as usize) as u64;
        let path = seg_path(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        bytes[at as usize] ^= flip;
        fs::write(&path, &bytes).unwrap();
        let kept = batches.iter().take_while(|b| b.2 <= at).count();
        assert_prefix(dir.path(), &batches, kept, 1 << 20);
    }
}

#[test]
fn torn_tail_is_truncated_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let batches = write_batches(dir.path(), &[3, 2, 4], 1 << 20);
    let full = batches[2].2;
    // A partial header after the last frame, then a second case: a torn frame.
    let mut f = OpenOptions::new()
        .append(true)
        .open(seg_path(dir.path()))
        .unwrap();
    f.write_all(&[0x52, 0x46, 0x4D]).unwrap();
    drop(f);
    let metrics = Arc::new(Metrics::new());
    let (_, rep) = SegmentLog::open(
        dir.path(),
        LogOptions {
            segment_bytes: 1 << 20,
            metrics: Some(Arc::clone(&metrics)),
        },
        0,
    )
    .unwrap();
    assert_eq!(rep.truncated_bytes, 3);
    assert_eq!(rep.next_offset, 9);
    assert_eq!(
        metrics
            .recovery_truncated_bytes
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    assert_eq!(fs::metadata(seg_path(dir.path())).unwrap().len(), full);

    // Tear the last frame in its body: batch 2 goes, offsets 5.. are reassigned.
    OpenOptions::new()
        .write(true)
        .open(seg_path(dir.path()))
        .unwrap()
        .set_len(full - 5)
        .unwrap();
    assert_prefix(dir.path(), &batches, 2, 1 << 20);
}

/// A torn write can stop at any byte: cut the segment at every byte offset
/// of the last two records; recovery keeps every record before the cut
/// whole, loses none of them, and continues densely after them.
#[test]
fn torn_tail_at_every_byte_of_the_last_two_records() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [2, 3, 1, 4, 2];
    let batches = write_batches(dir.path(), &sizes, 1 << 20);
    let original = fs::read(seg_path(dir.path())).unwrap();
    let full = batches[sizes.len() - 1].2;
    let start = batches[sizes.len() - 3].2;
    assert_eq!(original.len() as u64, full);
    for cut in start..=full {
        let d = tempfile::tempdir().unwrap();
        fs::write(seg_path(d.path()), &original[..cut as usize]).unwrap();
        let kept = batches.iter().take_while(|b| b.2 <= cut).count();
        assert!(kept >= sizes.len() - 2, "cut {cut} lost an earlier record");
        assert_prefix(d.path(), &batches, kept, 1 << 20);
    }
}

#[test]
fn partial_frame_header_only() {
    let dir = tempfile::tempdir().unwrap();
    let batches = write_batches(dir.path(), &[1, 1], 1 << 20);
    let keep = batches[0].2 + (HEADER_LEN as u64 - 4);
    OpenOptions::new()
        .write(true)
        .open(seg_path(dir.path()))
        .unwrap()
        .set_len(keep)
        .unwrap();
    assert_prefix(dir.path(), &batches, 1, 1 << 20);
}

#[test]
fn crc_corruption_in_the_middle_truncates_there() {
    let dir = tempfile::tempdir().unwrap();
    let batches = write_batches(dir.path(), &[2, 2, 2, 2], 1 << 20);
    // Corrupt the CRC field of the second frame; frames 3 and 4 are valid but follow it.
    let path = seg_path(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    bytes[batches[0].2 as usize + 8] ^= 0xFF;
    fs::write(&path, &bytes).unwrap();
    assert_prefix(dir.path(), &batches, 1, 1 << 20);
    // The file now ends after frame 1 plus the new batch.
    assert!(fs::metadata(&path).unwrap().len() > batches[0].2);
}

#[test]
fn empty_or_missing_last_segment() {
    let dir = tempfile::tempdir().unwrap();
    // Missing: no segment at all.
    let (log, rep) = SegmentLog::open(dir.path(), opts(1 << 20), 0).unwrap();
    assert_eq!(rep.next_offset, 0);
    assert_eq!(log.reader().latest(), None);
    drop(log);
    let batches = write_batches(dir.path(), &[2, 3], 1 << 20);
    // An empty trailing segment, as if the process died right after rotating.
    fs::File::create(dir.path().join(segment_name(5))).unwrap();
    let (mut log, rep) = SegmentLog::open(dir.path(), opts(1 << 20), 0).unwrap();
    assert_eq!(rep.truncated_bytes, 0);
    assert_eq!(rep.next_offset, 5);
    assert_eq!(log.append(&[batch(7, 1)], 0).unwrap(), vec![5]);
    log.sync().unwrap();
    log.publish();
    drop(log);
    let (log, rep) = SegmentLog::open(dir.path(), opts(1 << 20), 0).unwrap();
    assert_eq!(rep.next_offset, 6);
    assert_eq!(rep.records, batches.len() + 1);
    assert_eq!(log.reader().read(0, 100).unwrap().len(), 6);
}

#[test]
fn rotation_with_tiny_segments_and_reads_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let sizes: Vec<usize> = (0..30).map(|i| 1 + i % 3).collect();
    {
        let (mut log, _) = SegmentLog::open(dir.path(), opts(150), 0).unwrap();
        for (i, &n) in sizes.iter().enumerate() {
            log.append(&[batch(i as u64, n)], 0).unwrap();
        }
        log.sync().unwrap();
        log.publish();
        let r = log.reader();
        assert_eq!(r.read(0, 1000).unwrap().len(), sizes.iter().sum::<usize>());
    }
    let segs: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert!(
        segs.len() >= 5,
        "expected several segments, got {}",
        segs.len()
    );
    let total: usize = sizes.iter().sum();
    let (log, rep) = SegmentLog::open(dir.path(), opts(150), 0).unwrap();
    assert_eq!(rep.next_offset, total as u64);
    let r = log.reader();
    // Windows straddling segment boundaries return each offset exactly once.
    let mut seen = Vec::new();
    let mut from = 0;
    loop {
        let page = r.read(from, 7).unwrap();
        if page.is_empty() {
            break;
        }
        from = page.last().unwrap().offset + 1;
        seen.extend(page.into_iter().map(|e| e.offset));
    }
    assert_eq!(seen, (0..total as u64).collect::<Vec<_>>());
    // Tear the last segment's tail: only that segment's last batch goes.
    let mut names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let last = names.last().unwrap();
    let len = fs::metadata(last).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    drop(log);
    let (_, rep) = SegmentLog::open(dir.path(), opts(150), 0).unwrap();
    assert_eq!(rep.next_offset, (total - sizes.last().unwrap()) as u64);
}

#[test]
fn corruption_in_an_earlier_segment_drops_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _) = SegmentLog::open(dir.path(), opts(100), 0).unwrap();
        for i in 0..10 {
            log.append(&[batch(i, 2)], 0).unwrap();
        }
        log.sync().unwrap();
    }
    let mut names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(names.len() >= 3);
    // Damage the first byte of the second segment: nothing valid in it.
    let mut bytes = fs::read(&names[1]).unwrap();
    bytes[0] ^= 1;
    fs::write(&names[1], &bytes).unwrap();
    let (log, rep) = SegmentLog::open(dir.path(), opts(100), 0).unwrap();
    let first_seg_records = log.reader().record_count();
    assert_eq!(rep.next_offset, first_seg_records as u64 * 2);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

fn store_opts(policy: FsyncPolicy) -> StoreOptions {
    StoreOptions {
        fsync_policy: policy,
        fsync_interval: Duration::from_millis(5),
        segment_bytes: 1 << 20,
        auto_create: true,
    }
}

fn entries(n: usize, tag: &str) -> Vec<Entry> {
    (0..n)
        .map(|i| Entry::new(format!("{tag}{i}").into_bytes()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_recovers_streams_and_ignores_stray_temps() {
    let dir = tempfile::tempdir().unwrap();
    let key = StreamKey::new("t", "ns", "s").unwrap();
    {
        let (store, _) = StreamStore::open(
            dir.path(),
            store_opts(FsyncPolicy::Batch),
            Arc::new(Metrics::new()),
        )
        .await
        .unwrap();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = Arc::clone(&store);
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                store.append(&key, entries(1 + i % 3, "x")).await
            }));
        }
        let mut offsets = Vec::new();
        for t in tasks {
            offsets.extend(t.await.unwrap().unwrap());
        }
        offsets.sort_unstable();
        let n = offsets.len() as u64;
        assert_eq!(
            offsets,
            (0..n).collect::<Vec<_>>(),
            "offsets are dense and unique"
        );
        store.shutdown().await;
    }
    let sdir = dir.path().join("streams/t/ns/s");
    fs::write(sdir.join("stream.json.tmp"), b"{partial").unwrap();
    // A directory whose creation never finished is ignored.
    fs::create_dir_all(dir.path().join("streams/t/ns/half")).unwrap();
    let (store, rec) = StreamStore::open(
        dir.path(),
        store_opts(FsyncPolicy::Batch),
        Arc::new(Metrics::new()),
    )
    .await
    .unwrap();
    assert_eq!(rec.streams, 1);
    assert!(!sdir.join("stream.json.tmp").exists());
    let latest = store.latest(&key).unwrap().unwrap();
    let all = store.read(&key, 0, 1000).await.unwrap();
    assert_eq!(all.len() as u64, latest + 1);
    let half = StreamKey::new("t", "ns", "half").unwrap();
    assert!(store.latest(&half).is_err());
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_high_water_mark_prevents_reuse_after_a_machine_crash() {
    let dir = tempfile::tempdir().unwrap();
    let key = StreamKey::new("t", "ns", "s").unwrap();
    let open = || {
        StreamStore::open(
            dir.path(),
            store_opts(FsyncPolicy::Interval),
            Arc::new(Metrics::new()),
        )
    };
    let (store, _) = open().await.unwrap();
    assert_eq!(
        store.append(&key, entries(3, "a")).await.unwrap(),
        vec![0, 1, 2]
    );
    store.shutdown().await;
    let hwm_path = dir.path().join("streams/t/ns/s/offsets.hwm.json");
    let hwm: serde_json::Value = serde_json::from_slice(&fs::read(&hwm_path).unwrap()).unwrap();
    assert_eq!(
        hwm["reserved"], 3,
        "a clean shutdown records the exact next offset"
    );

    // Same boot (process crash): dense continuation even with a large reservation.
    let mut same = hwm.clone();
    same["reserved"] = serde_json::json!(5000);
    fs::write(&hwm_path, serde_json::to_vec(&same).unwrap()).unwrap();
    let (store, _) = open().await.unwrap();
    assert_eq!(store.append(&key, entries(1, "b")).await.unwrap(), vec![3]);
    store.shutdown().await;

    // Different boot (machine crash): continue past the mark, leaving a gap.
    let other = serde_json::json!({"reserved": 5000, "boot_id": "another-boot"});
    fs::write(&hwm_path, serde_json::to_vec(&other).unwrap()).unwrap();
    let (store, _) = open().await.unwrap();
    assert_eq!(
        store.append(&key, entries(2, "c")).await.unwrap(),
        vec![5000, 5001]
    );
    let all: Vec<u64> = store
        .read(&key, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.offset)
        .collect();
    assert_eq!(all, vec![0, 1, 2, 3, 5000, 5001]);
    assert_eq!(store.latest(&key).unwrap(), Some(5001));
    store.shutdown().await;
    // And the gap survives a further restart.
    let (store, _) = open().await.unwrap();
    assert_eq!(
        store.append(&key, entries(1, "d")).await.unwrap(),
        vec![5002]
    );
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_create_off_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = store_opts(FsyncPolicy::Always);
    o.auto_create = false;
    let (store, _) = StreamStore::open(dir.path(), o, Arc::new(Metrics::new()))
        .await
        .unwrap();
    let key = StreamKey::new("t", "ns", "s").unwrap();
    assert!(matches!(
        store.append(&key, entries(1, "a")).await,
        Err(fabric::stream_store::StoreError::NotFound(_))
    ));
    assert!(store.create(&key).await.unwrap());
    assert!(!store.create(&key).await.unwrap());
    assert_eq!(
        store.append(&key, entries(2, "a")).await.unwrap(),
        vec![0, 1]
    );
    assert!(
        store
            .append(&key, vec![Entry::new(Vec::new())])
            .await
            .is_err()
    );
    assert!(StreamKey::new("t", "..", "s").is_err());
    assert!(StreamKey::new("t", "a/b", "s").is_err());
    assert!(StreamKey::new("t", &"x".repeat(129), "s").is_err());
    store.shutdown().await;
}
