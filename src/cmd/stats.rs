//! `cofferdam stats`: renders what [`collect_stats`] read from the logs.

use crate::build::format_price;
use crate::collect::collect_stats;
use crate::config::Site;
use crate::payment::PAYMENTS_DIR;
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

pub fn cli(args: &StatsArgs) -> anyhow::Result<ExitCode> {
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
        let sold = s.sold.get(&*p.sku).copied().unwrap_or(0);
        match p.stock {
            Some(cap) => println!("  {:<16} sold {sold:>8}  left {:>8} of {cap}", p.sku, cap.saturating_sub(sold)),
            None => println!("  {:<16} sold {sold:>8}  (no cap)", p.sku),
        }
    }
    println!("\nrevenue:");
    for (cur, cents) in &s.revenue {
        println!("  {}", format_price(*cents, cur));
    }
    for (node, (c, behind)) in &s.shipping {
        println!("\nshipped to stream {}: node {node} up to {node}-{}, {behind} records behind", c.stream, c.shipped);
    }
    if !s.payments.is_empty() || s.payment_events > 0 {
        println!("\npayments ({} events in {}):", s.payment_events, dir.join(PAYMENTS_DIR).display());
        for (form, p) in &s.payments {
            println!(
                "  {form:<16} paid {:>8}  unpaid {:>8}  refunded {:>6}  amount mismatches {:>6}",
                p.paid, p.unpaid, p.refunded, p.mismatched
            );
        }
        for (r, paid, total, currency) in s.mismatches.iter().take(20) {
            println!(
                "  mismatch: {r} paid {}, its catalog total is {}",
                format_price(*paid, currency),
                format_price(*total, currency)
            );
        }
        if s.mismatches.len() > 20 {
            println!("  … and {} more mismatches", s.mismatches.len() - 20);
        }
        if s.unmatched_payments > 0 {
            println!("  payment events naming no order of these logs: {}", s.unmatched_payments);
        }
    }
    if !s.bad.is_empty() {
        println!("\n{} unreadable lines:", s.bad.len());
        for b in &s.bad {
            println!("  {b}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
