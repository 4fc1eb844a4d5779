//! `cofferdam stats`: what has been collected, read from the logs alone.

use super::writer::primary;
use crate::config::Site;
use crate::record;
use crate::replicate::Cursor;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, clap::Args)]
pub struct StatsArgs {
    /// The site folder (holding cofferdam.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    /// Collected folder to read (default: `collect.dir`).
    #[arg(long)]
    pub from: Option<PathBuf>,
}

#[derive(Debug, Default)]
pub struct Stats {
    /// (form, node, hour "2026-11-24T09") → records.
    pub per_hour: BTreeMap<(String, String, String), u64>,
    pub per_form: BTreeMap<String, u64>,
    pub sold: BTreeMap<String, u64>,
    /// Currency → cents.
    pub revenue: BTreeMap<String, u64>,
    pub bad: Vec<record::BadLine>,
    pub segments: usize,
    /// `ack = "local"`: per node, where its shipper is (`{node}.shipped`) and the records on
    /// disk it has not sent to the stream yet.
    pub shipping: BTreeMap<String, (Cursor, u64)>,
}

pub fn collect_stats(site: &Site, dir: &std::path::Path) -> std::io::Result<Stats> {
    let mut s = Stats::default();
    let nodes: std::collections::BTreeSet<String> =
        record::list_segments(dir)?.into_iter().map(|seg| seg.name.node).collect();
    for node in nodes {
        if let Some(c) = Cursor::load(dir, &node) {
            s.shipping.insert(node, (c, 0));
        }
    }
    for seg in record::list_segments(dir)? {
        let counted = site.config.forms.get(&seg.form).map(primary).unwrap_or(crate::config::StoreFormat::Jsonl);
        if seg.name.format != counted {
            continue;
        }
        s.segments += 1;
        for item in record::read_segment(&seg.path)? {
            let r = match item {
                Ok((_, r)) => r,
                Err(bad) => {
                    s.bad.push(bad);
                    continue;
                }
            };
            let hour = r.received_at.strftime("%Y-%m-%dT%H:00Z").to_string();
            *s.per_hour.entry((r.form.clone(), r.reference.node.clone(), hour)).or_default() += 1;
            *s.per_form.entry(r.form.clone()).or_default() += 1;
            if let Some((c, behind)) = s.shipping.get_mut(&r.reference.node) {
                *behind += u64::from(r.reference.seq > c.shipped);
            }
            for l in &r.lines {
                *s.sold.entry(l.sku.clone()).or_default() += l.quantity as u64;
            }
            if let (Some(t), Some(c)) = (r.total_cents, &r.currency) {
                *s.revenue.entry(c.clone()).or_default() += t;
            }
        }
    }
    Ok(s)
}

pub fn stats_cli(args: &StatsArgs) -> anyhow::Result<ExitCode> {
    let site = Site::load(&args.site)?;
    let dir = args.from.clone().unwrap_or_else(|| site.collected_dir());
    let s = collect_stats(&site, &dir)?;
    println!("collected in {} ({} segments)", dir.display(), s.segments);
    println!("\nrecords per form:");
    for (form, n) in &s.per_form {
        println!("  {form:<16} {n:>10}");
    }
    println!("\nper form, node and hour:");
    for ((form, node, hour), n) in &s.per_hour {
        println!("  {form:<16} {node:<12} {hour}  {n:>8}");
    }
    println!("\nstock:");
    for p in &site.config.catalog {
        let sold = s.sold.get(&p.sku).copied().unwrap_or(0);
        match p.stock {
            Some(cap) => println!("  {:<16} sold {sold:>8}  left {:>8} of {cap}", p.sku, cap.saturating_sub(sold)),
            None => println!("  {:<16} sold {sold:>8}  (no cap)", p.sku),
        }
    }
    println!("\nrevenue:");
    for (cur, cents) in &s.revenue {
        println!("  {}", crate::build::format_price(*cents, cur));
    }
    for (node, (c, behind)) in &s.shipping {
        println!("\nshipped to stream {}: node {node} up to {node}-{}, {behind} records behind", c.stream, c.shipped);
    }
    if !s.bad.is_empty() {
        println!("\n{} unreadable lines:", s.bad.len());
        for b in &s.bad {
            println!("  {b}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
