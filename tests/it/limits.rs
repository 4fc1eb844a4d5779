//! What a visitor gets at the edges of `serve`: slow and surplus clients, malformed `Host`,
//! HTTP/2 with prior knowledge, every address of a sold-out page. The server runs in this
//! process on port 0 ([`serve_here`]); the requests are real, over loopback.

use crate::support::*;
use cofferdam::serve::Serving;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn url(s: &Serving, path: &str) -> String {
    format!("http://{}{path}", s.public)
}

async fn post_order(c: &reqwest::Client, s: &Serving, body: String) -> reqwest::Response {
    c.post(url(s, "/submit/order"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", format!("http://{}", s.public))
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Sends `request` on a new connection and returns all the server answers until it closes.
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sold_out_page_shows_at_every_address_of_a_sold_out_page() {
    let site = example_site();
    edit(site.path(), "cofferdam.toml", "stock = 5000", "stock = 1");
    edit(site.path(), "cofferdam.toml", "stock = 20000", "stock = 1");
    build(site.path());
    let s = serve_here(site.path()).await;
    let c = client();
    assert_eq!(post_order(&c, &s, order_body("Al")).await.status(), 303);
    assert_eq!(post_order(&c, &s, order_body("Bo").replace("AURORA-EB", "AURORA")).await.status(), 303);
    for path in ["/", "/index.html", "/order/", "/order/index.html"] {
        for accept in ["br", "identity"] {
            let page = c.get(url(&s, path)).header("accept-encoding", accept).send().await.unwrap();
            assert_eq!(page.status(), 200);
            let bytes = page.bytes().await.unwrap();
            let text = match accept {
                "br" => {
                    let mut out = Vec::new();
                    brotli::BrotliDecompress(&mut bytes.as_ref(), &mut out).unwrap();
                    String::from_utf8(out).unwrap()
                }
                _ => String::from_utf8(bytes.to_vec()).unwrap(),
            };
            assert!(text.contains("Sold out"), "{path} ({accept}) still offers the lamp");
        }
    }
    let thanks = c.get(url(&s, "/thanks/index.html")).send().await.unwrap().text().await.unwrap();
    assert!(!thanks.contains("Sold out"), "the thank-you page stays");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http11_without_host_or_with_two_hosts_gets_400() {
    let site = example_site();
    build(site.path());
    let s = serve_here(site.path()).await;
    let none = raw(s.public, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(none.starts_with("HTTP/1.1 400"), "{none}");
    let two = raw(s.public, "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n").await;
    assert!(two.starts_with("HTTP/1.1 400"), "{two}");
    let post = "POST /submit/newsletter HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                Content-Length: 21\r\nConnection: close\r\n\r\nemail=a%40example.org";
    assert!(raw(s.public, post).await.starts_with("HTTP/1.1 400"), "a post without Host is refused too");
    let one = raw(s.public, "GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n").await;
    assert!(one.starts_with("HTTP/1.1 200"), "{one}");
    let old = raw(s.public, "GET / HTTP/1.0\r\n\r\n").await;
    assert!(old.starts_with("HTTP/1.0 200"), "HTTP/1.0 may leave Host out: {old}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_with_prior_knowledge_gets_the_page_and_takes_an_order() {
    let site = example_site();
    build(site.path());
    let s = serve_here(site.path()).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let page = h2.get(url(&s, "/")).header("accept-encoding", "identity").send().await.unwrap();
    assert_eq!(page.version(), reqwest::Version::HTTP_2);
    assert_eq!(page.status(), 200);
    let expected = std::fs::read(site.path().join("dist/index.html")).unwrap();
    assert_eq!(page.bytes().await.unwrap().as_ref(), expected.as_slice());
    let order = post_order(&h2, &s, order_body("Hana Two")).await;
    assert_eq!(order.version(), reqwest::Version::HTTP_2);
    assert_eq!(order.status(), 303);
    assert_eq!(header(&order, "location"), "/thanks/");
    s.stop().await;
    assert_eq!(recorded_names(site.path()), ["Hana Two"], "the h2 order is on disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_told_to_go_away_although_it_answers_pings() {
    let site = example_site();
    edit(site.path(), "cofferdam.toml", "header_timeout_ms = 5000", "header_timeout_ms = 500");
    build(site.path());
    let s = serve_here(site.path()).await;
    // reqwest keeps its HTTP/2 connection and answers the server's pings (every 500 ms here).
    let h2 = reqwest::Client::builder().http2_prior_knowledge().no_proxy().build().unwrap();
    let page = h2.get(url(&s, "/")).send().await.unwrap();
    assert_eq!((page.version(), page.status().as_u16()), (reqwest::Version::HTTP_2, 200));
    assert_eq!(s.app.metrics.connections.get(), 1, "the client holds its connection open");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while s.app.metrics.connections.get() > 0 {
        assert!(std::time::Instant::now() < deadline, "an idle HTTP/2 connection kept its slot for 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The client was told, not cut off: its next request opens a new connection.
    let again = h2.get(url(&s, "/")).send().await.unwrap();
    assert_eq!(again.status(), 200);
    s.stop().await;
}

/// A post whose head is complete and whose body trickles in a byte at a time, as a slowloris
/// tool sends it. Returns the server's answer, if any, and how many body bytes were sent.
async fn trickle(addr: SocketAddr, declared: usize, every: Duration, stop: &AtomicBool) -> (String, usize) {
    let Ok(conn) = TcpStream::connect(addr).await else { return (String::new(), 0) };
    let (mut rx, mut tx) = conn.into_split();
    let head = format!(
        "POST /submit/newsletter HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {declared}\r\n\r\n"
    );
    if tx.write_all(head.as_bytes()).await.is_err() {
        return (String::new(), 0);
    }
    let mut sent = 0;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while sent < declared && !stop.load(Ordering::Relaxed) {
        tokio::select! {
            n = rx.read(&mut buf) => match n {
                Ok(n) if n > 0 => {
                    answer.extend_from_slice(&buf[..n]);
                    break;
                }
                _ => break,
            },
            _ = tokio::time::sleep(every) => {
                if tx.write_all(b"a").await.is_err() {
                    break;
                }
                sent += 1;
            }
        }
    }
    (String::from_utf8_lossy(&answer).into_owned(), sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_byte_by_byte_is_cut_off_at_its_deadline_with_408() {
    let site = example_site();
    edit(site.path(), "cofferdam.toml", "body_timeout_ms = 10000", "body_timeout_ms = 1000");
    build(site.path());
    let s = serve_here(site.path()).await;
    // A byte every 100 ms never lets a per-chunk timeout of 1 s fire; 200 bytes take 20 s.
    let (answer, sent) = trickle(s.public, 200, Duration::from_millis(100), &AtomicBool::new(false)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "answer after {sent} bytes: {answer:?}");
    assert!(sent < 200, "cut off before the body was complete ({sent} bytes sent)");
    s.stop().await;
    assert!(records(&site.path().join("collected")).is_empty(), "nothing was recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_cap_gets_the_busy_page_not_a_reset() {
    let site = example_site();
    edit(site.path(), "cofferdam.toml", "max_connections = 20000", "max_connections = 3");
    build(site.path());
    let s = serve_here(site.path()).await;
    // Three connections hold every slot (a head sent only in part keeps its connection open).
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(s.public).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        held.push(c);
    }
    // The accept loop takes them in order: wait until it has taken all three.
    while s.app.metrics.connections.get() < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answer = raw(s.public, "GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 2"), "{answer}");
    let m = cofferdam::manifest::Manifest::load(&site.path().join("dist")).unwrap();
    let busy = std::fs::read_to_string(site.path().join("dist").join(m.special.busy.unwrap())).unwrap();
    assert!(answer.ends_with(&busy), "the site's busy page: {answer}");
    assert!(s.app.metrics.connections_refused.get() >= 1);
    drop(held);
    s.stop().await;
}

/// The acceptance run: 2,000 slow-body attackers against `max_connections = 1000`, and one
/// visitor who follows the busy page's `Retry-After` (sooner, to keep the test short) until
/// the landing page comes, then orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_gets_the_landing_page_and_orders_past_2000_slow_body_attackers() {
    raise_fd_limit(10_000);
    let site = example_site();
    edit(site.path(), "cofferdam.toml", "max_connections = 20000", "max_connections = 1000");
    edit(site.path(), "cofferdam.toml", "body_timeout_ms = 10000", "body_timeout_ms = 2000");
    build(site.path());
    let s = serve_here(site.path()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    for _ in 0..2000 {
        let (addr, stop) = (s.public, stop.clone());
        attackers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                trickle(addr, 100_000, Duration::from_millis(500), &stop).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    // The attack is on: every slot is taken and connections over the cap are told "busy".
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while s.app.metrics.connections_refused.get() < 500 {
        assert!(std::time::Instant::now() < deadline, "the attackers never filled the slots");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = client();
    let landing = std::fs::read(site.path().join("dist/index.html")).unwrap();
    let (mut busy_pages, mut got_landing) = (0, false);
    while !got_landing {
        assert!(std::time::Instant::now() < deadline, "no landing page within 60 s ({busy_pages} busy pages)");
        match c.get(url(&s, "/")).header("accept-encoding", "identity").send().await {
            Ok(r) if r.status() == 200 => got_landing = r.bytes().await.unwrap().as_ref() == landing.as_slice(),
            Ok(r) => {
                assert_eq!(r.status(), 503, "a visitor over the cap is told to come back");
                busy_pages += 1;
            }
            Err(e) => panic!("the visitor's request failed instead of being answered: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ordered = None;
    while ordered.is_none() {
        assert!(std::time::Instant::now() < deadline, "no order within 60 s");
        let r = post_order(&c, &s, order_body("Vera Visitor")).await;
        match r.status().as_u16() {
            303 => ordered = Some(r),
            503 => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("the order got {other}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        let _ = a.await;
    }
    s.stop().await;
    let orders: Vec<_> = records(&site.path().join("collected")).into_iter().filter(|r| &*r.form == "order").collect();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].fields["name"], "Vera Visitor");
}

/// 2,000 attackers and as many server-side sockets need more descriptors than a default shell
/// allows; the hard limit is the ceiling.
fn raise_fd_limit(want: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if limit.rlim_cur < want {
        limit.rlim_cur = want.min(limit.rlim_max);
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    }
    assert!(limit.rlim_cur >= want, "need {want} file descriptors, the hard limit is {}", limit.rlim_max);
}
