//! The admin page's memory: one background task reads the very text `/metrics` serves once a
//! second and keeps the figures the page plots in a bounded ring (ten minutes by default).
//! Reading the rendered text rather than the counters behind it keeps one source of truth:
//! the page, Prometheus and Grafana see the same numbers under the same names.

use super::metrics::ServeMetrics;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Counters are totals since start; gauges are values now. A counter not yet in `/metrics`
/// (nothing happened) reads 0; a missing gauge reads `None` or is left out of its map.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// `cofferdam_http_requests_total`, every route and status.
    pub static_requests: f64,
    /// Form → `cofferdam_collect_post_seconds_count` (every post, whatever its answer).
    pub posts: BTreeMap<Arc<str>, f64>,
    /// Form → `cofferdam_collect_form_records_total` (records written).
    pub orders: BTreeMap<Arc<str>, f64>,
    /// Reason → refused posts and requests: `cofferdam_collect_rejected_total{reason}`, and the
    /// static 4xx of `cofferdam_http_requests_total` as `static_{status}`.
    pub refused: BTreeMap<Arc<str>, f64>,
    /// `cofferdam_connections_refused_total`: connections closed at the cap.
    pub connections_refused: f64,
    /// `cofferdam_collect_post_seconds_bucket`, all forms: (upper bound, cumulative count).
    pub post_buckets: Vec<(f64, f64)>,
    pub fsyncs: f64,
    /// `cofferdam_collect_batch_size_count` and `_sum`: batches, and posts in them.
    pub batches: f64,
    pub batched_posts: f64,
    /// SKU → `cofferdam_stock_remaining`.
    pub stock: BTreeMap<Arc<str>, f64>,
    /// `cofferdam_collect_disk_free_bytes`.
    pub disk_free_bytes: Option<f64>,
    /// `cofferdam_replicate_lag_records` (`ack = "local"` only).
    pub replication_lag: Option<f64>,
    /// `cofferdam_replicate_records_total`.
    pub replicated: f64,
}

impl Figures {
    /// Reads a `/metrics` text. `previous` lends its map keys, so ten minutes of samples share
    /// one copy of each form, reason and SKU name.
    pub fn read(text: &str, previous: Option<&Figures>) -> Figures {
        let empty = Figures::default();
        let prev = previous.unwrap_or(&empty);
        let mut f = Figures::default();
        for row in text.lines().filter_map(Row::parse) {
            let label = |name: &str| row.labels.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str());
            match row.name {
                "cofferdam_http_requests_total" => {
                    f.static_requests += row.value;
                    if let Some(status) = label("status").filter(|s| s.starts_with('4')) {
                        add(&mut f.refused, &prev.refused, &format!("static_{status}"), row.value);
                    }
                }
                "cofferdam_collect_post_seconds_count" => {
                    add(&mut f.posts, &prev.posts, label("form").unwrap_or(""), row.value)
                }
                "cofferdam_collect_post_seconds_bucket" => {
                    let le = label("le").and_then(|l| l.parse::<f64>().ok()).unwrap_or(f64::INFINITY);
                    match f.post_buckets.iter_mut().find(|(b, _)| *b == le) {
                        Some((_, n)) => *n += row.value,
                        None => f.post_buckets.push((le, row.value)),
                    }
                }
                "cofferdam_collect_form_records_total" => {
                    add(&mut f.orders, &prev.orders, label("form").unwrap_or(""), row.value)
                }
                "cofferdam_collect_rejected_total" => {
                    add(&mut f.refused, &prev.refused, label("reason").unwrap_or(""), row.value)
                }
                "cofferdam_connections_refused_total" => f.connections_refused = row.value,
                "cofferdam_collect_fsyncs_total" => f.fsyncs = row.value,
                "cofferdam_collect_batch_size_count" => f.batches = row.value,
                "cofferdam_collect_batch_size_sum" => f.batched_posts = row.value,
                "cofferdam_stock_remaining" => add(&mut f.stock, &prev.stock, label("sku").unwrap_or(""), row.value),
                "cofferdam_collect_disk_free_bytes" => f.disk_free_bytes = Some(row.value),
                "cofferdam_replicate_lag_records" => f.replication_lag = Some(row.value),
                "cofferdam_replicate_records_total" => f.replicated = row.value,
                _ => {}
            }
        }
        f.post_buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        f
    }
}

fn add(map: &mut BTreeMap<Arc<str>, f64>, previous: &BTreeMap<Arc<str>, f64>, key: &str, value: f64) {
    let key = previous.get_key_value(key).map(|(k, _)| k.clone()).unwrap_or_else(|| key.into());
    *map.entry(key).or_default() += value;
}

/// One line of the Prometheus text format: `name{label="value",…} value`.
#[derive(Debug, PartialEq)]
struct Row<'a> {
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    value: f64,
}

impl<'a> Row<'a> {
    fn parse(line: &'a str) -> Option<Row<'a>> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let name_end = line.find(['{', ' '])?;
        let name = &line[..name_end];
        let mut labels = Vec::new();
        let mut rest = &line[name_end..];
        if let Some(inner) = rest.strip_prefix('{') {
            rest = inner;
            loop {
                rest = rest.trim_start_matches([',', ' ']);
                if let Some(after) = rest.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let (key, after) = rest.split_once("=\"")?;
                let (value, after) = unquote(after)?;
                labels.push((key.trim(), value));
                rest = after;
            }
        }
        let value = rest.split_whitespace().next()?.parse().ok()?;
        Some(Row { name, labels, value })
    }
}

/// A label value up to its closing quote (escapes `\\`, `\"`, `\n`), and what follows it.
fn unquote(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub figures: Figures,
}

/// The ring: at most `keep` samples, the oldest dropped first.
pub struct Samples {
    ring: Mutex<VecDeque<Sample>>,
    keep: usize,
    pub every: Duration,
}

impl Samples {
    pub fn new(every: Duration, window: Duration) -> Samples {
        let keep = (window.as_secs_f64() / every.as_secs_f64()).ceil().max(2.0) as usize;
        Samples { ring: Mutex::new(VecDeque::with_capacity(keep)), keep, every }
    }

    pub fn push(&self, sample: Sample) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == self.keep {
            ring.pop_front();
        }
        ring.push_back(sample);
    }

    /// Runs `f` on the samples, oldest first, without copying them.
    pub fn with<R>(&self, f: impl FnOnce(&VecDeque<Sample>) -> R) -> R {
        f(&self.ring.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Takes a sample every `every` until `stop`: measures the free space under `collected`
    /// (exported as the gauge `cofferdam_collect_disk_free_bytes`), then reads `/metrics`.
    pub async fn run(
        self: Arc<Self>,
        serve_metrics: Arc<ServeMetrics>,
        collected: PathBuf,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if let Some(free) = free_bytes(&collected) {
                metrics::gauge!("cofferdam_collect_disk_free_bytes").set(free as f64);
            }
            let text = serve_metrics.render();
            let figures = self.with(|ring| Figures::read(&text, ring.back().map(|s| &s.figures)));
            self.push(Sample { at: Instant::now(), figures });
        }
    }
}

/// Bytes an unprivileged writer can still put on the file system holding `dir` (or the
/// nearest existing parent: the collector creates `collected/` on its first record).
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let existing = dir.ancestors().find(|d| d.exists())?;
    let path = std::ffi::CString::new(existing.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `st` a properly sized, writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    // The field types differ between platforms (u32 on some 32-bit ones).
    #[allow(clippy::unnecessary_cast)]
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP cofferdam_http_requests_total Static requests by status.
# TYPE cofferdam_http_requests_total counter
cofferdam_http_requests_total{route="static",status="200"} 120
cofferdam_http_requests_total{route="static",status="404"} 3
cofferdam_http_requests_total{route="sold_out",status="200"} 2
cofferdam_connections_refused_total 4
# TYPE cofferdam_collect_rejected_total counter
cofferdam_collect_rejected_total{reason="invalid"} 5
cofferdam_collect_rejected_total{reason="busy"} 7
cofferdam_collect_form_records_total{form="order"} 40
cofferdam_collect_form_records_total{form="offer"} 2
cofferdam_collect_fsyncs_total 10
cofferdam_stock_remaining{sku="AURORA-EB"} 4958
cofferdam_stock_remaining{sku="odd \"sku\"\\x"} 1
cofferdam_collect_batch_size_bucket{le="1"} 3
cofferdam_collect_batch_size_sum 55
cofferdam_collect_batch_size_count 9
cofferdam_collect_post_seconds_bucket{form="order",le="0.001"} 10
cofferdam_collect_post_seconds_bucket{form="order",le="+Inf"} 50
cofferdam_collect_post_seconds_bucket{form="offer",le="0.001"} 1
cofferdam_collect_post_seconds_bucket{form="offer",le="+Inf"} 2
cofferdam_collect_post_seconds_sum{form="order"} 0.5
cofferdam_collect_post_seconds_count{form="order"} 50
cofferdam_collect_post_seconds_count{form="offer"} 2
cofferdam_collect_disk_free_bytes 1000000
"#;

    #[test]
    fn reads_the_figures_of_a_metrics_text() {
        let f = Figures::read(TEXT, None);
        assert_eq!(f.static_requests, 125.0);
        assert_eq!(f.refused.get("static_404"), Some(&3.0));
        assert_eq!(f.refused.get("invalid"), Some(&5.0));
        assert_eq!(f.refused.get("busy"), Some(&7.0));
        assert_eq!(f.connections_refused, 4.0);
        assert_eq!(f.orders.get("order"), Some(&40.0));
        assert_eq!(f.orders.get("offer"), Some(&2.0));
        assert_eq!(f.posts.get("order"), Some(&50.0));
        assert_eq!(f.fsyncs, 10.0);
        assert_eq!((f.batches, f.batched_posts), (9.0, 55.0));
        assert_eq!(f.stock.get("AURORA-EB"), Some(&4958.0));
        assert_eq!(f.stock.get("odd \"sku\"\\x"), Some(&1.0), "{:?}", f.stock);
        assert_eq!(f.post_buckets, vec![(0.001, 11.0), (f64::INFINITY, 52.0)], "summed over forms");
        assert_eq!(f.disk_free_bytes, Some(1e6));
        assert_eq!(f.replication_lag, None, "no replication, no lag figure");
    }

    #[test]
    fn samples_share_their_names_and_the_ring_is_bounded() {
        let first = Figures::read(TEXT, None);
        let second = Figures::read(TEXT, Some(&first));
        let (a, b) = (first.orders.keys().next().unwrap(), second.orders.keys().next().unwrap());
        assert!(Arc::ptr_eq(a, b), "one copy of each name");
        let ring = Samples::new(Duration::from_secs(1), Duration::from_secs(3));
        for i in 0..5 {
            let mut figures = first.clone();
            figures.fsyncs = i as f64;
            ring.push(Sample { at: Instant::now(), figures });
        }
        let kept: Vec<f64> = ring.with(|r| r.iter().map(|s| s.figures.fsyncs).collect());
        assert_eq!(kept, [2.0, 3.0, 4.0]);
    }

    #[test]
    fn free_space_is_measured_on_the_nearest_existing_folder() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(&dir.path().join("collected/not/yet")).unwrap();
        assert!(free > 0);
    }
}
