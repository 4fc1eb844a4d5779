//! SIGHUP: one reload for the whole launch, on the real binary (the signal is the point).

use crate::support::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn order(s: &Server, body: String) -> reqwest::Response {
    client()
        .post(s.url("/submit/order"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", s.origin())
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Posts `body(n)` (n counting up) until the answer is `want`, bounded: the way to see a
/// reload land without knowing when it does.
async fn post_until(s: &Server, want: u16, body: impl Fn(usize) -> String) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in 0.. {
        let status = order(s, body(n)).await.status().as_u16();
        if status == want {
            return n;
        }
        assert!(Instant::now() < deadline, "still {status} (not {want}) 60 s after SIGHUP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!()
}

/// Until `stop`: GETs the landing and order pages and posts orders, noting every answer that
/// is not the one a visitor expects (200, 303), and every request that failed.
fn visitors(s: &Server, stop: Arc<AtomicBool>) -> (tokio::task::JoinHandle<Vec<String>>, Arc<AtomicUsize>) {
    let (base, origin) = (s.url(""), s.origin());
    let done = Arc::new(AtomicUsize::new(0));
    let counted = done.clone();
    let task = tokio::spawn(async move {
        let c = client();
        let failures = Mutex::new(Vec::new());
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            for path in ["/", "/order/"] {
                match c.get(format!("{base}{path}")).send().await {
                    Ok(r) if r.status() == 200 => {}
                    Ok(r) => failures.lock().unwrap().push(format!("GET {path}: {}", r.status())),
                    Err(e) => failures.lock().unwrap().push(format!("GET {path}: {e}")),
                }
            }
            let post = c
                .post(format!("{base}/submit/order"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", &origin)
                .body(order_body(&format!("Loop {n}")))
                .send()
                .await;
            match post {
                Ok(r) if r.status() == 303 => {}
                Ok(r) => failures.lock().unwrap().push(format!("POST: {}", r.status())),
                Err(e) => failures.lock().unwrap().push(format!("POST: {e}")),
            }
            counted.fetch_add(1, Ordering::Relaxed);
        }
        failures.into_inner().unwrap()
    });
    (task, done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sighup_the_next_post_is_validated_and_priced_by_the_new_config_and_no_request_fails() {
    let site = example_site();
    build(site.path());
    let mut s = Server::start(site.path());
    let short_postcode = |name: &str| order_body(name).replace("postcode=10115", "postcode=101");
    assert_eq!(order(&s, short_postcode("Before")).await.status(), 303, "3 characters are enough today");

    let stop = Arc::new(AtomicBool::new(false));
    let (loop_task, rounds) = visitors(&s, stop.clone());
    let postcode = "min_len = 3\nmax_len = 10\nautocomplete = \"postal-code\"";
    edit(site.path(), "cofferdam.toml", postcode, &postcode.replace("min_len = 3", "min_len = 5"));
    edit(site.path(), "cofferdam.toml", "price_cents = 8900", "price_cents = 7700");
    build(site.path()); // the server runs with --no-build: its reload loads the new dist/
    s.signal(libc::SIGHUP);
    // Posts of a 3-character postcode are taken until the new launch is in, then refused.
    post_until(&s, 422, |n| short_postcode(&format!("Waiting {n}"))).await;
    let after = order(&s, order_body("After")).await;
    assert_eq!(after.status(), 303);
    let page = client().get(s.url("/order/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("minlength=\"5\""), "the order page is the new build's");

    let seen = rounds.load(Ordering::Relaxed);
    while rounds.load(Ordering::Relaxed) < seen + 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let failures = loop_task.await.unwrap();
    assert!(failures.is_empty(), "requests failed during the reload: {failures:?}");
    assert!(rounds.load(Ordering::Relaxed) >= 3, "the visitors kept coming");

    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(20).success());
    let records = records(&site.path().join("collected"));
    let total = |name: &str| records.iter().find(|r| r.fields["name"] == name).map(|r| r.total_cents);
    assert_eq!(total("Before"), Some(Some(8900)), "priced by the config it was posted under");
    assert_eq!(total("After"), Some(Some(7700)), "priced by the reloaded catalog");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_needs_a_restart_is_refused_in_the_log_and_the_old_launch_keeps_serving() {
    let site = example_site();
    build(site.path());
    let log_path = site.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut s = Server::start_logged(site.path(), &[], log);
    edit(site.path(), "cofferdam.toml", "max_connections = 20000", "max_connections = 500");
    edit(site.path(), "cofferdam.toml", "price_cents = 8900", "price_cents = 7700");
    build(site.path());
    s.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(30);
    let logged = loop {
        let text = std::fs::read_to_string(&log_path).unwrap();
        if text.contains("reload refused") {
            break text;
        }
        assert!(Instant::now() < deadline, "no refusal in the log: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(logged.contains("server.max_connections"), "the log names the key: {logged}");
    assert!(logged.contains("restart"), "and says what to do: {logged}");
    assert_eq!(order(&s, order_body("Still Old")).await.status(), 303);
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(20).success());
    let records = records(&site.path().join("collected"));
    assert_eq!(records[0].total_cents, Some(8900), "the running launch's price");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_raised_by_sighup_sells_only_the_difference_as_sold_stays_sold() {
    let site = example_site();
    edit(site.path(), "cofferdam.toml", "stock = 5000", "stock = 1");
    build(site.path());
    let s = Server::start(site.path());
    assert_eq!(order(&s, order_body("First")).await.status(), 303);
    assert_eq!(order(&s, order_body("Second")).await.status(), 409, "the one early-bird lamp is gone");
    edit(site.path(), "cofferdam.toml", "stock = 1", "stock = 2");
    build(site.path());
    s.signal(libc::SIGHUP);
    post_until(&s, 303, |n| order_body(&format!("Raised {n}"))).await;
    assert_eq!(order(&s, order_body("Fourth")).await.status(), 409, "cap 2, 2 sold: none left");
    let page = client().get(s.url("/order/index.html")).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("Sold out"), "the full-price lamp is still on sale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_added_by_sighup_is_on_the_admin_page_and_in_the_operators_log() {
    let site = example_site();
    build(site.path());
    let log_path = site.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    edit(site.path(), "cofferdam.toml", "[collect]", "[collect]\nlog_every_secs = 1");
    let s = Server::start_logged(site.path(), &[("COFFERDAM_LOG", "info")], log);
    let config = site.path().join("cofferdam.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str(
        "\n[forms.waitlist]\ntitle = \"Wait list\"\nthanks = \"/subscribed/\"\nsubmit_label = \"Wait\"\nstore = [\"jsonl\"]\n\n\
         [[forms.waitlist.fields]]\nname = \"email\"\nlabel = \"E-mail\"\ntype = \"email\"\nrequired = true\n",
    );
    std::fs::write(&config, toml).unwrap();
    build(site.path());
    s.signal(libc::SIGHUP);
    let join = || async {
        client()
            .post(s.url("/submit/waitlist"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", s.origin())
            .body("email=late%40example.org")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while join().await != 303 {
        assert!(Instant::now() < deadline, "the new form never took a post");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = get(&format!("http://127.0.0.1:{}/", s.admin), &[]).await.text().await.unwrap();
    assert!(page.contains("id=\"orders-waitlist\""), "the admin page has a tile for the new form");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap();
        if text.contains("(waitlist 1)") {
            break;
        }
        assert!(Instant::now() < deadline, "the operator's log never counted the new form: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
