//! The process stack's control surface against the real fabric process:
//! pause (SIGSTOP to the process group) and unpause, SIGKILL then start
//! again on the same port with the same data, restart, the `Unsupported`
//! answer for network partitions, a `redis` service run from this
//! machine's `redis-server`, and a `postgres` service from its PostgreSQL 15.

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

/// The processes of a run: those whose working directory (PostgreSQL's
/// backends sit in their cluster) or command line is under `dir`.
fn processes_under(dir: &std::path::Path) -> Vec<u32> {
    let dir = std::fs::canonicalize(dir).unwrap();
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cwd.starts_with(&dir)
                || String::from_utf8_lossy(&cmdline).contains(dir.to_str().unwrap())
        })
        .collect()
}

/// Polls (bounded) until no process of the run is left.
fn none_left(dir: &std::path::Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = processes_under(dir);
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "processes of the run remain: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

const POSTGRES: &str = r#"
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

/// PostgreSQL in process mode: `initdb` into the run directory, ready on
/// its loopback port with its socket in the run directory; pause stops
/// every process of the cluster, SIGKILL leaves none, a start recovers on
/// the same data directory and port, and the stop is `pg_ctl`'s.
#[tokio::test]
async fn postgres_runs_from_the_local_cluster_in_process_mode() {
    let scenario = gauntlet_scenario::load("db.yaml", POSTGRES, &[]).unwrap();
    let run_dir = tempfile::tempdir().unwrap();
    let stack = ProcessStack::boot(&scenario, run_dir.path(), &locator(), true)
        .await
        .expect("postgresql-15 must be installed (ci/setup.sh installs it)");
    let data = stack.data_dir("db").unwrap();
    assert!(data.join("pgdata/PG_VERSION").is_file(), "initdb ran");
    let endpoint = stack.endpoint("db").unwrap();
    let port = endpoint.port;
    assert_eq!(endpoint.host, "127.0.0.1");
    assert!(
        data.join(format!("socket/.s.PGSQL.{port}")).exists(),
        "the unix socket is in the run directory"
    );
    let addr = endpoint.addr();
    let ready = || gauntlet_stack::probe::postgres_ready(&addr, "postgres", "postgres");
    assert!(ready().await);
    let cluster = processes_under(&data);
    assert!(
        cluster.len() > 1,
        "the postmaster and its children: {cluster:?}"
    );

    // Pause: every process of the cluster stops (the backends too).
    stack.pause("db").await.unwrap();
    assert!(!ready().await, "a paused PostgreSQL does not answer");
    stack.unpause("db").await.unwrap();
    assert!(ready().await);

    // SIGKILL: the postmaster and every child are gone; a start recovers.
    stack.kill("db", Signal::Kill).await.unwrap();
    assert_eq!(stack.state("db").unwrap(), ServiceState::Stopped);
    none_left(&data);
    stack.start("db").await.unwrap();
    assert_eq!(stack.endpoint("db").unwrap().port, port);
    assert!(ready().await);
    let log = std::fs::read_to_string(run_dir.path().join("logs/db.log")).unwrap();
    assert!(
        log.contains("not properly shut down"),
        "recovery ran:\n{log}"
    );

    let reports = stack.shutdown().await;
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|r| r.graceful), "{reports:?}");
    let log = std::fs::read_to_string(run_dir.path().join("logs/db.log")).unwrap();
    assert!(
        log.contains("fast shutdown request"),
        "pg_ctl stop -m fast:\n{log}"
    );
    none_left(run_dir.path());
}

/// A whole run in process mode: PostgreSQL killed with SIGKILL by a fault
/// and started again by it (`restart_after`); after the run no process of
/// the run remains.
#[test]
fn a_kill_fault_restarts_postgres_and_the_run_leaves_no_process() {
    common::fabric_node();
    let out = tempfile::tempdir().unwrap();
    let scenario = out.path().join("s.yaml");
    let text = POSTGRES.replace("duration: 1s", "duration: 8s")
        + "faults:\n  - { at: 1s, kill: db, signal: KILL, restart_after: 1s }\n";
    std::fs::write(&scenario, text).unwrap();
    let o = common::loadgen(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--runtime",
            "process",
            "--quiet",
            "--out",
            out.path().to_str().unwrap(),
        ],
        out.path(),
    );
    assert!(
        o.status.success(),
        "{}\n{}",
        common::text(&o.stdout),
        common::text(&o.stderr)
    );
    let run = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir() && !p.ends_with("latest"))
        .expect("a run directory");
    let faults =
        gauntlet_recorder::faults::parse(&std::fs::read(run.join("faults.json")).unwrap()).unwrap();
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0].kind, "process.kill");
    assert_eq!(faults[0].target, "db");
    let log = std::fs::read_to_string(run.join("logs/db.log")).unwrap();
    assert!(
        faults[0].end_s.is_some(),
        "the kill's window ends when PostgreSQL is back: {faults:?}\n{}\n{log}",
        common::text(&o.stderr)
    );
    assert!(
        log.contains("not properly shut down"),
        "recovery ran:\n{log}"
    );
    assert!(
        log.contains("fast shutdown request"),
        "stopped by pg_ctl:\n{log}"
    );
    none_left(&run);
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

/// `loadgen run` of the PostgreSQL scenario lasting 60 s, once PostgreSQL
/// is up with its children and the load runs: the run's directory, and loadgen.
fn start_postgres_run() -> (tempfile::TempDir, std::process::Child, std::path::PathBuf) {
    common::fabric_node();
    let out = tempfile::tempdir().unwrap();
    let scenario = out.path().join("s.yaml");
    std::fs::write(&scenario, POSTGRES.replace("duration: 1s", "duration: 60s")).unwrap();
    let mut child = common::spawn_run(&scenario, out.path());
    // Wait (bounded) until PostgreSQL is up with its children.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let run = loop {
        let run = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.is_dir() && !p.ends_with("latest"));
        if let Some(run) = run
            && std::fs::read_to_string(run.join("logs/db.log"))
                .is_ok_and(|l| l.contains("ready to accept connections"))
            && processes_under(&run.join("data/db")).len() > 1
            // The load runs: the stack is booted.
            && run.join("results.json").is_file()
        {
            break run;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "PostgreSQL never started"
        );
        assert!(child.try_wait().unwrap().is_none(), "loadgen exited early");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    (out, child, run)
}

/// loadgen SIGKILLed while PostgreSQL runs: the postmaster gets SIGKILL
/// with it (`PR_SET_PDEATHSIG`, set after the switch of user), and its
/// children exit when it is gone.
#[test]
fn a_killed_loadgen_leaves_no_postgres_process() {
    let (_out, mut child, run) = start_postgres_run();
    child.kill().unwrap();
    child.wait().unwrap();
    none_left(&run);
}

/// Ctrl-C while PostgreSQL runs: loadgen stops it with `pg_ctl` and
/// nothing of the run remains.
#[test]
fn ctrl_c_stops_postgres_with_pg_ctl() {
    let (_out, child, run) = start_postgres_run();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "an interrupted run exits 3");
    let log = std::fs::read_to_string(run.join("logs/db.log")).unwrap();
    assert!(
        log.contains("fast shutdown request"),
        "stopped by pg_ctl:\n{log}"
    );
    none_left(&run);
}

/// A panic in a stage: the guard stops PostgreSQL with `pg_ctl` too.
#[test]
fn a_panic_in_a_stage_stops_postgres_with_pg_ctl() {
    common::fabric_node();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.yaml");
    std::fs::write(&scenario, POSTGRES).unwrap();
    let out = common::loadgen_with_env(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--out",
            "runs",
            "--quiet",
        ],
        dir.path(),
        &[("GAUNTLET_TEST_PANIC", "drive_load")],
    );
    assert_eq!(out.status.code(), Some(3), "{}", common::text(&out.stderr));
    let run = std::fs::read_dir(dir.path().join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir() && !p.ends_with("latest"))
        .expect("a run directory");
    let log = std::fs::read_to_string(run.join("logs/db.log")).unwrap();
    assert!(
        log.contains("fast shutdown request"),
        "stopped by pg_ctl:\n{log}"
    );
    none_left(&run);
}
