//! Tests of `cofferdam rehearse`: a short, bounded spike rehearsal on loopback against the real
//! server, reporting capacity without touching the site's own collected folder.

use crate::support::*;
use std::time::{Duration, Instant};

/// A budget a busy shared test machine meets: these tests check the mechanics of the
/// rehearsal, not this machine's speed (an fsync alone can take 200 ms on a loaded disk).
const BUDGET: &str = "2000";

/// Number after `label` on the report's capacity line: `capacity: 1556 landing pages/s and ...`.
fn figure_before(text: &str, unit: &str) -> f64 {
    let line = text.lines().find(|l| l.starts_with("capacity:")).unwrap_or_else(|| panic!("no capacity line: {text}"));
    let at = line.find(unit).unwrap_or_else(|| panic!("{unit} not in {line}"));
    line[..at].split_whitespace().last().unwrap().parse().unwrap_or_else(|_| panic!("{line}"))
}

#[test]
fn rehearsal_reports_capacity_and_leaves_the_log_alone() {
    let site = example_site();
    let started = Instant::now();
    let out = run(site.path(), &["rehearse", "--duration", "4", "--connections", "8", "--latency-budget-ms", BUDGET]);
    let took = started.elapsed();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(took < Duration::from_secs(4 + 5), "bounded in time: took {took:?}");
    assert!(figure_before(&text, "landing pages/s") > 0.0, "{text}");
    assert!(figure_before(&text, "orders/s") > 0.0, "{text}");
    assert!(text.contains("buyers per hour on this machine"), "{text}");
    assert!(text.contains("POST /submit/order"), "the visitor orders: {text}");
    // The rehearsal built the site (there was no dist/), and collected into a scratch folder.
    assert!(site.path().join("dist/_cofferdam/manifest.json").exists());
    let collected = site.path().join("collected");
    assert!(
        !collected.exists() || std::fs::read_dir(&collected).unwrap().next().is_none(),
        "the site's collected/ is untouched: {:?}",
        tree(&collected).keys().collect::<Vec<_>>()
    );
    let scratch = text.lines().find_map(|l| l.strip_prefix("collecting into ")).unwrap().split(' ').next().unwrap();
    assert!(!std::path::Path::new(scratch).exists(), "the scratch folder {scratch} is removed");
}

#[test]
fn rehearsal_json_has_steps_capacity_and_every_order_on_disk() {
    let site = example_site();
    // A cap of 5 lamps: the rehearsal's thousands of orders must not sell the site out.
    edit(site.path(), "cofferdam.toml", "stock = 5000", "stock = 5");
    build(site.path());
    let out = run(site.path(), &["rehearse", "--duration", "3", "--connections", "4", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    let steps = json["steps"].as_array().unwrap();
    assert!(!steps.is_empty(), "{json}");
    assert_eq!(steps.last().unwrap()["visitors"], 4, "the ramp ends at --connections: {json}");
    let cap = &json["capacity"];
    assert!(cap["landing_pages_per_sec"].as_f64().unwrap() > 0.0, "{json}");
    assert!(cap["orders_per_sec"].as_f64().unwrap() > 0.0, "{json}");
    assert!(cap["buyers_per_hour"].as_u64().unwrap() > 0, "{json}");
    let acked = json["acknowledged_orders"].as_u64().unwrap();
    assert!(acked > 0);
    assert_eq!(json["orders_on_disk"].as_u64().unwrap(), acked, "every 303 is a record on disk: {json}");
    assert_eq!(json["acknowledged_orders_lost"], 0);
    assert!(acked > 5, "the scratch server lifts stock caps: {json}");
    assert!(steps.iter().all(|s| s["broke"].is_null()), "no step broke (no 409 sold out): {json}");
    assert!(!site.path().join("collected").exists(), "the site's collected/ is untouched");
}

#[test]
fn rehearsal_report_charts_the_figures_of_the_json_output() {
    use crate::admin::{data, series};
    let site = example_site();
    let report = site.path().join("rehearsal.html");
    let out = run(
        site.path(),
        &[
            "rehearse",
            "--duration",
            "3",
            "--connections",
            "4",
            "--format",
            "json",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    let html = std::fs::read_to_string(&report).expect("the report is written");

    let steps = json["steps"].as_array().unwrap();
    assert!(!steps.is_empty(), "{json}");
    for (chart, name, field) in [
        ("chart-landing", "landing pages/s", "landing_pages_per_sec"),
        ("chart-orders", "orders/s", "orders_per_sec"),
        ("chart-p99", "GET p99", "get_p99_ms"),
        ("chart-p99", "POST p99", "post_p99_ms"),
    ] {
        let expected: Vec<f64> = steps.iter().map(|s| s[field].as_f64().unwrap()).collect();
        assert_eq!(series(&html, chart, name).1, expected, "{chart} {name} against the JSON's {field}");
    }
    let visitors: Vec<f64> = steps.iter().map(|s| (s["visitors"].as_f64().unwrap()).log2()).collect();
    assert_eq!(series(&html, "chart-orders", "orders/s").0, visitors, "x is the concurrency (log scale)");
    let cap = &json["capacity"];
    assert_eq!(data(&html, "landing-pages-per-sec"), cap["landing_pages_per_sec"].as_f64().unwrap());
    assert_eq!(data(&html, "orders-per-sec"), cap["orders_per_sec"].as_f64().unwrap());
    assert_eq!(data(&html, "buyers-per-hour"), cap["buyers_per_hour"].as_f64().unwrap());
    assert_eq!(data(&html, "acknowledged"), json["acknowledged_orders"].as_f64().unwrap());
    assert_eq!(data(&html, "on-disk"), json["orders_on_disk"].as_f64().unwrap());
    assert!(html.contains("none lost"), "the acknowledged-vs-on-disk check passed");
    match json["broke_first"].as_str() {
        Some(why) => {
            let escaped = why.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
            assert!(html.contains(&escaped.replace('\'', "&#39;")), "{why} in {html}");
        }
        None => assert!(html.contains("Did not break up to 4 visitors at once"), "{html}"),
    }
    // Self-contained: nothing to fetch, nothing to run.
    assert!(html.contains("http-equiv=\"Content-Security-Policy\" content=\"default-src 'none';"));
    for forbidden in ["<script", " src=", " href=", "url(", "@import", "<link", "<iframe"] {
        assert!(!html.contains(forbidden), "{forbidden} in the report");
    }
}
