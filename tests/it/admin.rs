//! The launch-day view: the live admin page on the admin address, read during a real load on
//! the real server, and the Grafana dashboard checked against what `/metrics` really exports.

use crate::support::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

const BUYERS: usize = 8;
const ORDERS_EACH: usize = 30;
const INVALID: usize = 6;
const LANDING_GETS: usize = 50;

/// The `value` of `<data id="ID" value="…">` on the page.
pub(crate) fn data(html: &str, id: &str) -> f64 {
    let marker = format!("id=\"{id}\" value=\"");
    let at = html.find(&marker).unwrap_or_else(|| panic!("no {id} on the page:\n{html}")) + marker.len();
    html[at..].split('"').next().unwrap().parse().unwrap()
}

/// The numbers of attribute `name` in the first element after `marker`.
fn numbers(html: &str, marker: &str, name: &str) -> Vec<f64> {
    let from = html.find(marker).unwrap_or_else(|| panic!("no {marker} on the page:\n{html}"));
    let rest = &html[from..];
    let at = rest.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    rest[at..].split('"').next().unwrap().split(' ').map(|v| v.parse().unwrap()).collect()
}

/// The x positions of chart `chart` and the values of its series `series` (name as escaped).
pub(crate) fn series(html: &str, chart: &str, series: &str) -> (Vec<f64>, Vec<f64>) {
    let chart_at = html.find(&format!("id=\"{chart}\"")).unwrap_or_else(|| panic!("no {chart}:\n{html}"));
    let svg = &html[chart_at..];
    let svg = &svg[..svg.find("</svg>").unwrap()];
    let x = numbers(svg, "data-x", "data-x");
    let values = numbers(svg, &format!("data-series=\"{series}\""), "data-values");
    assert_eq!(x.len(), values.len(), "{chart}: one value per x");
    (x, values)
}

/// What a per-second series of chart `chart` adds up to: its rates times the seconds between
/// samples (the chart's x), i.e. the count the chart shows happening.
fn integral(html: &str, chart: &str, name: &str) -> f64 {
    let (x, rates) = series(html, chart, name);
    (1..x.len()).filter(|&i| rates[i].is_finite()).map(|i| rates[i] * (x[i] - x[i - 1])).sum()
}

async fn page(admin: u16) -> (reqwest::header::HeaderMap, String) {
    let r = get(&format!("http://127.0.0.1:{admin}/"), &[]).await;
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    (headers, r.text().await.unwrap())
}

async fn post(server: &Server, body: String) -> u16 {
    client()
        .post(server.url("/submit/order"))
        .header("origin", server.origin())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Buyers ordering at once, some invalid posts and landing page views on the server at
/// `base`: bounded in count.
async fn load(base: String) {
    let submit = |c: &reqwest::Client, body: String| {
        c.post(format!("{base}/submit/order"))
            .header("origin", &base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let mut tasks = Vec::new();
    for b in 0..BUYERS {
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let c = client();
            for i in 0..ORDERS_EACH {
                let r = c
                    .post(format!("{base}/submit/order"))
                    .header("origin", &base)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(order_body(&format!("Buyer {b} {i}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 303, "every order is taken");
            }
        }));
    }
    let c = client();
    for _ in 0..INVALID {
        let r = submit(&c, order_body("X").replace("buyer%40example.org", "nobody")).await.unwrap();
        assert_eq!(r.status(), 422);
    }
    for _ in 0..LANDING_GETS {
        assert_eq!(get(&format!("{base}/"), &[]).await.status(), 200);
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_page_charts_what_is_on_disk_during_a_real_load() {
    let site = example_site();
    build(site.path());
    let server = Server::start(site.path());
    // The sampler's first sample (taken at start-up) comes before the first post.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !page(server.admin).await.1.contains("id=\"orders-order\"") {
        assert!(Instant::now() < deadline, "the admin page shows no sample");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let running = tokio::spawn(load(server.origin()));
    let mut seen_during = 0;
    while !running.is_finished() {
        let (_, html) = page(server.admin).await;
        assert!(html.contains("<svg"), "{html}");
        seen_during += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running.await.unwrap();
    assert!(seen_during > 0, "the page answered while the orders came in");

    let on_disk = records(&site.path().join("collected"));
    let orders = on_disk.iter().filter(|r| &*r.form == "order").count();
    assert_eq!(orders, BUYERS * ORDERS_EACH);
    let sold: u64 =
        on_disk.iter().flat_map(|r| &r.lines).filter(|l| &*l.sku == "AURORA-EB").map(|l| l.quantity as u64).sum();
    // One sample a second: wait (bounded) for the one after the last post.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (headers, html) = loop {
        let (headers, html) = page(server.admin).await;
        if data(&html, "orders-order") == orders as f64 && data(&html, "refused-invalid") == INVALID as f64 {
            break (headers, html);
        }
        assert!(Instant::now() < deadline, "the page never caught up with the disk:\n{html}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // The figures are the measured ones: records and stock as on disk, refusals as sent.
    assert_eq!(data(&html, "stock-AURORA-EB"), (5000 - sold) as f64);
    assert_eq!(
        integral(&html, "chart-orders", "order").round(),
        orders as f64,
        "the orders chart adds up to the records"
    );
    assert_eq!(
        integral(&html, "chart-requests", "posts: order").round(),
        (orders + INVALID) as f64,
        "every post is charted, taken or not"
    );
    assert_eq!(integral(&html, "chart-requests", "pages &amp; assets").round(), LANDING_GETS as f64);
    assert_eq!(data(&html, "shed"), 0.0);
    assert!(data(&html, "disk-free") > 0.0);
    let p50 = numbers(&html, "data-series=\"p50\"", "data-values");
    let p99 = numbers(&html, "data-series=\"p99\"", "data-values");
    assert!(p99.iter().any(|v| v.is_finite() && *v > 0.0), "a p99 while posts came in: {p99:?}");
    assert!(p50.iter().zip(&p99).filter(|(a, b)| a.is_finite() && b.is_finite()).all(|(a, b)| a <= b));

    // A page that needs nothing from elsewhere and runs nothing.
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'") && !csp.contains("script-src"), "{csp}");
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(headers["cache-control"], "no-store");
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    for forbidden in ["<script", " src=", " href=", "url(", "@import", "<link", "<iframe"] {
        assert!(!html.contains(forbidden), "{forbidden} on the admin page");
    }
    let public = get(&server.url("/"), &[]).await.text().await.unwrap();
    assert!(!public.contains("chart-orders"), "the admin page is not on the public address");
}

/// Every metric name a Grafana query of `dashboard` uses.
fn queried_metrics(dashboard: &serde_json::Value) -> BTreeSet<String> {
    let re = regex::Regex::new(r"cofferdam_[a-z0-9_]+").unwrap();
    let mut names = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("a query without expr: {target}"));
            names.extend(re.find_iter(expr).map(|m| m.as_str().to_string()));
        }
    }
    names
}

/// A single JetStream server on loopback for a node shipping its log (`ack = "local"`).
struct Nats(std::process::Child, u16);

impl Nats {
    fn start(store: &Path) -> Nats {
        let port = free_port();
        let child = std::process::Command::new(crate::replicate::nats_server())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Nats(child, port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_dashboard_queries_only_metrics_the_server_exports() {
    let text = std::fs::read_to_string(repo_root().join("examples/grafana/cofferdam.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    let panels = dashboard["panels"].as_array().unwrap();
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().expect("a panel id")).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert!(p["gridPos"]["w"].as_u64().is_some(), "{p}");
        assert_eq!(p["datasource"]["uid"], "${datasource}", "every panel asks the chosen Prometheus: {p}");
    }
    let wanted = queried_metrics(&dashboard);
    assert!(wanted.len() >= 15, "{wanted:?}");

    // A node that ships to a stream, so the replication metrics exist too.
    let store = tempfile::tempdir().unwrap();
    let nats = Nats::start(store.path());
    let site = example_site();
    let toml = site.path().join("cofferdam.toml");
    let mut config = std::fs::read_to_string(&toml).unwrap();
    config.push_str(&format!(
        "\n[collect.replicate]\nservers = [\"nats://127.0.0.1:{}\"]\nstream = \"GRAFANA\"\nreplicas = 1\nack = \"local\"\n",
        nats.1
    ));
    std::fs::write(&toml, config).unwrap();
    build(site.path());
    let server = Server::start(site.path());
    assert_eq!(get(&server.url("/"), &[]).await.status(), 200);
    assert_eq!(post(&server, order_body("Grafana Buyer")).await, 303);
    assert_eq!(post(&server, order_body("X").replace("buyer%40example.org", "nobody")).await, 422);

    let exported = |metrics: &str| -> BTreeSet<String> {
        metrics
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_string)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = get(&format!("http://127.0.0.1:{}/metrics", server.admin), &[]).await.text().await.unwrap();
        let missing: Vec<String> = wanted.difference(&exported(&metrics)).cloned().collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "queried but not exported: {missing:?}\n{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
