//! The control surface of a running stack: what fault injection may do to a
//! service, written once for both runtimes.
//!
//! The process stack (child processes on loopback) and the container stack
//! (containers on a private Docker network) both implement [`Stack`]; the
//! fault scheduler in `chaos/` only ever talks to this trait, so a fault is
//! written once and works in both modes. Methods return boxed futures so the
//! trait stays object-safe (`Arc<dyn Stack>`).
//!
//! This crate holds types and the trait only: no process, container or
//! network code lives here.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A boxed, sendable future: the return type of [`Stack`]'s actions.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A POSIX signal a fault may send to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Signal {
    Hup,
    Int,
    Quit,
    Kill,
    Usr1,
    Usr2,
    Term,
    Stop,
    Cont,
}

impl Signal {
    pub const ALL: [Signal; 9] = [
        Signal::Hup,
        Signal::Int,
        Signal::Quit,
        Signal::Kill,
        Signal::Usr1,
        Signal::Usr2,
        Signal::Term,
        Signal::Stop,
        Signal::Cont,
    ];

    /// The name without `SIG`, as `kill -l` prints it (`KILL`).
    pub fn name(self) -> &'static str {
        match self {
            Signal::Hup => "HUP",
            Signal::Int => "INT",
            Signal::Quit => "QUIT",
            Signal::Kill => "KILL",
            Signal::Usr1 => "USR1",
            Signal::Usr2 => "USR2",
            Signal::Term => "TERM",
            Signal::Stop => "STOP",
            Signal::Cont => "CONT",
        }
    }

    /// The signal number on Linux.
    pub fn number(self) -> i32 {
        match self {
            Signal::Hup => 1,
            Signal::Int => 2,
            Signal::Quit => 3,
            Signal::Kill => 9,
            Signal::Usr1 => 10,
            Signal::Usr2 => 12,
            Signal::Term => 15,
            Signal::Stop => 19,
            Signal::Cont => 18,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIG{}", self.name())
    }
}

impl FromStr for Signal {
    type Err = String;

    /// `KILL`, `SIGKILL`, `kill` or `9`.
    fn from_str(s: &str) -> Result<Self, String> {
        let upper = s.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        Signal::ALL
            .into_iter()
            .find(|sig| sig.name() == bare || sig.number().to_string() == bare)
            .ok_or_else(|| {
                format!(
                    "`{s}` is not a signal (hint: one of {})",
                    Signal::ALL.map(|s| s.name()).join(", ")
                )
            })
    }
}

impl TryFrom<String> for Signal {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Signal> for String {
    fn from(s: Signal) -> String {
        s.name().to_owned()
    }
}

/// Where the harness reaches a service now: a loopback address in both
/// runtimes (a container's port is mapped to loopback). It changes when a
/// container restarts, so long-lived users hold a [`watch::Receiver`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `http://host:port`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// What a control action did not do, and why. A fault that gets one of
/// these fails the run (exit 3); it is never skipped silently.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no service `{0}` in this stack")]
    UnknownService(String),
    #[error("`{action}` is not possible on service `{service}` in {runtime} mode: {why}")]
    Unsupported {
        service: String,
        action: &'static str,
        runtime: &'static str,
        why: String,
    },
    #[error("`{action}` on service `{service}` failed: {message}")]
    Failed {
        service: String,
        action: &'static str,
        message: String,
    },
}

/// The state of a service as its stack sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    Running,
    Paused,
    /// Stopped or killed and not started again (yet).
    Stopped,
}

/// How a service ended when the whole stack was shut down.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StopReport {
    pub service: String,
    /// Exited by itself after SIGTERM (or `docker stop`) within its stop timeout.
    pub graceful: bool,
    pub status: String,
    pub took: Duration,
}

/// A running stack's control surface. Every action names a service by its
/// scenario name, waits until the action took effect (a stop until the
/// process or container is gone, a start or restart until the service is
/// ready again), and reports failure as a [`ControlError`].
pub trait Stack: Send + Sync {
    /// `process` or `containers`.
    fn runtime(&self) -> &'static str;

    /// The services' scenario names, in boot order.
    fn services(&self) -> Vec<String>;

    /// Where the harness reaches the service now.
    fn endpoint(&self, service: &str) -> Result<Endpoint, ControlError>;

    /// The service's endpoint as it changes (a container restart maps a new
    /// host port).
    fn watch_endpoint(&self, service: &str) -> Result<watch::Receiver<Endpoint>, ControlError>;

    fn state(&self, service: &str) -> Result<ServiceState, ControlError>;

    /// The host process id of the service's main process, when the harness
    /// can see it (CPU/RSS collectors).
    fn pid(&self, service: &str) -> Option<u32>;

    /// The service's data directory on this host (process mode: its
    /// directory under the run directory, or with `disk:` that directory
    /// seen through its holder, `/proc/<holder>/root/…`; container mode:
    /// the host side of its data volume), for `disk_full` faults.
    fn data_dir(&self, service: &str) -> Option<PathBuf>;

    /// Graceful stop: SIGTERM (or `docker stop`), SIGKILL after `timeout`.
    fn stop<'a>(
        &'a self,
        service: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), ControlError>>;

    /// Sends a signal. `KILL` and `TERM` leave the service stopped until
    /// [`Stack::start`]; `STOP`/`CONT` are pause and unpause.
    fn kill<'a>(
        &'a self,
        service: &'a str,
        signal: Signal,
    ) -> BoxFuture<'a, Result<(), ControlError>>;

    /// Freezes every process of the service (SIGSTOP / `docker pause`).
    fn pause<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>>;

    fn unpause<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>>;

    /// Starts a stopped service again with the same configuration and data
    /// (process mode: the same port and data directory) and waits until it
    /// is ready.
    fn start<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>>;

    /// Stops the service (gracefully, bounded by its stop timeout) and
    /// starts it again; ready when it returns.
    fn restart<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>>;

    /// Cuts the service off the run's network (container mode: `docker
    /// network disconnect`). Process mode answers `Unsupported`: partitions
    /// there go through the fault proxy.
    fn disconnect<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>>;

    fn reconnect<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>>;

    /// Where the service's output goes (process mode: its log file in the
    /// run directory; container mode: the file the container's log is
    /// copied to at shutdown).
    fn log_path(&self, service: &str) -> Option<PathBuf>;

    /// Stops every service, last started first (graceful, bounded by each
    /// service's stop timeout), and releases everything the stack holds
    /// (containers, networks, volumes). Called once at the end of a run;
    /// a second call finds nothing left and returns no reports.
    fn shutdown(&self) -> BoxFuture<'_, Vec<StopReport>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_in_every_spelling() {
        for sig in Signal::ALL {
            assert_eq!(sig.name().parse::<Signal>().unwrap(), sig);
            assert_eq!(format!("SIG{}", sig.name()).parse::<Signal>().unwrap(), sig);
            assert_eq!(sig.name().to_lowercase().parse::<Signal>().unwrap(), sig);
            assert_eq!(sig.number().to_string().parse::<Signal>().unwrap(), sig);
        }
        let err = "SIGFOO".parse::<Signal>().unwrap_err();
        assert!(err.contains("KILL"), "{err}");
    }

    #[test]
    fn endpoint_urls() {
        let e = Endpoint {
            host: "127.0.0.1".into(),
            port: 8080,
        };
        assert_eq!(e.base_url(), "http://127.0.0.1:8080");
        assert_eq!(e.addr(), "127.0.0.1:8080");
    }

    #[test]
    fn the_trait_is_object_safe() {
        fn takes(_: Option<std::sync::Arc<dyn Stack>>) {}
        takes(None);
    }
}
