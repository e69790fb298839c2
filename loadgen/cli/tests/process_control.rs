//! The process stack's control surface against the real fabric process:
//! pause (SIGSTOP to the process group) and unpause, SIGKILL then start
//! again on the same port with the same data, restart, the `Unsupported`
//! answer for network partitions, and a `redis` service run from this
//! machine's `redis-server`.

mod common;

use std::sync::Arc;

use common::mounts_on;
use gauntlet_control::{ControlError, ServiceState, Signal, Stack};
use gauntlet_drivers as driver;
use gauntlet_engine::Operation as _;
use gauntlet_recorder::Outcome;
use loadgen::bins::Locator;
use loadgen::plan::Plan;
use loadgen::stack::ProcessStack;

const SCENARIO: &str = r#"
name: control
stack:
  services:
    fabric: { kind: fabric, env: { STORAGE_FSYNC_POLICY: always } }
workload:
  phases:
    - { name: steady, duration: 1s, rate: 10/s }
  operations:
    - { name: append, fabric.stream.append: { stream: test/control/events, payload: 64B } }
    - { name: read, fabric.stream.read: { stream: test/control/events, from: start, max: 100 } }
"#;

fn locator() -> Locator {
    common::fabric_node();
    Locator {
        dir: Some(common::bin_dir()),
        quiet: true,
    }
}

/// Events the read operation finds (from offset 0).
async fn events(client: &driver::control::HttpClient, stack: &dyn Stack) -> usize {
    let base = stack.endpoint("fabric").unwrap().base_url();
    let uri =
        format!("{base}/api/v1/streams/test/control/events/messages?offset=0&max_messages=100");
    let request = hyper::Request::get(uri)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert!(response.status().is_success());
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    value["messages"].as_array().map_or(0, Vec::len)
}

/// The plan's append operation against the stack's fabric, set up and
/// run five times, each acknowledged.
async fn five_appends(
    engine: &gauntlet_engine::Connections,
    plan: &Plan,
    stack: &dyn Stack,
) -> driver::Prepared {
    let target = driver::Target::new(stack.watch_endpoint("fabric").unwrap(), "");
    let targets = |_: &str| target.clone();
    driver::setup(&engine.http, &plan.operations[0], &targets)
        .await
        .unwrap();
    let shared = driver::Shared::default();
    let append = driver::prepare(&plan.operations[0], &targets, 1, 0, &shared).expect("prepared");
    for _ in 0..5 {
        assert!(matches!(
            append.execute(engine, &mut driver::Chain::default()).await,
            Outcome::Ok
        ));
    }
    append
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_kill_start_and_restart_keep_the_port_and_the_data() {
    let scenario = gauntlet_scenario::load("control.yaml", SCENARIO, &[]).unwrap();
    let run_dir = tempfile::tempdir().unwrap();
    let stack: Arc<dyn Stack> = Arc::new(
        ProcessStack::boot(&scenario, run_dir.path(), &locator(), true)
            .await
            .expect("boots"),
    );
    assert_eq!(stack.runtime(), "process");
    let plan = Plan::new(scenario);
    let client = driver::control::http_client(4);
    // Operations run on the engine's client; the hyper client checks.
    let engine = gauntlet_engine::Connections::default();
    let endpoint = stack.watch_endpoint("fabric").unwrap();
    let port = endpoint.borrow().port;
    let append = five_appends(&engine, &plan, stack.as_ref()).await;

    // Pause: SIGSTOP to the group; the fabric does not answer until unpaused.
    stack.pause("fabric").await.unwrap();
    assert_eq!(stack.state("fabric").unwrap(), ServiceState::Paused);
    let addr = endpoint.borrow().addr();
    assert!(
        !gauntlet_stack::probe::http_ok(&addr, "/ready").await,
        "a paused fabric does not answer"
    );
    stack.unpause("fabric").await.unwrap();
    assert_eq!(stack.state("fabric").unwrap(), ServiceState::Running);
    assert!(gauntlet_stack::probe::http_ok(&addr, "/ready").await);
    let before_kill = events(&client, stack.as_ref()).await;
    assert_eq!(before_kill, 5);

    // SIGKILL: stopped until started; start: same port, same data.
    let pid = stack.pid("fabric").unwrap();
    stack.kill("fabric", Signal::Kill).await.unwrap();
    assert_eq!(stack.state("fabric").unwrap(), ServiceState::Stopped);
    assert_eq!(stack.pid("fabric"), None);
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        !cmdline.contains("fabric-node"),
        "the killed fabric is gone"
    );
    stack.start("fabric").await.unwrap();
    assert_eq!(stack.endpoint("fabric").unwrap().port, port);
    assert_eq!(
        events(&client, stack.as_ref()).await,
        before_kill,
        "fsync always: nothing lost"
    );
    assert!(matches!(
        append.execute(&engine, &mut driver::Chain::default()).await,
        Outcome::Ok
    ));

    // Restart: graceful stop, start, ready; same port.
    stack.restart("fabric").await.unwrap();
    assert_eq!(stack.endpoint("fabric").unwrap().port, port);
    assert_eq!(events(&client, stack.as_ref()).await, before_kill + 1);

    // Partitions are not the process stack's job.
    match stack.disconnect("fabric").await {
        Err(ControlError::Unsupported { runtime, .. }) => assert_eq!(runtime, "process"),
        other => panic!("disconnect answered {other:?}"),
    }
    assert!(matches!(
        stack.pause("nope").await,
        Err(ControlError::UnknownService(_))
    ));
    assert_eq!(
        stack.data_dir("fabric").unwrap(),
        run_dir.path().join("data/fabric")
    );

    let reports = stack.shutdown().await;
    assert_eq!(reports.len(), 1);
    assert!(reports[0].graceful, "{reports:?}");
    assert!(stack.shutdown().await.is_empty());
}

#[tokio::test]
async fn a_redis_service_runs_from_the_local_redis_server_in_process_mode() {
    let text = r#"
name: cache
stack:
  services:
    fabric: { kind: fabric }
    cache: { kind: redis }
workload:
  phases:
    - { name: steady, duration: 1s, rate: 10/s }
  operations:
    - { name: append, fabric.stream.append: { stream: test/cache/events } }
"#;
    let scenario = gauntlet_scenario::load("cache.yaml", text, &[]).unwrap();
    let run_dir = tempfile::tempdir().unwrap();
    let stack = ProcessStack::boot(&scenario, run_dir.path(), &locator(), true)
        .await
        .expect("redis-server must be installed (ci/setup.sh installs it)");
    let addr = stack.endpoint("cache").unwrap().addr();
    assert!(gauntlet_stack::probe::redis_pong(&addr).await);
    let reports = stack.shutdown().await;
    assert!(reports.iter().all(|r| r.graceful), "{reports:?}");
}

#[tokio::test]
async fn postgres_in_process_mode_says_container_mode_is_needed() {
    let text = r#"
name: db
stack:
  services:
    fabric: { kind: fabric }
    db: { kind: postgres }
workload:
  phases:
    - { name: steady, duration: 1s, rate: 10/s }
  operations:
    - { name: append, fabric.stream.append: { stream: test/db/events } }
"#;
    let scenario = gauntlet_scenario::load("db.yaml", text, &[]).unwrap();
    let run_dir = tempfile::tempdir().unwrap();
    let err = match ProcessStack::boot(&scenario, run_dir.path(), &locator(), true).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("postgres must not boot in process mode"),
    };
    assert!(err.contains("need container mode"), "{err}");
    assert!(err.contains("--runtime containers"), "{err}");
}

fn fs_type(path: &std::path::Path) -> i64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: statfs(2) into a zeroed struct, NUL-terminated path.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        assert_eq!(libc::statfs(c.as_ptr(), &mut st), 0, "{}", path.display());
        st.f_type as i64
    }
}

const TMPFS_MAGIC: i64 = 0x0102_1994;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_of_its_own_fills_up_and_keeps_its_data_across_restarts() {
    let text = SCENARIO.replace(
        "fabric: { kind: fabric, env",
        "fabric: { kind: fabric, disk: 16MiB, env",
    );
    let scenario = gauntlet_scenario::load("control.yaml", &text, &[]).unwrap();
    let run_dir = tempfile::tempdir().unwrap();
    let host_dir = std::path::absolute(run_dir.path().join("data/fabric")).unwrap();
    let stack: Arc<dyn Stack> = Arc::new(
        ProcessStack::boot(&scenario, run_dir.path(), &locator(), true)
            .await
            .expect("boots (as root)"),
    );
    // The harness sees the tmpfs through the holder; the host's directory
    // is not mounted over.
    let data = stack.data_dir("fabric").unwrap();
    assert!(data.starts_with("/proc/"), "{}", data.display());
    assert_eq!(fs_type(&data), TMPFS_MAGIC);
    assert_ne!(fs_type(&host_dir), TMPFS_MAGIC);
    assert!(!mounts_on(&host_dir).is_empty());
    // The fabric writes into it.
    let plan = Plan::new(scenario);
    let client = driver::control::http_client(4);
    let engine = gauntlet_engine::Connections::default();
    let append = five_appends(&engine, &plan, stack.as_ref()).await;
    assert!(
        std::fs::read_dir(&data).unwrap().count() > 0,
        "the fabric's files are on the tmpfs"
    );
    // SIGKILL and start: the new process joins the namespace, the data is there.
    stack.kill("fabric", Signal::Kill).await.unwrap();
    stack.start("fabric").await.unwrap();
    assert_eq!(events(&client, stack.as_ref()).await, 5);
    // Filling it reaches ENOSPC within its size; the fabric then fails writes.
    let fill = data.join("fill");
    let filled = gauntlet_faults::fill(&fill, 1 << 30).unwrap();
    assert!(filled.enospc, "{} bytes written", filled.written);
    assert!(filled.written <= 16 << 20, "{}", filled.written);
    // (Small appends still fit in the last page of the segment until it is
    // full: keep appending, bounded, until one fails.)
    let mut failed = 0;
    for _ in 0..400 {
        if !matches!(
            append.execute(&engine, &mut driver::Chain::default()).await,
            Outcome::Ok
        ) {
            failed += 1;
        }
    }
    assert!(failed > 0, "appends fail on a full disk");
    // Freed and restarted (a failed write poisons the stream until then):
    // what was acknowledged is still there, and appends succeed.
    std::fs::remove_file(&fill).unwrap();
    stack.restart("fabric").await.unwrap();
    assert!(events(&client, stack.as_ref()).await >= 5);
    assert!(matches!(
        append.execute(&engine, &mut driver::Chain::default()).await,
        Outcome::Ok
    ));

    let reports = stack.shutdown().await;
    assert!(reports[0].graceful, "{reports:?}");
    // The holder is gone, and the tmpfs with its namespace.
    assert!(!data.exists(), "{}", data.display());
    assert_eq!(mounts_on(&host_dir), Vec::<String>::new());
}
