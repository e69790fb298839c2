//! The HTTP layer in-process: readiness gating before and after recovery.

use std::sync::Arc;
use std::time::Duration;

use fabric::config::FsyncPolicy;
use fabric::durable::StoreOptions;
use fabric::http::{AppState, router};
use fabric::metrics::Metrics;
use fabric::stores::Stores;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_503_until_ready_and_health_always_200() {
    let metrics = Arc::new(Metrics::new());
    let state = AppState::new(Arc::clone(&metrics));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(axum::serve(listener, router(state.clone())).into_future());
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let r = c.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"status": "healthy"})
    );
    let r = c.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "unavailable");
    let r = c
        .post(format!("{base}/api/v1/streams/t/n/s/events"))
        .json(&json!({"events": [{"payload": "aGk="}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "unavailable");
    let r = c.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        fsync_policy: FsyncPolicy::Batch,
        fsync_interval: Duration::from_millis(10),
        segment_bytes: 1 << 20,
        auto_create: true,
    };
    let (store, _) = Stores::open(dir.path(), opts, metrics).await.unwrap();
    state.set_ready(Arc::clone(&store));
    let r = c.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{base}/api/v1/streams/t/n/s/events"))
        .json(&json!({"events": [{"payload": "aGk="}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Bodies over 16 MiB are refused as invalid requests, in JSON.
    let r = c
        .post(format!("{base}/api/v1/streams/t/n/s/events"))
        .header("content-type", "application/json")
        .body(vec![b' '; 17 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid_request");
    store.shutdown().await;
    server.abort();
}
