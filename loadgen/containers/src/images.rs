//! The images every container runs, built on this machine: nothing is
//! pulled (there is no registry).
//!
//! 1. **Base** (`gauntlet/base:<hash>`): a Debian root filesystem made by
//!    `debootstrap --variant=minbase` from the mirror and suite in this
//!    machine's apt configuration, with PostgreSQL 15, Redis 7, iproute2,
//!    ca-certificates and bash, then `docker import`ed. The root filesystem
//!    tarball is cached under the cache directory
//!    (`target/gauntlet/images/base-<hash>.tar`), so only a fresh `target/`
//!    on an engine without the image pays for debootstrap.
//! 2. **One image per bundled service** (`gauntlet/fabric-node:<hash>`):
//!    the base plus the release binary (`docker cp`), running as the
//!    base's non-root user, with a `HEALTHCHECK` and labels (`docker commit
//!    --change`).
//!
//! Tags are content hashes (the recipe; for a service image its
//! configuration, which names the base tag, and the binary's bytes), so an image is built only when its inputs
//! changed, and a second build is a no-op that says so.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gauntlet_scenario::ServiceKind;
use gauntlet_stack::kinds;
use sha2::{Digest, Sha256};

/// Debian packages in the base image, beyond minbase.
pub const BASE_PACKAGES: [&str; 9] = [
    "postgresql-15",
    "redis-server",
    "nginx-light",
    "haproxy",
    "redis-tools",
    "iproute2",
    "ca-certificates",
    "procps",
    "bash",
];

/// Bumped whenever the base recipe's steps change.
const BASE_RECIPE_VERSION: u32 = 1;

/// Run inside the fresh root filesystem: trims caches and the cluster the
/// PostgreSQL package creates (services make their own in their volume),
/// makes `/data`, where each service's data volume is mounted, and the
/// non-root user bundled services run as.
const BASE_TRIM: &str = "set -e
rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* /usr/share/info/*
rm -rf /var/lib/postgresql/15/main /etc/postgresql/15/main
install -d -m 1777 /data
useradd --system --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin gauntlet
";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image build step `{step}` failed: {why}")]
    Step { step: String, why: String },
}

fn step_err(step: &str, why: impl Into<String>) -> ImageError {
    ImageError::Step {
        step: step.to_owned(),
        why: why.into(),
    }
}

/// Where Debian packages come from: the first `deb` source of this
/// machine's apt configuration for the main archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    pub mirror: String,
    pub suite: String,
}

/// Reads `/etc/apt/sources.list` and `/etc/apt/sources.list.d/*.{list,sources}`.
pub fn apt_source() -> Result<AptSource, ImageError> {
    let mut texts = Vec::new();
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
        texts.push((false, text));
    }
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let deb822 = match path.extension().and_then(|e| e.to_str()) {
                Some("sources") => true,
                Some("list") => false,
                _ => continue,
            };
            if let Ok(text) = fs::read_to_string(&path) {
                texts.push((deb822, text));
            }
        }
    }
    texts
        .iter()
        .find_map(|(deb822, text)| {
            if *deb822 {
                parse_deb822(text)
            } else {
                parse_one_line(text)
            }
        })
        .ok_or_else(|| {
            step_err(
                "read the apt configuration",
                "no `deb` source for a Debian suite's `main` component in /etc/apt/sources.list or /etc/apt/sources.list.d/ (hint: debootstrap takes its mirror from there)",
            )
        })
}

/// A main-archive suite (`bookworm`, not `bookworm-updates`/`-security`).
fn is_release_suite(suite: &str) -> bool {
    !suite.is_empty() && !suite.contains('-') && !suite.contains('/')
}

/// One-line format: `deb [options] URI SUITE COMPONENT…`.
pub fn parse_one_line(text: &str) -> Option<AptSource> {
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("").trim();
        let rest = line.strip_prefix("deb ")?.trim();
        let rest = if let Some(after) = rest.strip_prefix('[') {
            after.split_once(']')?.1.trim()
        } else {
            rest
        };
        let mut words = rest.split_whitespace();
        let uri = words.next()?;
        let suite = words.next()?;
        let components: Vec<&str> = words.collect();
        (is_release_suite(suite) && components.contains(&"main")).then(|| AptSource {
            mirror: uri.to_owned(),
            suite: suite.to_owned(),
        })
    })
}

/// deb822 format (`Types:`, `URIs:`, `Suites:`, `Components:` stanzas).
pub fn parse_deb822(text: &str) -> Option<AptSource> {
    let mut stanzas = vec![Vec::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            stanzas.push(Vec::new());
        } else if !line.trim_start().starts_with('#')
            && let Some(last) = stanzas.last_mut()
        {
            last.push(line);
        }
    }
    stanzas.iter().find_map(|lines| {
        let field = |name: &str| {
            lines.iter().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        if field("Enabled").is_some_and(|v| v.eq_ignore_ascii_case("no")) {
            return None;
        }
        if !field("Types")?.split_whitespace().any(|t| t == "deb") {
            return None;
        }
        if !field("Components")?.split_whitespace().any(|c| c == "main") {
            return None;
        }
        let uri = field("URIs")?.split_whitespace().next()?.to_owned();
        let suite = field("Suites")?
            .split_whitespace()
            .find(|s| is_release_suite(s))?
            .to_owned();
        Some(AptSource { mirror: uri, suite })
    })
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut out = String::with_capacity(64);
    for byte in digest {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// SHA-256 of a file, remembered in the cache directory by path, size and
/// modification time (a 40 MB binary need not be read again on every run).
fn file_hash(path: &Path, cache_dir: &Path) -> std::io::Result<String> {
    let meta = fs::metadata(path)?;
    let mtime = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let key = format!("{}\t{}\t{mtime}", path.display(), meta.len());
    let memo = cache_dir.join("binary-hashes.tsv");
    let known = fs::read_to_string(&memo).unwrap_or_default();
    if let Some(hash) = known
        .lines()
        .find_map(|l| l.strip_prefix(&key)?.strip_prefix('\t'))
    {
        return Ok(hash.to_owned());
    }
    let hash = sha256_hex(&[&fs::read(path)?]);
    if fs::create_dir_all(cache_dir).is_ok() {
        let kept: Vec<&str> = known
            .lines()
            .filter(|l| !l.starts_with(&format!("{}\t", path.display())))
            .collect();
        let mut text = kept.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("{key}\t{hash}\n"));
        let tmp = memo.with_extension("tmp");
        if fs::write(&tmp, text).is_ok() {
            let _ = fs::rename(&tmp, &memo);
        }
    }
    Ok(hash)
}

/// The base image's recipe: what decides its content (not the mirror it
/// is fetched from).
pub fn base_recipe_hash(suite: &str) -> String {
    sha256_hex(&[
        format!("gauntlet-base v{BASE_RECIPE_VERSION}").as_bytes(),
        suite.as_bytes(),
        BASE_PACKAGES.join(",").as_bytes(),
        BASE_TRIM.as_bytes(),
    ])[..16]
        .to_owned()
}

/// The image configuration of a bundled service, as `docker commit
/// --change` instructions on top of the base: the non-root user (made in
/// the base), the health check, labels, entrypoint and command. One commit
/// instead of a `docker build` (whose classic builder makes a container per
/// instruction, 25–45 s here; BuildKit is not installed).
pub fn service_changes(kind: ServiceKind, base_tag: &str) -> Vec<String> {
    let binary = kinds::binary(kind);
    let port = kinds::spec(kind).container_port;
    let name = kind.name();
    vec![
        "USER gauntlet".to_owned(),
        "WORKDIR /data".to_owned(),
        format!("EXPOSE {port}"),
        format!(
            r#"HEALTHCHECK --interval=2s --timeout=2s --start-period=2s --retries=3 CMD bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port} && printf "GET /ready HTTP/1.0\r\n\r\n" >&3 && head -c 12 <&3 | grep -q " 200"'"#
        ),
        format!(
            r#"LABEL org.gauntlet.image="{binary}" org.gauntlet.kind="{name}" org.gauntlet.base="{base_tag}" org.opencontainers.image.title="{binary}" org.opencontainers.image.description="Gauntlet's {name} service""#
        ),
        format!(r#"ENTRYPOINT ["/usr/local/bin/{binary}"]"#),
        // The kind's own arguments (what the container stack passes too),
        // so `docker run IMAGE` alone serves on the container port.
        format!(
            "CMD [{}]",
            kinds::spec(kind)
                .args
                .iter()
                .map(|a| format!("{:?}", kinds::substitute(a, "0.0.0.0", port, "/data")))
                .collect::<Vec<_>>()
                .join(",")
        ),
    ]
}

/// What the build needs.
pub struct BuildOptions {
    /// Where the base root filesystem tarball is cached (`target/gauntlet/images`).
    pub cache_dir: PathBuf,
    /// The release binary of each bundled service to ship.
    pub binaries: Vec<(ServiceKind, PathBuf)>,
    /// Print progress on stderr.
    pub progress: bool,
}

/// The images a container run uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    pub base: String,
    pub services: Vec<(ServiceKind, String)>,
}

impl ImageSet {
    pub fn for_kind(&self, kind: ServiceKind) -> Option<&str> {
        if kinds::is_bundled(kind) {
            self.services
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, t)| t.as_str())
        } else {
            Some(&self.base)
        }
    }
}

/// What one image's build did.
#[derive(Debug, Clone)]
pub struct Built {
    pub tag: String,
    /// `false`: the image was already there (nothing built).
    pub built: bool,
    pub took: Duration,
    pub size_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct BuildReport {
    pub images: ImageSet,
    pub steps: Vec<Built>,
}

impl BuildReport {
    pub fn anything_built(&self) -> bool {
        self.steps.iter().any(|s| s.built)
    }
}

fn say(progress: bool, line: impl AsRef<str>) {
    if progress {
        eprintln!("{}", line.as_ref());
    }
}

/// Runs a command; on failure the error names the step, the command and
/// the last lines of its output. With `progress`, output lines are shown
/// as they come.
fn run_step(step: &str, command: &mut Command, progress: bool) -> Result<String, ImageError> {
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| step_err(step, format!("cannot run {shown}: {e}")))?;
    let stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut s) = stderr {
            let _ = s.read_to_string(&mut text);
        }
        text
    });
    let mut out = String::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if progress {
                eprintln!("    {line}");
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    let status = child
        .wait()
        .map_err(|e| step_err(step, format!("waiting for {shown}: {e}")))?;
    let err = err_thread.join().unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        let all = format!("{out}{err}");
        let lines: Vec<&str> = all.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n    ");
        Err(step_err(
            step,
            format!("{shown} exited with {status}:\n    {tail}"),
        ))
    }
}

fn docker() -> Command {
    let mut c = Command::new("docker");
    c.env("DOCKER_BUILDKIT", "0");
    c
}

/// The image's size in bytes, when it exists.
pub fn image_size(tag: &str) -> Option<u64> {
    let out = docker()
        .args(["image", "inspect", "--format", "{{.Size}}", tag])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn check_docker_cli() -> Result<(), ImageError> {
    let out = docker()
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map_err(|e| {
            step_err(
                "find the docker command",
                format!("cannot run `docker` ({e}) (hint: install docker.io)"),
            )
        })?;
    if !out.status.success() {
        return Err(step_err(
            "reach the Docker engine",
            format!(
                "no Docker engine is reachable: {} (hint: start the Docker daemon)",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

/// The tags the build would produce, without building (to tell whether
/// the images are there and fresh).
pub fn planned(opts: &BuildOptions) -> Result<ImageSet, ImageError> {
    let source = apt_source()?;
    let base = format!("gauntlet/base:{}", base_recipe_hash(&source.suite));
    let mut services = Vec::new();
    for (kind, binary) in &opts.binaries {
        let binary_hash = file_hash(binary, &opts.cache_dir).map_err(|e| {
            step_err(
                &format!("read the {} binary", kinds::binary(*kind)),
                format!("{}: {e}", binary.display()),
            )
        })?;
        let recipe = service_changes(*kind, &base).join("\n");
        let hash = sha256_hex(&[recipe.as_bytes(), binary_hash.as_bytes()]);
        services.push((
            *kind,
            format!("gauntlet/{}:{}", kinds::binary(*kind), &hash[..16]),
        ));
    }
    Ok(ImageSet { base, services })
}

/// Whether every image of the set is in the engine.
pub fn all_present(set: &ImageSet) -> bool {
    image_size(&set.base).is_some() && set.services.iter().all(|(_, t)| image_size(t).is_some())
}

/// Holds `<cache_dir>/build.lock` exclusively while alive: two builds at
/// once (two runs finding the images missing) take turns, and the second
/// finds the images built.
struct BuildLock(#[allow(dead_code)] fs::File);

fn lock_builds(cache_dir: &Path, progress: bool) -> Result<BuildLock, ImageError> {
    use std::os::fd::AsRawFd;
    let step = "lock the image cache";
    fs::create_dir_all(cache_dir)
        .map_err(|e| step_err(step, format!("{}: {e}", cache_dir.display())))?;
    let path = cache_dir.join("build.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| step_err(step, format!("{}: {e}", path.display())))?;
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        say(progress, "another image build is running; waiting for it");
        // SAFETY: as above, blocking this time (the other build is bounded by its steps).
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(step_err(step, std::io::Error::last_os_error().to_string()));
        }
    }
    Ok(BuildLock(file))
}

/// Builds what is missing; a no-op (that says so) when every image is there.
pub fn build(opts: &BuildOptions) -> Result<BuildReport, ImageError> {
    check_docker_cli()?;
    let _lock = lock_builds(&opts.cache_dir, opts.progress)?;
    remove_build_containers();
    let source = apt_source()?;
    let set = planned(opts)?;
    let progress = opts.progress;
    let mut steps = Vec::new();

    // 1. The base image.
    let started = Instant::now();
    let base_hash = base_recipe_hash(&source.suite);
    if let Some(size) = image_size(&set.base) {
        say(progress, format!("base image {} is up to date", set.base));
        steps.push(Built {
            tag: set.base.clone(),
            built: false,
            took: started.elapsed(),
            size_bytes: size,
        });
    } else {
        let tarball = opts.cache_dir.join(format!("base-{base_hash}.tar"));
        if tarball.is_file() {
            say(
                progress,
                format!(
                    "[base 1/2] root filesystem: cached at {}",
                    tarball.display()
                ),
            );
        } else {
            make_rootfs(&source, &opts.cache_dir, &base_hash, &tarball, progress)?;
        }
        say(progress, format!("[base 2/2] docker import → {}", set.base));
        run_step(
            "docker import of the base root filesystem",
            docker()
                .arg("import")
                .args(["--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/15/bin"])
                .args(["--change", "ENV LANG=C.UTF-8"])
                .args(["--change", "CMD [\"bash\"]"])
                .args(["--change", "LABEL org.gauntlet.image=base"])
                .args(["--change", &format!("LABEL org.gauntlet.recipe={base_hash}")])
                .args(["--change", &format!("LABEL org.gauntlet.suite={}", source.suite)])
                .arg(&tarball)
                .arg(&set.base),
            false,
        )?;
        steps.push(Built {
            tag: set.base.clone(),
            built: true,
            took: started.elapsed(),
            size_bytes: image_size(&set.base).unwrap_or(0),
        });
    }

    // 2. One image per bundled service.
    for ((kind, binary), (_, tag)) in opts.binaries.iter().zip(&set.services) {
        let started = Instant::now();
        if let Some(size) = image_size(tag) {
            say(
                progress,
                format!("{} image {tag} is up to date", kind.name()),
            );
            steps.push(Built {
                tag: tag.clone(),
                built: false,
                took: started.elapsed(),
                size_bytes: size,
            });
            continue;
        }
        say(
            progress,
            format!(
                "[{}] {tag}: base + {} (non-root user, health check, labels)",
                kind.name(),
                binary.display()
            ),
        );
        let hash = tag.rsplit(':').next().unwrap_or_default();
        let created = run_step(
            &format!("create a build container for {tag}"),
            docker().args(["create", "--label", "org.gauntlet.build=true", &set.base]),
            false,
        )?;
        let container = created.trim().to_owned();
        let target = format!("{container}:/usr/local/bin/{}", kinds::binary(*kind));
        let result = run_step(
            &format!("copy {} into {tag}", binary.display()),
            docker().arg("cp").arg(binary).arg(&target),
            false,
        )
        .and_then(|_| {
            let mut commit = docker();
            commit.arg("commit");
            for change in service_changes(*kind, &set.base)
                .into_iter()
                .chain([format!("LABEL org.gauntlet.content-hash={hash}")])
            {
                commit.arg("--change").arg(change);
            }
            run_step(
                &format!("docker commit of {tag}"),
                commit.arg(&container).arg(tag),
                false,
            )
        });
        let _ = docker()
            .args(["rm", "-f", &container])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        result?;
        steps.push(Built {
            tag: tag.clone(),
            built: true,
            took: started.elapsed(),
            size_bytes: image_size(tag).unwrap_or(0),
        });
        remove_older_tags(tag, progress);
    }
    Ok(BuildReport { images: set, steps })
}

/// Build containers a killed build left behind (builds hold the lock, so
/// none is in use now).
fn remove_build_containers() {
    let Ok(out) = docker()
        .args(["ps", "-aq", "--filter", "label=org.gauntlet.build=true"])
        .output()
    else {
        return;
    };
    for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = docker()
            .args(["rm", "-f", id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Removes the repository's other tags (earlier binaries or recipes of the
/// same service), so stale images do not pile up. An image a container
/// still uses stays (Docker refuses), which is fine.
fn remove_older_tags(tag: &str, progress: bool) {
    let Some((repo, current)) = tag.rsplit_once(':') else {
        return;
    };
    let Ok(out) = docker()
        .args(["image", "ls", repo, "--format", "{{.Tag}}"])
        .output()
    else {
        return;
    };
    for old in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|t| !t.is_empty() && *t != current)
    {
        let old = format!("{repo}:{old}");
        let removed = docker()
            .args(["image", "rm", &old])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if removed {
            say(progress, format!("removed the stale image {old}"));
        }
    }
}

/// debootstrap into a scratch directory, trim, tar, then drop the tree.
fn make_rootfs(
    source: &AptSource,
    cache_dir: &Path,
    hash: &str,
    tarball: &Path,
    progress: bool,
) -> Result<(), ImageError> {
    let root = cache_dir.join(format!("base-{hash}.rootfs"));
    let _ = fs::remove_dir_all(&root);
    let step = "debootstrap of the base root filesystem";
    let root_user = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root_user {
        Command::new("debootstrap")
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", "debootstrap"]);
        c
    };
    say(
        progress,
        format!(
            "[base 1/2] root filesystem: debootstrap --variant=minbase {} from {} with {} (a few minutes, once)",
            source.suite,
            source.mirror,
            BASE_PACKAGES.join(", ")
        ),
    );
    cmd.args([
        "--variant=minbase",
        &format!("--include={}", BASE_PACKAGES.join(",")),
        &source.suite,
    ])
    .arg(&root)
    .arg(&source.mirror);
    let result = run_step(step, &mut cmd, progress).map_err(|e| match e {
        ImageError::Step { step, why } if which("debootstrap").is_none() => ImageError::Step {
            step,
            why: format!("{why}\n    (hint: debootstrap is not installed; ci/setup.sh installs it with apt-get)"),
        },
        other => other,
    });
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&root);
        return Err(e);
    }
    let trimmed = run_step(
        "trim the base root filesystem",
        Command::new("chroot")
            .arg(&root)
            .args(["/bin/sh", "-c", BASE_TRIM]),
        false,
    );
    if let Err(e) = trimmed {
        let _ = fs::remove_dir_all(&root);
        return Err(e);
    }
    let part = tarball.with_extension("tar.part");
    let tarred = run_step(
        "tar of the base root filesystem",
        Command::new("tar")
            .args(["--numeric-owner", "--xattrs", "-C"])
            .arg(&root)
            .arg("-cf")
            .arg(&part)
            .arg("."),
        false,
    );
    let _ = fs::remove_dir_all(&root);
    tarred?;
    fs::rename(&part, tarball)
        .map_err(|e| step_err("cache the base root filesystem", e.to_string()))
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_sources() {
        let text = "# comment\ndeb-src http://x/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm-updates main\ndeb http://mirror.example/debian bookworm contrib main\n";
        assert_eq!(
            parse_one_line(text),
            Some(AptSource {
                mirror: "http://mirror.example/debian".into(),
                suite: "bookworm".into()
            })
        );
        assert_eq!(
            parse_one_line("deb http://x/debian bookworm contrib\n"),
            None
        );
    }

    #[test]
    fn deb822_sources() {
        let text = "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\nComponents: main\n\n\
Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n\n\
Types: deb\n# a comment\nURIs: http://deb.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /k.gpg\n";
        assert_eq!(
            parse_deb822(text),
            Some(AptSource {
                mirror: "http://deb.example/debian".into(),
                suite: "bookworm".into()
            })
        );
        let security = "Types: deb\nURIs: http://deb.example/debian-security\nSuites: bookworm-security\nComponents: main\n";
        assert_eq!(parse_deb822(security), None);
    }

    #[test]
    fn binary_hashes_are_remembered_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("svc");
        fs::write(&bin, b"one").unwrap();
        let first = file_hash(&bin, dir.path()).unwrap();
        assert_eq!(first, sha256_hex(&[b"one"]));
        assert_eq!(file_hash(&bin, dir.path()).unwrap(), first);
        std::thread::sleep(Duration::from_millis(20));
        fs::write(&bin, b"two!").unwrap();
        assert_eq!(file_hash(&bin, dir.path()).unwrap(), sha256_hex(&[b"two!"]));
    }

    #[test]
    fn a_failed_step_names_itself_the_command_and_its_output() {
        let err = run_step(
            "trim the base root filesystem",
            Command::new("sh").args(["-c", "echo first; echo 'no space left' >&2; exit 7"]),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("image build step `trim the base root filesystem` failed:"),
            "{err}"
        );
        assert!(err.contains("exit status: 7"), "{err}");
        assert!(err.contains("no space left"), "{err}");
        let missing = run_step(
            "debootstrap",
            &mut Command::new("/nonexistent/debootstrap"),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(missing.contains("cannot run"), "{missing}");
    }

    #[test]
    fn hashes_follow_the_recipe() {
        assert_eq!(base_recipe_hash("bookworm"), base_recipe_hash("bookworm"));
        assert_ne!(base_recipe_hash("bookworm"), base_recipe_hash("trixie"));
        assert_eq!(base_recipe_hash("bookworm").len(), 16);
    }

    #[test]
    fn service_images_have_a_user_a_healthcheck_and_labels_for_their_port() {
        let file = service_changes(ServiceKind::Fabric, "gauntlet/base:abc").join("\n");
        assert!(file.contains("org.gauntlet.base=\"gauntlet/base:abc\""));
        assert!(file.contains("USER gauntlet"));
        assert!(file.contains("HEALTHCHECK"));
        assert!(file.contains("/dev/tcp/127.0.0.1/8080"));
        assert!(file.contains(r#"CMD ["--http-addr","0.0.0.0:8080","--data-dir","/data"]"#));
        assert!(BASE_TRIM.contains("useradd --system --uid 10001"));
        // Each bundled kind's image runs its own arguments.
        let actors = service_changes(ServiceKind::Actors, "gauntlet/base:abc").join("\n");
        assert!(
            actors.contains(r#"ENTRYPOINT ["/usr/local/bin/actor-node"]"#),
            "{actors}"
        );
        assert!(
            actors.contains(r#"CMD ["--bind","0.0.0.0","--http-port","8080","--metrics-port","8080","--data-dir","/data"]"#),
            "{actors}"
        );
    }
}
