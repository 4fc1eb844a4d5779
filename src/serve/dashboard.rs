//! The admin page (`GET /` on the admin address): the last minutes of the launch at a glance,
//! drawn from the [`Samples`](super::samples::Samples) ring as inline SVG charts, and refreshed
//! by the browser itself every few seconds (no script).

use super::samples::{Figures, Sample};
use crate::chart::{self, escape, short, Chart};
use crate::config::{AckPolicy, Config};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Instant;

/// What the page says about this server besides its figures.
#[derive(Debug, Clone)]
pub struct Info {
    pub site: String,
    pub node: String,
    pub collected: PathBuf,
    pub forms: Vec<String>,
    /// SKU → the catalog's cap.
    pub caps: BTreeMap<String, u64>,
    /// `[collect.replicate]`'s acknowledgement, when records are replicated.
    pub replication: Option<AckPolicy>,
    pub refresh_secs: u64,
}

impl Info {
    /// With the forms and stock caps of `config`, the launch being served (a reload may add
    /// either).
    pub fn of_launch(mut self, config: &Config) -> Info {
        self.forms = config.forms.keys().cloned().collect();
        self.caps = config.catalog.iter().filter_map(|p| Some((p.sku.to_string(), p.stock?))).collect();
        self
    }
}

/// "Now" on the tiles: the rate over the last this many seconds.
const NOW_SECS: f64 = 10.0;
/// Latency and batch size over this many seconds per point: one second holds too few posts.
const SMOOTH_SECS: f64 = 5.0;
/// Sold-out and disk-full estimates extrapolate the last minute.
const TREND_SECS: f64 = 60.0;

pub fn render(samples: &VecDeque<Sample>, now: Instant, info: &Info) -> String {
    let v = View::new(samples, now);
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>{}</h1><p class=\"sub\">node {} · the last {} · refreshed every {} s · {} UTC</p>",
        escape(&info.site),
        escape(&info.node),
        duration(-v.x.first().copied().unwrap_or(0.0)),
        info.refresh_secs,
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S")
    );
    if samples.is_empty() {
        body.push_str("<p>No sample yet: the first comes within a second of start-up.</p>");
    } else {
        tiles(&mut body, &v, info);
        traffic(&mut body, &v, info);
        writer(&mut body, &v);
        stock(&mut body, &v, info);
        disk(&mut body, &v, info);
        replication(&mut body, &v, info);
    }
    let refresh = format!("<meta http-equiv=\"refresh\" content=\"{}\">", info.refresh_secs);
    chart::html::page(&format!("{} — cofferdam admin", info.site), &refresh, &body)
}

/// The samples as series: x is seconds before now (negative), one point per sample.
struct View<'a> {
    samples: &'a VecDeque<Sample>,
    x: Vec<f64>,
}

impl<'a> View<'a> {
    fn new(samples: &'a VecDeque<Sample>, now: Instant) -> View<'a> {
        let x = samples.iter().map(|s| -now.saturating_duration_since(s.at).as_secs_f64()).collect();
        View { samples, x }
    }

    fn last(&self) -> &Figures {
        &self.samples.back().expect("render checks for samples").figures
    }

    /// Per second, between each sample and the one before it (none for the first).
    fn rate(&self, counter: impl Fn(&Figures) -> f64) -> Vec<f64> {
        self.over(0.0, |a, b, secs| (counter(b) - counter(a)).max(0.0) / secs)
    }

    /// `f(earlier, later, seconds between)` for each sample and the one `span` seconds before
    /// it (the previous one at least); none for the first sample.
    fn over(&self, span: f64, f: impl Fn(&Figures, &Figures, f64) -> f64) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.x.len());
        let mut from = 0;
        for i in 0..self.x.len() {
            if i == 0 {
                out.push(f64::NAN);
                continue;
            }
            while from + 1 < i && self.x[i] - self.x[from] > span {
                from += 1;
            }
            let secs = self.x[i] - self.x[from];
            out.push(if secs > 0.0 {
                f(&self.samples[from].figures, &self.samples[i].figures, secs)
            } else {
                f64::NAN
            });
        }
        out
    }

    /// The sample about `secs` before the last one (the oldest when the ring is younger).
    fn ago(&self, secs: f64) -> (&Figures, f64) {
        let last = self.x.last().copied().unwrap_or(0.0);
        let i = self.x.iter().position(|&x| last - x <= secs).unwrap_or(0);
        (&self.samples[i].figures, last - self.x[i])
    }

    /// Per second over the last `secs`.
    fn recent_rate(&self, secs: f64, counter: impl Fn(&Figures) -> f64) -> f64 {
        let (then, dt) = self.ago(secs);
        if dt > 0.0 {
            (counter(self.last()) - counter(then)).max(0.0) / dt
        } else {
            0.0
        }
    }

    fn gauge(&self, value: impl Fn(&Figures) -> Option<f64>) -> Vec<f64> {
        self.samples.iter().map(|s| value(&s.figures).unwrap_or(f64::NAN)).collect()
    }

    /// A chart over the page's time axis: at least the last minute, ticks on round times.
    fn chart(&self, id: &str, title: &str) -> Chart {
        let oldest = self.x.first().copied().unwrap_or(0.0).min(-60.0);
        let step = [10.0, 30.0, 60.0, 120.0, 300.0, 600.0].into_iter().find(|s| -oldest / s <= 6.0).unwrap_or(1200.0);
        let mut ticks = Vec::new();
        let mut t: f64 = 0.0;
        while t >= oldest {
            ticks.push((t, if t == 0.0 { "now".into() } else { format!("−{}", duration(-t)) }));
            t -= step;
        }
        // The leftmost x fixes the axis even when the ring is young; it has no label.
        let mut x = vec![oldest];
        x.extend(&self.x);
        Chart::new(id, title, x).x_ticks(ticks)
    }

    /// `chart` with a series whose first value is the axis anchor's gap.
    fn series(chart: Chart, name: &str, values: Vec<f64>) -> Chart {
        let mut v = vec![f64::NAN];
        v.extend(values);
        chart.series(name, v)
    }
}

fn tiles(body: &mut String, v: &View, info: &Info) {
    body.push_str("<div class=\"tiles\">");
    for form in &info.forms {
        let total = v.last().orders.get(form.as_str()).copied().unwrap_or(0.0);
        let now = v.recent_rate(NOW_SECS, |f| f.orders.get(form.as_str()).copied().unwrap_or(0.0));
        let _ = write!(
            body,
            "<div class=\"tile\"><span>{} records since start</span><b><data id=\"orders-{}\" value=\"{total}\">{total}</data></b><span>{}/s now</span></div>",
            escape(form),
            escape(form),
            short(now)
        );
    }
    let (p50, p99) = {
        let (then, _) = v.ago(NOW_SECS);
        (
            quantile(&then.post_buckets, &v.last().post_buckets, 0.5),
            quantile(&then.post_buckets, &v.last().post_buckets, 0.99),
        )
    };
    let _ = write!(
        body,
        "<div class=\"tile\"><span>posts p99, last {NOW_SECS} s</span><b>{}</b><span>p50 {}</span></div>",
        ms(p99),
        ms(p50)
    );
    let shed = |f: &Figures| sum_of(&f.refused, |r| SHED.iter().any(|(k, _)| *k == r));
    let (first, last) = (&v.samples[0].figures, v.last());
    let _ = write!(
        body,
        "<div class=\"tile\"><span>posts shed (503) in the window</span><b><data id=\"shed\" value=\"{0}\">{0}</data></b><span>{1} since start</span></div>",
        shed(last) - shed(first),
        shed(last)
    );
    body.push_str("</div>");
}

/// Requests and posts per second, orders per second, latency, sheds and refusals.
fn traffic(body: &mut String, v: &View, info: &Info) {
    body.push_str("<h2>Traffic</h2><div class=\"charts\">");
    let mut requests =
        View::series(v.chart("chart-requests", "Requests per second"), "pages & assets", v.rate(|f| f.static_requests));
    let mut orders = v.chart("chart-orders", "Records written per second, by form");
    for form in &info.forms {
        let key = form.as_str();
        requests = View::series(requests, &format!("posts: {form}"), v.rate(|f| get(&f.posts, key)));
        orders = View::series(orders, form, v.rate(|f| get(&f.orders, key)));
    }
    figure(body, &requests, "Static GETs (all statuses) and form posts (all answers).");
    figure(body, &orders, "Records on disk, as written by the group commit.");

    let ms_at = |q: f64| v.over(SMOOTH_SECS, |a, b, _| quantile(&a.post_buckets, &b.post_buckets, q) * 1000.0);
    let latency = View::series(
        View::series(v.chart("chart-latency", "Form posts: latency (ms)"), "p50", ms_at(0.5)),
        "p99",
        ms_at(0.99),
    );
    figure(body, &latency, &format!("From the post-latency histogram, each point over the {SMOOTH_SECS} s before it."));

    let mut shed = v.chart("chart-shed", "Shed per second");
    for (key, label) in SHED {
        shed = View::series(shed, label, v.rate(|f| get(&f.refused, key)));
    }
    shed = View::series(shed, "connection cap", v.rate(|f| f.connections_refused));
    figure(body, &shed, "503 answers (the post was not taken) and connections closed at server.max_connections.");

    let (first, last) = (&v.samples[0].figures, v.last());
    let reasons: Vec<&str> = last
        .refused
        .keys()
        .map(|k| &**k)
        .filter(|r| is_refusal(r) && get(&last.refused, r) > get(&first.refused, r))
        .collect();
    let mut refused = View::series(
        v.chart("chart-refused", "Refused (4xx) per second, by reason"),
        "all",
        v.rate(|f| sum_of(&f.refused, is_refusal)),
    );
    for reason in reasons.iter().take(7) {
        refused = View::series(refused, &reason_label(reason), v.rate(|f| get(&f.refused, reason)));
    }
    figure(body, &refused, "Invalid or refused posts and requests; the table below counts them.");
    body.push_str("</div>");

    body.push_str("<h2>Refused and shed, by reason</h2><div class=\"wide\"><table><tr><th>reason</th><th class=\"n\">in the window</th><th class=\"n\">since start</th></tr>");
    let all: Vec<&str> =
        last.refused.iter().filter(|(r, n)| &***r != "honeypot" && **n > 0.0).map(|(r, _)| &**r).collect();
    if all.is_empty() {
        body.push_str("<tr><td colspan=\"3\">none</td></tr>");
    }
    for reason in all {
        let (now, then) = (get(&last.refused, reason), get(&first.refused, reason));
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"n\"><data id=\"refused-{}\" value=\"{}\">{}</data></td><td class=\"n\">{now}</td></tr>",
            escape(&reason_label(reason)),
            escape(reason),
            now - then,
            now - then
        );
    }
    body.push_str("</table></div>");
}

/// fsyncs per second and the mean batch: group commit at work.
fn writer(body: &mut String, v: &View) {
    body.push_str("<h2>Writer</h2><div class=\"charts\">");
    let fsyncs = View::series(v.chart("chart-fsyncs", "fsyncs per second"), "fsyncs", v.rate(|f| f.fsyncs));
    figure(body, &fsyncs, "Under load batches grow, so fsyncs per second stay flat while records per second rise.");
    let batch = View::series(
        v.chart("chart-batch", "Mean batch size (posts per commit)"),
        "mean batch",
        v.over(SMOOTH_SECS, |a, b, _| (b.batched_posts - a.batched_posts) / (b.batches - a.batches)),
    );
    figure(body, &batch, &format!("Each point over the {SMOOTH_SECS} s before it."));
    body.push_str("</div>");
}

fn stock(body: &mut String, v: &View, info: &Info) {
    let last = v.last();
    if last.stock.is_empty() {
        return;
    }
    body.push_str("<h2>Stock</h2><div class=\"charts\">");
    let mut chart = v.chart("chart-stock", "Stock left, by SKU");
    for sku in last.stock.keys() {
        chart = View::series(chart, sku, v.gauge(|f| f.stock.get(&**sku).copied()));
    }
    figure(body, &chart, "Units this node may still sell.");
    body.push_str("</div><div class=\"wide\"><table><tr><th>SKU</th><th class=\"n\">cap</th><th class=\"n\">left</th><th class=\"n\">sold in the last minute</th><th>sold out</th></tr>");
    let (then, dt) = v.ago(TREND_SECS);
    for (sku, &left) in &last.stock {
        let sold = (get(&then.stock, sku) - left).max(0.0);
        let estimate = if left <= 0.0 {
            "<span class=\"bad\">sold out</span>".to_string()
        } else if sold > 0.0 && dt > 0.0 {
            format!("in {} at this rate", eta(left / (sold / dt)))
        } else {
            "no sales lately".to_string()
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\"><data id=\"stock-{}\" value=\"{left}\">{left}</data></td><td class=\"n\">{sold}</td><td>{estimate}</td></tr>",
            escape(sku),
            info.caps.get(&**sku).map(|c| c.to_string()).unwrap_or_default(),
            escape(sku)
        );
    }
    body.push_str("</table></div>");
}

fn disk(body: &mut String, v: &View, info: &Info) {
    let Some(free) = v.last().disk_free_bytes else { return };
    body.push_str("<h2>Disk</h2><div class=\"charts\">");
    let gb = v.gauge(|f| f.disk_free_bytes.map(|b| b / 1e9));
    let chart = View::series(v.chart("chart-disk", "Free disk space for collected/ (GB)"), "free", gb);
    let (then, dt) = v.ago(TREND_SECS);
    let used = then.disk_free_bytes.map(|b| b - free).unwrap_or(0.0);
    let estimate = if used > 0.0 && dt > 0.0 {
        format!("filling at {}/min: full in {} at this rate", bytes(used / dt * 60.0), eta(free / (used / dt)))
    } else {
        "not filling up in the last minute".to_string()
    };
    let caption = format!(
        "<data id=\"disk-free\" value=\"{free}\">{}</data> free under {}; {estimate}.",
        bytes(free),
        escape(&info.collected.display().to_string())
    );
    let _ = write!(body, "<figure>{}<figcaption>{caption}</figcaption></figure></div>", chart.to_svg());
}

fn replication(body: &mut String, v: &View, info: &Info) {
    let Some(ack) = info.replication else { return };
    body.push_str("<h2>Replication</h2><div class=\"charts\">");
    let (chart, caption) = match ack {
        AckPolicy::Local => (
            View::series(
                v.chart("chart-replication", "Replication lag (records not yet in the stream)"),
                "lag",
                v.gauge(|f| f.replication_lag),
            ),
            format!(
                "ack = \"local\": the shipper sends the log behind the 303s; lag now {} records.",
                v.last().replication_lag.map(|l| l.to_string()).unwrap_or_else(|| "unknown".into())
            ),
        ),
        AckPolicy::Replicated => (
            View::series(
                v.chart("chart-replication", "Records replicated per second"),
                "replicated",
                v.rate(|f| f.replicated),
            ),
            "ack = \"replicated\": every 303 waited for the stream, so there is no lag to catch up.".to_string(),
        ),
    };
    figure(body, &chart, &caption);
    body.push_str("</div>");
}

fn figure(body: &mut String, chart: &Chart, caption: &str) {
    let _ = write!(body, "<figure>{}<figcaption>{}</figcaption></figure>", chart.to_svg(), escape(caption));
}

/// The posts that were not taken: (reason in `cofferdam_collect_rejected_total`, label).
const SHED: [(&str, &str); 2] = [("busy", "503 queue full"), ("write_failed", "503 write failed")];

/// A 4xx: neither a shed nor a bot the honeypot answered 303.
fn is_refusal(reason: &str) -> bool {
    reason != "honeypot" && !SHED.iter().any(|(k, _)| *k == reason)
}

fn reason_label(reason: &str) -> String {
    let known = match reason {
        "invalid" => "invalid form (422)",
        "origin" => "foreign origin (403)",
        "content_type" => "not a form post (415)",
        "too_large" => "too large (413)",
        "body" => "body unreadable or too slow (400/408)",
        "encoding" => "bad encoding (400)",
        "cookie" => "offer without its order (403)",
        "unknown_form" => "unknown form (404)",
        "sold_out" => "sold out (409)",
        "busy" => "queue full (503)",
        "write_failed" => "write failed (503)",
        "static_404" => "page not found (404)",
        "static_405" => "method not allowed (405)",
        "static_416" => "range not satisfiable (416)",
        "static_429" => "rate limited (429)",
        other => return other.replace('_', " "),
    };
    known.to_string()
}

fn get(map: &BTreeMap<std::sync::Arc<str>, f64>, key: &str) -> f64 {
    map.get(key).copied().unwrap_or(0.0)
}

fn sum_of(map: &BTreeMap<std::sync::Arc<str>, f64>, keep: impl Fn(&str) -> bool) -> f64 {
    // A fold from +0: `sum()` of nothing is -0, which prints as "-0".
    map.iter().filter(|(k, _)| keep(k)).fold(0.0, |total, (_, v)| total + v)
}

/// The `q` quantile in seconds of what a cumulative histogram gained from `then` to `now`,
/// interpolated within its bucket as Prometheus' `histogram_quantile` does; NaN without data.
pub fn quantile(then: &[(f64, f64)], now: &[(f64, f64)], q: f64) -> f64 {
    let count = |buckets: &[(f64, f64)], le: f64| buckets.iter().find(|(b, _)| *b == le).map_or(0.0, |(_, n)| *n);
    let gained: Vec<(f64, f64)> = now.iter().map(|&(le, n)| (le, n - count(then, le))).collect();
    let total = gained.last().map_or(0.0, |(_, n)| *n);
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, n) in &gained {
        if n >= rank {
            if le.is_infinite() {
                return lower;
            }
            return if n > below { lower + (le - lower) * (rank - below) / (n - below) } else { le };
        }
        (lower, below) = (le, n);
    }
    lower
}

fn ms(seconds: f64) -> String {
    if seconds.is_finite() {
        format!("{} ms", short(seconds * 1000.0))
    } else {
        "no posts".into()
    }
}

/// `6e7` → `60 MB`
fn bytes(b: f64) -> String {
    let text = short(b);
    match text.strip_suffix(['k', 'M', 'G']) {
        Some(number) => format!("{number} {}B", &text[number.len()..]),
        None => format!("{text} B"),
    }
}

/// `90.0` → `1 min`: a round duration for axis labels.
fn duration(secs: f64) -> String {
    match secs {
        s if s < 60.0 => format!("{s:.0} s"),
        s if s < 3600.0 => format!("{:.0} min", s / 60.0),
        s => format!("{:.1} h", s / 3600.0),
    }
}

/// An estimate's time: `~45 s`, `~12 min`, `~3 h 20 min`, `~4 days`.
fn eta(secs: f64) -> String {
    match secs {
        s if !s.is_finite() => "never".into(),
        s if s < 90.0 => format!("~{s:.0} s"),
        s if s < 3600.0 => format!("~{:.0} min", s / 60.0),
        s if s < 48.0 * 3600.0 => format!("~{} h {} min", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64),
        s => format!("~{:.0} days", s / 86400.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn info() -> Info {
        Info {
            site: "Shop <b>".into(),
            node: "n1".into(),
            collected: "/srv/collected".into(),
            forms: vec!["order".into()],
            caps: [("LAMP".to_string(), 100)].into(),
            replication: None,
            refresh_secs: 5,
        }
    }

    /// Seconds 0..=n, one order a second, the lamp's stock going down by one each second.
    fn samples(n: u64, start: Instant) -> VecDeque<Sample> {
        (0..=n)
            .map(|i| {
                let mut f = Figures::default();
                f.orders.insert(Arc::from("order"), i as f64);
                f.stock.insert(Arc::from("LAMP"), 100.0 - i as f64);
                f.refused.insert(Arc::from("invalid"), (i / 2) as f64);
                f.disk_free_bytes = Some(1e9 - i as f64 * 1e6);
                f.post_buckets = vec![(0.001, i as f64), (0.01, 2.0 * i as f64), (f64::INFINITY, 2.0 * i as f64)];
                Sample { at: start + Duration::from_secs(i), figures: f }
            })
            .collect()
    }

    fn attr<'a>(html: &'a str, after: &str, name: &str) -> &'a str {
        let from = html.find(after).unwrap_or_else(|| panic!("{after} not in page"));
        let rest = &html[from..];
        let at = rest.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        rest[at..].split('"').next().unwrap()
    }

    #[test]
    fn the_page_plots_rates_totals_and_estimates() {
        let start = Instant::now();
        let s = samples(30, start);
        let html = render(&s, start + Duration::from_secs(30), &info());
        assert!(html.contains("<title>Shop &lt;b&gt; — cofferdam admin</title>"), "{html}");
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(html.contains("id=\"orders-order\" value=\"30\""), "{html}");
        let orders: Vec<f64> =
            attr(&html, "id=\"chart-orders\"", "data-values").split(' ').map(|v| v.parse().unwrap()).collect();
        assert!(orders[0].is_nan() && orders[1].is_nan(), "the axis anchor and the first sample have no rate");
        assert!(orders[2..].iter().all(|&r| (r - 1.0).abs() < 1e-9), "{orders:?}");
        assert!(html.contains("id=\"stock-LAMP\" value=\"70\""), "{html}");
        assert!(html.contains("in ~70 s at this rate"), "70 left at one a second: {html}");
        assert!(html.contains("id=\"refused-invalid\" value=\"15\""), "{html}");
        assert!(html.contains("filling at 60 MB/min: full in ~16 min"), "{html}");
        // Half the posts under 1 ms, the rest between 1 and 10 ms: p50 1 ms, p99 9.82 ms.
        let p99: Vec<f64> = attr(&html, "data-series=\"p99\"", "data-values")
            .split(' ')
            .filter_map(|v| v.parse::<f64>().ok().filter(|v| v.is_finite()))
            .collect();
        assert!(p99.iter().all(|&p| (p - 9.82).abs() < 1e-9), "{p99:?}");
        assert!(!html.contains("<script") && !html.contains(" src="));
    }

    #[test]
    fn quantiles_interpolate_within_buckets_of_what_was_gained() {
        let then = [(0.1, 10.0), (1.0, 10.0), (f64::INFINITY, 10.0)];
        let now = [(0.1, 10.0), (1.0, 110.0), (f64::INFINITY, 110.0)];
        assert!((quantile(&then, &now, 0.5) - 0.55).abs() < 1e-12);
        assert!(quantile(&now, &now, 0.5).is_nan(), "nothing new, no quantile");
        let over = [(0.1, 0.0), (1.0, 0.0), (f64::INFINITY, 5.0)];
        assert_eq!(quantile(&[], &over, 0.99), 1.0, "beyond the last bound: the last bound");
    }

    #[test]
    fn estimates_read_as_times() {
        assert_eq!(eta(45.0), "~45 s");
        assert_eq!(eta(720.0), "~12 min");
        assert_eq!(eta(12000.0), "~3 h 20 min");
        assert_eq!(eta(f64::INFINITY), "never");
    }
}
