//! `cofferdam import`: `collected/` → the shop's database, with reserved ID ranges, exactly once.
//!
//! [`Import::prepare`] reads the records ([`source`]), asks the target everything it needs once
//! ([`snapshot`]), plans every row's ID ([`plan`]) and checks every row against the live schema
//! ([`check`]); the dry run stops there and shows the [`Report`]. [`Import::execute`] refuses on
//! the same findings before writing anything, then writes batch by batch ([`write`]), each
//! batch's rows and ledger entries in one transaction, so a re-run imports nothing twice and a
//! killed run resumes with the IDs an uninterrupted run would have given.

mod check;
mod db;
mod eval;
mod plan;
mod rows;
mod snapshot;
mod source;
mod stream;
mod value;
mod write;

pub use crate::record::BadLine;
pub use check::{Findings, Problem, RecordAt, Sample};
pub use plan::{RangeHow, RangePlan, TablePlan};

use crate::config::expr::{Expr, Func};
use crate::config::{ConfigError, Site};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

/// What to import, from where, to where.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub site: PathBuf,
    /// Target URL; default `import.to` (a relative sqlite path is below the site).
    pub to: Option<String>,
    /// Collected folders, one per node, or JetStream streams (`nats://HOST:PORT/STREAM`);
    /// default `collect.dir`.
    pub from: Vec<PathBuf>,
    /// Leave bad records out (they are reported) instead of refusing the import.
    pub skip_bad: bool,
    /// Records per transaction; default `import.batch_size`.
    pub batch_size: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Target(String),
    #[error("{0}")]
    Stream(String),
    #[error("the database refused{}, table {table}: {detail}", .record.as_ref().map(|r| format!(" record {r}")).unwrap_or_default())]
    Refused { table: String, record: Option<String>, detail: String },
    #[error("{at}: {message}")]
    Record { at: String, message: String },
    #[error("{0} bad record{s} (listed above): nothing was imported; fix them, or import the good ones with --skip-bad", s = plural(*.0))]
    Bad(usize),
    #[error("{0} problem{s} with the mapping or the target's schema (listed above): nothing was imported", s = plural(*.0))]
    Schema(usize),
}

/// What an import found and would do: everything the dry run shows.
pub struct Report {
    /// The target, without its password.
    pub target: String,
    /// Records to import, per form.
    pub per_form: BTreeMap<String, usize>,
    pub pending: usize,
    /// Records the ledger shows as imported before.
    pub done: usize,
    /// Records of forms the mapping does not import, per form.
    pub unmapped: BTreeMap<String, usize>,
    /// The same reference found in two folders (kept once).
    pub repeated: usize,
    /// Records in a stream that their node refused after publishing them (left out).
    pub voided: usize,
    /// Lines that are not valid records.
    pub bad_lines: Vec<BadLine>,
    /// Per table, in write order, and its key column.
    pub tables: Vec<(TablePlan, String)>,
    pub findings: Findings,
    /// Records `--skip-bad` leaves out, and why.
    pub skipped: Vec<Problem>,
    pub duplicates: Vec<(String, String)>,
    /// The payment logs read for `payment.…` (none when the mapping does not use them or no
    /// event was found).
    pub payments: Option<PaymentsRead>,
}

/// What the payment logs gave the import.
#[derive(Debug, Clone, Copy)]
pub struct PaymentsRead {
    /// Distinct events read.
    pub events: usize,
    /// Records of this import that the logs name.
    pub orders: usize,
    /// Orders named that are not among the records read, and events that name none.
    pub unmatched: usize,
}

impl Report {
    /// Problems with the mapping or schema as a whole: no record can be imported.
    pub fn schema_problems(&self) -> usize {
        self.findings.problems.iter().filter(|p| p.record.is_none()).count()
    }

    /// Bad records: unreadable lines and records that would not fit.
    pub fn bad_records(&self) -> usize {
        let records: HashSet<usize> =
            self.findings.problems.iter().filter_map(|p| p.record.as_ref().map(|r| r.index)).collect();
        self.bad_lines.len() + records.len()
    }

    /// What the real run does with this report: refuse (and why), or go ahead.
    pub fn refusal(&self, skip_bad: bool) -> Option<ImportError> {
        if self.schema_problems() > 0 {
            Some(ImportError::Schema(self.schema_problems()))
        } else if self.bad_records() > 0 && !skip_bad {
            Some(ImportError::Bad(self.bad_records()))
        } else {
            None
        }
    }
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Summary {
    pub imported: usize,
    pub already: usize,
    /// Bad lines and records left out with `--skip-bad`.
    pub bad: usize,
}

/// A prepared import: the records, what the target knew, the plan and its check.
pub struct Import {
    options: Options,
    batch_size: usize,
    mapping: crate::config::Mapping,
    target: db::Target,
    located: Vec<source::Located>,
    snap: snapshot::Snapshot,
    plan: plan::Plan,
    secret: Vec<u8>,
    payments: crate::payment::Ledger,
    report: Report,
}

impl Import {
    pub async fn prepare(options: &Options) -> Result<Import, ImportError> {
        let site = Site::load(&options.site)?;
        let config = &site.config;
        let mapping = config.import.mapping.clone();
        let url = resolve_url(&site, options.to.as_deref().unwrap_or(&config.import.to));
        let (streams, folders): (Vec<PathBuf>, Vec<PathBuf>) =
            options.from.iter().cloned().partition(|f| stream::is_stream(f));
        let folders = if options.from.is_empty() { vec![site.collected_dir()] } else { folders };
        let started = std::time::Instant::now();
        let (mut streamed, mut voided) = (Vec::new(), 0);
        for url in &streams {
            let (records, refused) = stream::fetch(url).await.map_err(ImportError::Stream)?;
            streamed.extend(records);
            voided += refused;
        }
        let mut src = source::read(config, &folders, streamed)?;
        let payments = payments(&mapping, &folders)?;
        // A payment line that cannot be read could be an order's payment: bad like a record's.
        src.bad.extend(payments.bad.iter().cloned());
        tracing::debug!(records = src.records.len(), elapsed = ?started.elapsed(), "read and checked");
        let secret = secret(config, &mapping)?;

        let target = db::Target::connect(&url).await?;
        let snap = snapshot::gather(&target, &mapping, &src.records, config.import.gap, &secret, &payments).await?;
        tracing::debug!(elapsed = ?started.elapsed(), "asked the target");
        let env = eval::Env { lookups: &snap.lookups, secret: &secret, payments: &payments };

        // With --skip-bad, bad records (and the records that need them) are planned out, and
        // the rest planned again, until no record is bad.
        let mut excluded = HashSet::new();
        let mut skipped = Vec::new();
        let (plan, findings) = loop {
            let plan = plan::make(&mapping, &src.records, &snap, &env, &excluded);
            let findings = check::check(&mapping, &snap, &plan, &src.records, &env, target.dialect);
            let bad: Vec<usize> = findings.problems.iter().filter_map(|p| p.record.as_ref().map(|r| r.index)).collect();
            let schema = findings.problems.iter().any(|p| p.record.is_none());
            if !options.skip_bad || bad.is_empty() || schema {
                break (plan, findings);
            }
            skipped.extend(findings.problems);
            excluded.extend(bad);
        };
        tracing::debug!(elapsed = ?started.elapsed(), "planned and checked");

        let mut per_form = BTreeMap::new();
        for p in &plan.records {
            *per_form.entry(src.records[p.index].record.form.to_string()).or_default() += 1;
        }
        let tables = plan
            .tables
            .iter()
            .zip(&mapping.tables)
            .map(|(t, spec)| {
                (t.clone(), spec.id_column().map(String::from).unwrap_or_else(|| spec.key.columns().join(", ")))
            })
            .collect();
        let report = Report {
            target: db::redact(&url),
            per_form,
            pending: plan.records.len(),
            done: plan.done,
            unmapped: src.unmapped.clone(),
            repeated: src.repeated,
            voided,
            bad_lines: src.bad,
            tables,
            findings,
            skipped,
            duplicates: source::suspected_duplicates(&src.records),
            payments: (payments.events > 0).then(|| payments_read(&payments, &src.records)),
        };
        Ok(Import {
            options: options.clone(),
            batch_size: options.batch_size.unwrap_or(config.import.batch_size).max(1),
            mapping,
            target,
            located: src.records,
            snap,
            plan,
            secret,
            payments,
            report,
        })
    }

    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Writes the plan, unless its check found what the database would refuse. `progress`
    /// hears (records written, records to write) after every batch.
    pub fn execute(
        &self,
        runtime: &tokio::runtime::Runtime,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Summary, ImportError> {
        if let Some(refused) = self.report.refusal(self.options.skip_bad) {
            return Err(refused);
        }
        let summary = Summary {
            imported: self.plan.records.len(),
            already: self.plan.done,
            bad: self.report.bad_lines.len()
                + self
                    .report
                    .skipped
                    .iter()
                    .filter_map(|p| p.record.as_ref().map(|r| r.index))
                    .collect::<HashSet<_>>()
                    .len(),
        };
        if self.plan.records.is_empty() {
            return Ok(summary);
        }
        runtime.block_on(self.reserve())?;
        let layouts = rows::Layouts::new(&self.mapping, &self.snap);
        let maker = write::Maker {
            mapping: &self.mapping,
            layouts: &layouts,
            plan: &self.plan,
            located: &self.located,
            env: eval::Env { lookups: &self.snap.lookups, secret: &self.secret, payments: &self.payments },
            dialect: self.target.dialect,
        };
        let imported_at = jiff::Timestamp::now().to_string();
        let all: Vec<usize> = (0..self.plan.records.len()).collect();
        let chunks: Vec<&[usize]> = all.chunks(self.batch_size).collect();
        let total = all.len();
        std::thread::scope(|s| {
            // The next batch is made while this one is written.
            let (tx, mut rx) = tokio::sync::mpsc::channel(2);
            let maker = &maker;
            let chunks = &chunks;
            s.spawn(move || {
                for c in chunks {
                    if tx.blocking_send(maker.batch(c)).is_err() {
                        break;
                    }
                }
            });
            runtime.block_on(async move {
                let mut written = 0;
                let mut batches = 0;
                while let Some(batch) = rx.recv().await {
                    let batch = batch?;
                    if let Err((table, e)) = self.target.write(&batch, &imported_at).await {
                        return Err(self.name_refusal(maker, &batch, table, e, batches, &imported_at).await);
                    }
                    written += batch.records.len();
                    batches += 1;
                    progress(written, total);
                }
                Ok(())
            })
        })?;
        Ok(summary)
    }

    /// Before the first row: the ranges are recorded and every counter moved past them, so
    /// the shop's own inserts land above them even while the import runs or if it is killed.
    async fn reserve(&self) -> Result<(), ImportError> {
        self.target.ensure_bookkeeping().await?;
        for (t, tp) in self.plan.tables.iter().enumerate() {
            let Some(r) = &tp.range else { continue };
            let name = &self.mapping.tables[t].name;
            self.target.store_range(name, r.reserved_from, r.start, r.end).await?;
            if let Some(col) = self.snap.tables[t].column(&r.column) {
                self.target.bump_counter(name, col, r.end - 1).await?;
            }
        }
        Ok(())
    }

    /// A refused batch, with the record the database refuses found by writing the batch's
    /// records one by one (then rolled back).
    async fn name_refusal(
        &self,
        maker: &write::Maker<'_>,
        batch: &write::Batch,
        table: String,
        e: sqlx::Error,
        before: usize,
        imported_at: &str,
    ) -> ImportError {
        let singles: Result<Vec<write::Batch>, ImportError> =
            batch.records.iter().map(|r| maker.batch(&[*r])).collect();
        let found = match &singles {
            Ok(singles) => self.target.find_refused(singles, imported_at).await,
            Err(_) => None,
        };
        let note = format!(" (nothing of its batch was written; {before} batches before it were)");
        match found {
            Some((i, (table, e))) => {
                let p = &self.plan.records[batch.records[i]];
                let l = &self.located[p.index];
                let record = format!("{} ({}:{})", l.record.reference, l.path.display(), l.line);
                let mut err = write::refusal(table, Some(record), &e);
                if let ImportError::Refused { detail, .. } = &mut err {
                    detail.push_str(&note);
                }
                err
            }
            None => {
                let mut err = write::refusal(table, None, &e);
                if let ImportError::Refused { detail, .. } = &mut err {
                    detail.push_str(&note);
                }
                err
            }
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `sqlite://main.db` is relative to the site folder, not to wherever the command runs.
fn resolve_url(site: &Site, url: &str) -> String {
    match url.strip_prefix("sqlite://") {
        Some(path) if !path.starts_with('/') && !path.starts_with(':') => {
            format!("sqlite://{}", site.root.join(path).display())
        }
        _ => url.to_string(),
    }
}

fn payments_read(payments: &crate::payment::Ledger, located: &[source::Located]) -> PaymentsRead {
    let known: HashSet<&crate::record::Ref> = located.iter().map(|l| &l.record.reference).collect();
    let orders = payments.iter().filter(|(r, _)| known.contains(r)).count();
    let strays = payments.iter().count() - orders;
    PaymentsRead { events: payments.events, orders, unmatched: payments.unmatched.len() + strays }
}

/// The payment logs of the collected folders (`payments/` in each), read through the payment
/// module's own reader, when the mapping uses `payment.…`: an import that does not map payments
/// does not depend on them. (A stream carries no payments.)
fn payments(mapping: &crate::config::Mapping, folders: &[PathBuf]) -> std::io::Result<crate::payment::Ledger> {
    if mapping.uses(&|x| matches!(x, Expr::Payment(_))) {
        crate::payment::Ledger::read(folders)
    } else {
        Ok(crate::payment::Ledger::default())
    }
}

/// The key of derived values (`token`, `uuid5`, …): the site's signing key, the environment's
/// first, as `serve` reads it. Needed only when the mapping derives values.
fn secret(config: &crate::config::Config, mapping: &crate::config::Mapping) -> Result<Vec<u8>, ImportError> {
    let derives =
        mapping.uses(&|x| matches!(x, Expr::Call(Func::Uuid5 | Func::Token(_) | Func::Hex(_) | Func::Letters(_), _)));
    let c = &config.collect;
    let key = c.signing_key();
    match key {
        Some(k) => Ok(k.into_bytes()),
        None if derives => Err(ImportError::Target(format!(
            "the mapping derives values (uuid5, token, hex, letters) from the site's signing key, and none is set: \
             set ${} (or collect.signing_key) to the key the site was served with",
            c.signing_key_env
        ))),
        None => Ok(Vec::new()),
    }
}
