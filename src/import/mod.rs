//! `cofferdam import`: `collected/` → the shop's database, with reserved ID ranges, exactly once.
//!
//! [`source`] reads and orders the records, [`plan`] gives every row its ID, [`db`] speaks the
//! target's dialect. Rows and their ledger entries are written in the same transaction, one
//! batch at a time, so a re-run imports nothing twice and a killed run resumes.

mod db;
mod plan;
mod source;
mod stream;

use crate::config::{ConfigError, Site};
use db::Target;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// The site folder (holding cofferdam.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    /// Target database URL (default: `import.to`; a relative sqlite path is below the site).
    #[arg(long)]
    pub to: Option<String>,
    /// Print the plan and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Collected folders to merge, one per node (default: `collect.dir`), or the JetStream
    /// stream every node replicated to: `nats://HOST:PORT/STREAM`.
    #[arg(long)]
    pub from: Vec<PathBuf>,
    /// Import the good records even when some are bad (the bad ones are reported).
    #[arg(long)]
    pub skip_bad: bool,
    /// Records per transaction (default: `import.batch_size`).
    #[arg(long)]
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
    #[error("the database refused, table {table}: {detail} (nothing of this batch was written)")]
    Refused { table: String, detail: String },
    #[error("{at}: {message}")]
    Record { at: String, message: String },
    #[error("{0} bad records (listed above): nothing was imported; fix them, or import the good ones with --skip-bad")]
    Bad(usize),
    #[error(
        "the reserved range of {table} ({from}..{to}) holds {found} rows that are not ours: choose another offset"
    )]
    RangeTaken { table: String, from: i64, to: i64, found: i64 },
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Summary {
    pub imported: usize,
    pub already: usize,
    pub bad: usize,
}

pub fn cli(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let summary = runtime.block_on(run(args))?;
    Ok(if summary.bad > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS })
}

pub async fn run(args: &ImportArgs) -> Result<Summary, ImportError> {
    let site = Site::load(&args.site)?;
    let config = &site.config;
    let url = resolve_url(&site, args.to.as_deref().unwrap_or(&config.import.to));
    let (streams, folders): (Vec<PathBuf>, Vec<PathBuf>) =
        args.from.iter().cloned().partition(|f| stream::is_stream(f));
    let folders = if args.from.is_empty() { vec![site.collected_dir()] } else { folders };
    let started = std::time::Instant::now();
    let mut streamed = Vec::new();
    for url in &streams {
        let (records, voided) = stream::fetch(url).await.map_err(ImportError::Stream)?;
        if voided > 0 {
            println!(
                "{}: {voided} records were refused by their node after reaching the stream: not imported",
                url.display()
            );
        }
        streamed.extend(records);
    }
    let src = source::read(config, &folders, streamed)?;
    tracing::debug!(records = src.records.len(), elapsed = ?started.elapsed(), "read and checked");
    for bad in &src.bad {
        eprintln!("bad record: {bad}");
    }
    if !src.bad.is_empty() && !args.skip_bad && !args.dry_run {
        return Err(ImportError::Bad(src.bad.len()));
    }
    let target = Target::connect(&url).await?;
    let done = target.ledger_refs().await?;
    let plan = plan::make(config, &target, &src.records, &done).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "planned");

    print_plan(&db::redact(&url), &src, &plan);
    for t in &plan.tables {
        let Some((first, last)) = t.range().filter(|_| t.count > t.count_done) else {
            continue;
        };
        let found = target.count_in(&t.name, &t.id_column, first, last + 1).await? - t.count_done;
        if found > 0 {
            return Err(ImportError::RangeTaken { table: t.name.clone(), from: first, to: last, found });
        }
        println!("  range {} {first}..={last} is free", t.name);
    }
    let summary =
        Summary { imported: plan.pending(), already: plan.records.len() - plan.pending(), bad: src.bad.len() };
    if args.dry_run {
        println!("dry run: nothing written");
        return Ok(summary);
    }
    target.ensure_bookkeeping().await?;
    let starts = plan.tables.iter().map(|t| (t.name.clone(), t.start)).collect();
    target.store_ranges(&starts, &plan.stored_ranges).await?;
    // Before the first row: from now on the shop's own inserts land above the reserved range,
    // even while this import runs or if it is killed halfway.
    for t in &plan.tables {
        if let Some((_, last)) = t.range() {
            target.bump_sequence(&t.name, &t.id_column, last).await?;
        }
    }
    write(&target, &plan, &src.records, args.batch_size.unwrap_or(config.import.batch_size).max(1)).await?;
    println!("imported {} records ({} were imported before)", summary.imported, summary.already);
    Ok(summary)
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

fn print_plan(url: &str, src: &source::Source, plan: &plan::Plan) {
    let mut per_form = std::collections::BTreeMap::<&str, usize>::new();
    for p in plan.records.iter().filter(|p| !p.already) {
        *per_form.entry(src.records[p.index].record.form.as_str()).or_default() += 1;
    }
    println!("import plan → {url}");
    println!(
        "  records: {} to import, {} imported before, {} bad",
        plan.pending(),
        plan.records.len() - plan.pending(),
        src.bad.len()
    );
    for (form, n) in per_form {
        println!("    {form:<16} {n}");
    }
    if src.repeated > 0 {
        println!("    {} records found twice (the same reference in two folders): each is imported once", src.repeated);
    }
    for (form, n) in &src.unmapped {
        println!("    {form:<16} {n} not imported: no [import.forms.{form}] mapping");
    }
    for t in &plan.tables {
        let range = t.range().map(|(a, b)| format!("{a}..={b}")).unwrap_or_else(|| "-".into());
        println!(
            "  {:<16} {} new rows, ids {range} ({}), {} reused by natural key",
            t.name,
            t.count - t.count_done,
            if t.auto { "auto" } else { "offset" },
            t.reused
        );
    }
    let dups = source::suspected_duplicates(&src.records);
    if !dups.is_empty() {
        println!("  suspected double submits: {}", dups.len());
        for (r, first) in dups.iter().take(20) {
            println!("    {r} looks like {first}");
        }
    }
}

/// Writes the pending records in transactions of `batch_size` records: their rows, table by
/// table (parents first), and their ledger entries, so a batch is in completely or not at all.
async fn write(
    target: &Target,
    plan: &plan::Plan,
    located: &[source::Located],
    batch_size: usize,
) -> Result<(), ImportError> {
    let pending: Vec<&plan::PlannedRecord> = plan.records.iter().filter(|r| !r.already).collect();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(pending.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} records  {per_sec}  eta {eta}")
                .expect("static template"),
        );
        bar
    });
    let imported_at = jiff::Timestamp::now().to_string();
    let mut written = 0;
    for batch in pending.chunks(batch_size) {
        let mut by_table: Vec<Vec<plan::Row>> = plan.tables.iter().map(|_| Vec::new()).collect();
        for p in batch {
            for row in plan.rows(p, located)? {
                by_table[row.entity.table].push(row);
            }
        }
        let ledger: Vec<db::LedgerEntry> = batch
            .iter()
            .map(|p| db::LedgerEntry {
                reference: located[p.index].record.reference.to_string(),
                form: located[p.index].record.form.clone(),
                ids: plan.ledger_ids(p),
            })
            .collect();
        target.write_batch(&plan.tables, &by_table, &ledger, &imported_at).await?;
        let before = written;
        written += batch.len();
        match &bar {
            Some(b) => b.set_position(written as u64),
            // Off a terminal, a line per tenth is enough for a log.
            None if before * 10 / pending.len() != written * 10 / pending.len() => {
                println!("  imported {written}/{}", pending.len())
            }
            None => {}
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(())
}
