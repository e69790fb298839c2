//! What every connection and handler shares.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::watch;

use crate::config::Config;
use crate::db::Db;
use crate::hub::Hub;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::redis_link::RedisLink;

pub struct App {
    pub cfg: Config,
    pub db: Db,
    pub redis: Arc<RedisLink>,
    pub hub: Arc<Hub>,
    pub ingest: Ingest,
    pub metrics: Arc<Metrics>,
    /// The last database operation (write or probe) succeeded.
    pub db_up: Arc<AtomicBool>,
    /// Migrations ran.
    pub migrated: AtomicBool,
    /// SIGTERM received: upgrades are refused, `/ready` is 503.
    pub shutting_down: AtomicBool,
    /// Tells connections to stop reading, answer what they read and close 1001.
    pub stop_connections: watch::Receiver<bool>,
}
