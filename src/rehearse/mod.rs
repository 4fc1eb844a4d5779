//! `cofferdam rehearse`: a bounded spike rehearsal on loopback that finds this machine's capacity.
//!
//! It starts the real server ([`server`]) on the built site with a scratch collected folder,
//! sends fresh visitors down the landing path ([`visitor`]) in steps of doubling concurrency,
//! and reports the highest step whose p99 latency stayed within the budget without a `503` or
//! an error: landing pages per second, orders per second, buyers per hour, as text, JSON or an
//! HTML page with charts ([`report`]). Everything stays on 127.0.0.1 and ends by itself within
//! `--duration` plus a few seconds.

mod report;
mod server;
mod visitor;

use crate::check::Format;
use crate::config::Site;
use crate::manifest::Manifest;
use anyhow::{bail, Context};
use serde::Serialize;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use visitor::{Step, Tally};

#[derive(Debug, Clone, clap::Args)]
pub struct RehearseArgs {
    /// The site folder (holding cofferdam.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    /// Seconds the whole rehearsal may take.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Most concurrent visitors.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Highest landing-path visits per second to try (unbounded ramp when unset).
    #[arg(long)]
    pub rate: Option<u64>,
    /// p99 latency budget per request in ms (default: `[check] latency_budget_ms`).
    #[arg(long)]
    pub latency_budget_ms: Option<u64>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Also write the rehearsal as a self-contained HTML page with charts (no script, no
    /// external asset) to this file.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
}

pub fn cli(args: &RehearseArgs) -> anyhow::Result<ExitCode> {
    if args.duration == 0 || args.connections == 0 {
        bail!("--duration and --connections must be at least 1");
    }
    let site = Site::load(&args.site)?;
    // Opened first: a path that cannot be written is better said before the rehearsal than after.
    let mut report_file = match &args.report {
        Some(path) => {
            Some(std::fs::File::create(path).with_context(|| format!("{}: cannot write the report", path.display()))?)
        }
        None => None,
    };
    let exe = std::env::current_exe().context("finding the cofferdam binary to start the server with")?;
    let report = rehearse(&site, &exe, args)?;
    match args.format {
        Format::Text => print!("{}", report.to_text()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if let (Some(file), Some(path)) = (report_file.as_mut(), &args.report) {
        use std::io::Write;
        file.write_all(report::to_html(&report).as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("{}: cannot write the report", path.display()))?;
        eprintln!("cofferdam rehearse: report written to {}", path.display());
    }
    Ok(if report.acknowledged_orders_lost == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// One step of the ramp.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub visitors: usize,
    pub seconds: f64,
    pub landing_pages_per_sec: f64,
    pub orders_per_sec: f64,
    pub get_p50_ms: f64,
    pub get_p99_ms: f64,
    pub post_p50_ms: f64,
    pub post_p99_ms: f64,
    pub requests: u64,
    pub busy_503: u64,
    pub rate_limited_429: u64,
    pub errors: u64,
    /// Why this step counts as over capacity, if it does.
    pub broke: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    pub visitors: usize,
    pub landing_pages_per_sec: f64,
    pub orders_per_sec: f64,
    pub buyers_per_hour: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub site: String,
    pub server: String,
    /// The scratch folder the server collected into, removed at the end.
    pub scratch: String,
    /// The requests of one visit, in order.
    pub path: Vec<String>,
    pub external_left_out: usize,
    pub latency_budget_ms: u64,
    pub rate_limit: Option<u64>,
    pub steps: Vec<StepReport>,
    /// The busiest step within budget; `None` when even the first step broke.
    pub capacity: Option<Capacity>,
    /// The first step over capacity, and why; `None` when no step broke.
    pub broke_first: Option<String>,
    pub acknowledged_orders: u64,
    /// Records of the order form in the scratch log after the server stopped.
    pub orders_on_disk: u64,
    pub acknowledged_orders_lost: u64,
    pub seconds: f64,
}

/// Runs the rehearsal against `site`'s built `dist/`, starting the server with `exe`.
pub fn rehearse(site: &Site, exe: &Path, args: &RehearseArgs) -> anyhow::Result<Report> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    if let Some(why) = crate::check::build_if_stale(site)? {
        eprintln!("cofferdam rehearse: built the site first ({why})");
    }
    let dist = site.output_dir();
    let manifest = Manifest::load(&dist)?;
    let plan = crate::check::visit_plan(site, &manifest);
    let steps = visitor::script(&plan);
    let form = plan.form.as_ref().map(|(name, _)| manifest.forms[name].clone());
    let budget = args.latency_budget_ms.unwrap_or(site.config.check.latency_budget_ms);

    let mut server =
        server::ScratchServer::start(exe, site, Duration::from_secs(10).min(Duration::from_secs(args.duration + 5)))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let ramp = ramp_levels(args.connections, deadline.saturating_duration_since(Instant::now()));
    let progress = progress_bar(ramp.len() as u64);
    let addr = server.addr;
    let seq = Arc::new(AtomicU64::new(1));
    let mut reports = Vec::new();
    // One unmeasured visit first: the writer's first segment file and the first fsync are
    // start-up costs, not capacity.
    let mut warm = Tally::default();
    let body = form.as_ref().map(|f| visitor::order_body(f, &manifest, 0)).unwrap_or_default();
    let warm_until =
        Instant::now() + Duration::from_secs(2).min(deadline.saturating_duration_since(Instant::now()) / 4);
    runtime.block_on(visitor::visit(addr, &steps, body, warm_until, &mut warm));
    let mut acknowledged = warm.orders;
    for (i, &visitors) in ramp.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now()).saturating_sub(STOP_RESERVE);
        let step_len = left / (ramp.len() - i) as u32;
        if step_len < MIN_STEP {
            break;
        }
        progress.set_message(format!("{visitors} visitors at once for {:.1} s", step_len.as_secs_f64()));
        let ctx = StepCtx {
            addr,
            steps: &steps,
            form: form.as_ref(),
            manifest: &manifest,
            seq: seq.clone(),
            rate: args.rate,
        };
        let (tally, took) = runtime.block_on(run_step(&ctx, visitors, step_len));
        acknowledged += tally.orders;
        let r = step_report(visitors, took, &tally, budget);
        progress.inc(1);
        progress.println(format!(
            "{visitors:>5} visitors: {:>8.0} landing pages/s {:>8.0} orders/s   GET p99 {:>6.1} ms   POST p99 {:>6.1} ms{}",
            r.landing_pages_per_sec,
            r.orders_per_sec,
            r.get_p99_ms,
            r.post_p99_ms,
            r.broke.as_deref().map(|b| format!("   broke: {b}")).unwrap_or_default()
        ));
        let broke = r.broke.is_some();
        reports.push(r);
        if broke {
            break;
        }
    }
    progress.finish_and_clear();
    drop(runtime);
    server.stop(Duration::from_secs(5));
    let on_disk = match (&plan.form, &form) {
        (Some((name, _)), Some(f)) => count_orders(&server.collected, name, f)?,
        _ => 0,
    };
    let capacity = reports
        .iter()
        .filter(|r| r.broke.is_none())
        .max_by(|a, b| {
            a.orders_per_sec
                .total_cmp(&b.orders_per_sec)
                .then(a.landing_pages_per_sec.total_cmp(&b.landing_pages_per_sec))
        })
        .map(|r| Capacity {
            visitors: r.visitors,
            landing_pages_per_sec: r.landing_pages_per_sec,
            orders_per_sec: r.orders_per_sec,
            buyers_per_hour: (r.orders_per_sec * 3600.0) as u64,
        });
    let broke_first =
        reports.iter().find_map(|r| r.broke.as_ref().map(|b| format!("at {} visitors at once: {b}", r.visitors)));
    let mut path: Vec<String> = Vec::new();
    for s in &steps {
        match s {
            Step::Page { path: p, .. } => path.push(format!("GET {p}")),
            Step::Asset(p) => path.push(format!("GET {p}")),
            Step::Post { path: p } => {
                path.push(format!("POST {p}"));
                path.push("GET (the 303's Location)".into());
            }
        }
    }
    Ok(Report {
        site: manifest.site.title.clone(),
        server: format!("http://{addr}"),
        scratch: server.scratch_dir().display().to_string(),
        path,
        external_left_out: plan.external,
        latency_budget_ms: budget,
        rate_limit: args.rate,
        steps: reports,
        capacity,
        broke_first,
        acknowledged_orders: acknowledged,
        orders_on_disk: on_disk,
        acknowledged_orders_lost: acknowledged.saturating_sub(on_disk),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Time kept at the end for stopping the server (it flushes and seals its logs).
const STOP_RESERVE: Duration = Duration::from_millis(500);
/// A step shorter than this measures connection set-up more than the server.
const MIN_STEP: Duration = Duration::from_millis(400);

/// 1, 2, 4, ... up to `max` (always including `max`), keeping the highest levels when the
/// time does not allow a step of at least [`MIN_STEP`] each.
fn ramp_levels(max: usize, time: Duration) -> Vec<usize> {
    let mut levels = Vec::new();
    let mut c = 1;
    while c < max {
        levels.push(c);
        c *= 2;
    }
    levels.push(max);
    let fits = ((time.saturating_sub(STOP_RESERVE).as_millis() / MIN_STEP.as_millis()) as usize).max(1);
    if levels.len() > fits {
        levels.drain(..levels.len() - fits);
    }
    levels
}

struct StepCtx<'a> {
    addr: std::net::SocketAddr,
    steps: &'a [Step],
    form: Option<&'a crate::config::Form>,
    manifest: &'a Manifest,
    seq: Arc<AtomicU64>,
    rate: Option<u64>,
}

/// `visitors` loops of back-to-back visits for `len`; with a rate, visits start on a shared
/// schedule of `rate` per second instead.
async fn run_step(ctx: &StepCtx<'_>, visitors: usize, len: Duration) -> (Tally, Duration) {
    let start = Instant::now();
    let until = start + len;
    let interval_ns = ctx.rate.map(|r| 1_000_000_000 / r.max(1));
    let next_slot = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(visitors);
    for _ in 0..visitors {
        let steps = ctx.steps.to_vec();
        let bodies: Option<(crate::config::Form, Manifest)> = ctx.form.map(|f| (f.clone(), ctx.manifest.clone()));
        let seq = ctx.seq.clone();
        let next_slot = next_slot.clone();
        let addr = ctx.addr;
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < until {
                if let Some(every) = interval_ns {
                    let slot = next_slot.fetch_add(every, Ordering::Relaxed);
                    let at = start + Duration::from_nanos(slot);
                    if at >= until {
                        break;
                    }
                    tokio::time::sleep_until(at.into()).await;
                }
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let body = bodies.as_ref().map(|(f, m)| visitor::order_body(f, m, n)).unwrap_or_default();
                visitor::visit(addr, &steps, body, until, &mut tally).await;
            }
            tally
        }));
    }
    let mut total = Tally::default();
    // A visit in flight at the end gets a moment to finish; then it is dropped.
    let hard_stop = until + Duration::from_millis(1500);
    for t in tasks {
        let abort = t.abort_handle();
        match tokio::time::timeout_at(hard_stop.into(), t).await {
            Ok(Ok(tally)) => total.merge(tally),
            Ok(Err(_)) => total.errors += 1,
            Err(_) => abort.abort(),
        }
    }
    (total, start.elapsed().min(len + Duration::from_millis(1500)).max(len))
}

fn step_report(visitors: usize, took: Duration, t: &Tally, budget_ms: u64) -> StepReport {
    let secs = took.as_secs_f64();
    let (get50, get99) = percentiles(&t.get_micros);
    let (post50, post99) = percentiles(&t.post_micros);
    let mut broke = Vec::new();
    if get99 > budget_ms as f64 {
        broke.push(format!("GET p99 {get99:.1} ms over the {budget_ms} ms budget"));
    }
    if post99 > budget_ms as f64 {
        broke.push(format!("order POST p99 {post99:.1} ms over the {budget_ms} ms budget"));
    }
    if t.busy > 0 {
        broke.push(format!("{} answers 503 busy (the writer queue was full)", t.busy));
    }
    if t.rate_limited > 0 {
        broke.push(format!("{} answers 429 (rate limit)", t.rate_limited));
    }
    if t.sold_out > 0 {
        broke.push(format!("{} answers 409 sold out", t.sold_out));
    }
    if t.errors > 0 {
        broke.push(format!("{} errors (first: {})", t.errors, t.first_error.as_deref().unwrap_or("?")));
    }
    if t.landing_pages == 0 {
        broke.push("no landing page was served in this step".into());
    }
    StepReport {
        visitors,
        seconds: round(secs, 2),
        landing_pages_per_sec: round(t.landing_pages as f64 / secs, 1),
        orders_per_sec: round(t.orders as f64 / secs, 1),
        get_p50_ms: get50,
        get_p99_ms: get99,
        post_p50_ms: post50,
        post_p99_ms: post99,
        requests: (t.get_micros.len() + t.post_micros.len()) as u64,
        busy_503: t.busy,
        rate_limited_429: t.rate_limited,
        errors: t.errors,
        broke: (!broke.is_empty()).then(|| broke.join("; ")),
    }
}

/// (p50, p99) in ms, two decimals.
fn percentiles(micros: &[u32]) -> (f64, f64) {
    if micros.is_empty() {
        return (0.0, 0.0);
    }
    let mut v = micros.to_vec();
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1] as f64 / 1000.0;
    (round(at(0.50), 2), round(at(0.99), 2))
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Records of the form `name` in the scratch log (in one of its formats, as each record is
/// written once per format).
fn count_orders(collected: &Path, name: &str, form: &crate::config::Form) -> anyhow::Result<u64> {
    let format = form.primary_store();
    let mut n = 0;
    let segments = crate::record::list_segments(collected).with_context(|| format!("{}", collected.display()))?;
    for seg in segments.iter().filter(|s| s.form == name && s.name.format == format) {
        n += crate::record::read_segment(&seg.path)
            .with_context(|| format!("{}", seg.path.display()))?
            .into_iter()
            .filter(|r| r.is_ok())
            .count() as u64;
    }
    Ok(n)
}

fn progress_bar(steps: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(steps);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} rehearsing [{bar:30}] step {pos}/{len} {msg} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

impl Report {
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "cofferdam rehearse: {} on {}", self.site, self.server);
        let _ = writeln!(s, "collecting into {} (removed afterwards; the site's own log is not touched)", self.scratch);
        let _ = writeln!(s, "one visitor: {}", self.path.join(" → "));
        if self.external_left_out > 0 {
            let _ = writeln!(s, "left out: {} request(s) to other hosts (loopback only)", self.external_left_out);
        }
        let _ = writeln!(
            s,
            "budget: p99 ≤ {} ms per request{}\n",
            self.latency_budget_ms,
            self.rate_limit.map(|r| format!(", at most {r} visits/s")).unwrap_or_default()
        );
        let _ = writeln!(
            s,
            "{:>8} {:>15} {:>10} {:>10} {:>10} {:>10} {:>6} {:>7}",
            "visitors", "landing pages/s", "orders/s", "GET p50", "GET p99", "POST p99", "503", "errors"
        );
        for r in &self.steps {
            let _ = writeln!(
                s,
                "{:>8} {:>15.0} {:>10.0} {:>7.1} ms {:>7.1} ms {:>7.1} ms {:>6} {:>7}{}",
                r.visitors,
                r.landing_pages_per_sec,
                r.orders_per_sec,
                r.get_p50_ms,
                r.get_p99_ms,
                r.post_p99_ms,
                r.busy_503,
                r.errors,
                if r.broke.is_some() { "  ✗" } else { "" }
            );
        }
        s.push('\n');
        match &self.capacity {
            Some(c) => {
                let _ = writeln!(
                    s,
                    "capacity: {:.0} landing pages/s and {:.0} orders/s within p99 ≤ {} ms ({})",
                    c.landing_pages_per_sec,
                    c.orders_per_sec,
                    self.latency_budget_ms,
                    visitors(c.visitors)
                );
                let _ = writeln!(s, "          = {} buyers per hour on this machine", thousands(c.buyers_per_hour));
            }
            None => {
                let _ = writeln!(s, "capacity: none found within p99 ≤ {} ms", self.latency_budget_ms);
            }
        }
        match &self.broke_first {
            Some(b) => {
                let _ = writeln!(s, "broke first {b}");
            }
            None if self.rate_limit.is_some() => {
                let _ = writeln!(
                    s,
                    "held --rate {} visits/s at every step: the capacity is at least that (drop --rate to find the limit)",
                    self.rate_limit.unwrap_or(0)
                );
            }
            None => {
                let top = self.steps.last().map(|r| r.visitors).unwrap_or(0);
                let _ = writeln!(
                    s,
                    "did not break up to {}: a lower bound, as the visitors share this machine's CPU \
                     with the server (try --connections {})",
                    visitors(top),
                    top * 4
                );
            }
        }
        let _ = writeln!(
            s,
            "orders: {} acknowledged (303), {} on disk in the scratch log{}",
            self.acknowledged_orders,
            self.orders_on_disk,
            if self.acknowledged_orders_lost > 0 {
                format!(" — {} ACKNOWLEDGED ORDERS MISSING", self.acknowledged_orders_lost)
            } else {
                String::new()
            }
        );
        let _ = writeln!(s, "took {:.1} s; over loopback, so no network or TLS cost is in these figures", self.seconds);
        s
    }
}

fn visitors(n: usize) -> String {
    if n == 1 {
        "1 visitor at a time".into()
    } else {
        format!("{n} visitors at once")
    }
}

/// `1234567` → `1,234,567`
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_doubles_and_keeps_the_top_when_short_of_time() {
        assert_eq!(ramp_levels(64, Duration::from_secs(30)), [1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(ramp_levels(48, Duration::from_secs(30)), [1, 2, 4, 8, 16, 32, 48]);
        assert_eq!(ramp_levels(64, Duration::from_millis(1700)), [16, 32, 64]);
        assert_eq!(ramp_levels(1, Duration::from_millis(10)), [1]);
    }

    #[test]
    fn percentiles_and_thousands() {
        let v: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentiles(&v), (50.0, 99.0));
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
