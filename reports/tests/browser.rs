//! A real browser loads the report from disk: headless Chromium (Debian's
//! `chromium`, installed by `ci/setup.sh`) parses it, draws it to a PNG,
//! and its network log shows that the page asked for nothing — no script,
//! font, style or image from anywhere.
//!
//! Chromium's own background services (component updates, time queries) are
//! switched off by flags and, for whatever is left, sent to a proxy on a
//! closed loopback port, so no traffic leaves the machine; the page's own
//! requests are told apart in the network log by their `file://` network
//! partition. A control page that does fetch shows the check can fail.
//! Every browser run is bounded in time.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gauntlet_reports::{RenderOptions, RunData, render_run};
use support::synthetic::{self, Spec};

/// The browser: `GAUNTLET_CHROMIUM`, else the first of the usual names on `PATH`.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("GAUNTLET_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "no Chromium found (tried chromium, chromium-browser, google-chrome on PATH, and GAUNTLET_CHROMIUM); \
         run ci/setup.sh, which installs Debian's `chromium`"
    );
}

const LIMIT: Duration = Duration::from_secs(120);

/// Runs headless Chromium on `url` with `extra` flags; returns its stdout.
fn browse(profile: &Path, url: &str, extra: &[String]) -> String {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-breakpad",
        "--no-pings",
        "--disable-features=Translate,OptimizationHints,MediaRouter,NetworkTimeServiceQuerying,SpellCheck",
        // Anything Chromium still sends goes to a closed port on loopback.
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("chromium starts");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut { stdout }, &mut out);
        out
    });
    let deadline = Instant::now() + LIMIT;
    loop {
        match child.try_wait().expect("waiting for chromium") {
            Some(status) => {
                assert!(status.success(), "chromium failed: {status}");
                break;
            }
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within {LIMIT:?}");
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    reader.join().unwrap()
}

/// URLs the page itself asked for, from a Chromium network log: requests
/// in the page's `file://` network partition.
fn page_requests(netlog: &Path) -> Vec<String> {
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(netlog).expect("chromium wrote its network log"))
            .or_else(|_| {
                // A log cut short lacks its closing brackets.
                let mut text = std::fs::read_to_string(netlog).unwrap();
                text = text.trim_end().trim_end_matches(',').to_owned();
                text.push_str("]}");
                serde_json::from_str(&text)
            })
            .expect("the network log is JSON");
    let mut urls: Vec<String> = log["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| {
            let p = e.get("params")?;
            let url = p.get("url")?.as_str()?;
            let nik = p.get("network_isolation_key")?.as_str()?;
            nik.contains("file://").then(|| url.to_owned())
        })
        .filter(|u| !u.starts_with("file:") && !u.starts_with("data:"))
        .collect();
    urls.sort();
    urls.dedup();
    urls
}

fn png_size(path: &Path) -> (u32, u32, usize) {
    let bytes = std::fs::read(path).expect("the screenshot exists");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20), bytes.len())
}

#[test]
fn chromium_loads_the_report_from_disk_fetches_nothing_and_draws_it() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    let spec = Spec {
        verdict: true,
        ..Spec::small()
    };
    synthetic::build(&run_dir, &spec);
    synthetic::profiles(&run_dir);
    let run = RunData::load(&run_dir).unwrap();
    let html = render_run(&run, None, &RenderOptions::default());
    let report = run_dir.join("report.html");
    std::fs::write(&report, &html).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"));
    let url = format!("file://{}", report.display());

    // 1. The DOM as Chromium parsed it, with a network log.
    let netlog = tmp.path().join("net.json");
    let dom = browse(
        &tmp.path().join("profile-dom"),
        &url,
        &[
            format!("--log-net-log={}", netlog.display()),
            "--dump-dom".to_owned(),
        ],
    );
    for id in [
        "summary",
        "op-append",
        "op-kv-get",
        "system",
        "chaos",
        "profiles",
        "profile-fabric-slow-link",
        "files",
    ] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "#{id} in the DOM Chromium built"
        );
    }
    assert_eq!(
        dom.matches("<svg").count(),
        html.matches("<svg").count(),
        "every chart made it into the DOM"
    );
    assert_eq!(
        page_requests(&netlog),
        Vec::<String>::new(),
        "the report fetched nothing"
    );

    // 2. A screenshot: a real, drawn page.
    let shot = tmp.path().join("report.png");
    browse(
        &tmp.path().join("profile-shot"),
        &url,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,2400".to_owned(),
        ],
    );
    let (w, h, bytes) = png_size(&shot);
    assert_eq!((w, h), (1280, 2400));
    let blank = tmp.path().join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank_shot = tmp.path().join("blank.png");
    browse(
        &tmp.path().join("profile-blank"),
        &format!("file://{}", blank.display()),
        &[
            format!("--screenshot={}", blank_shot.display()),
            "--window-size=1280,2400".to_owned(),
        ],
    );
    let (_, _, blank_bytes) = png_size(&blank_shot);
    assert!(
        bytes > 20 * blank_bytes && bytes > 50_000,
        "the screenshot holds a drawn page ({bytes} bytes; a blank page is {blank_bytes})"
    );

    // 3. The check can fail: a page without the policy that loads an image
    // shows the request; the report's policy blocks the same image.
    let leaky = tmp.path().join("leaky.html");
    std::fs::write(
        &leaky,
        "<!DOCTYPE html><html><body><img src=\"http://127.0.0.1:9/pixel.png\"/></body></html>",
    )
    .unwrap();
    let leaky_log = tmp.path().join("leaky.json");
    browse(
        &tmp.path().join("profile-leaky"),
        &format!("file://{}", leaky.display()),
        &[
            format!("--log-net-log={}", leaky_log.display()),
            "--dump-dom".to_owned(),
        ],
    );
    assert_eq!(
        page_requests(&leaky_log),
        vec!["http://127.0.0.1:9/pixel.png".to_owned()]
    );
    let guarded = tmp.path().join("guarded.html");
    std::fs::write(
        &guarded,
        html.replacen(
            "<main>",
            "<main><img src=\"http://127.0.0.1:9/pixel.png\"/>",
            1,
        ),
    )
    .unwrap();
    let guarded_log = tmp.path().join("guarded.json");
    browse(
        &tmp.path().join("profile-guarded"),
        &format!("file://{}", guarded.display()),
        &[
            format!("--log-net-log={}", guarded_log.display()),
            "--dump-dom".to_owned(),
        ],
    );
    assert_eq!(
        page_requests(&guarded_log),
        Vec::<String>::new(),
        "the report's Content-Security-Policy blocks fetching"
    );
}
