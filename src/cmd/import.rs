//! `cofferdam import`: renders the library's import [`Report`] and runs the import.

use crate::import::{Import, Options, Problem, RangeHow, Report};
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
    /// Print the plan, checked against the live schema, and write nothing.
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

/// Exit code when `--skip-bad` left bad records out.
const SKIPPED_BAD: u8 = 3;

pub fn cli(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let options = Options {
        site: args.site.clone(),
        to: args.to.clone(),
        from: args.from.clone(),
        skip_bad: args.skip_bad,
        batch_size: args.batch_size,
    };
    let import = runtime.block_on(Import::prepare(&options))?;
    let report = import.report();
    print!("{}", render(report));
    eprint!("{}", render_problems(report));
    if args.dry_run {
        println!("dry run: nothing written");
        if let Some(refused) = report.refusal(args.skip_bad) {
            return Err(refused.into());
        }
        return Ok(if report.bad_records() > 0 || !report.skipped.is_empty() {
            ExitCode::from(SKIPPED_BAD)
        } else {
            ExitCode::SUCCESS
        });
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(report.pending as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} records  {per_sec}  eta {eta}")
                .expect("static template"),
        );
        bar
    });
    let mut last_tenth = 0;
    let summary = import.execute(&runtime, &mut |written, total| match &bar {
        Some(b) => b.set_position(written as u64),
        // Off a terminal, a line per tenth is enough for a log.
        None => {
            if written * 10 / total != last_tenth {
                last_tenth = written * 10 / total;
                println!("  imported {written}/{total}");
            }
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let summary = summary?;
    println!("imported {} records ({} were imported before)", summary.imported, summary.already);
    Ok(if summary.bad > 0 { ExitCode::from(SKIPPED_BAD) } else { ExitCode::SUCCESS })
}

/// The plan: records, tables and their ranges, sample rows, double submits.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "import plan → {}", r.target);
    let _ = writeln!(o, "  records: {} to import, {} imported before, {} bad", r.pending, r.done, r.bad_records());
    for (form, n) in &r.per_form {
        let _ = writeln!(o, "    {form:<16} {n}");
    }
    if r.repeated > 0 {
        let _ = writeln!(
            o,
            "    {} records found twice (the same reference in two folders): each is imported once",
            r.repeated
        );
    }
    if r.voided > 0 {
        let _ = writeln!(o, "    {} records refused by their node after reaching the stream: not imported", r.voided);
    }
    for (form, n) in &r.unmapped {
        let _ = writeln!(o, "    {form:<16} {n} not imported: no [import.forms.{form}] mapping");
    }
    if let Some(p) = &r.payments {
        let _ = writeln!(
            o,
            "  payments: {} events, naming {} of the records read ({} name no order of these folders)",
            p.events, p.orders, p.unmatched
        );
    }
    for (t, id) in &r.tables {
        let new = if t.by_database { "new rows, ids by the database".to_string() } else { "new rows".to_string() };
        let counter = t.counter.map(|c| c.to_string()).unwrap_or_else(|| "none".into());
        let ids = match &t.range {
            Some(range) => {
                let how = match range.how {
                    RangeHow::Offset => "offset".to_string(),
                    RangeHow::Continued => format!("continues the range reserved from {}", range.reserved_from),
                    RangeHow::Auto => format!("auto: above MAX({}) {} and counter {counter}", range.column, t.max_id),
                };
                format!(
                    ", {} {}..={} ({how})",
                    if &range.column == id { "ids" } else { &range.column },
                    range.start,
                    range.start + range.count - 1
                )
            }
            None => String::new(),
        };
        let reused = if t.reused > 0 { format!(", {} reused by natural key", t.reused) } else { String::new() };
        let _ = writeln!(o, "  {:<16} {} {new}{ids}{reused}", t.name, t.new_rows);
    }
    for (t, _) in &r.tables {
        if let Some(range) = t.range.as_ref().filter(|range| range.taken.is_none()) {
            let _ = writeln!(o, "  range {} {}..={} is free", t.name, range.start, range.start + range.count - 1);
        }
    }
    let f = &r.findings;
    if !f.samples.is_empty() {
        let _ = writeln!(o, "  sample rows, as they will be written:");
        for s in &f.samples {
            let verb = if s.update { "update of" } else { "into" };
            let _ = writeln!(o, "    {verb} {} ({}): {}", s.table, s.at, s.columns.join(", "));
            for row in &s.rows {
                let _ = writeln!(o, "      ({})", row.join(", "));
            }
        }
    }
    for (table, column, n) in &f.truncated {
        let _ = writeln!(o, "  {table}.{column}: {n} values cut to the column's length by truncate()");
    }
    for (lookup, n) in &f.ambiguous {
        let _ = writeln!(
            o,
            "  lookup of {lookup}: {n} keys match several rows with different values; the smallest is taken"
        );
    }
    if !r.duplicates.is_empty() {
        let _ = writeln!(o, "  suspected double submits: {}", r.duplicates.len());
        for (reference, first) in r.duplicates.iter().take(20) {
            let _ = writeln!(o, "    {reference} looks like {first}");
        }
    }
    o
}

/// Everything the import stops on (or `--skip-bad` leaves out), with file and line, a few of
/// each place.
pub fn render_problems(r: &Report) -> String {
    use std::fmt::Write;
    const PER_PLACE: usize = 10;
    let mut o = String::new();
    for bad in &r.bad_lines {
        let _ = writeln!(o, "bad record: {bad}");
    }
    let mut shown: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut hidden: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    let all: Vec<(&Problem, bool)> =
        r.findings.problems.iter().map(|p| (p, false)).chain(r.skipped.iter().map(|p| (p, true))).collect();
    for (p, skipped) in all {
        let n = shown.entry(&p.place).or_default();
        *n += 1;
        if *n > PER_PLACE {
            *hidden.entry(&p.place).or_default() += 1;
            continue;
        }
        let what = if skipped {
            "left out"
        } else if p.record.is_some() {
            "bad record"
        } else {
            "problem"
        };
        match &p.record {
            Some(at) => {
                let _ = writeln!(
                    o,
                    "{what}: {}:{}: {}: {}: {}",
                    at.path.display(),
                    at.line,
                    at.reference,
                    p.place,
                    p.message
                );
            }
            None => {
                let _ = writeln!(o, "{what}: {}: {}", p.place, p.message);
            }
        }
    }
    for (place, n) in hidden {
        let _ = writeln!(o, "  … and {n} more at {place}");
    }
    o
}
