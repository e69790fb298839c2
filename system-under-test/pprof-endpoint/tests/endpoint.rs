//! The endpoint on a real profiler: a profile taken while a thread burns
//! CPU parses as gzipped profile.proto and names the burning function; the
//! flamegraph is SVG; bad queries, a second profile meanwhile and a
//! disabled endpoint are refused with a reason.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use pprof::protos::Message;
use pprof_endpoint::{Config, router};
use tower::ServiceExt;

#[inline(never)]
fn burn_cpu_for_the_profile(stop: &AtomicBool) -> u64 {
    let mut x = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for i in 0..10_000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
    x
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Vec<u8>) {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, body.to_vec())
}

fn function_names(p: &pprof::protos::Profile) -> Vec<String> {
    p.function
        .iter()
        .map(|f| p.string_table[f.name as usize].clone())
        .collect()
}

// One test, because pprof-rs has one profiler per process: profiles in
// parallel tests would refuse each other (which is itself checked here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_on_request() {
    let app: Router = router(Config::enabled(199));
    // The profiler's one-time set-up runs at once, on its own thread:
    // meanwhile a profile is refused with 409, then served.
    let warm_until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (status, body) = get(&app, "/debug/pprof/profile?seconds=0").await;
        match status {
            StatusCode::NO_CONTENT => break,
            StatusCode::CONFLICT if std::time::Instant::now() < warm_until => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            s => panic!("{s}: {}", String::from_utf8_lossy(&body)),
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let burner = {
        let stop = stop.clone();
        std::thread::spawn(move || burn_cpu_for_the_profile(&stop))
    };

    // While one profile runs, a second one is refused.
    let first = tokio::spawn({
        let app = app.clone();
        async move { get(&app, "/debug/pprof/profile?seconds=2").await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, body) = get(&app, "/debug/pprof/profile?seconds=1").await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "{}",
        String::from_utf8_lossy(&body)
    );

    let (status, body) = first.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let mut proto = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut proto)
        .expect("gzip");
    let profile = pprof::protos::Profile::decode(&proto[..]).expect("profile.proto");
    assert!(!profile.sample.is_empty(), "no samples");
    let names = function_names(&profile);
    assert!(
        names.iter().any(|n| n.contains("burn_cpu_for_the_profile")),
        "the burning function is not in the profile: {names:?}"
    );
    // 199 Hz asked: the period says so.
    assert_eq!(profile.period, 1_000_000_000 / 199);

    // The flamegraph, with the frequency of this request.
    let (status, body) = get(
        &app,
        "/debug/pprof/profile?seconds=1&hz=999&format=flamegraph",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let svg = String::from_utf8(body).unwrap();
    assert!(svg.contains("<svg") && svg.contains("burn_cpu_for_the_profile"));

    stop.store(true, Ordering::Relaxed);
    burner.join().unwrap();

    for (uri, word) in [
        ("/debug/pprof/profile?seconds=601", "seconds"),
        ("/debug/pprof/profile?seconds=abc", "seconds"),
        ("/debug/pprof/profile?seconds=1&hz=5000", "hz"),
        ("/debug/pprof/profile?seconds=1&format=png", "format"),
    ] {
        let (status, body) = get(&app, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(String::from_utf8_lossy(&body).contains(word), "{uri}");
    }

    let off: Router = router(Config::default());
    let (status, body) = get(&off, "/debug/pprof/profile?seconds=1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("PPROF_ENABLED=1"));
}
