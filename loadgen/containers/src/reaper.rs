//! Hygiene: every container, network and volume a run creates carries the
//! run id and its owner (the `loadgen` process: pid, start time, boot id).
//! The reaper removes what belongs to runs whose owner is gone (SIGKILL,
//! a crash); it never touches a live run. `loadgen clean` removes
//! everything Gauntlet created, live or not.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptions, ListNetworksOptions, ListVolumesOptions, RemoveContainerOptions,
    RemoveVolumeOptions,
};

use crate::docker::{DockerError, is_not_found};
use crate::{LABEL_MANAGED, LABEL_OWNER_BOOT, LABEL_OWNER_PID, LABEL_OWNER_START, LABEL_RUN};

/// Who owns a run: a process, identified beyond its pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    /// Start time of the process in clock ticks after boot (`/proc/PID/stat` field 22).
    pub start: u64,
    pub boot: String,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields
    // after the last `)` start at field 3.
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

impl Owner {
    /// This process.
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner {
            pid,
            start: start_time(pid).unwrap_or(0),
            boot: boot_id(),
        }
    }

    /// The labels that record this owner and the run.
    pub fn labels(&self, run_id: &str) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_RUN.to_owned(), run_id.to_owned()),
            (LABEL_OWNER_PID.to_owned(), self.pid.to_string()),
            (LABEL_OWNER_START.to_owned(), self.start.to_string()),
            (LABEL_OWNER_BOOT.to_owned(), self.boot.clone()),
        ])
    }

    fn from_labels(labels: &HashMap<String, String>) -> Option<Owner> {
        Some(Owner {
            pid: labels.get(LABEL_OWNER_PID)?.parse().ok()?,
            start: labels.get(LABEL_OWNER_START)?.parse().ok()?,
            boot: labels.get(LABEL_OWNER_BOOT)?.clone(),
        })
    }

    /// The same process still runs (same boot, same pid, same start time).
    pub fn is_alive(&self) -> bool {
        self.boot == boot_id() && start_time(self.pid) == Some(self.start)
    }
}

/// What a reap or clean removed.
#[derive(Debug, Default, Clone)]
pub struct Removed {
    pub runs: BTreeSet<String>,
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    /// Objects that could not be removed, with the reason.
    pub errors: Vec<String>,
}

impl Removed {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.networks.is_empty() && self.volumes.is_empty()
    }

    /// `2 containers, 1 network, 2 volumes of run(s) a, b`.
    pub fn summary(&self) -> String {
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        format!(
            "{}, {}, {} of {} ({})",
            plural(self.containers.len(), "container"),
            plural(self.networks.len(), "network"),
            plural(self.volumes.len(), "volume"),
            plural(self.runs.len(), "run"),
            self.runs.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    }
}

fn label_filter(label: String) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![label])])
}

/// Everything Gauntlet created, by run id: (owner, containers, networks, volumes).
#[derive(Default)]
struct Found {
    owner: Option<Owner>,
    containers: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
}

async fn find(docker: &Docker, label: String) -> Result<BTreeMap<String, Found>, DockerError> {
    let mut runs: BTreeMap<String, Found> = BTreeMap::new();
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(label_filter(label.clone())),
            ..Default::default()
        }))
        .await
        .map_err(DockerError::api("listing containers"))?;
    for c in containers {
        let labels = c.labels.unwrap_or_default();
        let run = labels.get(LABEL_RUN).cloned().unwrap_or_default();
        let entry = runs.entry(run).or_default();
        entry.owner = entry.owner.take().or_else(|| Owner::from_labels(&labels));
        let name = c
            .names
            .and_then(|n| n.first().map(|n| n.trim_start_matches('/').to_owned()))
            .or(c.id)
            .unwrap_or_default();
        entry.containers.push(name);
    }
    let networks = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(label_filter(label.clone())),
        }))
        .await
        .map_err(DockerError::api("listing networks"))?;
    for n in networks {
        let labels = n.labels.unwrap_or_default();
        let run = labels.get(LABEL_RUN).cloned().unwrap_or_default();
        let entry = runs.entry(run).or_default();
        entry.owner = entry.owner.take().or_else(|| Owner::from_labels(&labels));
        entry.networks.push(n.name.unwrap_or_default());
    }
    let volumes = docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(label_filter(label)),
        }))
        .await
        .map_err(DockerError::api("listing volumes"))?;
    for v in volumes.volumes.unwrap_or_default() {
        let run = v.labels.get(LABEL_RUN).cloned().unwrap_or_default();
        let entry = runs.entry(run).or_default();
        entry.owner = entry.owner.take().or_else(|| Owner::from_labels(&v.labels));
        entry.volumes.push(v.name);
    }
    Ok(runs)
}

async fn remove(docker: &Docker, run: &str, found: Found, removed: &mut Removed) {
    removed.runs.insert(run.to_owned());
    for c in found.containers {
        match docker
            .remove_container(
                &c,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => removed.containers.push(c),
            Err(e) if is_not_found(&e) => {}
            Err(e) => removed.errors.push(format!("container {c}: {e}")),
        }
    }
    for v in found.volumes {
        match docker
            .remove_volume(&v, Some(RemoveVolumeOptions { force: true }))
            .await
        {
            Ok(()) => removed.volumes.push(v),
            Err(e) if is_not_found(&e) => {}
            Err(e) => removed.errors.push(format!("volume {v}: {e}")),
        }
    }
    for n in found.networks {
        match docker.remove_network(&n).await {
            Ok(()) => removed.networks.push(n),
            Err(e) if is_not_found(&e) => {}
            Err(e) => removed.errors.push(format!("network {n}: {e}")),
        }
    }
}

/// Removes what runs whose `loadgen` is gone left behind. Live runs
/// (another `loadgen` running now, or this one) are left alone.
pub async fn reap_dead_runs(docker: &Docker) -> Result<Removed, DockerError> {
    let mut removed = Removed::default();
    for (run, found) in find(docker, LABEL_MANAGED.to_owned()).await? {
        let alive = found.owner.as_ref().is_some_and(Owner::is_alive);
        if !alive {
            remove(docker, &run, found, &mut removed).await;
        }
    }
    Ok(removed)
}

/// Removes everything of one run (its owner is shutting it down).
pub async fn remove_run(docker: &Docker, run_id: &str) -> Result<Removed, DockerError> {
    let mut removed = Removed::default();
    for (run, found) in find(docker, format!("{LABEL_RUN}={run_id}")).await? {
        remove(docker, &run, found, &mut removed).await;
    }
    Ok(removed)
}

/// `loadgen clean`: removes every container, network and volume Gauntlet
/// created, whatever run it belongs to.
pub async fn clean(docker: &Docker) -> Result<Removed, DockerError> {
    let mut removed = Removed::default();
    for (run, found) in find(docker, LABEL_MANAGED.to_owned()).await? {
        remove(docker, &run, found, &mut removed).await;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = Owner::current();
        assert!(me.start > 0);
        assert!(me.is_alive());
        let reused_pid = Owner {
            start: me.start + 1,
            ..me.clone()
        };
        assert!(!reused_pid.is_alive());
        let other_boot = Owner {
            boot: "another-boot".into(),
            ..me.clone()
        };
        assert!(!other_boot.is_alive());
    }

    #[test]
    fn owner_labels_round_trip() {
        let me = Owner::current();
        let labels = me.labels("run-1");
        assert_eq!(labels[LABEL_RUN], "run-1");
        assert_eq!(Owner::from_labels(&labels), Some(me));
    }
}
