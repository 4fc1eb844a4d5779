//! Tests of the collector: form posts to the real binary, records read back from disk.

use crate::support::*;
use cofferdam::record::{self, Record};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

fn served_with(change: impl FnOnce(&Path)) -> (tempfile::TempDir, Server) {
    let site = example_site();
    change(site.path());
    build(site.path());
    let server = Server::start(site.path());
    (site, server)
}

fn served() -> (tempfile::TempDir, Server) {
    served_with(|_| {})
}

pub(crate) async fn post(s: &Server, form: &str, body: impl Into<String>, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().post(s.url(&format!("/submit/{form}"))).body(body.into());
    let given = |name: &str| extra.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !given("content-type") {
        req = req.header("content-type", "application/x-www-form-urlencoded");
    }
    if !given("origin") {
        req = req.header("origin", s.origin());
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// The reference a 303 after an order carries in its signed cookie.
pub(crate) fn ref_of(r: &reqwest::Response) -> String {
    let cookie = r.headers().get("set-cookie").expect("order 303 sets the ref cookie").to_str().unwrap();
    let value = cookie.split(';').next().unwrap().split_once('=').unwrap().1;
    value.split('.').next().unwrap().to_string()
}

pub(crate) fn cookie_of(r: &reqwest::Response) -> String {
    r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn order_post_is_on_disk_before_303() {
    let (site, s) = served();
    let r =
        post(&s, "order", order_body("Ada Lovelace") + "&price_cents=1&total_cents=1", &[("user-agent", "test-agent")])
            .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/thanks/");
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    let reference = ref_of(&r);
    // Read right after the 303: the record is already in the file.
    let recs = records(&site.path().join("collected"));
    assert_eq!(recs.len(), 1);
    let rec = &recs[0];
    assert_eq!(rec.reference.to_string(), reference);
    assert_eq!(rec.fields["name"], "Ada Lovelace");
    assert_eq!(rec.total_cents, Some(8900), "price from the catalog, not the forged field");
    assert!(!rec.fields.contains_key("price_cents") && !rec.fields.contains_key("total_cents"));
    assert_eq!(rec.meta.user_agent.as_deref(), Some("test-agent"));
    assert_eq!(rec.meta.ip.as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn order_post_to_an_escaped_form_address_is_taken_alike() {
    let (site, s) = served();
    let r = post(&s, "or%64er", order_body("Grace Hopper"), &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/thanks/");
    assert!(r.headers().contains_key("x-content-type-options"), "security headers on the 303");
    let recs = records(&site.path().join("collected"));
    assert_eq!(recs.len(), 1);
    assert_eq!(&*recs[0].form, "order");
    assert_eq!(recs[0].meta.ip.as_deref(), Some("127.0.0.1"));
    let r = post(&s, "order", order_body("Grace Hopper"), &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff", "security headers on the 303");
    let r = client().get(s.url("/submit/order")).send().await.unwrap();
    assert_eq!(r.status(), 405, "a GET of the form's address");
}

#[tokio::test]
async fn bad_posts_get_a_clear_4xx_page_and_nothing_is_written() {
    let (site, s) = served();
    let good = order_body("Bob");
    let big = format!("{good}&pad={}", "x".repeat(20_000));
    // (what, body, extra headers, status, text on the page)
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("oversized body", big, vec![], 413, "Payload Too Large"),
        ("wrong content type", good.clone(), vec![("content-type", "text/plain")], 415, "Unsupported Media Type"),
        ("invalid UTF-8", good.replace("Bob", "B%FFb"), vec![], 400, "not valid UTF-8"),
        ("unknown SKU", good.replace("AURORA-EB", "FREE-LAMP"), vec![], 422, "Lamp: unknown product"),
        (
            "negative quantity",
            good.replace("quantity=1", "quantity=-3"),
            vec![],
            422,
            "Quantity: must be between 1 and 5",
        ),
        ("missing field", good.replace("email=buyer%40example.org&", ""), vec![], 422, "E-mail is required"),
        ("bad Origin", good.clone(), vec![("origin", "https://evil.example")], 403, "only be sent from our own site"),
    ];
    for (what, body, headers, status, text) in cases {
        let r = post(&s, "order", body, &headers).await;
        assert_eq!(r.status().as_u16(), status, "{what}");
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8", "{what}");
        let page = r.text().await.unwrap();
        assert!(page.contains(text), "{what}: {page}");
        assert!(!page.contains("panicked") && !page.contains("/tmp") && !page.contains("src/"), "{what}: {page}");
    }
    let r = post(&s, "no-such-form", order_body("x"), &[]).await;
    assert_eq!(r.status(), 404);
    let r = client()
        .post(s.url("/submit/order"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(order_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no Origin and no Referer");
    let r = post(&s, "order", good.replace("quantity=1", "quantity=9"), &[("accept", "application/json")]).await;
    assert_eq!(r.status(), 422);
    let json: serde_json::Value = r.json().await.unwrap();
    assert_eq!(json["errors"][0]["field"], "quantity");
    assert!(records(&site.path().join("collected")).is_empty(), "a refused post was written");
}

#[tokio::test]
async fn honeypot_post_is_thanked_and_not_stored() {
    let (site, s) = served();
    let r = post(&s, "order", order_body("Bot") + "&website=http%3A%2F%2Fspam.example", &[]).await;
    assert_eq!(r.status(), 303);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(records(&site.path().join("collected")).is_empty());
}

#[tokio::test]
async fn one_time_offer_is_linked_to_its_order_and_forged_cookies_are_refused() {
    let (site, s) = served();
    let order = post(&s, "order", order_body("Cy"), &[]).await;
    let order_ref = ref_of(&order);
    let cookie = cookie_of(&order);
    let offer = post(&s, "offer", "sku=BULB-2PK&quantity=2", &[("cookie", &cookie)]).await;
    assert_eq!(offer.status(), 303);
    assert_eq!(offer.headers()["location"], "/offer-thanks/");
    for (what, forged) in [
        ("no cookie", String::new()),
        ("tampered ref", cookie.replace(&order_ref, "n1-999")),
        ("forged signature", format!("cofferdam_ref_order={order_ref}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")),
    ] {
        let r = post(&s, "offer", "sku=BULB-2PK&quantity=1", &[("cookie", &forged)]).await;
        assert_eq!(r.status(), 403, "{what}");
        assert!(r.text().await.unwrap().contains("place the order first"), "{what}");
    }
    let recs = records(&site.path().join("collected"));
    assert_eq!(recs.len(), 2);
    let offer_rec = recs.iter().find(|r| &*r.form == "offer").unwrap();
    assert_eq!(offer_rec.parent_ref.as_ref().unwrap().to_string(), order_ref);
    assert_eq!(offer_rec.total_cents, Some(3800));
    // The offer form is also stored as CSV, and reads back the same.
    let csv: Vec<Record> = record::list_segments(&site.path().join("collected"))
        .unwrap()
        .into_iter()
        .filter(|s| s.name.format == cofferdam::config::StoreFormat::Csv && s.form == "offer")
        .flat_map(|s| record::read_segment(&s.path).unwrap())
        .map(|r| r.unwrap().1)
        .collect();
    assert_eq!(csv, vec![offer_rec.clone()]);
}

#[test]
fn one_order_takes_its_one_time_offer_once_even_after_a_restart() {
    let site = example_site();
    build(site.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = Server::start(site.path());
    let order = rt.block_on(post(&s, "order", order_body("Once"), &[]));
    let cookie = cookie_of(&order);
    let offer = |s: &Server, quantity: u32| {
        let body = format!("sku=BULB-2PK&quantity={quantity}");
        rt.block_on(post(s, "offer", body, &[("cookie", &cookie)])).status().as_u16()
    };
    assert_eq!(offer(&s, 3), 303);
    assert_eq!(offer(&s, 2), 409, "a second offer on the same order");
    drop(s);
    let s = Server::start(site.path());
    assert_eq!(offer(&s, 1), 409, "the offer taken before the restart still counts");
    let other = rt.block_on(post(&s, "order", order_body("Other"), &[]));
    let r = rt.block_on(post(&s, "offer", "sku=BULB-2PK&quantity=1", &[("cookie", &cookie_of(&other))]));
    assert_eq!(r.status(), 303, "another order takes its own offer");
    let packs: u32 = records(&site.path().join("collected"))
        .iter()
        .filter(|r| &*r.form == "offer")
        .flat_map(|r| r.lines.iter().map(|l| l.quantity))
        .sum();
    assert_eq!(packs, 3 + 1);
}

#[tokio::test]
async fn double_submit_is_recorded_once() {
    let (site, s) = served();
    let first = post(&s, "order", order_body("Dee"), &[]).await;
    let second = post(&s, "order", order_body("Dee"), &[]).await;
    assert_eq!(first.status(), 303);
    assert_eq!(second.status(), 303, "the visitor still sees success");
    assert_eq!(ref_of(&first), ref_of(&second));
    let receipt = |r: &reqwest::Response| {
        r.headers().get_all("set-cookie").iter().find_map(|c| {
            c.to_str().unwrap().split(';').next().unwrap().strip_prefix("cofferdam_receipt=").map(str::to_string)
        })
    };
    assert!(receipt(&first).is_some(), "an order sets the buyer's receipt");
    assert_eq!(receipt(&first), receipt(&second), "the double submit's receipt is the order's");
    let other = post(&s, "order", order_body("Eve"), &[]).await;
    assert_ne!(ref_of(&other), ref_of(&first));
    assert_eq!(records(&site.path().join("collected")).len(), 2);
}

#[tokio::test]
async fn stock_cap_holds_under_200_concurrent_buyers() {
    let (site, s) = served_with(|p| edit(p, "cofferdam.toml", "stock = 5000", "stock = 50"));
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            post(&s, "order", order_body(&format!("Buyer {i}")), &[]).await.status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|&&c| c == 303).count(), 50, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&c| c == 409).count(), 150, "{statuses:?}");
    let recs = records(&site.path().join("collected"));
    assert_eq!(recs.len(), 50);
    assert_eq!(recs.iter().map(|r| r.lines[0].quantity).sum::<u32>(), 50);
    // The cap holds across a restart too: the stock is read back from the log.
    drop(s);
    let s = Server::start(site.path());
    let r = post(&s, "order", order_body("Late"), &[]).await;
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("Sold out"));
}

#[tokio::test]
async fn order_page_turns_into_sold_out_page_when_everything_is_gone() {
    let (_site, s) = served_with(|p| {
        edit(p, "cofferdam.toml", "stock = 5000", "stock = 1");
        edit(p, "cofferdam.toml", "stock = 20000", "stock = 1");
    });
    assert!(!client().get(s.url("/order/")).send().await.unwrap().text().await.unwrap().contains("Sold out"));
    assert_eq!(post(&s, "order", order_body("Al"), &[]).await.status(), 303);
    assert_eq!(post(&s, "order", order_body("Bo").replace("AURORA-EB", "AURORA"), &[]).await.status(), 303);
    for path in ["/", "/order/"] {
        let page = client().get(s.url(path)).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("Sold out"), "{path} still offers the lamp");
    }
    let thanks = client().get(s.url("/thanks/")).send().await.unwrap().text().await.unwrap();
    assert!(!thanks.contains("Sold out"), "the thank-you page must stay");
}

#[test]
fn torn_tail_is_quarantined_and_its_reference_is_never_handed_out_again() {
    let site = example_site();
    build(site.path());
    let dir = site.path().join("collected/order");
    std::fs::create_dir_all(&dir).unwrap();
    let good = r#"{"v":1,"ref":"n1-7","form":"order","received_at":"2026-11-24T09:00:00Z","fields":{"name":"Ann"},"lines":[{"sku":"AURORA-EB","name":"x","quantity":1,"unit_cents":8900,"total_cents":8900}],"total_cents":8900,"currency":"EUR"}"#;
    let torn = r#"{"v":1,"ref":"n1-8","form":"order","rec"#;
    let open = dir.join("n1-000000000007.jsonl.open");
    std::fs::write(&open, format!("{good}\n{torn}")).unwrap();
    let s = Server::start(site.path());
    assert!(!open.exists(), "the open segment is sealed at start-up");
    let sealed = dir.join("n1-000000000007.jsonl");
    assert_eq!(std::fs::read_to_string(&sealed).unwrap(), format!("{good}\n"));
    let quarantine = std::fs::read_to_string(dir.join("n1-000000000007.jsonl.open.quarantine")).unwrap();
    assert_eq!(quarantine, torn);
    drop(s);
    // A sealed segment torn as well (a copy cut short): its tail is quarantined too.
    let sealed_torn = r#"{"v":1,"ref":"n1-30","form":"order","rec"#;
    let other = site.path().join("collected/order");
    std::fs::write(other.join("n1-000000000020.jsonl"), sealed_torn).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut seen = Vec::new();
    // Twice: a restart with no post in between must not forget what it skipped.
    for _ in 0..2 {
        let s = Server::start(site.path());
        let r = rt.block_on(post(&s, "order", order_body("New"), &[]));
        seen.push(ref_of(&r).trim_start_matches("n1-").parse::<u64>().unwrap());
        drop(s);
        for r in records(&site.path().join("collected")) {
            assert!(r.reference.seq != 8 && r.reference.seq != 30, "{} is a quarantined reference", r.reference);
        }
    }
    assert!(seen[0] > 30 && seen[1] > seen[0], "references handed out after torn tails: {seen:?}");
    let quarantined = std::fs::read_to_string(other.join("n1-000000000020.jsonl.quarantine")).unwrap();
    assert_eq!(quarantined, sealed_torn);
    assert_eq!(std::fs::read_to_string(other.join("n1-000000000020.jsonl")).unwrap(), "");
}

#[tokio::test]
async fn segments_roll_at_their_size_and_every_record_reads_back() {
    let (site, s) =
        served_with(|p| edit(p, "cofferdam.toml", "segment_max_bytes = 67108864", "segment_max_bytes = 2000"));
    let mut refs = Vec::new();
    for i in 0..12 {
        refs.push(ref_of(&post(&s, "order", order_body(&format!("Roll {i}")), &[]).await));
    }
    let segs = record::list_segments(&site.path().join("collected")).unwrap();
    let sealed = segs.iter().filter(|s| s.name.sealed).count();
    assert!(sealed >= 2, "expected several sealed segments, got {segs:?}");
    let got: Vec<String> = records(&site.path().join("collected")).iter().map(|r| r.reference.to_string()).collect();
    assert_eq!(got, refs);
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_order() {
    let site = example_site();
    build(site.path());
    let s = Server::start(site.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = Arc::new(s);
    let acked: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for worker in 0..16 {
            let s = s.clone();
            let acked = acked.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..40 {
                    let body = order_body(&format!("Crash {worker} {i}"));
                    let req = client()
                        .post(s.url("/submit/order"))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header("origin", s.origin())
                        .body(body);
                    match req.send().await {
                        Ok(r) if r.status() == 303 => acked.lock().unwrap().push(ref_of(&r)),
                        _ => {}
                    }
                }
            }));
        }
        // Kill it mid-load, once a good part has been acknowledged.
        loop {
            if acked.lock().unwrap().len() >= 150 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        unsafe { libc::kill(s.child.id() as i32, libc::SIGKILL) };
        for t in tasks {
            let _ = t.await;
        }
    });
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 150 && acked.len() < 640, "killed too late: {} acks", acked.len());
    drop(s);
    // Restart: recovery seals what was open and quarantines a torn tail.
    let s2 = Server::start(site.path());
    let recs = records(&site.path().join("collected"));
    let on_disk: Vec<String> = recs.iter().map(|r| r.reference.to_string()).collect();
    let unique: HashSet<&String> = on_disk.iter().collect();
    assert_eq!(unique.len(), on_disk.len(), "a reference is on disk twice");
    for r in &acked {
        assert!(unique.contains(r), "acknowledged {r} is not on disk");
    }
    for seg in record::list_segments(&site.path().join("collected")).unwrap() {
        assert!(seg.name.sealed, "{} still open after recovery", seg.path.display());
        for line in record::read_segment(&seg.path).unwrap() {
            assert!(line.is_ok(), "torn line in a sealed segment: {:?}", line.unwrap_err());
        }
    }
    let next = rt.block_on(post(&s2, "order", order_body("After crash"), &[]));
    let max = recs.iter().map(|r| r.reference.seq).max().unwrap();
    assert!(ref_of(&next).trim_start_matches("n1-").parse::<u64>().unwrap() > max);
}

#[test]
fn full_disk_gives_503_loses_no_ack_and_recovers() {
    let site = example_site();
    build(site.path());
    let collected = site.path().join("collected");
    std::fs::create_dir_all(&collected).unwrap();
    let mount =
        std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=48k", "tmpfs"]).arg(&collected).output();
    match mount {
        Ok(o) if o.status.success() => {}
        other => {
            println!("SKIPPED full_disk_gives_503_loses_no_ack_and_recovers: cannot mount a tmpfs here ({other:?})");
            return;
        }
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&collected);
    let s = Server::start(site.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..400 {
        let r = rt.block_on(post(&s, "order", order_body(&format!("Full {i} {}", "x".repeat(60))), &[]));
        match r.status().as_u16() {
            303 => acked.push(ref_of(&r)),
            503 => {
                assert!(r.headers().contains_key("retry-after"));
                refused += 1;
                if refused >= 5 {
                    break;
                }
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(refused >= 5, "the disk never filled ({} acks)", acked.len());
    let health = rt.block_on(client().get(format!("http://127.0.0.1:{}/healthz", s.admin)).send()).unwrap();
    assert_eq!(health.status(), 503, "health must say the collector cannot write");
    let metrics = rt
        .block_on(rt.block_on(client().get(format!("http://127.0.0.1:{}/metrics", s.admin)).send()).unwrap().text())
        .unwrap();
    assert!(metrics.contains("cofferdam_collect_write_errors_total"), "{metrics}");
    let on_disk: HashSet<String> = records(&collected).iter().map(|r| r.reference.to_string()).collect();
    for r in &acked {
        assert!(on_disk.contains(r), "acknowledged {r} is missing");
    }
    assert_eq!(on_disk.len(), acked.len(), "a refused post was left on disk");
    // Space returns: posts are taken again.
    let grown = std::process::Command::new("mount").args(["-o", "remount,size=4m"]).arg(&collected).status().unwrap();
    assert!(grown.success());
    let r = rt.block_on(post(&s, "order", order_body("After"), &[]));
    assert_eq!(r.status(), 303);
    let health = rt.block_on(client().get(format!("http://127.0.0.1:{}/healthz", s.admin)).send()).unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn stats_counts_forms_stock_and_revenue_from_the_logs() {
    let (site, s) = served();
    post(&s, "order", order_body("S1"), &[]).await;
    post(&s, "order", order_body("S2").replace("quantity=1", "quantity=3"), &[]).await;
    post(&s, "newsletter", "email=news%40example.org", &[]).await;
    let out = run(site.path(), &["stats"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("order                     2"), "{text}");
    assert!(text.contains("newsletter                1"), "{text}");
    assert!(text.contains("AURORA-EB        sold        4  left     4996 of 5000"), "{text}");
    assert!(text.contains("€356.00"), "{text}");
}

/// The writer thread asks not to be woken ahead of the request threads (`SCHED_BATCH`), so a
/// busy server's batches are not cut short (README: `ps -L -o cls` shows it as `B`).
#[cfg(target_os = "linux")]
#[test]
fn the_writer_thread_runs_as_sched_batch() {
    let (_site, s) = served();
    let tasks = std::path::PathBuf::from(format!("/proc/{}/task", s.child.id()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let policy = loop {
        let writer = std::fs::read_dir(&tasks)
            .unwrap()
            .map(|t| t.unwrap().path())
            .find(|t| std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.trim() == "cofferdam-write"));
        if let Some(task) = writer {
            // `stat` is "tid (comm) state ...": the policy is its 41st field, counted past the
            // comm, which may hold spaces.
            let stat = std::fs::read_to_string(task.join("stat")).unwrap();
            let after_comm: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
            break after_comm[41 - 3].parse::<i32>().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no thread named cofferdam-write in {}", tasks.display());
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(policy, libc::SCHED_BATCH, "the writer's scheduling policy (0 is SCHED_OTHER)");
}
