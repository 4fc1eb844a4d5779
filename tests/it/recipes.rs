//! The shipped recipes against the real shops: `cofferdam init --shop woocommerce|saleor` writes the
//! example site with the shop's recipe as its `[import]`; the real server takes real posts (repeat
//! buyers typing their e-mail in mixed case, one-time offers); the real binary imports them into the
//! shop's own schema and seed (`tests/fixtures/shops/`) on MariaDB (`COFFERDAM_TEST_MYSQL`) and
//! PostgreSQL (`COFFERDAM_TEST_PG`) while the shop takes orders of its own through its own counters.
//! The checks are what the shop's admin would see: one customer per buyer, filled addresses, order
//! totals in the shop's unit equal to their lines, lines on the shop's variants, no ID taken twice,
//! counters never lowered, a second run adding nothing, and a killed run resuming to the very rows of
//! an uninterrupted one. Some buyers pay: Stripe's webhook, signed as Stripe documents it, confirms
//! their orders (and offers), and the shop shows them as paid.

use crate::payments::{completed, hook, now, signature, SECRET};
use crate::support::*;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Catalog prices of the example site, in cents.
fn price(sku: &str) -> u64 {
    match sku {
        "AURORA-EB" => 8900,
        "AURORA" => 11900,
        "BULB-2PK" => 1900,
        other => panic!("not in the catalog: {other}"),
    }
}

/// One order as posted, and its one-time offer.
struct Posted {
    reference: String,
    /// Lowercased: the customer it must land on.
    email: String,
    sku: &'static str,
    quantity: u32,
    offer: Option<u32>,
    /// The provider's payment ID of the order, when its buyer paid (the offer is paid too).
    paid: Option<String>,
}

impl Posted {
    fn total_cents(&self) -> u64 {
        price(self.sku) * self.quantity as u64 + self.offer.map(|q| price("BULB-2PK") * q as u64).unwrap_or(0)
    }

    fn items(&self) -> u32 {
        self.quantity + self.offer.unwrap_or(0)
    }
}

/// A site written by `cofferdam init --shop SHOP`, with Stripe's webhook on, built.
fn recipe_site(shop: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    let out = run(dir.path(), &["init", "--shop", shop, site.to_str().unwrap()]);
    assert!(out.status.success(), "init --shop {shop}: {}", stderr(&out));
    assert!(stdout(&out).contains(&format!("the {shop} recipe")), "{}", stdout(&out));
    let config = site.join("cofferdam.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[payments.stripe]\nsecret_env = \"STRIPE_WEBHOOK_SECRET\"\n");
    std::fs::write(&config, text).unwrap();
    build(&site);
    dir
}

/// Posts `n` orders to the real server serving `site`: buyers come back with their e-mail typed in
/// another case (the shop's own registered customer anna@example.de among them), every fourth
/// order takes the one-time offer, every third buyer pays (order and offer) through Stripe's
/// webhook. Stops the server (SIGTERM) so its segments are sealed.
async fn post_launch(site: &Path, n: usize) -> Vec<Posted> {
    let mut server = Server::start_with(site, &[("STRIPE_WEBHOOK_SECRET", SECRET)]);
    let http = client();
    let mut posted = Vec::new();
    for i in 0..n {
        let (name, email) = match i % 10 {
            0 => (
                "Anna Schmidt".to_string(),
                ["Anna@Example.DE", "ANNA@EXAMPLE.DE", "anna@example.de"][i / 10 % 3].to_string(),
            ),
            _ => {
                let b = i % 37;
                let email = if i % 2 == 0 { format!("Buyer{b}@Example.ORG") } else { format!("buyer{b}@example.org") };
                (format!("Buyer{b} van Tester"), email)
            }
        };
        let sku = if i % 3 == 0 { "AURORA" } else { "AURORA-EB" };
        let quantity = 1 + (i % 3) as u32;
        let country = ["DE", "AT", "FR", "NL"][i % 4];
        let mut body = form_urlencoded::Serializer::new(String::new());
        body.append_pair("name", &name)
            .append_pair("email", &email)
            .append_pair("street", &format!("Teststraße {}", i + 1))
            .append_pair("postcode", &format!("{:05}", 10000 + i))
            .append_pair("city", "Berlin")
            .append_pair("country", country)
            .append_pair("sku", sku)
            .append_pair("quantity", &quantity.to_string());
        if i % 2 == 0 {
            body.append_pair("phone", "+49 30 1234567");
        }
        let order = post(&http, &server, "/submit/order", body.finish(), None).await;
        let cookie = order.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
        let reference = cookie.split_once('=').unwrap().1.split('.').next().unwrap().to_string();
        let offer = (i % 4 == 0).then_some(1 + (i / 4 % 3) as u32);
        if let Some(q) = offer {
            post(&http, &server, "/submit/offer", format!("sku=BULB-2PK&quantity={q}"), Some(&cookie)).await;
        }
        posted.push(Posted { reference, email: email.to_lowercase(), sku, quantity, offer, paid: None });
    }
    // The buyers who pay: their order's and their offer's checkout, each for what it costs.
    let records = records(&site.join("collected"));
    for (i, p) in posted.iter_mut().enumerate().filter(|(i, _)| i % 3 == 1) {
        let mine = records.iter().filter(|r| {
            r.reference.to_string() == p.reference
                || r.parent_ref.as_ref().is_some_and(|x| x.to_string() == p.reference)
        });
        for r in mine {
            let event = format!("evt_{i}_{}", r.reference.seq);
            let body = completed(&event, &r.reference.to_string(), r.total_cents.unwrap(), "paid");
            assert_eq!(hook(&server, &body, Some(&signature(SECRET, now(), &body))).await.status(), 200);
            if r.parent_ref.is_none() {
                p.paid = Some(format!("pi_{event}"));
            }
        }
    }
    assert!(posted.iter().any(|p| p.paid.is_some() && p.offer.is_some()), "a paid order with an offer");
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(20).success());
    posted
}

async fn post(http: &reqwest::Client, s: &Server, path: &str, body: String, cookie: Option<&str>) -> reqwest::Response {
    let mut req = http
        .post(s.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", s.origin())
        .body(body.clone());
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 303, "{path} {body}");
    r
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    MySql,
    Postgres,
}

/// A fresh database on the real server with the shop's own schema and seed.
struct ShopDb {
    kind: Kind,
    url: String,
    pool: AnyPool,
}

impl ShopDb {
    /// None (and a note) when the server's URL is not set.
    async fn load(kind: Kind, name: &str, schema: &str, seed: &str) -> Option<ShopDb> {
        let var = match kind {
            Kind::MySql => "COFFERDAM_TEST_MYSQL",
            Kind::Postgres => "COFFERDAM_TEST_PG",
        };
        let admin = std::env::var(var).ok().map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
        let Some(admin) = admin else {
            eprintln!("{var} is not set: the {name} recipe test does not run");
            return None;
        };
        let url = scratch_database(&admin, name).await;
        let pool = AnyPoolOptions::new().max_connections(4).connect(&url).await.unwrap();
        let fixtures = repo_root().join("tests/fixtures/shops");
        let mut conn = pool.acquire().await.unwrap();
        load_sql_file(&mut conn, &fixtures.join(schema)).await;
        load_sql_file(&mut conn, &fixtures.join(seed)).await;
        drop(conn);
        Some(ShopDb { kind, url, pool })
    }

    async fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let rows = sqlx::query(sql).fetch_all(&self.pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter().map(|r| (0..r.columns().len()).map(|i| text_at(r, i)).collect()).collect()
    }

    async fn one(&self, sql: &str) -> String {
        let rows = self.rows(sql).await;
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        rows[0][0].clone()
    }

    async fn count(&self, sql_from: &str) -> usize {
        self.one(&format!("SELECT {} {sql_from}", self.text("COUNT(*)"))).await.parse().unwrap()
    }

    fn text(&self, expr: &str) -> String {
        match self.kind {
            Kind::MySql => format!("CAST({expr} AS CHAR)"),
            Kind::Postgres => format!("CAST({expr} AS TEXT)"),
        }
    }

    /// The shop's tables, every row of every column as text, sorted; and the ledger without its
    /// import times: what two imports of the same records must agree on.
    async fn dump(&self) -> BTreeMap<String, Vec<String>> {
        let tables = match self.kind {
            Kind::MySql => {
                self.rows(
                    "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()",
                )
                .await
            }
            Kind::Postgres => {
                self.rows(
                    "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
                )
                .await
            }
        };
        let mut out = BTreeMap::new();
        for t in tables.into_iter().map(|r| r[0].clone()) {
            let sql = if t == "cofferdam_ledger" {
                format!(
                    "SELECT {}, {}, {} FROM cofferdam_ledger",
                    self.text("ref"),
                    self.text("form"),
                    self.text("ids")
                )
            } else {
                match self.kind {
                    Kind::Postgres => format!("SELECT CAST(t AS TEXT) FROM \"{t}\" t"),
                    Kind::MySql => {
                        let columns = self
                            .rows(&format!(
                                "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.COLUMNS \
                                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{t}' ORDER BY ORDINAL_POSITION"
                            ))
                            .await;
                        let cells: Vec<String> =
                            columns.iter().map(|c| format!("COALESCE(CAST(`{}` AS CHAR), 'NULL')", c[0])).collect();
                        format!("SELECT {} FROM `{t}`", cells.join(", "))
                    }
                }
            };
            let mut rows: Vec<String> = self.rows(&sql).await.into_iter().map(|r| r.join(" | ")).collect();
            rows.sort();
            out.insert(t, rows);
        }
        out
    }

    /// Reference → the ledger's IDs (table → keys) of each imported record.
    async fn ledger(&self) -> BTreeMap<String, BTreeMap<String, Vec<serde_json::Value>>> {
        let rows = self.rows(&format!("SELECT {}, {} FROM cofferdam_ledger", self.text("ref"), self.text("ids"))).await;
        rows.into_iter().map(|r| (r[0].clone(), serde_json::from_str(&r[1]).unwrap())).collect()
    }

    /// MariaDB's AUTO_INCREMENT counters, or PostgreSQL's sequences, by name.
    async fn counters(&self) -> BTreeMap<String, i64> {
        let sql = match self.kind {
            Kind::MySql => "SELECT CAST(TABLE_NAME AS CHAR), CAST(AUTO_INCREMENT AS CHAR) FROM information_schema.TABLES \
                            WHERE TABLE_SCHEMA = DATABASE() AND AUTO_INCREMENT IS NOT NULL AND TABLE_NAME NOT LIKE 'cofferdam%'"
                .to_string(),
            Kind::Postgres => "SELECT CAST(sequencename AS TEXT), CAST(COALESCE(last_value, 0) AS TEXT) FROM pg_sequences \
                               WHERE schemaname = current_schema()"
                .to_string(),
        };
        if self.kind == Kind::MySql {
            // A fresh read of the counters: MySQL 8 caches them for a day (MariaDB ignores this).
            let _ = sqlx::query("SET SESSION information_schema_stats_expiry = 0").execute(&self.pool).await;
        }
        self.rows(&sql).await.into_iter().map(|r| (r[0].clone(), r[1].parse().unwrap())).collect()
    }
}

/// MySQL hands text back as bytes through the `Any` driver.
fn text_at(row: &sqlx::any::AnyRow, i: usize) -> String {
    match row.try_get::<Option<String>, _>(i) {
        Ok(s) => s.unwrap_or_else(|| "NULL".into()),
        Err(_) => {
            row.get::<Option<Vec<u8>>, _>(i).map(|b| String::from_utf8(b).unwrap()).unwrap_or_else(|| "NULL".into())
        }
    }
}

fn import(site: &Path, db: &ShopDb, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["import", "--to", db.url.as_str()];
    args.extend_from_slice(extra);
    let out = run(site, &args);
    assert!(out.status.success(), "import failed ({:?}):\n{}\n{}", out.status, stdout(&out), stderr(&out));
    out
}

/// Cents as the shop's decimal text with `scale` digits: 17800 → "178.00000000" at scale 8.
fn unit(cents: u64, scale: usize) -> String {
    format!("{}.{}", cents / 100, format!("{:02}", cents % 100) + &"0".repeat(scale - 2))
}

/// Imports `site` into `db` in small batches while the shop keeps taking orders of its own on
/// another connection (at least 10); returns the IDs of the shop's orders.
async fn import_while_the_shop_sells(site: &Path, db: &ShopDb) -> Vec<i64> {
    let stop = Arc::new(AtomicBool::new(false));
    let shop = {
        let (url, kind, stop) = (db.url.clone(), db.kind, stop.clone());
        tokio::spawn(async move {
            use sqlx::Connection;
            let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
            let mut ids = Vec::new();
            while !stop.load(Ordering::Relaxed) || ids.len() < 10 {
                let id = match kind {
                    Kind::MySql => woocommerce_order(&mut conn, ids.len()).await,
                    Kind::Postgres => saleor_order(&mut conn, ids.len()).await,
                };
                ids.push(id);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            ids
        })
    };
    let (site, url) = (site.to_path_buf(), db.url.clone());
    let out =
        tokio::task::spawn_blocking(move || run(&site, &["import", "--to", &url, "--batch-size", "10"])).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let ids = shop.await.unwrap();
    assert!(out.status.success(), "import failed:\n{}\n{}", stdout(&out), stderr(&out));
    ids
}

/// Runs statements on the shop's connection, naming the one the database refused.
async fn exec(conn: &mut sqlx::AnyConnection, sql: &str) {
    sqlx::query(sql).execute(&mut *conn).await.unwrap_or_else(|e| panic!("the shop's own insert failed: {sql}: {e}"));
}

async fn scalar(conn: &mut sqlx::AnyConnection, sql: &str) -> i64 {
    let v: String = sqlx::query_scalar(sql).fetch_one(&mut *conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    v.parse().unwrap()
}

/// Kills an import (SIGKILL) once its first batches are committed, resumes it, and compares every
/// table with an uninterrupted import of the same records into a second copy of the shop.
async fn killed_import_resumes_to_the_same_rows(site: &Path, killed: &ShopDb, clean: &ShopDb, records: usize) {
    import(site, clean, &[]);
    let mut child = std::process::Command::new(bin())
        .args(["import", "--to", &killed.url, "--batch-size", "1"])
        .current_dir(site)
        .env("COFFERDAM_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        // The ledger table is there once the import has reserved its ranges.
        let committed = sqlx::query("SELECT 1 FROM cofferdam_ledger").fetch_optional(&killed.pool).await;
        if committed.is_ok_and(|row| row.is_some()) {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "{:?}: the import ended before it could be killed", killed.kind);
        assert!(std::time::Instant::now() < deadline, "{:?}: no batch committed within 60 s", killed.kind);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert_ne!(killed.dump().await, clean.dump().await, "{:?}: the killed import is not complete", killed.kind);

    // How many records the killed run committed, as the resumed run finds them in the ledger (a
    // count taken here could miss a COMMIT the server was still finishing for the killed client).
    let out = import(site, killed, &[]);
    let text = stdout(&out);
    let done: usize = text
        .split_once(" imported before")
        .and_then(|(head, _)| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no \"N imported before\" in:\n{text}"));
    assert!(
        (1..records).contains(&done),
        "{:?}: killed after {done} of {records} records: too late to prove a resume",
        killed.kind
    );
    let (resumed, uninterrupted) = (killed.dump().await, clean.dump().await);
    for (table, rows) in &uninterrupted {
        assert_eq!(&resumed[table], rows, "{:?}: table {table} after kill and resume", killed.kind);
    }
    assert_eq!(resumed.len(), uninterrupted.len());
}

// ---------------------------------------------------------------------------------------------
// WooCommerce with HPOS on MariaDB

/// An order as WooCommerce's checkout inserts it while the import runs: its placeholder post, the
/// order, an address, operational data and an item with its meta, each ID from the table's
/// AUTO_INCREMENT. Returns the order ID.
async fn woocommerce_order(conn: &mut sqlx::AnyConnection, n: usize) -> i64 {
    exec(
        conn,
        "INSERT INTO wp_posts (post_author, post_date, post_date_gmt, post_content, post_title, post_excerpt, \
         post_status, comment_status, ping_status, to_ping, pinged, post_modified, post_modified_gmt, \
         post_content_filtered, post_type) VALUES (1, NOW(), UTC_TIMESTAMP(), '', '', '', 'draft', 'closed', \
         'closed', '', '', NOW(), UTC_TIMESTAMP(), '', 'shop_order_placehold')",
    )
    .await;
    let id = scalar(conn, "SELECT CAST(LAST_INSERT_ID() AS CHAR)").await;
    exec(
        conn,
        &format!(
            "INSERT INTO wp_wc_orders (id, status, currency, type, tax_amount, total_amount, customer_id, \
             billing_email, date_created_gmt, date_updated_gmt, parent_order_id) VALUES ({id}, 'wc-processing', \
             'EUR', 'shop_order', 3.03, 19, 0, 'walkin{n}@example.de', UTC_TIMESTAMP(), UTC_TIMESTAMP(), 0)"
        ),
    )
    .await;
    exec(
        conn,
        &format!(
            "INSERT INTO wp_wc_order_addresses (order_id, address_type, first_name, last_name, address_1, city, \
             postcode, country, email) VALUES ({id}, 'billing', 'Walk', 'In', 'Markt 1', 'Berlin', '10115', 'DE', \
             'walkin{n}@example.de')"
        ),
    )
    .await;
    exec(
        conn,
        &format!("INSERT INTO wp_wc_order_operational_data (order_id, order_key) VALUES ({id}, 'wc_order_shop{n}')"),
    )
    .await;
    exec(
        conn,
        &format!(
            "INSERT INTO wp_woocommerce_order_items (order_item_name, order_item_type, order_id) \
             VALUES ('Spare daylight bulbs (2-pack)', 'line_item', {id})"
        ),
    )
    .await;
    let item = scalar(conn, "SELECT CAST(LAST_INSERT_ID() AS CHAR)").await;
    exec(
        conn,
        &format!(
            "INSERT INTO wp_woocommerce_order_itemmeta (order_item_id, meta_key, meta_value) VALUES ({item}, \
             '_product_id', '13'), ({item}, '_variation_id', '0'), ({item}, '_qty', '1'), ({item}, '_line_total', \
             '15.97'), ({item}, '_line_tax', '3.03')"
        ),
    )
    .await;
    id
}

#[tokio::test]
async fn woocommerce_recipe_imports_usable_orders_while_the_shop_sells() {
    let Some(db) = ShopDb::load(Kind::MySql, "recipe_woo", "woocommerce.mysql.sql", "woocommerce.seed.sql").await
    else {
        return;
    };
    let dir = recipe_site("woocommerce");
    let site = dir.path().join("site");
    let posted = post_launch(&site, 120).await;
    let offers = posted.iter().filter(|p| p.offer.is_some()).count();
    let before = db.counters().await;

    let shop_ids = import_while_the_shop_sells(&site, &db).await;

    // Our orders: each on its own placeholder post, none on an ID the shop handed out.
    let ledger = db.ledger().await;
    assert_eq!(ledger.len(), posted.len() + offers);
    let order_id = |p: &Posted| ledger[&p.reference]["wp_posts"][0].as_i64().unwrap();
    let ours: BTreeSet<i64> = posted.iter().map(order_id).collect();
    assert_eq!(ours.len(), posted.len());
    let shop: BTreeSet<i64> = shop_ids.iter().copied().collect();
    assert!(shop.last() > ours.last(), "the shop kept selling while the import wrote, above the reserved range");
    assert!(ours.is_disjoint(&shop), "the shop's own orders and ours share IDs");
    let placeholders =
        db.count("FROM wp_wc_orders o JOIN wp_posts p ON p.ID = o.id AND p.post_type = 'shop_order_placehold'").await;
    assert_eq!(placeholders, 2 + posted.len() + shop.len(), "every order has its placeholder post");

    // Counters: never lowered, and past every ID we wrote.
    let after = db.counters().await;
    for (table, n) in &before {
        assert!(after[table] >= *n, "{table}: AUTO_INCREMENT went down from {n} to {}", after[table]);
    }
    assert!(after["wp_posts"] > *ours.iter().max().unwrap());
    assert!(*ours.iter().min().unwrap() > before["wp_posts"], "orders start above the wp_posts counter, not MAX(ID)");

    // Customers: one lookup row per e-mail whatever its case; the shop's Anna is reused.
    let dupes =
        db.rows("SELECT LOWER(email) FROM wp_wc_customer_lookup GROUP BY LOWER(email) HAVING COUNT(*) > 1").await;
    assert!(dupes.is_empty(), "customers split by e-mail case: {dupes:?}");
    let emails: BTreeSet<&str> = posted.iter().map(|p| p.email.as_str()).collect();
    assert_eq!(db.count("FROM wp_wc_customer_lookup").await, 2 + emails.len() - 1, "new buyers once each, Anna reused");
    for p in posted.iter().filter(|p| p.email == "anna@example.de") {
        let id = order_id(p);
        let row = db
            .rows(&format!(
                "SELECT CAST(o.customer_id AS CHAR), CAST(s.customer_id AS CHAR) FROM wp_wc_orders o \
                 JOIN wp_wc_order_stats s ON s.order_id = o.id WHERE o.id = {id}"
            ))
            .await;
        assert_eq!(row, [["2", "1"]], "Anna's order {id}: registered user 2, customer lookup 1");
    }

    // What the order list and order screen show: status (paid: processing, with the payment's
    // transaction ID and date), billing name and address, shipping address, and a total equal to its
    // lines (net + tax) in the shop's decimal(26,8), offers included.
    assert!(posted.iter().any(|p| p.paid.is_some()) && posted.iter().any(|p| p.paid.is_none()));
    for p in &posted {
        let id = order_id(p);
        let payment = db
            .rows(&format!(
                "SELECT o.payment_method, o.transaction_id, CAST(d.date_paid_gmt IS NOT NULL AS CHAR), \
                 CAST(s.date_paid IS NOT NULL AS CHAR), s.status FROM wp_wc_orders o \
                 JOIN wp_wc_order_operational_data d ON d.order_id = o.id \
                 JOIN wp_wc_order_stats s ON s.order_id = o.id WHERE o.id = {id}"
            ))
            .await;
        let expected = match &p.paid {
            Some(pi) => ["stripe", pi.as_str(), "1", "1", "wc-processing"],
            None => ["bacs", "", "0", "0", "wc-pending"],
        };
        assert_eq!(payment, [expected], "order {id} ({}): payment", p.reference);
        let order = db
            .rows(&format!(
                "SELECT o.status, CAST(o.total_amount AS CHAR), \
                 CAST((SELECT SUM(CAST(m.meta_value AS DECIMAL(26,8))) FROM wp_woocommerce_order_items i \
                   JOIN wp_woocommerce_order_itemmeta m ON m.order_item_id = i.order_item_id \
                   WHERE i.order_id = o.id AND m.meta_key IN ('_line_total', '_line_tax')) AS CHAR), \
                 CAST(s.num_items_sold AS CHAR), CAST(s.total_sales AS CHAR), LOWER(o.billing_email) \
                 FROM wp_wc_orders o JOIN wp_wc_order_stats s ON s.order_id = o.id WHERE o.id = {id}"
            ))
            .await;
        let total = unit(p.total_cents(), 8);
        let sales = format!("{}", p.total_cents() as f64 / 100.0);
        let status = if p.paid.is_some() { "wc-processing" } else { "wc-pending" };
        assert_eq!(
            order,
            [[status, total.as_str(), total.as_str(), &p.items().to_string(), sales.as_str(), p.email.as_str()]],
            "order {id} ({})",
            p.reference
        );
        let addresses = db
            .rows(&format!(
                "SELECT address_type, first_name, last_name, address_1, city, postcode, country FROM wp_wc_order_addresses \
                 WHERE order_id = {id} ORDER BY address_type"
            ))
            .await;
        assert_eq!(addresses.len(), 2, "order {id}: billing and shipping");
        assert_eq!(addresses[0][0], "billing");
        assert_eq!(addresses[1][0], "shipping");
        for a in &addresses {
            assert!(a[1..].iter().all(|v| !v.is_empty() && v != "NULL"), "order {id}: {a:?}");
        }
    }

    // Lines point at the shop's products and variations found by SKU, named as the shop names them.
    let in_ours = ours.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    let lines = db
        .rows(&format!(
            "SELECT i.order_item_name, p.meta_value, v.meta_value, CAST(COUNT(*) AS CHAR) FROM wp_woocommerce_order_items i \
             JOIN wp_woocommerce_order_itemmeta p ON p.order_item_id = i.order_item_id AND p.meta_key = '_product_id' \
             JOIN wp_woocommerce_order_itemmeta v ON v.order_item_id = i.order_item_id AND v.meta_key = '_variation_id' \
             WHERE i.order_id IN ({in_ours}) GROUP BY 1, 2, 3 ORDER BY 1"
        ))
        .await;
    let names: Vec<[&str; 3]> = lines.iter().map(|l| [l[0].as_str(), l[1].as_str(), l[2].as_str()]).collect();
    assert_eq!(
        names,
        [
            ["Aurora lamp - Early bird", "10", "11"],
            ["Aurora lamp - Standard", "10", "12"],
            ["Spare daylight bulbs (2-pack)", "13", "0"]
        ]
    );
    let line_count: usize = lines.iter().map(|l| l[3].parse::<usize>().unwrap()).sum();
    assert_eq!(line_count, posted.len() + offers);

    // A second run adds nothing and changes nothing.
    let dumped = db.dump().await;
    let again = import(&site, &db, &[]);
    assert!(
        stdout(&again).contains(&format!("0 to import, {} imported before", posted.len() + offers)),
        "{}",
        stdout(&again)
    );
    assert_eq!(db.dump().await, dumped);
}

#[tokio::test]
async fn woocommerce_recipe_import_killed_midway_resumes_to_the_same_rows() {
    let Some(killed) =
        ShopDb::load(Kind::MySql, "recipe_woo_killed", "woocommerce.mysql.sql", "woocommerce.seed.sql").await
    else {
        return;
    };
    let clean =
        ShopDb::load(Kind::MySql, "recipe_woo_clean", "woocommerce.mysql.sql", "woocommerce.seed.sql").await.unwrap();
    let dir = recipe_site("woocommerce");
    let site = dir.path().join("site");
    let posted = post_launch(&site, 80).await;
    let records = posted.len() + posted.iter().filter(|p| p.offer.is_some()).count();
    killed_import_resumes_to_the_same_rows(&site, &killed, &clean, records).await;
}

// ---------------------------------------------------------------------------------------------
// Saleor on PostgreSQL

/// An order as Saleor's checkout inserts it while the import runs: a customer and an address from
/// their identity sequences, the order's number from `order_order_number_seq`, UUIDs made by the
/// shop. Returns the order's number.
async fn saleor_order(conn: &mut sqlx::AnyConnection, n: usize) -> i64 {
    exec(
        conn,
        &format!(
            "INSERT INTO account_user (is_superuser, email, is_staff, is_active, password, date_joined, first_name, \
             last_name, jwt_token_key, language_code, search_document, updated_at, uuid) VALUES (false, \
             'walkin{n}@example.de', false, true, '', now(), 'Walk', 'In', 'abcdefghijkl', 'de', '', now(), gen_random_uuid())"
        ),
    )
    .await;
    let address = scalar(
        conn,
        "INSERT INTO account_address (first_name, last_name, company_name, street_address_1, street_address_2, city, \
         postal_code, country, country_area, phone, city_area) VALUES ('Walk', 'In', '', 'Markt 1', '', 'BERLIN', \
         '10115', 'DE', '', '', '') RETURNING CAST(id AS TEXT)",
    )
    .await;
    let number = scalar(
        conn,
        &format!(
            "INSERT INTO order_order (id, number, created_at, updated_at, tracking_client_id, user_email, \
             billing_address_id, shipping_address_id, total_net_amount, total_gross_amount, \
             undiscounted_total_net_amount, undiscounted_total_gross_amount, shipping_price_net_amount, \
             shipping_price_gross_amount, base_shipping_price_amount, undiscounted_base_shipping_price_amount, \
             total_charged_amount, total_authorized_amount, language_code, status, authorize_status, charge_status, \
             origin, channel_id, currency, display_gross_prices, customer_note, weight, checkout_token, \
             search_document, use_old_id, should_refresh_prices, lines_count) VALUES (gen_random_uuid(), \
             nextval('order_order_number_seq'), now(), now(), '', 'walkin{n}@example.de', {address}, {address}, 15.97, \
             19, 15.97, 19, 0, 0, 0, 0, 19, 0, 'de', 'unfulfilled', 'full', 'full', 'checkout', 2, 'EUR', true, '', 0, \
             '', '', false, false, 1) RETURNING CAST(number AS TEXT)"
        ),
    )
    .await;
    exec(
        conn,
        &format!(
            "INSERT INTO order_orderline (id, order_id, product_name, product_sku, quantity, unit_price_net_amount, \
             unit_price_gross_amount, is_shipping_required, quantity_fulfilled, variant_id, translated_product_name, \
             currency, translated_variant_name, variant_name, total_price_gross_amount, total_price_net_amount, \
             unit_discount_amount, unit_discount_value, undiscounted_total_price_gross_amount, \
             undiscounted_total_price_net_amount, undiscounted_unit_price_gross_amount, \
             undiscounted_unit_price_net_amount, is_gift_card, created_at, base_unit_price_amount, \
             undiscounted_base_unit_price_amount) SELECT gen_random_uuid(), id, 'Spare daylight bulbs (2-pack)', \
             'BULB-2PK', 1, 15.97, 19, true, 0, 3, '', 'EUR', '', '', 19, 15.97, 0, 0, 19, 15.97, 19, 15.97, false, \
             now(), 19, 19 FROM order_order WHERE number = {number}"
        ),
    )
    .await;
    number
}

#[tokio::test]
async fn saleor_recipe_imports_usable_orders_while_the_shop_sells() {
    let Some(db) = ShopDb::load(Kind::Postgres, "recipe_saleor", "saleor.postgres.sql", "saleor.seed.sql").await else {
        return;
    };
    let dir = recipe_site("saleor");
    let site = dir.path().join("site");
    let posted = post_launch(&site, 120).await;
    let offers = posted.iter().filter(|p| p.offer.is_some()).count();
    let before = db.counters().await;

    let shop_numbers = import_while_the_shop_sells(&site, &db).await;

    // Our orders: UUID keys, numbers from the reserved range, none the shop handed out.
    let ledger = db.ledger().await;
    assert_eq!(ledger.len(), posted.len() + offers);
    let order_uuid = |p: &Posted| ledger[&p.reference]["order_order"][0].as_str().unwrap().to_string();
    let in_ours = posted.iter().map(|p| format!("'{}'", order_uuid(p))).collect::<Vec<_>>().join(", ");
    let ours: BTreeSet<i64> = db
        .rows(&format!("SELECT CAST(number AS TEXT) FROM order_order WHERE CAST(id AS TEXT) IN ({in_ours})"))
        .await
        .iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    assert_eq!(ours.len(), posted.len());
    let shop: BTreeSet<i64> = shop_numbers.iter().copied().collect();
    assert!(shop.last() > ours.last(), "the shop kept selling while the import wrote, above the reserved range");
    assert!(ours.is_disjoint(&shop), "the shop's own order numbers and ours overlap");
    assert_eq!(db.count("FROM order_order").await, 2 + posted.len() + shop.len());

    // Sequences (whatever their legacy names): never lowered, and past every number and ID we wrote.
    let after = db.counters().await;
    for (seq, n) in &before {
        assert!(after[seq] >= *n, "{seq}: went down from {n} to {}", after[seq]);
    }
    assert!(
        *ours.iter().min().unwrap() > before["order_order_number_seq"],
        "numbers start above the sequence, not MAX(number)"
    );
    assert!(after["order_order_number_seq"] >= *ours.iter().max().unwrap());
    let max_user: i64 = db.one("SELECT CAST(MAX(id) AS TEXT) FROM account_user").await.parse().unwrap();
    assert!(after["userprofile_user_id_seq"] >= max_user);

    // Customers: one account per e-mail whatever its case; the shop's Anna is reused; every new
    // customer has the address in their address book.
    let dupes = db.rows("SELECT LOWER(email) FROM account_user GROUP BY LOWER(email) HAVING COUNT(*) > 1").await;
    assert!(dupes.is_empty(), "customers split by e-mail case: {dupes:?}");
    let emails: BTreeSet<&str> = posted.iter().map(|p| p.email.as_str()).collect();
    assert_eq!(db.count("FROM account_user WHERE email NOT LIKE 'walkin%'").await, emails.len());
    let homeless = db
        .count(
            "FROM account_user u WHERE NOT EXISTS (SELECT 1 FROM account_user_addresses a \
             JOIN account_address ad ON ad.id = a.address_id AND ad.street_address_1 <> '' WHERE a.user_id = u.id) \
             AND u.email NOT LIKE 'walkin%'",
        )
        .await;
    assert_eq!(homeless, 0, "customers without an address book entry");

    // What the dashboard shows: status, customer, billing and shipping address, and totals in
    // numeric(20,3) equal to the lines (gross and net), offers included.
    for p in &posted {
        let id = order_uuid(p);
        let user = if p.email == "anna@example.de" {
            "1".to_string()
        } else {
            db.one(&format!("SELECT CAST(id AS TEXT) FROM account_user WHERE email = '{}'", p.email)).await
        };
        let order = db
            .rows(&format!(
                "SELECT o.status, o.charge_status, CAST(o.user_id AS TEXT), o.user_email, \
                 CAST(o.total_gross_amount AS TEXT), CAST(SUM(l.total_price_gross_amount) AS TEXT), \
                 CAST(o.undiscounted_total_gross_amount AS TEXT), CAST(o.subtotal_gross_amount AS TEXT), \
                 CAST(o.total_net_amount = SUM(l.total_price_net_amount) AND o.subtotal_net_amount = o.total_net_amount AS TEXT), \
                 CAST(o.lines_count AS TEXT), CAST(COUNT(l.id) AS TEXT), CAST(SUM(l.quantity) AS TEXT), \
                 CAST(o.should_refresh_prices AS TEXT), o.authorize_status, CAST(o.total_charged_amount AS TEXT) \
                 FROM order_order o JOIN order_orderline l ON l.order_id = o.id WHERE CAST(o.id AS TEXT) = '{id}' GROUP BY o.id"
            ))
            .await;
        let total = unit(p.total_cents(), 3);
        let lines = (1 + p.offer.is_some() as usize).to_string();
        // Paid (order and offer): charged in full, as Saleor's dashboard shows "Fully paid".
        let (charge, charged) = if p.paid.is_some() { ("full", total.clone()) } else { ("none", "0.000".into()) };
        assert_eq!(
            order,
            [[
                "unfulfilled",
                charge,
                user.as_str(),
                p.email.as_str(),
                &total,
                &total,
                &total,
                &total,
                "true",
                &lines,
                &lines,
                &p.items().to_string(),
                "false",
                charge,
                &charged
            ]],
            "order {id} ({})",
            p.reference
        );
        let addresses = db
            .rows(&format!(
                "SELECT a.first_name, a.last_name, a.street_address_1, a.city, a.postal_code, a.country FROM order_order o \
                 JOIN account_address a ON a.id IN (o.billing_address_id, o.shipping_address_id) \
                 WHERE CAST(o.id AS TEXT) = '{id}' AND o.billing_address_id <> o.shipping_address_id"
            ))
            .await;
        assert_eq!(addresses.len(), 2, "order {id}: its own billing and shipping copies");
        for a in &addresses {
            assert!(a.iter().all(|v| !v.is_empty() && v != "NULL"), "order {id}: {a:?}");
        }
    }

    // Lines point at the shop's variants found by SKU, with the dashboard's global variant ID.
    let lines = db
        .rows(&format!(
            "SELECT l.product_sku, CAST(l.variant_id AS TEXT), l.product_variant_id, l.product_name, l.variant_name, \
             CAST(COUNT(*) AS TEXT) FROM order_orderline l JOIN product_productvariant v ON v.id = l.variant_id \
             AND v.sku = l.product_sku WHERE CAST(l.order_id AS TEXT) IN ({in_ours}) GROUP BY 1, 2, 3, 4, 5 ORDER BY 1"
        ))
        .await;
    let shown: Vec<Vec<&str>> = lines.iter().map(|l| l[..5].iter().map(String::as_str).collect()).collect();
    assert_eq!(
        shown,
        [
            ["AURORA", "2", "UHJvZHVjdFZhcmlhbnQ6Mg==", "Aurora lamp", "Standard"],
            ["AURORA-EB", "1", "UHJvZHVjdFZhcmlhbnQ6MQ==", "Aurora lamp", "Early bird"],
            ["BULB-2PK", "3", "UHJvZHVjdFZhcmlhbnQ6Mw==", "Spare daylight bulbs (2-pack)", ""]
        ]
    );
    let line_count: usize = lines.iter().map(|l| l[5].parse::<usize>().unwrap()).sum();
    assert_eq!(line_count, posted.len() + offers);

    // A second run adds nothing and changes nothing.
    let dumped = db.dump().await;
    let again = import(&site, &db, &[]);
    assert!(
        stdout(&again).contains(&format!("0 to import, {} imported before", posted.len() + offers)),
        "{}",
        stdout(&again)
    );
    assert_eq!(db.dump().await, dumped);
}

#[tokio::test]
async fn saleor_recipe_import_killed_midway_resumes_to_the_same_rows() {
    let Some(killed) =
        ShopDb::load(Kind::Postgres, "recipe_saleor_killed", "saleor.postgres.sql", "saleor.seed.sql").await
    else {
        return;
    };
    let clean =
        ShopDb::load(Kind::Postgres, "recipe_saleor_clean", "saleor.postgres.sql", "saleor.seed.sql").await.unwrap();
    let dir = recipe_site("saleor");
    let site = dir.path().join("site");
    let posted = post_launch(&site, 80).await;
    let records = posted.len() + posted.iter().filter(|p| p.offer.is_some()).count();
    killed_import_resumes_to_the_same_rows(&site, &killed, &clean, records).await;
}
