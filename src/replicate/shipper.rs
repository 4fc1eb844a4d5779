//! `ack = "local"`: the node's own log is the outbox. The writer hands every committed batch to
//! the shipper, which publishes it behind the 303s; whatever it could not send (the cluster was
//! away, the hand-over queue was full, the node restarted) it reads back from the segments on
//! disk, from the position saved in `collected/{node}.shipped`.

use super::link::Link;
use super::ReplicateError;
use crate::config::{Form, StoreFormat};
use crate::record::{self, Record};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Records read back from disk per round of a catch-up, and published per pipelined batch.
const SCAN_LIMIT: usize = 20_000;
const PUBLISH_BATCH: usize = 1_000;
/// Batches the writer may hand over before the shipper falls back to reading the disk.
const QUEUE: usize = 256;
/// How often a moving position is saved to `collected/{node}.shipped`.
const SAVE_EVERY: Duration = Duration::from_millis(200);

/// `collected/{node}.shipped`: the highest sequence of this node that the stream has, with
/// every record below it. Losing a recent update only makes the shipper send a few records
/// again, which the stream folds by message ID, so it is written without an fsync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    pub v: u32,
    pub stream: String,
    pub node: String,
    pub shipped: u64,
}

impl Cursor {
    pub fn path(collected: &Path, node: &str) -> PathBuf {
        collected.join(format!("{node}.shipped"))
    }

    pub fn load(collected: &Path, node: &str) -> Option<Cursor> {
        let bytes = std::fs::read(Self::path(collected, node)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn save(&self, collected: &Path) -> std::io::Result<()> {
        let path = Self::path(collected, &self.node);
        let tmp = path.with_extension("shipped.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).expect("a cursor serializes"))?;
        std::fs::rename(tmp, path)
    }
}

/// The writer's side: hands over committed batches, never blocking.
pub struct Handover {
    tx: mpsc::Sender<Vec<Record>>,
    committed: watch::Sender<u64>,
    overflow: Arc<AtomicBool>,
    /// The shipper's position, so that the lag shows the moment records wait.
    shipped: Arc<AtomicU64>,
}

impl Handover {
    pub fn committed(&self, records: &[Record]) {
        let top = records.iter().map(|r| r.reference.seq).max().unwrap_or(0);
        // Flag the overflow before the watermark moves, so the shipper never ships a later
        // batch from the queue ahead of one it must read back from disk.
        if self.tx.try_send(records.to_vec()).is_err() {
            self.overflow.store(true, Ordering::SeqCst);
        }
        self.committed.send_modify(|c| *c = (*c).max(top));
        report_lag(*self.committed.borrow(), self.shipped.load(Ordering::SeqCst));
    }
}

pub struct Shipper {
    link: Arc<Link>,
    collected: PathBuf,
    /// Form → the store format its records are read back from.
    primary: BTreeMap<String, StoreFormat>,
    cursor: Cursor,
    saved_at: Instant,
    /// The cursor moved since it was last saved.
    unsaved: bool,
    rx: mpsc::Receiver<Vec<Record>>,
    committed: watch::Receiver<u64>,
    overflow: Arc<AtomicBool>,
    shipped: Arc<AtomicU64>,
}

impl Shipper {
    pub fn new(
        link: Arc<Link>,
        collected: &Path,
        forms: &BTreeMap<String, Form>,
        next_seq: u64,
    ) -> (Shipper, Handover) {
        let (tx, rx) = mpsc::channel(QUEUE);
        // Everything on disk below next_seq is committed.
        let (committed_tx, committed) = watch::channel(next_seq.saturating_sub(1));
        let overflow = Arc::new(AtomicBool::new(false));
        let stream = link.config.stream.clone();
        let node = link.node.clone();
        let cursor = Cursor::load(collected, &node)
            .filter(|c| c.stream == stream && c.node == node && c.v == 1)
            .unwrap_or(Cursor { v: 1, stream, node, shipped: 0 });
        let shipped = Arc::new(AtomicU64::new(cursor.shipped));
        let primary = forms.iter().map(|(n, f)| (n.clone(), f.primary_store())).collect();
        let shipper = Shipper {
            link,
            collected: collected.to_path_buf(),
            primary,
            cursor,
            saved_at: Instant::now(),
            unsaved: false,
            rx,
            committed,
            overflow: overflow.clone(),
            shipped: shipped.clone(),
        };
        (shipper, Handover { tx, committed: committed_tx, overflow, shipped })
    }

    /// Runs until the writer is gone (shutdown), then sends what is left, bounded in time.
    pub async fn run(mut self) {
        let mut behind = true;
        let mut backoff = Duration::from_millis(100);
        loop {
            self.report_lag();
            if behind || self.overflow.swap(false, Ordering::SeqCst) {
                match self.catch_up().await {
                    Ok(()) => {
                        behind = false;
                        backoff = Duration::from_millis(100);
                    }
                    Err(e) => {
                        tracing::warn!("shipper: {e}; retrying in {} ms", backoff.as_millis());
                        metrics::counter!("cofferdam_replicate_errors_total").increment(1);
                        // Whatever the writer hands over meanwhile is read back from disk.
                        let sleep = tokio::time::sleep(backoff);
                        tokio::pin!(sleep);
                        loop {
                            tokio::select! {
                                _ = &mut sleep => break,
                                got = self.rx.recv() => if got.is_none() { return self.finish().await },
                            }
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                }
            }
            let Some(batch) = self.next_batch().await else { return self.finish().await };
            if self.overflow.load(Ordering::SeqCst) {
                // An earlier batch was not handed over: it must go first, from disk.
                behind = true;
                continue;
            }
            let todo: Vec<Record> = batch.into_iter().filter(|r| r.reference.seq > self.cursor.shipped).collect();
            if let Err(e) = self.ship(&todo).await {
                tracing::warn!("shipper: {e}");
                behind = true;
            }
        }
    }

    /// The writer's next batch. A position not yet saved is saved once the writer pauses, so
    /// that `stats` on a quiet node shows it caught up, not where it was a batch ago.
    async fn next_batch(&mut self) -> Option<Vec<Record>> {
        while self.unsaved {
            let due = tokio::time::Instant::from_std(self.saved_at + SAVE_EVERY);
            tokio::select! {
                got = self.rx.recv() => return got,
                _ = tokio::time::sleep_until(due) => self.save(),
            }
        }
        self.rx.recv().await
    }

    fn save(&mut self) {
        self.saved_at = Instant::now();
        self.unsaved = false;
        if let Err(e) = self.cursor.save(&self.collected) {
            tracing::warn!("shipper: cannot save {}: {e}", Cursor::path(&self.collected, &self.cursor.node).display());
        }
    }

    async fn finish(mut self) {
        let deadline = self.link.timeout * 2;
        match tokio::time::timeout(deadline, self.catch_up()).await {
            Ok(Ok(())) => {
                tracing::info!("shipper: stream has every record up to {}-{}", self.cursor.node, self.cursor.shipped)
            }
            Ok(Err(e)) => tracing::warn!("shipper: stopping {} records behind: {e}", self.lag()),
            Err(_) => tracing::warn!("shipper: stopping {} records behind (timed out)", self.lag()),
        }
        self.save();
    }

    /// Publishes records read back from disk until the stream has everything committed.
    async fn catch_up(&mut self) -> Result<(), ReplicateError> {
        loop {
            let upto = *self.committed.borrow();
            if self.cursor.shipped >= upto {
                return Ok(());
            }
            let (collected, node, primary, after) =
                (self.collected.clone(), self.cursor.node.clone(), self.primary.clone(), self.cursor.shipped);
            let todo = tokio::task::spawn_blocking(move || unshipped(&collected, &node, &primary, after, upto))
                .await
                .map_err(|e| ReplicateError::Stream(e.to_string()))?
                .map_err(|e| ReplicateError::Stream(format!("reading the log back: {e}")))?;
            if todo.is_empty() {
                // Nothing readable between: sequences burnt by failed writes.
                self.advance(upto);
                return Ok(());
            }
            for chunk in todo.chunks(PUBLISH_BATCH) {
                self.ship(chunk).await?;
            }
        }
    }

    async fn ship(&mut self, records: &[Record]) -> Result<(), ReplicateError> {
        if records.is_empty() {
            return Ok(());
        }
        // The stream may not exist yet: a node that started before its cluster could make it
        // would otherwise publish into no stream for as long as it runs. Once made, this is free.
        self.link.ready().await?;
        let started = Instant::now();
        let (acked, error) = self.link.publish(records).await;
        if acked > 0 {
            self.advance(records[acked - 1].reference.seq);
            metrics::counter!("cofferdam_replicate_records_total").increment(acked as u64);
            metrics::histogram!("cofferdam_replicate_publish_seconds").record(started.elapsed().as_secs_f64());
        }
        self.report_lag();
        match error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    fn advance(&mut self, seq: u64) {
        self.cursor.shipped = self.cursor.shipped.max(seq);
        self.shipped.store(self.cursor.shipped, Ordering::SeqCst);
        self.unsaved = true;
        // Under load, at most a few saves a second; next_batch saves the last one.
        if self.saved_at.elapsed() >= SAVE_EVERY {
            self.save();
        }
    }

    fn lag(&self) -> u64 {
        self.committed.borrow().saturating_sub(self.cursor.shipped)
    }

    fn report_lag(&self) {
        report_lag(*self.committed.borrow(), self.cursor.shipped);
    }
}

fn report_lag(committed: u64, shipped: u64) {
    metrics::gauge!("cofferdam_replicate_lag_records").set(committed.saturating_sub(shipped) as f64);
    metrics::gauge!("cofferdam_replicate_shipped_seq").set(shipped as f64);
}

/// This node's records with a sequence in `(after, upto]`, in sequence order, at most about
/// [`SCAN_LIMIT`] of them: every record below the last one returned is among them.
pub fn unshipped(
    collected: &Path,
    node: &str,
    primary: &BTreeMap<String, StoreFormat>,
    after: u64,
    upto: u64,
) -> std::io::Result<Vec<Record>> {
    let segments: Vec<record::Segment> = record::list_segments(collected)?
        .into_iter()
        .filter(|s| s.name.node == node && primary.get(&s.form).copied().unwrap_or_default() == s.name.format)
        .collect();
    let mut found = Vec::new();
    // The lowest last sequence among forms cut short by the limit: above it, a form that was
    // cut short may hold records not read yet.
    let mut complete_below = upto;
    for (i, seg) in segments.iter().enumerate() {
        // A segment ends where the next of its form begins: skip those wholly shipped.
        let next = segments.get(i + 1).filter(|n| n.form == seg.form);
        if next.is_some_and(|n| n.name.first_seq <= after + 1) {
            continue;
        }
        let form_count = found.iter().filter(|r: &&Record| *r.form == *seg.form).count();
        if form_count >= SCAN_LIMIT {
            continue;
        }
        for item in record::read_segment(&seg.path)? {
            // A torn or unreadable line is no committed record; the importer reports it.
            let Ok((_, r)) = item else { continue };
            if r.reference.seq > after && r.reference.seq <= upto {
                found.push(r);
            }
        }
        let of_form: Vec<u64> = found.iter().filter(|r| *r.form == *seg.form).map(|r| r.reference.seq).collect();
        if of_form.len() >= SCAN_LIMIT {
            complete_below = complete_below.min(of_form.iter().copied().max().unwrap_or(upto));
        }
    }
    found.retain(|r| r.reference.seq <= complete_below);
    found.sort_by_key(|r| r.reference.seq);
    found.dedup_by_key(|r| r.reference.seq);
    Ok(found)
}
