//! Counters of the hot path as plain atomics (a hit must not hash label sets), rendered in
//! Prometheus text next to what the `metrics` facade records (the collector's figures).

use metrics_exporter_prometheus::{Matcher, PrometheusHandle};
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;

#[derive(Default)]
pub struct Counter(AtomicU64);
impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Gauge(AtomicI64);
impl Gauge {
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct ServeMetrics {
    pub static_ok: Counter,
    pub partial_content: Counter,
    pub not_modified: Counter,
    pub range_not_satisfiable: Counter,
    pub not_found: Counter,
    pub redirects: Counter,
    pub method_not_allowed: Counter,
    pub sold_out_pages: Counter,
    pub bytes_out: Counter,
    pub in_flight: Gauge,
    pub connections: Gauge,
    pub connections_refused: Counter,
    pub rate_limited: Counter,
}

/// Durations (`*_seconds`), 250 µs to 10 s: the p50 and p99 of a post fall between bounds
/// at most 2.5 times apart.
const SECONDS_BUCKETS: &[f64] =
    &[0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];

/// The process-wide recorder of the `metrics` facade, installed once.
pub fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0])
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS))
            .expect("static buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test process); ours then stays unfed.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

impl ServeMetrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, rows: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        counter(
            "cofferdam_http_requests_total",
            "Static requests by status.",
            &[
                ("{route=\"static\",status=\"200\"}", self.static_ok.get()),
                ("{route=\"static\",status=\"206\"}", self.partial_content.get()),
                ("{route=\"static\",status=\"304\"}", self.not_modified.get()),
                ("{route=\"static\",status=\"416\"}", self.range_not_satisfiable.get()),
                ("{route=\"static\",status=\"404\"}", self.not_found.get()),
                ("{route=\"static\",status=\"308\"}", self.redirects.get()),
                ("{route=\"static\",status=\"405\"}", self.method_not_allowed.get()),
                ("{route=\"static\",status=\"429\"}", self.rate_limited.get()),
                ("{route=\"sold_out\",status=\"200\"}", self.sold_out_pages.get()),
            ],
        );
        counter("cofferdam_http_bytes_out_total", "Body bytes sent for static files.", &[("", self.bytes_out.get())]);
        counter(
            "cofferdam_connections_refused_total",
            "Connections closed at the connection cap.",
            &[("", self.connections_refused.get())],
        );
        let _ = writeln!(
            out,
            "# TYPE cofferdam_http_in_flight gauge\ncofferdam_http_in_flight {}\n# TYPE cofferdam_connections_open gauge\ncofferdam_connections_open {}",
            self.in_flight.get(),
            self.connections.get()
        );
        out.push_str(&recorder().render());
        out
    }
}
