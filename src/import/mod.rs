//! `cofferdam import`: `collected/` → the shop's database, with reserved ID ranges, exactly once.
//!
//! [`source`] reads and orders the records, [`plan`] gives every row its ID, [`db`] speaks the
//! target's dialect. Rows and their ledger entries are written in the same transaction, one
//! batch at a time, so a re-run imports nothing twice and a killed run resumes.

mod db;
mod plan;
mod source;

use crate::config::{ConfigError, Site};
use db::{Target, Value, LEDGER};
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
    /// Collected folders to merge, one per node (default: `collect.dir`).
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
    #[error("the database refused, table {table}: {detail} (nothing of this batch was written)")]
    Refused { table: String, detail: String },
    #[error("{at}: {message}")]
    Record { at: String, message: String },
    #[error("{0} bad records (listed above): nothing was imported; fix them, or import the good ones with --skip-bad")]
    Bad(usize),
    #[error("the reserved range of {table} ({from}..{to}) holds {found} rows that are not ours: choose another offset")]
    RangeTaken {
        table: String,
        from: i64,
        to: i64,
        found: i64,
    },
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Summary {
    pub imported: usize,
    pub already: usize,
    pub bad: usize,
}

pub fn cli(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let summary = runtime.block_on(run(args))?;
    Ok(if summary.bad > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn run(args: &ImportArgs) -> Result<Summary, ImportError> {
    let site = Site::load(&args.site)?;
    let config = &site.config;
    let url = resolve_url(&site, args.to.as_deref().unwrap_or(&config.import.to));
    let folders = if args.from.is_empty() {
        vec![site.collected_dir()]
    } else {
        args.from.clone()
    };
    let src = source::read(config, &folders)?;
    for bad in &src.bad {
        eprintln!("bad record: {bad}");
    }
    if !src.bad.is_empty() && !args.skip_bad && !args.dry_run {
        return Err(ImportError::Bad(src.bad.len()));
    }
    let target = Target::connect(&url).await?;
    let done = target.ledger_refs().await?;
    let plan = plan::make(config, &target, &src.records, &done).await?;

    print_plan(&db::redact(&url), &src, &plan);
    for (table, t) in &plan.tables {
        let new = t.count - t.count_done;
        if new == 0 {
            continue;
        }
        let found = target
            .count_in(table, &t.id_column, t.start, t.start + t.count)
            .await?
            - t.count_done;
        if found > 0 {
            return Err(ImportError::RangeTaken {
                table: table.clone(),
                from: t.start,
                to: t.start + t.count - 1,
                found,
            });
        }
        println!(
            "  range {table} {}..={} is free",
            t.start,
            t.start + t.count - 1
        );
    }
    let summary = Summary {
        imported: plan.pending(),
        already: plan.records.len() - plan.pending(),
        bad: src.bad.len(),
    };
    if args.dry_run {
        println!("dry run: nothing written");
        return Ok(summary);
    }
    target.ensure_bookkeeping().await?;
    let starts = plan
        .tables
        .iter()
        .map(|(t, p)| (t.clone(), p.start))
        .collect();
    target.store_ranges(&starts, &plan.stored_ranges).await?;
    // Before the first row: from now on the shop's own inserts land above the reserved range,
    // even while this import runs or if it is killed halfway.
    for (table, t) in plan.tables.iter().filter(|(_, t)| t.count > 0) {
        target
            .bump_sequence(table, &t.id_column, t.start + t.count - 1)
            .await?;
    }
    write(
        &target,
        &plan,
        args.batch_size.unwrap_or(config.import.batch_size).max(1),
    )
    .await?;
    println!(
        "imported {} records ({} were imported before)",
        summary.imported, summary.already
    );
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
    for r in plan.records.iter().filter(|r| !r.already) {
        *per_form.entry(r.form.as_str()).or_default() += 1;
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
    for (form, n) in &src.unmapped {
        println!("    {form:<16} {n} not imported: no [import.forms.{form}] mapping");
    }
    for t in &plan.table_order {
        let p = &plan.tables[t];
        let new = p.count - p.count_done;
        let range = if p.count > 0 {
            format!("{}..={}", p.start, p.start + p.count - 1)
        } else {
            "-".into()
        };
        println!(
            "  {t:<16} {new} new rows, ids {range} ({}), {} reused by natural key",
            if p.auto { "auto" } else { "offset" },
            p.reused
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

async fn write(target: &Target, plan: &plan::Plan, batch_size: usize) -> Result<(), ImportError> {
    let pending: Vec<&plan::PlannedRecord> = plan.records.iter().filter(|r| !r.already).collect();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(pending.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} records  {per_sec}  eta {eta}",
            )
            .expect("static template"),
        );
        bar
    });
    let imported_at = jiff::Timestamp::now().to_string();
    let mut written = 0;
    for batch in pending.chunks(batch_size) {
        let mut tx = target
            .pool
            .begin()
            .await
            .map_err(|e| target.refused(LEDGER, e))?;
        for table in &plan.table_order {
            let rows: Vec<&plan::Row> = batch
                .iter()
                .flat_map(|r| r.rows.iter())
                .filter(|r| &r.table == table)
                .collect();
            let t = &plan.tables[table];
            for chunk in rows.chunks(200) {
                insert_rows(target, &mut tx, table, t, chunk).await?;
            }
        }
        let mut sql = format!("INSERT INTO {LEDGER} (ref, form, imported_at, ids) VALUES ");
        let mut n = 0;
        for i in 0..batch.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            let marks: Vec<String> = (0..4).map(|k| target.placeholder(n + k + 1)).collect();
            n += 4;
            sql.push_str(&format!("({})", marks.join(", ")));
        }
        let mut q = sqlx::query(&sql);
        for r in batch {
            q = q
                .bind(r.reference.clone())
                .bind(r.form.clone())
                .bind(imported_at.clone())
                .bind(serde_json::to_string(&r.ids).expect("ids serialize"));
        }
        q.execute(&mut *tx)
            .await
            .map_err(|e| target.refused(LEDGER, e))?;
        tx.commit().await.map_err(|e| target.refused(LEDGER, e))?;
        written += batch.len();
        match &bar {
            Some(b) => b.set_position(written as u64),
            None => println!("  imported {written}/{}", pending.len()),
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(())
}

async fn insert_rows(
    target: &Target,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    table: &str,
    t: &plan::TablePlan,
    rows: &[&plan::Row],
) -> Result<(), ImportError> {
    let cols: Vec<&str> = rows[0].columns.iter().map(|(c, _)| c.as_str()).collect();
    // Rows of one table can come from entities with different column sets.
    if rows.iter().any(|r| {
        r.columns.len() != cols.len() || r.columns.iter().zip(&cols).any(|((a, _), b)| a != b)
    }) {
        for r in rows {
            Box::pin(insert_rows(target, tx, table, t, std::slice::from_ref(r))).await?;
        }
        return Ok(());
    }
    let mut sql = format!(
        "INSERT INTO {} ({}, {}) VALUES ",
        target.quote(table),
        target.quote(&t.id_column),
        cols.iter()
            .map(|c| target.quote(c))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut n = 0;
    for (i, _) in rows.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let mut marks = vec![target.value_sql(n + 1, &t.columns[&t.id_column])];
        for (k, c) in cols.iter().enumerate() {
            marks.push(target.value_sql(n + k + 2, &t.columns[*c]));
        }
        n += cols.len() + 1;
        sql.push_str(&format!("({})", marks.join(", ")));
    }
    let mut q = sqlx::query(&sql);
    for r in rows {
        q = q.bind(r.id);
        for (_, v) in &r.columns {
            q = match v {
                Value::Null => q.bind(None::<String>),
                Value::Int(i) => q.bind(*i),
                Value::Text(s) => q.bind(s.clone()),
                Value::Time(ts) => q.bind(target.time_text(*ts)),
            };
        }
    }
    q.execute(&mut **tx)
        .await
        .map_err(|e| target.refused(table, e))?;
    Ok(())
}
