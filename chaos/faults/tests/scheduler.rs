//! The scheduler against real things: a real child process (`sleep`)
//! behind a small, real implementation of the control trait, and a real
//! fault proxy in front of a loopback echo server. What is asserted is
//! what happened to them, and `faults.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gauntlet_control::{
    BoxFuture, ControlError, Endpoint, ServiceState, Signal, Stack, StopReport,
};
use gauntlet_faults::{DISK_FILL_FILE, FaultScheduler};
use gauntlet_proxy::Proxy;
use gauntlet_recorder::faults::{FAULTS_FILE, parse};
use gauntlet_scenario::faults::{FaultSpec, LinkStream, Target, expand};
use gauntlet_scenario::{Duration as D, Size};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// One service: a `sleep` child process the test owns.
struct SleepStack {
    child: Mutex<Option<Child>>,
    data_dir: PathBuf,
    /// Every action taken, with the process state seen right after it.
    log: Mutex<Vec<String>>,
    endpoint: watch::Sender<Endpoint>,
}

fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

impl SleepStack {
    fn new(data_dir: PathBuf) -> Self {
        let s = SleepStack {
            child: Mutex::new(None),
            data_dir,
            log: Mutex::new(Vec::new()),
            endpoint: watch::channel(Endpoint {
                host: "127.0.0.1".into(),
                port: 1,
            })
            .0,
        };
        s.spawn();
        s
    }
    fn spawn(&self) {
        let child = Command::new("sleep")
            .arg("1000")
            .spawn()
            .expect("sleep runs");
        *self.child.lock().unwrap() = Some(child);
    }
    fn pid_now(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(|c| c.id())
    }
    fn note(&self, what: &str) {
        let st = match self.pid_now().and_then(proc_state) {
            None => '-',
            Some('T') => 'T',
            Some(_) => 'R',
        };
        self.log.lock().unwrap().push(format!("{what}:{st}"));
    }
    fn check(&self, service: &str) -> Result<(), ControlError> {
        if service == "svc" {
            Ok(())
        } else {
            Err(ControlError::UnknownService(service.into()))
        }
    }
    fn signal(&self, sig: i32) -> Result<(), ControlError> {
        let pid = self.pid_now().ok_or_else(|| ControlError::Failed {
            service: "svc".into(),
            action: "kill",
            message: "not running".into(),
        })?;
        // SAFETY: signalling our own child by pid.
        if unsafe { libc::kill(pid as i32, sig) } != 0 {
            return Err(ControlError::Failed {
                service: "svc".into(),
                action: "kill",
                message: std::io::Error::last_os_error().to_string(),
            });
        }
        Ok(())
    }
    /// Waits (bounded) until the process state satisfies `ok`.
    fn wait_state(&self, ok: impl Fn(Option<char>) -> bool) {
        for _ in 0..500 {
            if ok(self.pid_now().and_then(proc_state)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("the process never reached the expected state");
    }
    fn reap(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.wait();
        }
    }
}

impl Drop for SleepStack {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Stack for SleepStack {
    fn runtime(&self) -> &'static str {
        "process"
    }
    fn services(&self) -> Vec<String> {
        vec!["svc".into()]
    }
    fn endpoint(&self, service: &str) -> Result<Endpoint, ControlError> {
        self.check(service)?;
        Ok(self.endpoint.borrow().clone())
    }
    fn watch_endpoint(&self, service: &str) -> Result<watch::Receiver<Endpoint>, ControlError> {
        self.check(service)?;
        Ok(self.endpoint.subscribe())
    }
    fn state(&self, service: &str) -> Result<ServiceState, ControlError> {
        self.check(service)?;
        Ok(match self.pid_now().and_then(proc_state) {
            None => ServiceState::Stopped,
            Some('T') => ServiceState::Paused,
            Some(_) => ServiceState::Running,
        })
    }
    fn pid(&self, _: &str) -> Option<u32> {
        self.pid_now()
    }
    fn data_dir(&self, _: &str) -> Option<PathBuf> {
        Some(self.data_dir.clone())
    }
    fn log_path(&self, _: &str) -> Option<PathBuf> {
        None
    }
    fn shutdown(&self) -> BoxFuture<'_, Vec<StopReport>> {
        Box::pin(async move {
            let Some(mut child) = self.child.lock().unwrap().take() else {
                return Vec::new();
            };
            let _ = child.kill();
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            vec![StopReport {
                service: "svc".into(),
                graceful: false,
                status,
                took: Duration::ZERO,
            }]
        })
    }
    fn stop<'a>(
        &'a self,
        service: &'a str,
        _: Duration,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            self.check(service)?;
            self.signal(libc::SIGTERM)?;
            self.reap();
            self.note("stop");
            Ok(())
        })
    }
    fn kill<'a>(
        &'a self,
        service: &'a str,
        signal: Signal,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            self.check(service)?;
            self.signal(signal.number())?;
            self.reap();
            self.note(&format!("kill-{}", signal.name()));
            Ok(())
        })
    }
    fn pause<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            self.check(service)?;
            self.signal(libc::SIGSTOP)?;
            self.wait_state(|s| s == Some('T'));
            self.note("pause");
            Ok(())
        })
    }
    fn unpause<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            self.check(service)?;
            self.signal(libc::SIGCONT)?;
            self.wait_state(|s| s.is_some_and(|c| c != 'T'));
            self.note("unpause");
            Ok(())
        })
    }
    fn start<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            self.check(service)?;
            self.spawn();
            self.note("start");
            Ok(())
        })
    }
    fn restart<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            self.stop(service, Duration::from_secs(1)).await?;
            self.start(service).await
        })
    }
    fn disconnect<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            Err(ControlError::Unsupported {
                service: service.into(),
                action: "disconnect",
                runtime: "process",
                why: "partitions go through the fault proxy".into(),
            })
        })
    }
    fn reconnect<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        self.disconnect(service)
    }
}

async fn echo_server() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut b = [0u8; 1024];
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 || s.write_all(&b[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn ms(n: u64) -> D {
    D::from_millis(n)
}

fn svc() -> Option<Target> {
    Some(Target::One("svc".into()))
}

fn link() -> Option<Target> {
    Some(Target::One("loadgen->svc".into()))
}

/// What the watcher saw while the timeline ran.
#[derive(Default)]
struct Seen {
    states: BTreeSet<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeline_is_applied_healed_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let stack = Arc::new(SleepStack::new(data.clone()));
    let first_pid = stack.pid_now().unwrap();
    let echo = echo_server().await;
    let proxy =
        Arc::new(Proxy::start("loadgen->svc", "127.0.0.1:0".parse().unwrap(), echo, 1).unwrap());

    let specs = vec![
        FaultSpec {
            at: ms(100),
            for_: Some(ms(300)),
            pause: svc(),
            ..Default::default()
        },
        FaultSpec {
            at: ms(600),
            restart_after: Some(ms(200)),
            kill: svc(),
            ..Default::default()
        },
        FaultSpec {
            at: ms(1000),
            for_: Some(ms(200)),
            stop: svc(),
            ..Default::default()
        },
        FaultSpec {
            name: Some("bounce".into()),
            at: ms(1400),
            restart: svc(),
            ..Default::default()
        },
        FaultSpec {
            at: ms(1600),
            for_: Some(ms(300)),
            cpu: svc(),
            cores: Some(1),
            ..Default::default()
        },
        FaultSpec {
            at: ms(2000),
            for_: Some(ms(300)),
            disk_full: svc(),
            max: Some(Size(3 << 20)),
            ..Default::default()
        },
        FaultSpec {
            name: Some("slow".into()),
            at: ms(2400),
            for_: Some(ms(300)),
            link: link(),
            latency: Some(ms(50)),
            stream: Some(LinkStream::Downstream),
            ..Default::default()
        },
        FaultSpec {
            at: ms(2800),
            for_: Some(ms(300)),
            link: link(),
            down: Some(true),
            ..Default::default()
        },
        FaultSpec {
            at: ms(3200),
            for_: Some(ms(300)),
            partition: svc(),
            ..Default::default()
        },
        // Left applied: healed by heal_all.
        FaultSpec {
            at: ms(3600),
            pause: svc(),
            ..Default::default()
        },
    ];
    let windows = expand(&specs, 1);
    let mut proxies = BTreeMap::new();
    proxies.insert("loadgen->svc".to_owned(), proxy.clone());
    let start = tokio::time::Instant::now();
    let sched = FaultScheduler::new(stack.clone(), proxies, windows, dir.path(), start);
    sched.preflight().unwrap();

    // Watch what the faults do, every few ms, until the timeline is done.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (seen, done, proxy, data) = (seen.clone(), done.clone(), proxy.clone(), data.clone());
        tokio::spawn(async move {
            for _ in 0..5_000 {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                {
                    let mut s = seen.lock().unwrap();
                    if data.join(DISK_FILL_FILE).exists() {
                        s.states.insert("fill file".into());
                    }
                    if !proxy.toxics().is_empty() {
                        s.states.insert("toxic".into());
                    }
                    if proxy.is_down() {
                        s.states.insert("down".into());
                    }
                    let burners = std::fs::read_dir("/proc/self/task")
                        .unwrap()
                        .filter(|t| {
                            let comm = t.as_ref().unwrap().path().join("comm");
                            std::fs::read_to_string(comm)
                                .unwrap_or_default()
                                .starts_with("gauntlet-cpu-bu")
                        })
                        .count();
                    if burners > 0 {
                        s.states.insert(format!("{burners} burner"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    sched.run().await.unwrap();
    let records = parse(&std::fs::read(dir.path().join(FAULTS_FILE)).unwrap()).unwrap();
    assert_eq!(
        records.last().unwrap().end_s,
        None,
        "the last pause is still applied"
    );
    sched.heal_all().await.unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.await.unwrap();

    let states = seen.lock().unwrap().states.clone();
    for s in ["fill file", "toxic", "down", "1 burner"] {
        assert!(states.contains(s), "{s} was never seen: {states:?}");
    }
    assert!(
        !data.join(DISK_FILL_FILE).exists(),
        "the fill file is deleted"
    );
    assert!(
        proxy.toxics().is_empty() && !proxy.is_down(),
        "the link is healed"
    );

    let log = stack.log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            "pause:T",
            "unpause:R", // pause for 300ms
            "kill-KILL:-",
            "start:R", // kill, restart_after
            "stop:-",
            "start:R", // stop for 200ms
            "stop:-",
            "start:R", // restart
            "pause:T",
            "unpause:R", // the pause left applied, healed by heal_all
        ]
        .map(String::from)
        .to_vec(),
        "the real process went through every state"
    );
    assert_ne!(
        stack.pid_now().unwrap(),
        first_pid,
        "killed and started again"
    );

    let records = parse(&std::fs::read(dir.path().join(FAULTS_FILE)).unwrap()).unwrap();
    let kinds: Vec<(&str, &str)> = records
        .iter()
        .map(|f| (f.name.as_str(), f.kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("pause-1", "process.pause"),
            ("kill-2", "process.kill"),
            ("stop-3", "process.stop"),
            ("bounce", "process.restart"),
            ("cpu-5", "resource.cpu"),
            ("disk_full-6", "resource.disk_full"),
            ("slow", "link.latency"),
            ("down-8", "link.down"),
            ("partition-9", "network.partition"),
            ("pause-10", "process.pause"),
        ]
    );
    for f in &records {
        let end = f.end_s.unwrap_or_else(|| panic!("{} closed", f.name));
        assert!(f.start_s <= end, "{f:?}");
        assert_eq!(
            f.target,
            if f.kind.starts_with("link.") {
                "loadgen->svc"
            } else {
                "svc"
            }
        );
    }
    assert!(records.windows(2).all(|w| w[0].start_s <= w[1].start_s));
    assert_eq!(records[1].params["signal"], "KILL");
    assert_eq!(records[5].params["written_bytes"], 3 << 20);
    assert_eq!(records[5].params["disk_full_reached"], false);
    assert_eq!(records[6].params["latency"], "50ms");
    assert_eq!(records[6].params["stream"], "downstream");
}

#[tokio::test]
async fn a_fault_that_cannot_be_applied_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Arc::new(SleepStack::new(dir.path().to_owned()));
    // No proxy on the link: refused before the run.
    let w = expand(
        &[FaultSpec {
            at: ms(0),
            link: link(),
            latency: Some(ms(5)),
            ..Default::default()
        }],
        1,
    );
    let sched = FaultScheduler::new(
        stack.clone(),
        BTreeMap::new(),
        w,
        dir.path(),
        tokio::time::Instant::now(),
    );
    let err = sched.preflight().unwrap_err().to_string();
    assert!(
        err.contains("no fault proxy on link `loadgen->svc`"),
        "{err}"
    );
    assert!(
        sched
            .run()
            .await
            .unwrap_err()
            .to_string()
            .contains("latency-1")
    );

    // A partition in process mode without a proxied link.
    let w = expand(
        &[FaultSpec {
            at: ms(0),
            for_: Some(ms(1)),
            partition: svc(),
            ..Default::default()
        }],
        1,
    );
    let sched = FaultScheduler::new(
        stack.clone(),
        BTreeMap::new(),
        w,
        dir.path(),
        tokio::time::Instant::now(),
    );
    assert!(
        sched
            .preflight()
            .unwrap_err()
            .to_string()
            .contains("no proxied link")
    );

    // The stack refuses: the service is already stopped, so a second kill fails.
    let w = expand(
        &[
            FaultSpec {
                at: ms(0),
                kill: svc(),
                ..Default::default()
            },
            FaultSpec {
                at: ms(50),
                kill: svc(),
                signal: Some(Signal::Term),
                ..Default::default()
            },
        ],
        1,
    );
    let sched = FaultScheduler::new(
        stack.clone(),
        BTreeMap::new(),
        w,
        dir.path(),
        tokio::time::Instant::now(),
    );
    sched.preflight().unwrap();
    let err = sched.run().await.unwrap_err();
    assert_eq!(err.fault, "kill-2");
    assert_eq!(err.stage, "applied");
    assert!(err.to_string().contains("not running"), "{err}");
    // The first kill stays recorded, open.
    let records = parse(&std::fs::read(dir.path().join(FAULTS_FILE)).unwrap()).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].end_s, None);
}

#[test]
fn disk_full_fills_until_enospc_on_a_small_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "gauntlet-test"])
        .arg(mnt)
        .status()
        .is_ok_and(|s| s.success());
    struct Unmount<'a>(&'a std::path::Path, bool);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            if self.1 {
                let _ = Command::new("umount").arg(self.0).status();
            }
        }
    }
    let _unmount = Unmount(mnt, mounted);
    let path = mnt.join(DISK_FILL_FILE);
    if mounted {
        let filled = gauntlet_faults::fill(&path, 64 << 20).unwrap();
        assert!(filled.enospc, "{filled:?}");
        assert!(
            filled.written <= 4 << 20 && filled.written > 0,
            "{filled:?}"
        );
        // Nothing more fits.
        assert!(std::fs::write(mnt.join("more"), vec![0u8; 8192]).is_err());
        std::fs::remove_file(&path).unwrap();
        std::fs::write(mnt.join("more"), vec![0u8; 8192]).unwrap();
    } else {
        eprintln!("cannot mount a tmpfs here (not root?): checking the bounded fill only");
    }
    drop(_unmount);
    let bounded = gauntlet_faults::fill(&dir.path().join("bounded"), 5 << 20 | 7).unwrap();
    assert_eq!(
        bounded,
        gauntlet_faults::Filled {
            written: 5 << 20 | 7,
            enospc: false
        }
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("bounded")).unwrap().len(),
        5 << 20 | 7
    );
}

#[tokio::test]
async fn without_the_stack_only_link_faults_and_process_partitions_run() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_server().await;
    let proxy =
        Arc::new(Proxy::start("loadgen->svc", "127.0.0.1:0".parse().unwrap(), echo, 1).unwrap());
    let proxies = BTreeMap::from([("loadgen->svc".to_owned(), proxy.clone())]);
    let w = expand(
        &[FaultSpec {
            at: ms(0),
            kill: svc(),
            ..Default::default()
        }],
        1,
    );
    let sched = FaultScheduler::links_only(
        "process",
        proxies.clone(),
        w,
        dir.path(),
        tokio::time::Instant::now(),
    );
    let err = sched.preflight().unwrap_err().to_string();
    assert!(err.contains("control surface"), "{err}");

    let w = expand(
        &[
            FaultSpec {
                at: ms(0),
                for_: Some(ms(200)),
                partition: svc(),
                ..Default::default()
            },
            FaultSpec {
                at: ms(300),
                link: link(),
                reset: Some(ms(0)),
                ..Default::default()
            },
        ],
        1,
    );
    let sched = FaultScheduler::links_only(
        "process",
        proxies,
        w,
        dir.path(),
        tokio::time::Instant::now(),
    );
    sched.preflight().unwrap();
    let run = sched.run();
    tokio::pin!(run);
    // While partitioned, the link refuses connections.
    let refused = async {
        for _ in 0..100 {
            if proxy.is_down() {
                return tokio::net::TcpStream::connect(proxy.addr()).await.is_err();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    };
    let (ran, refused) = tokio::join!(&mut run, refused);
    ran.unwrap();
    assert!(refused, "a partition refuses connections");
    assert!(!proxy.is_down());
    assert_eq!(proxy.toxics().len(), 1, "the reset is still applied");
    sched.heal_all().await.unwrap();
    assert!(proxy.toxics().is_empty());
    let records = parse(&std::fs::read(dir.path().join(FAULTS_FILE)).unwrap()).unwrap();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.end_s.is_some()));
    assert_eq!(records[1].kind, "link.reset");
}

#[tokio::test]
async fn proxies_follow_the_services_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Arc::new(SleepStack::new(dir.path().to_owned()));
    let first = echo_server().await;
    let second = echo_server().await;
    let proxy =
        Arc::new(Proxy::start("loadgen->svc", "127.0.0.1:0".parse().unwrap(), first, 1).unwrap());
    let proxies = BTreeMap::from([("loadgen->svc".to_owned(), proxy.clone())]);
    let sched = FaultScheduler::new(
        stack.clone(),
        proxies,
        Vec::new(),
        dir.path(),
        tokio::time::Instant::now(),
    );
    let tasks = sched.follow_endpoints().unwrap();
    assert_eq!(tasks.len(), 1);
    // The "container" restarts on another port.
    stack.endpoint.send_replace(Endpoint {
        host: "127.0.0.1".into(),
        port: second.port(),
    });
    for _ in 0..200 {
        if proxy.upstream() == second {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(proxy.upstream(), second);
    drop(sched);
    for t in tasks {
        t.abort();
    }
}
