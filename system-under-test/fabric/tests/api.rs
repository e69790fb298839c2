//! End-to-end tests of queues, KV stores, consumer groups, auth, bad
//! requests, long polls at shutdown and `--help`, against the real
//! `fabric-node` binary over loopback. Every wait is a bounded poll;
//! nothing asserts on timings.

use std::process::{Command, Stdio};
use std::time::Duration;

use fabric_wire::{
    EnqueueResponse, Job, JobsResponse, KvGetResponse, KvListResponse, QueueStatsResponse,
    ReserveResponse, decode_payload, encode_payload,
};
use serde_json::{Value, json};

mod common;
use common::{BIN, CONFIG_ENV, Node, client, expect_error, wait_ready};

const Q: &str = "/api/v1/queues/acme/jobs/q1";

async fn post(c: &reqwest::Client, node: &Node, path: &str, body: Value) -> reqwest::Response {
    c.post(node.url(path)).json(&body).send().await.unwrap()
}

async fn ok_json<T: serde::de::DeserializeOwned>(r: reqwest::Response) -> T {
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

async fn stats(c: &reqwest::Client, node: &Node, q: &str) -> QueueStatsResponse {
    ok_json(c.get(node.url(&format!("{q}/stats"))).send().await.unwrap()).await
}

async fn enqueue(c: &reqwest::Client, node: &Node, q: &str, payload: &[u8]) -> EnqueueResponse {
    ok_json(
        post(
            c,
            node,
            &format!("{q}/jobs"),
            json!({"payload": encode_payload(payload)}),
        )
        .await,
    )
    .await
}

async fn reserve(c: &reqwest::Client, node: &Node, q: &str, body: Value) -> Option<Job> {
    ok_json::<ReserveResponse>(post(c, node, &format!("{q}/reserve"), body).await)
        .await
        .job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_lifecycle_retries_dlq_and_long_polls() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &["--log-level", "warn"]);
    let c = client();
    wait_ready(&c, &node).await;

    // Explicit creation: 201, then 200.
    assert_eq!(c.put(node.url(Q)).send().await.unwrap().status(), 201);
    assert_eq!(c.put(node.url(Q)).send().await.unwrap().status(), 200);
    // Unknown queue: 404 for reads and acks.
    expect_error(
        c.get(node.url("/api/v1/queues/acme/jobs/none/stats"))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;

    // Enqueue with headers; seqs increase and are never reused.
    let r: EnqueueResponse = ok_json(
        post(
            &c,
            &node,
            &format!("{Q}/jobs"),
            json!({"payload": encode_payload(b"one"), "headers": {"k": "v"}, "delay_seconds": 0}),
        )
        .await,
    )
    .await;
    assert!(r.job_id.bytes().all(|b| b.is_ascii_hexdigit()));
    let two = enqueue(&c, &node, Q, b"two").await;
    assert!(two.seq > r.seq);

    // Reserve hands out the oldest job with its lease; receive takes the rest.
    let job = reserve(&c, &node, Q, json!({"visibility_timeout_seconds": 30}))
        .await
        .unwrap();
    assert_eq!(job.id, r.job_id);
    assert_eq!(job.headers["k"], "v");
    assert_eq!(decode_payload(&job.payload).unwrap(), b"one");
    assert_eq!(job.attempts, 1);
    assert!(job.reserve_until.is_some());
    let got: JobsResponse = ok_json(
        post(
            &c,
            &node,
            &format!("{Q}/receive"),
            json!({"max_jobs": 10, "visibility_timeout_seconds": 30}),
        )
        .await,
    )
    .await;
    assert_eq!(got.jobs.len(), 1);
    assert_eq!(got.jobs[0].id, two.job_id);
    // Empty queue: no `job` field.
    let empty: Value = ok_json(post(&c, &node, &format!("{Q}/reserve"), json!({})).await).await;
    assert_eq!(empty, json!({"status": "success"}));
    let s = stats(&c, &node, Q).await;
    assert_eq!((s.pending, s.in_flight, s.completed), (0, 2, 0));

    // Ack: success, idempotent; unknown job 404; bad max_jobs 400.
    let ack = |id: &str| format!("{Q}/jobs/{id}/ack");
    let r1 = post(&c, &node, &ack(&job.id), json!({})).await;
    assert_eq!(r1.status(), 200);
    let r1 = c.post(node.url(&ack(&job.id))).send().await.unwrap();
    assert_eq!(r1.status(), 200, "a repeated ack succeeds");
    expect_error(
        post(&c, &node, &ack("00000000000000000000abcd"), json!({})).await,
        404,
        "not_found",
    )
    .await;
    expect_error(
        post(&c, &node, &format!("{Q}/receive"), json!({"max_jobs": 101})).await,
        400,
        "invalid_request",
    )
    .await;
    expect_error(
        post(&c, &node, &format!("{Q}/receive"), json!({"max_jobs": 0})).await,
        400,
        "invalid_request",
    )
    .await;
    expect_error(
        post(
            &c,
            &node,
            &format!("{Q}/reserve"),
            json!({"long_poll_timeout_seconds": 21}),
        )
        .await,
        400,
        "invalid_request",
    )
    .await;

    // Nack with a delay: pending again, not visible yet.
    let r = post(
        &c,
        &node,
        &format!("{Q}/jobs/{}/nack", two.job_id),
        json!({"delay_seconds": 3600}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(reserve(&c, &node, Q, json!({})).await.is_none());
    let s = stats(&c, &node, Q).await;
    assert_eq!((s.pending, s.in_flight, s.completed), (1, 0, 1));
    // A nacked job's lease is gone: acking it now is `lease_expired`.
    expect_error(
        post(&c, &node, &ack(&two.job_id), json!({})).await,
        409,
        "lease_expired",
    )
    .await;

    // Retry policy: GET default, PUT validated and applied.
    let p: Value = ok_json(
        c.get(node.url(&format!("{Q}/retry-policy")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(p["max_attempts"], 3);
    assert_eq!(p["backoff_strategy"], "exponential");
    let policy = json!({"max_attempts": 2, "initial_backoff_seconds": 0.0,
        "max_backoff_seconds": 0.0, "backoff_multiplier": 1.0, "backoff_strategy": "fixed"});
    let r = c
        .put(node.url(&format!("{Q}/retry-policy")))
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut bad = policy.clone();
    bad["max_attempts"] = json!(0);
    expect_error(
        c.put(node.url(&format!("{Q}/retry-policy")))
            .json(&bad)
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    let mut bad = policy.clone();
    bad["backoff_strategy"] = json!("sometimes");
    expect_error(
        c.put(node.url(&format!("{Q}/retry-policy")))
            .json(&bad)
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;

    // Expiry: a short lease ends on its own (the scheduler always runs);
    // the late ack is reported as `lease_expired`; after max_attempts the
    // job lands in the DLQ.
    let q2 = "/api/v1/queues/acme/jobs/q2";
    let r = c
        .put(node.url(&format!("{q2}/retry-policy")))
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "PUT retry-policy creates the queue");
    let j = enqueue(&c, &node, q2, b"fragile").await;
    for attempt in 1..=2 {
        let mut leased = None;
        for _ in 0..400 {
            leased = reserve(&c, &node, q2, json!({"visibility_timeout_seconds": 0.2})).await;
            if leased.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let leased = leased.expect("the job comes back after its lease expired");
        assert_eq!(leased.id, j.job_id);
        assert_eq!(leased.attempts, attempt);
        // Wait (bounded) until the scheduler ended the lease.
        for _ in 0..400 {
            if stats(&c, &node, q2).await.in_flight == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        expect_error(
            post(&c, &node, &format!("{q2}/jobs/{}/ack", j.job_id), json!({})).await,
            409,
            "lease_expired",
        )
        .await;
    }
    let s = stats(&c, &node, q2).await;
    assert_eq!((s.pending, s.in_flight, s.dlq, s.failed), (0, 0, 1, 1));
    let dlq: JobsResponse = ok_json(
        c.get(node.url(&format!("{q2}/dlq/jobs")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(dlq.jobs.len(), 1);
    assert_eq!(dlq.jobs[0].id, j.job_id);
    assert!(dlq.jobs[0].failed_at.is_some());
    // Paging: `after` a job's seq lists only the jobs behind it.
    let seq = dlq.jobs[0].seq;
    for (after, expected) in [(seq, 0), (seq.saturating_sub(1), 1)] {
        let page: JobsResponse = ok_json(
            c.get(node.url(&format!("{q2}/dlq/jobs?limit=10&after={after}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(page.jobs.len(), expected, "after={after}");
    }
    // Replay: back to pending with attempts reset; a second replay conflicts.
    let replay = format!("{q2}/dlq/jobs/{}/replay", j.job_id);
    assert_eq!(
        c.post(node.url(&replay)).send().await.unwrap().status(),
        200
    );
    expect_error(
        c.post(node.url(&replay)).send().await.unwrap(),
        409,
        "conflict",
    )
    .await;
    let again = reserve(&c, &node, q2, json!({})).await.unwrap();
    assert_eq!((again.id.as_str(), again.attempts), (j.job_id.as_str(), 1));
    // A nack (with the delivery's lease id) fails an attempt; on the last
    // attempt it moves the job to the DLQ again.
    let r = post(
        &c,
        &node,
        &format!("{q2}/jobs/{}/nack", j.job_id),
        json!({"lease_id": again.lease_id}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let s = stats(&c, &node, q2).await;
    assert_eq!(
        (s.pending, s.dlq),
        (1, 0),
        "attempt 1 of 2 failed: pending again"
    );
    let last = reserve(&c, &node, q2, json!({})).await.unwrap();
    assert_eq!(last.attempts, 2);
    let r = post(
        &c,
        &node,
        &format!("{q2}/jobs/{}/nack", j.job_id),
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let s = stats(&c, &node, q2).await;
    assert_eq!(
        (s.pending, s.dlq, s.failed),
        (0, 1, 2),
        "attempt 2 of 2 failed: DLQ"
    );

    // Long poll: a waiting receive gets a job enqueued after it started.
    let q3 = "/api/v1/queues/acme/jobs/q3";
    assert_eq!(c.put(node.url(q3)).send().await.unwrap().status(), 201);
    let waiter = {
        let (c, url) = (c.clone(), node.url(&format!("{q3}/receive")));
        tokio::spawn(async move {
            c.post(url)
                .json(&json!({"max_jobs": 5, "long_poll_timeout_seconds": 8}))
                .send()
                .await
                .unwrap()
                .json::<JobsResponse>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = enqueue(&c, &node, q3, b"late").await;
    let got = waiter.await.unwrap();
    assert_eq!(got.jobs.len(), 1);
    assert_eq!(got.jobs[0].id, e.job_id);

    // Metrics: queue counters and gauges.
    let text = c
        .get(node.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for m in [
        "flowmesh_queue_jobs_enqueued_total 4",
        "flowmesh_queue_jobs_acked_total 1",
        "flowmesh_queue_depth{queue=\"acme/jobs/q1\"} 1",
        "flowmesh_queue_in_flight{queue=\"acme/jobs/q3\"} 1",
        "flowmesh_operation_duration_seconds_count{op=\"enqueue\"} 4",
    ] {
        assert!(text.contains(m), "missing {m} in\n{text}");
    }
    assert!(text.contains("flowmesh_queue_jobs_dequeued_total"));

    // Shutdown ends a long poll at once (answered, no job) and exits 0.
    let waiter = {
        let (c, url) = (
            reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            node.url(&format!("{q3}/receive")),
        );
        tokio::spawn(async move {
            let r = c
                .post(url)
                .json(&json!({"max_jobs": 5, "long_poll_timeout_seconds": 20}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        })
    };
    // Wait (bounded) until the node holds the long poll.
    let waiting = "flowmesh_queue_long_polls_waiting{queue=\"acme/jobs/q3\"} 1";
    let mut held = false;
    for _ in 0..500 {
        let m = c.get(node.url("/metrics")).send().await.unwrap();
        if m.text().await.unwrap().contains(waiting) {
            held = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(held, "the long poll never waited");
    node.signal(libc::SIGTERM);
    let (status, body) = waiter.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["jobs"], json!([]));
    assert_eq!(node.wait_exit().code(), Some(0));

    // After a graceful restart: acked jobs stay acked, the rest come back.
    let node = Node::start(dir.path(), &["--log-level", "warn"]);
    wait_ready(&c, &node).await;
    let s = stats(&c, &node, Q).await;
    assert_eq!((s.completed, s.pending), (1, 1));
    let s = stats(&c, &node, q3).await;
    assert_eq!(
        (s.pending, s.in_flight),
        (1, 0),
        "the in-flight job is pending again"
    );
    let p: Value = ok_json(
        c.get(node.url(&format!("{q2}/retry-policy")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(p["max_attempts"], 2, "the retry policy is durable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_put_get_head_delete_list_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &["--log-level", "warn"]);
    let c = client();
    wait_ready(&c, &node).await;
    let s = "/api/v1/kv/acme/cfg/main";
    let key = |k: &str| node.url(&format!("{s}/keys/{k}"));
    expect_error(c.get(key("a")).send().await.unwrap(), 404, "not_found").await;
    for (k, v) in [("a", "1"), ("ab", "2"), ("b", "3"), ("user%2F7", "4")] {
        let r = c
            .put(key(k))
            .json(&json!({"value": encode_payload(v.as_bytes())}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "put {k}");
    }
    let g: KvGetResponse = ok_json(c.get(key("ab")).send().await.unwrap()).await;
    assert_eq!(decode_payload(&g.value).unwrap(), b"2");
    let g: KvGetResponse = ok_json(c.get(key("user%2F7")).send().await.unwrap()).await;
    assert_eq!(decode_payload(&g.value).unwrap(), b"4");
    assert_eq!(c.head(key("a")).send().await.unwrap().status(), 200);
    assert_eq!(c.head(key("zz")).send().await.unwrap().status(), 404);
    let l: KvListResponse = ok_json(
        c.get(node.url(&format!("{s}/keys?prefix=a")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(l.keys, vec!["a", "ab"]);
    let l: KvListResponse =
        ok_json(c.get(node.url(&format!("{s}/keys"))).send().await.unwrap()).await;
    assert_eq!(l.keys, vec!["a", "ab", "b", "user/7"]);
    // Overwrite, delete, delete again.
    let r = c
        .put(key("a"))
        .json(&json!({"value": encode_payload(b"new")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let g: KvGetResponse = ok_json(c.get(key("a")).send().await.unwrap()).await;
    assert_eq!(decode_payload(&g.value).unwrap(), b"new");
    assert_eq!(c.delete(key("b")).send().await.unwrap().status(), 200);
    expect_error(c.delete(key("b")).send().await.unwrap(), 404, "not_found").await;
    expect_error(c.get(key("b")).send().await.unwrap(), 404, "not_found").await;
    // TTL: the key disappears on its own.
    let r = c
        .put(key("tmp"))
        .json(&json!({"value": encode_payload(b"x"), "ttl_seconds": 0.3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut gone = false;
    for _ in 0..300 {
        if c.get(key("tmp")).send().await.unwrap().status() == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gone, "a key with a TTL expires");
    // Durable across kill -9 (batch policy: a 2xx means fsynced).
    let mut node = node;
    node.kill9();
    let node = Node::start(dir.path(), &["--log-level", "warn"]);
    wait_ready(&c, &node).await;
    let key = |k: &str| node.url(&format!("{s}/keys/{k}"));
    let g: KvGetResponse = ok_json(c.get(key("a")).send().await.unwrap()).await;
    assert_eq!(decode_payload(&g.value).unwrap(), b"new");
    expect_error(c.get(key("b")).send().await.unwrap(), 404, "not_found").await;
    expect_error(c.get(key("tmp")).send().await.unwrap(), 404, "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_groups_are_durable_and_never_go_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &["--log-level", "warn"]);
    let c = client();
    wait_ready(&c, &node).await;
    let s = "/api/v1/streams/acme/orders/events";
    let events: Vec<Value> = (0..10)
        .map(|i| json!({"payload": encode_payload(format!("e{i}").as_bytes())}))
        .collect();
    let r = post(
        &c,
        &node,
        &format!("{s}/events"),
        json!({ "events": events }),
    )
    .await;
    assert_eq!(r.status(), 200);
    let g = format!("{s}/consumer-groups/billing");
    let off: Value = ok_json(
        c.get(node.url(&format!("{g}/offsets")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(off["offset"], -1);
    let st: Value = ok_json(c.get(node.url(&format!("{g}/state"))).send().await.unwrap()).await;
    assert_eq!(
        (&st["committed_offset"], &st["latest_offset"], &st["lag"]),
        (&json!(-1), &json!(9), &json!(10))
    );
    assert_eq!(
        post(&c, &node, &format!("{g}/offsets"), json!({"offset": 4}))
            .await
            .status(),
        200
    );
    // Equal: accepted, no change. Lower: 409 conflict. Beyond latest: 400.
    assert_eq!(
        post(&c, &node, &format!("{g}/offsets"), json!({"offset": 4}))
            .await
            .status(),
        200
    );
    expect_error(
        post(&c, &node, &format!("{g}/offsets"), json!({"offset": 3})).await,
        409,
        "conflict",
    )
    .await;
    expect_error(
        post(&c, &node, &format!("{g}/offsets"), json!({"offset": 10})).await,
        400,
        "invalid_request",
    )
    .await;
    expect_error(
        post(&c, &node, &format!("{g}/offsets"), json!({"offset": "x"})).await,
        400,
        "invalid_request",
    )
    .await;
    expect_error(
        post(
            &c,
            &node,
            "/api/v1/streams/acme/orders/none/consumer-groups/billing/offsets",
            json!({"offset": 0}),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(
        post(&c, &node, &format!("{g}/offsets"), json!({"offset": 7}))
            .await
            .status(),
        200
    );
    let mut node = node;
    node.kill9();
    let node = Node::start(dir.path(), &["--log-level", "warn"]);
    wait_ready(&c, &node).await;
    let st: Value = ok_json(c.get(node.url(&format!("{g}/state"))).send().await.unwrap()).await;
    assert_eq!(
        (&st["committed_offset"], &st["latest_offset"], &st["lag"]),
        (&json!(7), &json!(9), &json!(2))
    );
    expect_error(
        post(&c, &node, &format!("{g}/offsets"), json!({"offset": 6})).await,
        409,
        "conflict",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_on_and_off() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    // Token from the environment.
    let mut node = Node::start_env(
        dir.path(),
        &["--log-level", "warn"],
        &[("FLOWMESH_AUTH_TOKEN", "s3cret-token")],
    );
    wait_ready(&c, &node).await;
    let ev = json!({"events": [{"payload": "aGk="}]});
    let url = node.url("/api/v1/streams/t/n/s/events");
    let r = c.post(&url).json(&ev).send().await.unwrap();
    assert_eq!(
        r.headers()[reqwest::header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap(),
        "Bearer"
    );
    expect_error(r, 401, "unauthorized").await;
    expect_error(
        c.post(&url)
            .bearer_auth("s3cret-tokeN")
            .json(&ev)
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    expect_error(
        c.get(node.url("/api/v1/no/such/route"))
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    expect_error(
        c.post(node.url("/admin/snapshot"))
            .json(&json!({"dir": "/tmp/x"}))
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    for open in ["/health", "/ready", "/metrics"] {
        assert_eq!(c.get(node.url(open)).send().await.unwrap().status(), 200);
    }
    // Nothing was written by the refused requests.
    let r = c
        .get(node.url("/api/v1/streams/t/n/s/offsets/latest"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .post(&url)
        .bearer_auth("s3cret-token")
        .json(&ev)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    node.signal(libc::SIGTERM);
    assert_eq!(node.wait_exit().code(), Some(0));
    // The flag overrides the environment; without either, no auth.
    let mut node = Node::start_env(
        dir.path(),
        &["--log-level", "warn", "--auth-token", "flag-token"],
        &[("FLOWMESH_AUTH_TOKEN", "s3cret-token")],
    );
    wait_ready(&c, &node).await;
    let url = node.url("/api/v1/streams/t/n/s/events");
    let r = c
        .post(&url)
        .bearer_auth("flag-token")
        .json(&ev)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    node.signal(libc::SIGTERM);
    assert_eq!(node.wait_exit().code(), Some(0));
    let node = Node::start(dir.path(), &["--log-level", "warn"]);
    wait_ready(&c, &node).await;
    let r = c
        .post(node.url("/api/v1/streams/t/n/s/events"))
        .json(&ev)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_4xx_json_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &["--log-level", "warn"]);
    let c = client();
    wait_ready(&c, &node).await;
    let s = "/api/v1/streams/t/n/s";
    let kv = "/api/v1/kv/t/n/kv";
    assert_eq!(c.put(node.url(Q)).send().await.unwrap().status(), 201);
    assert_eq!(c.put(node.url(kv)).send().await.unwrap().status(), 201);
    assert_eq!(c.put(node.url(s)).send().await.unwrap().status(), 201);
    let big = encode_payload(&vec![7u8; 5 << 20]);
    let raw = |method: reqwest::Method, path: &str, body: &'static str| {
        c.request(method, node.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    use reqwest::Method;
    let cases: Vec<(reqwest::Response, u16, &str)> = vec![
        (
            raw(Method::POST, &format!("{Q}/jobs"), "{nope")
                .await
                .unwrap(),
            400,
            "invalid_request",
        ),
        (
            raw(Method::POST, &format!("{Q}/jobs"), "").await.unwrap(),
            400,
            "invalid_request",
        ),
        (
            post(&c, &node, &format!("{Q}/jobs"), json!({"payload": "!!"})).await,
            400,
            "invalid_request",
        ),
        (
            post(&c, &node, &format!("{Q}/jobs"), json!({"payload": big})).await,
            400,
            "invalid_request",
        ),
        (
            post(
                &c,
                &node,
                &format!("{Q}/jobs"),
                json!({"payload": "aGk=", "delay_seconds": -1}),
            )
            .await,
            400,
            "invalid_request",
        ),
        (
            post(
                &c,
                &node,
                &format!("{Q}/jobs"),
                json!({"payload": "aGk=", "headers": {"a": 1}}),
            )
            .await,
            400,
            "invalid_request",
        ),
        (
            raw(
                Method::POST,
                &format!("{Q}/reserve"),
                "{\"max_jobs\": \"x\"}",
            )
            .await
            .unwrap(),
            400,
            "invalid_request",
        ),
        (
            post(
                &c,
                &node,
                &format!("{Q}/reserve"),
                json!({"visibility_timeout_seconds": 0}),
            )
            .await,
            400,
            "invalid_request",
        ),
        (
            post(&c, &node, &format!("{Q}/jobs/zz/ack"), json!({})).await,
            404,
            "not_found",
        ),
        (
            post(
                &c,
                &node,
                &format!("{Q}/jobs/zz/nack"),
                json!({"delay_seconds": "soon"}),
            )
            .await,
            400,
            "invalid_request",
        ),
        (
            raw(Method::PUT, &format!("{kv}/keys/a"), "{\"value\": 3}")
                .await
                .unwrap(),
            400,
            "invalid_request",
        ),
        (
            raw(Method::PUT, &format!("{kv}/keys/a"), "{\"value\": \"***\"}")
                .await
                .unwrap(),
            400,
            "invalid_request",
        ),
        (
            raw(
                Method::PUT,
                &format!("{kv}/keys/a"),
                "{\"value\": \"aGk=\", \"ttl_seconds\": 0}",
            )
            .await
            .unwrap(),
            400,
            "invalid_request",
        ),
        // The client normalises `%2E%2E` away: no such route.
        (
            raw(
                Method::PUT,
                &format!("{kv}/keys/%2E%2E"),
                "{\"value\": \"aGk=\"}",
            )
            .await
            .unwrap(),
            404,
            "not_found",
        ),
        (
            raw(
                Method::PUT,
                &format!("{kv}/keys/a%2F..%2Fb"),
                "{\"value\": \"aGk=\"}",
            )
            .await
            .unwrap(),
            400,
            "invalid_request",
        ),
        (
            raw(
                Method::PUT,
                &format!("{kv}/keys/{}", "k".repeat(513)),
                "{\"value\": \"aGk=\"}",
            )
            .await
            .unwrap(),
            400,
            "invalid_request",
        ),
        (
            c.get(node.url("/api/v1/kv/t/n/none/keys/a"))
                .send()
                .await
                .unwrap(),
            404,
            "not_found",
        ),
        (
            c.get(node.url(&format!("{kv}/keys?limit=0")))
                .send()
                .await
                .unwrap(),
            400,
            "invalid_request",
        ),
        (
            c.put(node.url("/api/v1/queues/t/%2E%2E/q"))
                .send()
                .await
                .unwrap(),
            404,
            "not_found",
        ),
        (
            c.put(node.url("/api/v1/kv/t/n/a%2Fb"))
                .send()
                .await
                .unwrap(),
            400,
            "invalid_request",
        ),
        (
            c.put(node.url("/api/v1/streams/..%2F..%2Fetc/n/s"))
                .send()
                .await
                .unwrap(),
            400,
            "invalid_request",
        ),
        (
            raw(
                Method::POST,
                &format!("{s}/consumer-groups/g/offsets"),
                "{}",
            )
            .await
            .unwrap(),
            400,
            "invalid_request",
        ),
        (
            raw(
                Method::POST,
                &format!("{s}/consumer-groups/%2E%2E/offsets"),
                "{\"offset\":0}",
            )
            .await
            .unwrap(),
            404,
            "not_found",
        ),
        (
            c.get(node.url("/api/v1/queues/t/n/q1/nope"))
                .send()
                .await
                .unwrap(),
            404,
            "not_found",
        ),
        (
            raw(
                Method::POST,
                "/admin/snapshot",
                "{\"dir\": \"relative/path\"}",
            )
            .await
            .unwrap(),
            400,
            "invalid_request",
        ),
    ];
    for (i, (r, status, code)) in cases.into_iter().enumerate() {
        assert_eq!(r.status(), status, "case {i}");
        expect_error(r, status, code).await;
    }
    // Literal dot segments, sent byte for byte (no client normalisation).
    for (method, path) in [
        ("PUT", format!("{kv}/keys/..")),
        ("PUT", format!("{kv}/keys/.")),
        ("PUT", "/api/v1/kv/t/../kv/keys/a".to_owned()),
        ("PUT", "/api/v1/queues/../n/q".to_owned()),
        ("POST", "/api/v1/streams/t/n/../events".to_owned()),
        ("POST", format!("{s}/consumer-groups/../offsets")),
    ] {
        let (status, body) = raw_http(
            &node.base,
            method,
            &path,
            r#"{"value":"aGk=","offset":0,"events":[{"payload":"aGk="}]}"#,
        );
        assert!(
            status == 400 || status == 404,
            "{method} {path}: {status} {body}"
        );
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{body}"));
        assert_eq!(v["status"], "error");
    }
    // A body over 16 MiB: refused from its declared length, after the
    // server has read and dropped it, so this client, still sending, gets
    // the answer rather than a reset (on a connection of its own).
    let r = client()
        .post(node.url(&format!("{s}/events")))
        .json(&json!({"events": [{"payload": big}, {"payload": big}, {"payload": big}]}))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_request").await;
    // Nothing changed.
    let st = stats(&c, &node, Q).await;
    assert_eq!((st.pending, st.in_flight, st.completed), (0, 0, 0));
    let l: KvListResponse =
        ok_json(c.get(node.url(&format!("{kv}/keys"))).send().await.unwrap()).await;
    assert!(l.keys.is_empty());
    let latest: Value = ok_json(
        c.get(node.url(&format!("{s}/offsets/latest")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(latest["offset"], -1);
    assert!(!dir.path().join("queues/t/..").join("q").exists());
    assert!(
        !dir.path().join("streams/t/n/q").exists()
            && !dir.path().join("kv/t/n/a").exists()
            && !dir.path().join("etc").exists()
    );
}

#[test]
fn help_documents_every_setting_and_bad_values_exit_2() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for name in [
        "SERVER_HTTP_ADDR",
        "--http-addr",
        "METRICS_ADDR",
        "--metrics-addr",
        "STORAGE_DATA_DIR",
        "--data-dir",
        "STORAGE_FSYNC_POLICY",
        "--fsync-policy",
        "STORAGE_FSYNC_INTERVAL",
        "--fsync-interval",
        "LOGGING_LEVEL",
        "--log-level",
        "LOGGING_FORMAT",
        "--log-format",
        "FLOWMESH_AUTH_TOKEN",
        "--auth-token",
        "backup",
        "restore",
    ] {
        assert!(help.contains(name), "--help lacks {name}:\n{help}");
    }
    let dir = tempfile::tempdir().unwrap();
    for (args, env) in [
        (vec!["--auth-token", ""], None),
        (vec!["--auth-token", "has space"], None),
        (vec![], Some(("FLOWMESH_AUTH_TOKEN", ""))),
        (vec!["--log-format", "xml"], None),
        (vec!["--log-level", "loud"], None),
        (vec!["--metrics-addr", "nowhere"], None),
        (vec!["restore"], None),
        (vec!["backup", "/tmp/x"], None),
    ] {
        let mut cmd = Command::new(BIN);
        for k in CONFIG_ENV {
            cmd.env_remove(k);
        }
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd
            .arg("--data-dir")
            .arg(dir.path())
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}");
        assert!(!out.stderr.is_empty());
    }
}

/// One HTTP/1.1 request written byte for byte; returns status and body.
fn raw_http(base: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}
