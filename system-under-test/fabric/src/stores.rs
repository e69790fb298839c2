//! The node's three stores together: streams (with consumer groups),
//! queues and KV, recovered together and shut down together.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::durable::StoreOptions;
use crate::kv_store::KvStore;
use crate::metrics::Metrics;
use crate::queue_store::QueueStore;
use crate::resource::StoreError;
use crate::stream_store::StreamStore;

/// What recovery found, for the log.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    pub streams: usize,
    pub queues: usize,
    pub kv_stores: usize,
    pub records: usize,
    pub truncated_bytes: u64,
}

/// Every store of a node.
pub struct Stores {
    pub data_dir: PathBuf,
    pub streams: Arc<StreamStore>,
    pub queues: Arc<QueueStore>,
    pub kv: Arc<KvStore>,
    /// Serialises snapshots.
    pub(crate) snapshot_lock: tokio::sync::Mutex<()>,
}

impl Stores {
    /// Recovers everything under `data_dir`. Must run inside a Tokio runtime.
    pub async fn open(
        data_dir: &Path,
        opts: StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<Self>, Recovery), StoreError> {
        let (streams, s) = StreamStore::open(data_dir, opts.clone(), Arc::clone(&metrics)).await?;
        let (queues, q) = QueueStore::open(data_dir, opts.clone(), Arc::clone(&metrics)).await?;
        let (kv, k) = KvStore::open(data_dir, opts, metrics).await?;
        let rec = Recovery {
            streams: s.streams,
            queues: q.queues,
            kv_stores: k.stores,
            records: s.records + q.records,
            truncated_bytes: s.truncated_bytes + q.truncated_bytes + k.truncated_bytes,
        };
        Ok((
            Arc::new(Stores {
                data_dir: data_dir.to_path_buf(),
                streams,
                queues,
                kv,
                snapshot_lock: tokio::sync::Mutex::new(()),
            }),
            rec,
        ))
    }

    /// Shutdown begins: long polls are answered now.
    pub async fn closing(&self) {
        self.queues.closing().await;
    }

    /// Finishes queued writes and fsyncs everything.
    pub async fn shutdown(&self) {
        tokio::join!(
            self.streams.shutdown(),
            self.queues.shutdown(),
            self.kv.shutdown()
        );
    }
}
