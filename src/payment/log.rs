//! The payment log's writer, with the form writer's rules: one thread takes whatever events are
//! queued, writes them as one batch, fsyncs once, and only then answers, so the hook's 2xx means
//! "on disk". An event ID already on disk (or earlier in the batch) is answered without being
//! written again. A failed write answers the batch "failed" (the provider retries) and cuts the
//! file back to what was synced.

use super::record::{list_payment_segments, read_payment_segment, Payment, Provider, PAYMENTS_DIR};
use crate::collect::recover::{good_jsonl_len, quarantine_tail};
use crate::collect::segment::{seal_path, Segment};
use crate::config::StoreFormat;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub struct Settings {
    /// The `collected/` folder; the log is its `payments/` folder.
    pub collected: PathBuf,
    pub node: String,
    pub segment_max_bytes: u64,
    pub segment_max_age: Duration,
    pub max_batch: usize,
    pub queue_capacity: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Written and fsynced now.
    New,
    /// This event ID is already on disk.
    Duplicate,
    /// Not written (queue full, disk full, shutting down): the provider must retry.
    Failed,
}

enum Msg {
    Write(Box<Payment>, oneshot::Sender<Stored>),
    Shutdown(oneshot::Sender<()>),
}

/// The request side of the payment writer.
pub struct PaymentLog {
    queue: mpsc::Sender<Msg>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    closed: AtomicBool,
}

impl PaymentLog {
    /// Recovers the log (torn tails to quarantine, open files sealed, the event IDs on disk
    /// remembered) and starts the writer thread.
    pub fn start(settings: Settings) -> std::io::Result<PaymentLog> {
        let (next_seq, seen) = recover(&settings.collected, &settings.node)?;
        let (tx, rx) = mpsc::channel(settings.queue_capacity.max(1));
        let writer = Writer { dir: settings.collected.join(PAYMENTS_DIR), next_seq, seen, open: None, settings };
        let thread = std::thread::Builder::new().name("cofferdam-payments".into()).spawn(move || writer.run(rx))?;
        Ok(PaymentLog { queue: tx, thread: Mutex::new(Some(thread)), closed: AtomicBool::new(false) })
    }

    /// Stores `payment` durably, once per event ID.
    pub async fn store(&self, payment: Payment) -> Stored {
        if self.closed.load(Ordering::Relaxed) {
            return Stored::Failed;
        }
        let (reply, answer) = oneshot::channel();
        if self.queue.try_send(Msg::Write(Box::new(payment), reply)).is_err() {
            return Stored::Failed;
        }
        answer.await.unwrap_or(Stored::Failed)
    }

    /// Writes what is queued, seals the open file and stops the thread.
    pub async fn shutdown(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let (done, wait) = oneshot::channel();
        if self.queue.send(Msg::Shutdown(done)).await.is_ok() {
            let _ = wait.await;
        }
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

type Key = (Provider, String);

struct Writer {
    dir: PathBuf,
    next_seq: u64,
    /// Every event ID on disk.
    seen: HashSet<Key>,
    open: Option<Segment>,
    settings: Settings,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let max_batch = self.settings.max_batch.max(1);
        loop {
            let Some(first) = rx.blocking_recv() else { break };
            let mut batch = Vec::new();
            let mut shutdown = None;
            match first {
                Msg::Write(p, reply) => batch.push((p, reply)),
                Msg::Shutdown(done) => shutdown = Some(done),
            }
            while shutdown.is_none() && batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(Msg::Write(p, reply)) => batch.push((p, reply)),
                    Ok(Msg::Shutdown(done)) => shutdown = Some(done),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.commit(batch);
            }
            if let Some(done) = shutdown {
                rx.close();
                while let Ok(msg) = rx.try_recv() {
                    if let Msg::Write(_, reply) = msg {
                        let _ = reply.send(Stored::Failed);
                    }
                }
                self.seal();
                let _ = done.send(());
                return;
            }
            if self.open.as_ref().is_some_and(|s| s.opened.elapsed() >= self.settings.segment_max_age) {
                self.seal();
            }
        }
        self.seal();
    }

    fn commit(&mut self, batch: Vec<(Box<Payment>, oneshot::Sender<Stored>)>) {
        let mut fresh: HashSet<Key> = HashSet::new();
        let mut bytes = Vec::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        for (p, _) in &batch {
            let key = (p.provider, p.event_id.clone());
            if self.seen.contains(&key) {
                outcomes.push(Stored::Duplicate);
            } else if !fresh.insert(key) {
                // Earlier in this batch: durable exactly when that one is.
                outcomes.push(Stored::New);
            } else {
                bytes.extend(p.to_json_line());
                outcomes.push(Stored::New);
            }
        }
        let written = if fresh.is_empty() { Ok(()) } else { self.write(&bytes) };
        match written {
            Ok(()) => {
                self.next_seq += fresh.len() as u64;
                metrics::counter!("cofferdam_payments_stored_total").increment(fresh.len() as u64);
                self.seen.extend(fresh);
            }
            Err(e) => {
                tracing::error!("payments: WRITE FAILED, {} events answered 503 and not recorded: {e}", fresh.len());
                metrics::counter!("cofferdam_payments_write_errors_total").increment(1);
                for o in outcomes.iter_mut().filter(|o| **o == Stored::New) {
                    *o = Stored::Failed;
                }
            }
        }
        for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.open.is_none() {
            let seg = Segment::create_with(&self.dir, &self.settings.node, self.next_seq, StoreFormat::Jsonl, None)?;
            self.open = Some(seg);
        }
        let seg = self.open.as_mut().expect("opened above");
        let before = seg.len;
        let result = seg.append(bytes).and_then(|()| seg.sync());
        if result.is_err() && seg.cut_to(before).is_err() {
            // Left open: the next start-up quarantines its tail.
            self.open = None;
        } else if result.is_ok() && seg.len >= self.settings.segment_max_bytes {
            self.seal();
        }
        result
    }

    fn seal(&mut self) {
        if let Some(seg) = self.open.take() {
            let path = seg.path.clone();
            if let Err(e) = seg.seal() {
                tracing::error!("{}: cannot seal (it is recovered at the next start): {e}", path.display());
            }
        }
    }
}

/// Seals this node's open files (a torn tail to `.quarantine`), and returns the next sequence
/// and every event ID on disk.
fn recover(collected: &Path, node: &str) -> std::io::Result<(u64, HashSet<Key>)> {
    let mut next_seq = 1;
    let mut seen = HashSet::new();
    for seg in list_payment_segments(collected)? {
        let mut path = seg.path.clone();
        if seg.name.node == node && !seg.name.sealed {
            let bytes = std::fs::read(&path)?;
            let good = good_jsonl_len(&bytes, |line| Payment::from_json_line(line).is_ok());
            quarantine_tail(&path, &bytes, good)?;
            path = seal_path(&path)?;
        }
        let lines = read_payment_segment(&path)?;
        if seg.name.node == node {
            next_seq = next_seq.max(seg.name.first_seq + lines.len() as u64);
        }
        for (_, p) in lines.into_iter().flatten() {
            seen.insert((p.provider, p.event_id));
        }
    }
    Ok((next_seq, seen))
}
