//! Records off the machine: every record a node acknowledges also goes to a NATS JetStream
//! stream (`[collect.replicate]`), and the stock caps all nodes sell from live in JetStream's
//! key-value store.
//!
//! With `ack = "replicated"` the writer overlaps the round trip to the cluster with its own
//! disk: it [sends](Replicator::send) the batch to the stream, writes and fsyncs it locally,
//! then [awaits](Replicator::confirm) every acknowledgement together. If they do not all come
//! (or the local write fails), the writer cuts the batch back out of its segments, the node
//! [voids](Void) its references in the stream, and the posts are answered 503. With
//! `ack = "local"` the writer hands each fsynced batch to the [`shipper`], which publishes
//! behind the 303s.

mod link;
mod pool;
pub mod shipper;

pub use link::Link;
pub use pool::Pool;
pub use shipper::Cursor;

use crate::config::{AckPolicy, Form, ReplicateConfig};
use crate::logthrottle::LogThrottle;
use crate::record::{Record, Ref};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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
    #[error("{0} refused references are not voided in the stream yet (kept in collected/{1}.voids)")]
    VoidsPending(usize, String),
}

/// Published on `{stream}.{node}.void`: references a node refused (503) after their publish
/// was sent (the stream did not acknowledge them in time, or the local write failed). The
/// stream may have stored them all the same; `import` leaves every voided reference out. A
/// void the stream does not take before the 503 waits in `collected/{node}.voids` (one `Void`
/// per line), and the node takes no post until the stream has it.
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

/// What the writer sends each batch to.
pub enum Replicator {
    /// `ack = "replicated"`: the batch is acknowledged only once the stream has it.
    Replicated { link: Arc<Link>, rt: Handle, voids: Arc<Voids> },
    /// `ack = "local"`: the batch goes to the shipper.
    Local(shipper::Handover),
}

/// A batch sent to the stream, its acknowledgements not awaited yet.
pub struct InFlight {
    refs: Vec<Ref>,
    acks: Vec<link::Sent>,
    started: Instant,
}

/// References refused after they were sent, that the stream has not taken as voided yet:
/// `collected/{node}.voids`, fsynced, and its copy in memory.
pub struct Voids {
    path: PathBuf,
    node: String,
    pending: Mutex<Vec<Ref>>,
    wake: tokio::sync::Notify,
}

impl Voids {
    pub fn path(collected: &Path, node: &str) -> PathBuf {
        collected.join(format!("{node}.voids"))
    }

    /// Reads what an earlier run left pending (a torn last line is a void that was never
    /// answered: its references were refused all the same, and the sequence keeps above them
    /// through the segments' names and the stream).
    pub fn load(collected: &Path, node: &str) -> std::io::Result<Voids> {
        let path = Self::path(collected, node);
        let pending = match std::fs::read(&path) {
            Ok(bytes) => bytes
                .split(|&b| b == b'\n')
                .filter_map(|line| serde_json::from_slice::<Void>(line).ok())
                .flat_map(|v| v.void)
                .filter(|r| &*r.node == node)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(Voids { path, node: node.to_string(), pending: Mutex::new(pending), wake: tokio::sync::Notify::new() })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<Ref>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The highest pending sequence (0: none).
    pub fn top(&self) -> u64 {
        self.pending().iter().map(|r| r.seq).max().unwrap_or(0)
    }

    fn count(&self) -> usize {
        self.pending().len()
    }

    /// Adds `refs` to the pending ones, and appends them to the file, fsynced. They stay
    /// pending even when the file cannot take them: the node refuses posts until the stream
    /// has them, though a restart would then forget them.
    fn keep(&self, refs: &[Ref]) -> std::io::Result<()> {
        let mut pending = self.pending();
        // Under the lock, so the file is never rewritten by `taken` halfway through.
        let appended = self.append(refs);
        pending.extend_from_slice(refs);
        drop(pending);
        self.wake.notify_one();
        appended
    }

    fn append(&self, refs: &[Ref]) -> std::io::Result<()> {
        use std::io::Write;
        let existed = self.path.exists();
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        f.write_all(&void_line(refs))?;
        f.sync_data()?;
        if !existed {
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
        }
        Ok(())
    }

    /// The stream has taken the first `n` pending references: forgets them, and the file once
    /// none is left.
    fn taken(&self, n: usize) -> std::io::Result<()> {
        let mut pending = self.pending();
        let n = n.min(pending.len());
        pending.drain(..n);
        if pending.is_empty() {
            match std::fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        } else {
            let tmp = self.path.with_extension("voids.tmp");
            std::fs::write(&tmp, void_line(&pending))?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
        }
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// One line of `collected/{node}.voids`: a [`Void`] of `refs`.
fn void_line(refs: &[Ref]) -> Vec<u8> {
    let mut line = serde_json::to_vec(&Void { v: 1, void: refs.to_vec() }).expect("a void serializes");
    line.push(b'\n');
    line
}

/// Asks the stream to be ready every second until it is (a node started before its cluster).
async fn prepare_in_background(link: Arc<Link>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if link.ready().await.is_ok() {
            tracing::info!("replicate: the stream answers now");
            return;
        }
    }
}

/// Publishes the pending voids until the stream has them, for as long as the node runs. While
/// the stream is away it retries with a growing pause (the node takes no post meanwhile, so the
/// pause stays short) and says so once a minute, not at every try.
async fn send_voids(link: Arc<Link>, voids: Arc<Voids>) {
    const FIRST_PAUSE: Duration = Duration::from_millis(250);
    const LONGEST_PAUSE: Duration = Duration::from_secs(2);
    const SAY_AGAIN_AFTER: Duration = Duration::from_secs(60);
    let mut pause = FIRST_PAUSE;
    let mut said = LogThrottle::new(SAY_AGAIN_AFTER);
    loop {
        let refs = voids.pending().clone();
        if refs.is_empty() {
            voids.wake.notified().await;
            continue;
        }
        match link.void(&refs).await {
            Ok(()) => {
                tracing::warn!("replicate: the stream took the void of {} refused references", refs.len());
                if let Err(e) = voids.taken(refs.len()) {
                    tracing::error!("replicate: {}: {e}", voids.path.display());
                }
                pause = FIRST_PAUSE;
                said.recovered();
            }
            Err(e) => {
                if said.failed(Instant::now()).is_some() {
                    tracing::warn!(
                        "replicate: cannot void {} refused references yet: {e} (retrying every {} s at most)",
                        refs.len(),
                        LONGEST_PAUSE.as_secs()
                    );
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
        }
    }
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
    let voids = Voids::load(collected, node)
        .map_err(|e| ReplicateError::Stream(format!("{}: {e}", Voids::path(collected, node).display())))?;
    // A reference refused and voided is never handed out again, before or after the stream
    // has the void.
    let next_seq = next_seq.max(voids.top() + 1);
    if voids.count() > 0 {
        tracing::warn!("replicate: {} refused references wait to be voided in the stream", voids.count());
    }
    let voids = Arc::new(voids);
    tokio::spawn(send_voids(link.clone(), voids.clone()));
    // The first connection is in flight: give it the timeout to come up.
    let deadline = Instant::now() + link.timeout;
    while !link.connected() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let next_seq = match link.ready().await {
        Ok(ready) => next_seq.max(ready.floor + 1),
        Err(e) => {
            // Made now in the background, not by the first buyer's post: a stream made by
            // several nodes' first posts at once timed out for some of them (503s).
            tokio::spawn(prepare_in_background(link.clone()));
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
        AckPolicy::Replicated => (Replicator::Replicated { link: link.clone(), rt: Handle::current(), voids }, None),
        AckPolicy::Local => {
            let (shipper, handover) = shipper::Shipper::new(link.clone(), collected, forms, next_seq);
            (Replicator::Local(handover), Some(shipper))
        }
    };
    Ok(Started { link, replicator, shipper, next_seq })
}

impl Replicator {
    /// Whether the writer sends each batch to the stream itself (`ack = "replicated"`).
    pub fn sends_batches(&self) -> bool {
        matches!(self, Replicator::Replicated { .. })
    }

    /// The lowest sequence the writer may hand out next (0: no constraint), or why the writer
    /// must refuse the batch without writing it. Blocking: called from the writer thread.
    pub fn floor(&self) -> Result<u64, ReplicateError> {
        match self {
            Replicator::Replicated { link, rt, voids } => {
                let pending = voids.count();
                if pending > 0 {
                    return Err(ReplicateError::VoidsPending(pending, voids.node.clone()));
                }
                rt.block_on(link.ready()).map(|r| r.floor + 1)
            }
            Replicator::Local(_) => Ok(0),
        }
    }

    /// Sends a decided batch to the stream before it is written locally (`ack = "replicated"`):
    /// `payloads` are the records' JSON, the same bytes as their segment lines. An error means
    /// the batch must be refused (what was sent of it is voided already). Blocking: called from
    /// the writer thread.
    pub fn send(
        &self,
        records: &[Record],
        payloads: impl Iterator<Item = Bytes>,
    ) -> Result<Option<InFlight>, ReplicateError> {
        let Replicator::Replicated { link, rt, .. } = self else { return Ok(None) };
        let started = Instant::now();
        let refs: Vec<Ref> = records.iter().map(|r| r.reference.clone()).collect();
        let messages = refs.iter().map(|r| r.to_string()).zip(payloads);
        match rt.block_on(link.send(messages, true)) {
            Ok(acks) => Ok(Some(InFlight { refs, acks, started })),
            Err((sent, e)) => {
                self.failed();
                if sent > 0 {
                    self.void(refs);
                }
                Err(e)
            }
        }
    }

    /// Called once the batch is fsynced locally (`inflight` from [`Replicator::send`]), before
    /// any of it is answered, and, in local mode, with no `inflight`: an error means the batch
    /// must be cut back out and refused (its references are voided in the stream, or kept in
    /// `collected/{node}.voids` until they are). Blocking: called from the writer thread.
    pub fn confirm(&self, records: &[Record], inflight: Option<InFlight>) -> Result<(), ReplicateError> {
        match self {
            Replicator::Replicated { link, rt, .. } => {
                let Some(InFlight { refs, acks, started }) = inflight else { return Ok(()) };
                match rt.block_on(link.acks(acks)) {
                    Ok(()) => {
                        metrics::counter!("cofferdam_replicate_records_total").increment(refs.len() as u64);
                        metrics::histogram!("cofferdam_replicate_publish_seconds")
                            .record(started.elapsed().as_secs_f64());
                        metrics::gauge!("cofferdam_replicate_healthy").set(1.0);
                        Ok(())
                    }
                    Err(e) => {
                        self.failed();
                        // Some of these may be in the stream although the writer now refuses
                        // them: say so in the stream, for the importer.
                        self.void(refs);
                        Err(e)
                    }
                }
            }
            Replicator::Local(handover) => {
                let batch: Vec<Record> = records.to_vec();
                handover.committed(&batch);
                Ok(())
            }
        }
    }

    /// A batch sent but not written locally (the disk failed): its references are voided.
    pub fn abandon(&self, inflight: Option<InFlight>) {
        if let Some(f) = inflight {
            drop(f.acks);
            self.void(f.refs);
        }
    }

    fn failed(&self) {
        metrics::counter!("cofferdam_replicate_errors_total").increment(1);
        metrics::gauge!("cofferdam_replicate_healthy").set(0.0);
    }

    /// Voids `refs` in the stream before the batch is answered; if the stream does not take
    /// the void in time, keeps it in `collected/{node}.voids` (fsynced), and the node takes no
    /// post until the stream has it.
    fn void(&self, refs: Vec<Ref>) {
        let Replicator::Replicated { link, rt, voids } = self else { return };
        match rt.block_on(link.void(&refs)) {
            Ok(()) => tracing::warn!("replicate: voided {} refused references in the stream", refs.len()),
            Err(e) => {
                tracing::warn!(
                    "replicate: cannot void {} refused references yet ({e}): keeping them in {}, taking no post until the stream has them",
                    refs.len(),
                    voids.path.display()
                );
                if let Err(e) = voids.keep(&refs) {
                    // Still pending in memory: the node keeps refusing posts until they are in.
                    tracing::error!("replicate: {}: {e}", voids.path.display());
                }
            }
        }
    }
}
