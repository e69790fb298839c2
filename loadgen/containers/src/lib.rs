//! Gauntlet's container runtime.
//!
//! - [`images`]: the images every container runs, built on this machine
//!   (there is no registry): a Debian base made with `debootstrap` and
//!   `docker import`, then one image per bundled service, all tagged by
//!   content hash.
//! - [`stack`]: the container stack, one private network per run, which
//!   implements [`gauntlet_control::Stack`] like the process stack does.
//! - [`reaper`]: labels on everything a run creates, the reaper of runs
//!   whose `loadgen` died, and `loadgen clean`.
//!
//! What a service kind is (program, arguments, port, probe) comes from
//! `gauntlet-stack`'s kind table, shared with the process stack.
//!
//! The Docker engine is reached with bollard (API version negotiated, so
//! older engines such as 20.10 work); images are built with the `docker`
//! command line (`docker import`, `docker cp`, `docker commit`).

pub mod docker;
pub mod images;
pub mod reaper;
pub mod stack;

/// On every container, network and volume Gauntlet creates.
pub const LABEL_MANAGED: &str = "org.gauntlet.managed";
/// The run that created it.
pub const LABEL_RUN: &str = "org.gauntlet.run";
/// The `loadgen` process that owns the run: pid, its start time (clock
/// ticks since boot, from `/proc/PID/stat`) and the boot id, so a reused
/// pid or a reboot never passes for the owner.
pub const LABEL_OWNER_PID: &str = "org.gauntlet.owner.pid";
pub const LABEL_OWNER_START: &str = "org.gauntlet.owner.start";
pub const LABEL_OWNER_BOOT: &str = "org.gauntlet.owner.boot";
/// The scenario's service name (containers and their volumes).
pub const LABEL_SERVICE: &str = "org.gauntlet.service";
