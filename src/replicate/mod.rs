//! Records off the machine: every record a node acknowledges also goes to a NATS JetStream
//! stream (`[collect.replicate]`), and the stock caps all nodes sell from live in JetStream's
//! key-value store.
//!
//! The writer calls a [`Replicator`] after its local fsync and before answering: with
//! `ack = "replicated"` it publishes the batch and waits for the stream's acknowledgement (on
//! failure the writer cuts the batch back out of its segments and answers 503); with
//! `ack = "local"` it hands the batch to the [`shipper`], which publishes behind the 303s.

mod link;
mod pool;
pub mod shipper;

pub use link::Link;
pub use pool::Pool;
pub use shipper::Cursor;

use crate::config::{AckPolicy, Form, ReplicateConfig};
use crate::record::{Record, Ref};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    #[error("not connected to any NATS server")]
    Disconnected,
    #[error("JetStream did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("JetStream: {0}")]
    Stream(String),
    #[error(
        "stream {stream} keeps {has} copies but collect.replicate.replicas asks for {want}: \
         raise the stream's replicas (nats stream edit {stream} --replicas {want}) or lower the setting"
    )]
    TooFewReplicas { stream: String, has: usize, want: usize },
    #[error("no stock bucket (no capped SKU in the catalog)")]
    NoStockBucket,
}

/// Published on `{stream}.{node}.void`: references a node refused (503) after their publish
/// was sent, because the stream did not acknowledge them in time. The stream may have stored
/// them all the same; `import` leaves every voided reference out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Void {
    pub v: u32,
    pub void: Vec<Ref>,
}

/// Whether a stream message's subject is a node's [`Void`] rather than a record.
pub fn is_void_subject(subject: &str) -> bool {
    subject.ends_with(".void")
}

/// What the writer calls once a batch is on the local disk.
pub enum Replicator {
    /// `ack = "replicated"`: the batch is acknowledged only once the stream has it.
    Replicated { link: Arc<Link>, rt: Handle },
    /// `ack = "local"`: the batch goes to the shipper.
    Local(shipper::Handover),
}

/// The running replication of one node: the writer's side, and the shipper to run (local mode).
pub struct Started {
    pub link: Arc<Link>,
    pub replicator: Replicator,
    pub shipper: Option<shipper::Shipper>,
    /// The next sequence to hand out, above every reference of this node already in the stream.
    pub next_seq: u64,
}

/// Connects (in the background), and, where the stream answers in time, makes sure it exists
/// and that no reference already in it is handed out again.
pub async fn start(
    config: &ReplicateConfig,
    node: &str,
    caps: Vec<(String, u64)>,
    collected: &Path,
    forms: &BTreeMap<String, Form>,
    next_seq: u64,
) -> Result<Started, ReplicateError> {
    let link = Arc::new(Link::connect(config, node, caps).await?);
    // The first connection is in flight: give it the timeout to come up.
    let deadline = Instant::now() + link.timeout;
    while !link.connected() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let next_seq = match link.ready().await {
        Ok(ready) => next_seq.max(ready.floor + 1),
        Err(e) => {
            match config.ack {
                // The writer asks again before it hands out a reference.
                AckPolicy::Replicated => {
                    tracing::warn!("replicate: {e}: posts are refused (503) until the stream answers")
                }
                AckPolicy::Local => tracing::warn!(
                    "replicate: {e}: taking posts, the shipper sends them once the stream answers \
                     (if this node's collected/ was lost, give it a new server.node)"
                ),
            }
            next_seq
        }
    };
    tracing::info!(
        "replicate: stream {} ({} copies) on {}, ack = {:?}",
        config.stream,
        config.replicas,
        config.servers.join(", "),
        config.ack
    );
    let (replicator, shipper) = match config.ack {
        AckPolicy::Replicated => {
            tokio::spawn(link::send_voids(link.clone()));
            (Replicator::Replicated { link: link.clone(), rt: Handle::current() }, None)
        }
        AckPolicy::Local => {
            let (shipper, handover) = shipper::Shipper::new(link.clone(), collected, forms, next_seq);
            (Replicator::Local(handover), Some(shipper))
        }
    };
    Ok(Started { link, replicator, shipper, next_seq })
}

impl Replicator {
    /// The lowest sequence the writer may hand out next (0: no constraint), or why the writer
    /// must refuse the batch without writing it. Blocking: called from the writer thread.
    pub fn floor(&self) -> Result<u64, ReplicateError> {
        match self {
            Replicator::Replicated { link, rt } => rt.block_on(link.ready()).map(|r| r.floor + 1),
            Replicator::Local(_) => Ok(0),
        }
    }

    /// Called with a batch that is fsynced locally, before any of it is answered. An error
    /// means the batch must be cut back out and refused. Blocking: called from the writer thread.
    pub fn commit(&self, records: &[Record]) -> Result<(), ReplicateError> {
        match self {
            Replicator::Replicated { link, rt } => {
                let started = Instant::now();
                let (acked, error) = rt.block_on(link.publish(records));
                match error {
                    None => {
                        metrics::counter!("cofferdam_replicate_records_total").increment(acked as u64);
                        metrics::histogram!("cofferdam_replicate_publish_seconds")
                            .record(started.elapsed().as_secs_f64());
                        metrics::gauge!("cofferdam_replicate_healthy").set(1.0);
                        Ok(())
                    }
                    Some(e) => {
                        metrics::counter!("cofferdam_replicate_errors_total").increment(1);
                        metrics::gauge!("cofferdam_replicate_healthy").set(0.0);
                        // Some of these may be in the stream although the writer now refuses
                        // them: say so in the stream, for the importer.
                        if !matches!(e, ReplicateError::Disconnected) {
                            link.void(records.iter().map(|r| r.reference.clone()));
                        }
                        Err(e)
                    }
                }
            }
            Replicator::Local(handover) => {
                handover.committed(records);
                Ok(())
            }
        }
    }
}
