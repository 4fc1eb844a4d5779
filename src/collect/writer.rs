//! The group-commit writer: one thread owns every open segment, the sequence, the stock and
//! the double-submit memory. It takes whatever requests are queued (up to `max_batch`), decides
//! each (duplicate, sold out, accepted), writes the batch, fsyncs once per touched file, and
//! only then answers. Under load batches grow, so fsyncs per second stay flat while records
//! per second rise. A failed write answers the whole batch "failed" and cuts the files back.
//! With `[collect.replicate] ack = "replicated"`, a decided batch is sent to the stream before
//! it is written, and answered once it is fsynced and every acknowledgement is in; it is cut
//! back out of its segments if the stream does not take it.

use super::dedupe::{DedupeKey, Prehashed, Recent, DEDUPE_CAP};
use super::failures::FailureLog;
use super::oplog::OpLog;
use super::segment::Segment;
use super::stock::Stock;
use super::validate::Valid;
use crate::config::{Form, StoreFormat};
use crate::record::{CsvCodec, Meta, Record, Ref, RECORD_VERSION};
use crate::replicate::Replicator;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

pub struct Job {
    pub form: Arc<str>,
    pub valid: Valid,
    pub parent_ref: Option<Ref>,
    pub meta: Meta,
    pub received_at: jiff::Timestamp,
    /// Same form, same fields, same client: a double submit.
    pub dedupe_key: [u8; 32],
    pub reply: oneshot::Sender<Outcome>,
}

/// The writer's answer to a job. An accepted or repeated post comes back as its record; the
/// answer is made from it (the receipt, the payment link), and the request's task drops it, so
/// its memory is freed by a request thread, which allocates the next post's from it, instead
/// of piling up in the writer thread's allocator cache (bench/README.md, 2026-12-07).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Durable on disk, as this record.
    Accepted(Record),
    /// The same post was accepted shortly before: the post as it would have been recorded
    /// under the earlier reference.
    Duplicate(Record),
    SoldOut,
    /// A follow-up (one-time offer) was already taken for this parent record.
    FollowedUp,
    /// Not written (disk full, I/O error): the visitor must try again.
    Failed,
}

// Nearly every message is a job: boxing it would cost an allocation per post to save bytes
// in the channel's slots.
#[allow(clippy::large_enum_variant)]
pub enum Msg {
    Job(Job),
    /// Seal every open segment and stop.
    Shutdown(oneshot::Sender<()>),
    /// A reload's forms and stock caps (`[collect.replicate]` keeps its caps: `shares` none).
    Reload(Reload),
}

pub struct Reload {
    pub forms: BTreeMap<String, Form>,
    /// This node's share of each capped SKU.
    pub shares: Option<HashMap<String, u64>>,
    pub done: oneshot::Sender<()>,
}

/// What the request handlers read of the writer's state.
#[derive(Default)]
pub struct Shared {
    pub healthy: AtomicBool,
    pub any_sold_out: AtomicBool,
    pub sold_out: RwLock<HashSet<String>>,
    /// Units left per capped SKU, for the operator's log.
    pub remaining: RwLock<BTreeMap<String, u64>>,
    /// What the operator's log sums up.
    pub oplog: OpLog,
}

pub struct Settings {
    pub dir: PathBuf,
    pub node: String,
    pub forms: BTreeMap<String, Form>,
    pub segment_max_bytes: u64,
    pub segment_max_age: Duration,
    pub max_batch: usize,
    pub dedupe_window: Duration,
    /// (follow-up form, parent record) of the follow-ups in the logs at start-up.
    pub followed_up: HashSet<(Arc<str>, Ref)>,
}

pub struct Writer {
    settings: Settings,
    /// `settings.node`, shared by every reference the writer gives out.
    node: Arc<str>,
    next_seq: u64,
    stock: Stock,
    /// Where every committed batch also goes (`[collect.replicate]`).
    replicator: Option<Replicator>,
    open: HashMap<String, Vec<Segment>>,
    /// The double-submit memory: each recent post's key and the sequence number of its record
    /// (this node's).
    recent: Recent,
    shared: Arc<Shared>,
    failures: FailureLog,
    /// (follow-up form, parent record) taken: a one-time offer is one per parent.
    followed_up: HashSet<(Arc<str>, Ref)>,
}

/// Asks the kernel not to run this (the writer's) thread ahead of the running request threads
/// the moment a post is queued for it (`SCHED_BATCH`: the same share of the CPU, no wake-up
/// preemption). On a core the request threads keep busy, the writer otherwise woke for each
/// first post and wrote batches of a dozen, each costing a `write` and an `fdatasync`; now the
/// posts being handled are queued first and one fsync covers them all (bench/README.md: one
/// core, 1,024 connections, batches of 17 became batches of ~480, posts/s +45%, p99 80 -> 29
/// ms). On an idle core it runs at once as before, so a quiet server answers as fast.
fn without_wakeup_preemption() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: a system call about the calling thread (0) with a valid parameter.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
            tracing::debug!("writer: SCHED_BATCH refused: {}", std::io::Error::last_os_error());
        }
    }
}

/// What the writer decided for a job of a batch, before the batch is written.
enum Decision {
    /// Accepted: its record is the next of the batch's records, if the batch is written.
    Write,
    /// A repeat of the post this node recorded under this sequence number.
    Duplicate(u64),
    SoldOut,
    FollowedUp,
    Failed,
}

/// The lengths a form's segments had before a batch was appended.
struct Mark {
    form: String,
    lens: Vec<u64>,
}

impl Writer {
    pub fn new(
        mut settings: Settings,
        next_seq: u64,
        stock: Stock,
        replicator: Option<Replicator>,
        shared: Arc<Shared>,
    ) -> Writer {
        let w = Writer {
            node: settings.node.as_str().into(),
            next_seq,
            stock,
            replicator,
            open: HashMap::new(),
            recent: Recent::new(settings.dedupe_window, DEDUPE_CAP),
            shared,
            failures: FailureLog::default(),
            followed_up: std::mem::take(&mut settings.followed_up),
            settings,
        };
        w.publish_stock();
        w.shared.healthy.store(true, Ordering::Relaxed);
        w
    }

    /// Runs on its own thread until shutdown or until every sender is gone.
    pub fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        without_wakeup_preemption();
        let max_batch = self.settings.max_batch;
        let mut batch = Vec::with_capacity(max_batch);
        loop {
            let Some(first) = rx.blocking_recv() else { break };
            let mut shutdown = None;
            let mut reload = None;
            match first {
                Msg::Job(j) => batch.push(j),
                Msg::Shutdown(done) => shutdown = Some(done),
                Msg::Reload(r) => reload = Some(r),
            }
            while shutdown.is_none() && reload.is_none() && batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(Msg::Job(j)) => batch.push(j),
                    Ok(Msg::Shutdown(done)) => shutdown = Some(done),
                    Ok(Msg::Reload(r)) => reload = Some(r),
                    Err(_) => break,
                }
            }
            metrics::gauge!("cofferdam_collect_queue_depth").set(rx.len() as f64);
            if !batch.is_empty() {
                self.commit(std::mem::take(&mut batch));
            }
            if let Some(r) = reload {
                self.reload(r);
            }
            if let Some(done) = shutdown {
                // Whatever is still queued was never acknowledged; answer it "failed".
                rx.close();
                while let Ok(msg) = rx.try_recv() {
                    if let Msg::Job(j) = msg {
                        let _ = j.reply.send(Outcome::Failed);
                    }
                }
                self.seal_all();
                self.stock.release();
                let _ = done.send(());
                return;
            }
            self.roll_old();
        }
        self.seal_all();
        self.stock.release();
    }

    fn commit(&mut self, mut batch: Vec<Job>) {
        let now = Instant::now();
        self.recent.forget_old(now);
        if let Some(r) = &self.replicator {
            // The stream is out of reach: refuse the batch before anything is written.
            match r.floor() {
                Ok(floor) => self.next_seq = self.next_seq.max(floor),
                Err(e) => {
                    self.shared.healthy.store(false, Ordering::Relaxed);
                    self.failures.failed(batch.len(), &format_args!("replication: {e}"));
                    for job in batch {
                        let _ = job.reply.send(Outcome::Failed);
                    }
                    return;
                }
            }
        }
        let unreachable = {
            // SKUs borrowed: this map lives only until the pool is asked. B-trees here and in
            // `taken`: a batch has a handful of SKUs and a lookup for each post.
            let mut demand: BTreeMap<&str, u64> = BTreeMap::new();
            for l in batch.iter().flat_map(|j| &j.valid.lines) {
                *demand.entry(&l.sku).or_default() += l.quantity as u64;
            }
            self.stock.reserve(&demand).0
        };
        let mut decisions = Vec::with_capacity(batch.len());
        let mut taken: BTreeMap<Arc<str>, u64> = BTreeMap::new();
        // Sized once: growing them is most of what a batch's bookkeeping costs.
        let mut batch_keys: HashMap<DedupeKey, u64, Prehashed> =
            HashMap::with_capacity_and_hasher(batch.len(), Prehashed::default());
        let mut batch_follow_ups: HashSet<(Arc<str>, Ref)> = HashSet::new();
        let mut records: Vec<Record> = Vec::with_capacity(batch.len());
        for job in batch.iter_mut() {
            let key = DedupeKey(job.dedupe_key);
            let earlier = self.recent.get(&key, now).or_else(|| batch_keys.get(&key).copied());
            if let Some(seq) = earlier {
                decisions.push(Decision::Duplicate(seq));
                continue;
            }
            // A one-time offer is one-time: one per parent record, whatever the cookie allows.
            let follow_up = job.parent_ref.as_ref().map(|p| (job.form.clone(), p.clone()));
            if let Some(key) = &follow_up {
                if self.followed_up.contains(key) || batch_follow_ups.contains(key) {
                    decisions.push(Decision::FollowedUp);
                    continue;
                }
            }
            let fits = job.valid.lines.iter().all(|l| match self.stock.left(&l.sku) {
                Some(left) => taken.get(&l.sku).copied().unwrap_or(0) + l.quantity as u64 <= left,
                None => true,
            });
            if !fits {
                let unknown = job.valid.lines.iter().any(|l| unreachable.contains(&*l.sku));
                decisions.push(if unknown { Decision::Failed } else { Decision::SoldOut });
                continue;
            }
            for l in &job.valid.lines {
                *taken.entry(l.sku.clone()).or_default() += l.quantity as u64;
            }
            let reference = Ref { node: self.node.clone(), seq: self.next_seq };
            self.next_seq += 1;
            batch_keys.insert(key, reference.seq);
            batch_follow_ups.extend(follow_up);
            records.push(record(job, reference));
            decisions.push(Decision::Write);
        }

        let written = if records.is_empty() { Ok(()) } else { self.persist(&records) };
        match written {
            Ok(()) => {
                for (sku, n) in taken {
                    self.stock.sell(&sku, n);
                }
                self.followed_up.extend(batch_follow_ups);
                for (key, seq) in batch_keys {
                    self.recent.insert(key, seq, now);
                }
                self.publish_stock();
                self.shared.healthy.store(true, Ordering::Relaxed);
                self.failures.recovered();
                metrics::counter!("cofferdam_collect_records_total").increment(records.len() as u64);
                self.count_by_form(&records);
                metrics::counter!("cofferdam_collect_batches_total").increment(1);
                metrics::histogram!("cofferdam_collect_batch_size").record(batch.len() as f64);
                metrics::histogram!("cofferdam_collect_commit_seconds").record(now.elapsed().as_secs_f64());
            }
            Err(e) => {
                self.shared.healthy.store(false, Ordering::Relaxed);
                self.failures.failed(records.len(), &e);
                metrics::counter!("cofferdam_collect_write_errors_total").increment(1);
                // Nothing of the batch stands, nor a repeat of a post in it.
                let failed: HashSet<u64> = records.drain(..).map(|r| r.reference.seq).collect();
                for d in decisions.iter_mut() {
                    match d {
                        Decision::Write => *d = Decision::Failed,
                        Decision::Duplicate(seq) if failed.contains(seq) => *d = Decision::Failed,
                        _ => {}
                    }
                }
            }
        }
        let mut records = records.into_iter();
        for (mut job, decision) in batch.into_iter().zip(decisions) {
            let outcome = match decision {
                Decision::Write => Outcome::Accepted(records.next().expect("a record for each write")),
                Decision::Duplicate(seq) => Outcome::Duplicate(record(&mut job, Ref { node: self.node.clone(), seq })),
                Decision::SoldOut => Outcome::SoldOut,
                Decision::FollowedUp => Outcome::FollowedUp,
                Decision::Failed => Outcome::Failed,
            };
            // The visitor may have gone; the record stands either way.
            let _ = job.reply.send(outcome);
        }
    }

    /// Makes a decided batch durable: sent to the stream first (`ack = "replicated"`), so the
    /// round trip runs while the local write and fsync do; then written and fsynced; then every
    /// acknowledgement awaited together. A batch that fails anywhere is cut back out of every
    /// segment (and voided in the stream, by the replicator) and refused whole.
    fn persist(&mut self, records: &[Record]) -> std::io::Result<()> {
        let replicated = self.replicator.as_ref().is_some_and(Replicator::sends_batches);
        let jsonl = records.iter().any(|r| self.settings.forms[&*r.form].store.contains(&StoreFormat::Jsonl));
        let json = (replicated || jsonl).then(|| JsonLines::of(records));
        let inflight = match &self.replicator {
            Some(r) if replicated => {
                let json = json.as_ref().expect("serialized for the stream");
                r.send(records, json.payloads()).map_err(|e| std::io::Error::other(format!("replication: {e}")))?
            }
            _ => None,
        };
        let marks = match self.write(records, json.as_ref()) {
            Ok(marks) => marks,
            Err(e) => {
                if let Some(r) = &self.replicator {
                    r.abandon(inflight);
                }
                return Err(e);
            }
        };
        if let Some(r) = &self.replicator {
            if let Err(e) = r.confirm(records, inflight) {
                self.cut_back(&marks);
                return Err(std::io::Error::other(format!("replication: {e}")));
            }
        }
        for mark in &marks {
            let too_big = self
                .open
                .get(&mark.form)
                .is_some_and(|segs| segs.iter().any(|s| s.len >= self.settings.segment_max_bytes));
            if too_big {
                self.seal(&mark.form);
            }
        }
        Ok(())
    }

    /// Appends the records to their forms' segments and fsyncs each touched file once. Returns
    /// where each touched segment ended before, so a batch the stream refuses can be cut back.
    /// `json` holds the records' JSON lines when a form of the batch keeps JSON Lines.
    fn write(&mut self, records: &[Record], json: Option<&JsonLines>) -> std::io::Result<Vec<Mark>> {
        let mut by_form: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, r) in records.iter().enumerate() {
            by_form.entry(&r.form).or_default().push(i);
        }
        let single_form = by_form.len() == 1;
        let mut marks = Vec::new();
        let result = (|| {
            for (form, idx) in &by_form {
                self.ensure_open(form, records[idx[0]].reference.seq)?;
                marks.push(Mark { form: form.to_string(), lens: self.open[*form].iter().map(|s| s.len).collect() });
                for seg in self.open.get_mut(*form).expect("just opened") {
                    match (&seg.header, json) {
                        // The whole batch is this form's: its JSON lines as they are.
                        (None, Some(json)) if single_form => seg.append(&json.buf)?,
                        (None, Some(json)) => {
                            let mut buf = Vec::with_capacity(idx.len() * 512);
                            for &i in idx {
                                buf.extend_from_slice(json.line(i));
                            }
                            seg.append(&buf)?;
                        }
                        (header, _) => {
                            let mut buf = Vec::with_capacity(idx.len() * 512);
                            for &i in idx {
                                let r = &records[i];
                                match header {
                                    Some(header) => buf.extend(CsvCodec::row_line(header, r)),
                                    None => r.write_json_line(&mut buf),
                                }
                            }
                            seg.append(&buf)?;
                        }
                    }
                }
            }
            for form in by_form.keys() {
                for seg in self.open.get_mut(*form).expect("opened above") {
                    seg.sync()?;
                    metrics::counter!("cofferdam_collect_fsyncs_total").increment(1);
                }
            }
            Ok(())
        })();
        if result.is_err() {
            // Every segment of the batch, including those already synced: a refused record
            // must be gone from all of them, or an import would find it.
            self.cut_back(&marks);
        }
        result.map(|()| marks)
    }

    /// Cuts every segment a batch touched back to where it ended before the batch. A segment
    /// that cannot be cut is abandoned (left open for the next start-up) and a new one started.
    fn cut_back(&mut self, marks: &[Mark]) {
        for mark in marks {
            let Some(segs) = self.open.get_mut(&mark.form) else { continue };
            let cut: Vec<std::io::Result<()>> =
                segs.iter_mut().zip(&mark.lens).map(|(s, len)| s.cut_to(*len)).collect();
            if cut.iter().any(|r| r.is_err()) {
                self.open.remove(&mark.form);
            }
        }
    }

    fn ensure_open(&mut self, form: &str, first_seq: u64) -> std::io::Result<()> {
        if self.open.contains_key(form) {
            return Ok(());
        }
        let def = &self.settings.forms[form];
        let dir = self.settings.dir.join(form);
        let mut segs = Vec::new();
        for format in &def.store {
            match Segment::create(&dir, &self.settings.node, first_seq, *format, def) {
                Ok(s) => segs.push(s),
                Err(e) => {
                    // Do not leave an empty half of a pair behind.
                    for s in segs {
                        let _ = std::fs::remove_file(&s.path);
                    }
                    return Err(e);
                }
            }
        }
        self.open.insert(form.to_string(), segs);
        Ok(())
    }

    /// A reload: the batches before it were written under the old launch; from here on a
    /// form whose definition changed starts a new segment (a CSV header follows its fields),
    /// and the new caps apply to what is already sold. A form the new launch dropped stays
    /// known, for posts of the old launch still on their way.
    fn reload(&mut self, r: Reload) {
        for (name, form) in r.forms {
            if self.settings.forms.get(&name) != Some(&form) {
                self.seal(&name);
                self.settings.forms.insert(name, form);
            }
        }
        if let Some(shares) = r.shares {
            self.stock.recap(shares);
        }
        self.publish_stock();
        let _ = r.done.send(());
    }

    fn seal(&mut self, form: &str) {
        for seg in self.open.remove(form).unwrap_or_default() {
            let path = seg.path.clone();
            match seg.seal() {
                Ok(sealed) => tracing::info!("sealed {}", sealed.display()),
                Err(e) => tracing::error!(
                    "{}: cannot seal (it stays open and is recovered at the next start): {e}",
                    path.display()
                ),
            }
        }
    }

    fn roll_old(&mut self) {
        let max_age = self.settings.segment_max_age;
        let old: Vec<String> = self
            .open
            .iter()
            .filter(|(_, segs)| segs.iter().any(|s| s.opened.elapsed() >= max_age))
            .map(|(f, _)| f.clone())
            .collect();
        for form in old {
            self.seal(&form);
        }
    }

    fn seal_all(&mut self) {
        let forms: Vec<String> = self.open.keys().cloned().collect();
        for form in forms {
            self.seal(&form);
        }
    }

    /// A durable batch's records by form, counted once a form and batch: the admin page's
    /// records per second (`cofferdam_collect_form_records_total{form}`) and the operator's
    /// log line.
    fn count_by_form(&self, records: &[Record]) {
        let mut by_form: BTreeMap<&str, u64> = BTreeMap::new();
        for r in records {
            *by_form.entry(&r.form).or_default() += 1;
        }
        for (form, n) in by_form {
            metrics::counter!("cofferdam_collect_form_records_total", "form" => form.to_string()).increment(n);
            self.shared.oplog.accepted(form, n);
        }
    }

    fn publish_stock(&self) {
        let gone = self.stock.sold_out();
        for (sku, left) in self.stock.remaining() {
            metrics::gauge!("cofferdam_stock_remaining", "sku" => sku.to_string()).set(left as f64);
        }
        self.shared.any_sold_out.store(!gone.is_empty(), Ordering::Relaxed);
        *self.shared.sold_out.write().unwrap_or_else(|e| e.into_inner()) = gone;
        *self.shared.remaining.write().unwrap_or_else(|e| e.into_inner()) =
            self.stock.remaining().map(|(s, n)| (s.to_string(), n)).collect();
    }
}

/// The record of an accepted job, its fields moved out of the job (only its reply is used
/// after this).
fn record(job: &mut Job, reference: Ref) -> Record {
    Record {
        v: RECORD_VERSION,
        reference,
        form: job.form.clone(),
        received_at: job.received_at,
        fields: std::mem::take(&mut job.valid.fields),
        lines: std::mem::take(&mut job.valid.lines),
        total_cents: job.valid.total_cents,
        currency: job.valid.currency.take(),
        parent_ref: job.parent_ref.take(),
        meta: std::mem::take(&mut job.meta),
    }
}

/// A batch's records serialized to JSON once: the same bytes are the JSON Lines segments'
/// lines and the stream's message payloads.
struct JsonLines {
    /// Every record's line, newline-terminated, in batch order.
    buf: Bytes,
    /// Where each line ends (after its newline).
    ends: Vec<usize>,
}

impl JsonLines {
    fn of(records: &[Record]) -> JsonLines {
        let mut buf = Vec::with_capacity(records.len() * 640);
        let mut ends = Vec::with_capacity(records.len());
        for r in records {
            r.write_json_line(&mut buf);
            ends.push(buf.len());
        }
        JsonLines { buf: Bytes::from(buf), ends }
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }

    /// Record `i`'s line, with its newline.
    fn line(&self, i: usize) -> &[u8] {
        &self.buf[self.start(i)..self.ends[i]]
    }

    /// Each record's JSON without the newline, sharing the buffer.
    fn payloads(&self) -> impl Iterator<Item = Bytes> + '_ {
        (0..self.ends.len()).map(|i| self.buf.slice(self.start(i)..self.ends[i] - 1))
    }
}
