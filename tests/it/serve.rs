//! Tests of `cofferdam serve`: the real binary on loopback, spoken to over HTTP.

use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn served() -> (tempfile::TempDir, Server) {
    let site = example_site();
    build(site.path());
    let server = Server::start(site.path());
    (site, server)
}

#[tokio::test]
async fn landing_page_is_negotiated_br_gzip_identity() {
    let (site, s) = served();
    let dist = site.path().join("dist");
    let cases = [
        ("br, gzip", "br", "index.html.br"),
        ("gzip, deflate", "gzip", "index.html.gz"),
        ("br;q=0.5, gzip;q=0.9", "gzip", "index.html.gz"),
        ("br;q=0, gzip;q=0", "", "index.html"),
        ("identity", "", "index.html"),
    ];
    for (accept, encoding, file) in cases {
        let r = get(&s.url("/"), &[("accept-encoding", accept)]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-encoding"), encoding, "{accept}");
        assert_eq!(header(&r, "vary"), "Accept-Encoding");
        assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
        let expected = std::fs::read(dist.join(file)).unwrap();
        assert_eq!(header(&r, "content-length"), expected.len().to_string());
        assert_eq!(r.bytes().await.unwrap().as_ref(), expected.as_slice(), "{accept}");
    }
}

#[tokio::test]
async fn etag_differs_per_encoding_and_if_none_match_gives_304() {
    let (_site, s) = served();
    let br = get(&s.url("/order/"), &[("accept-encoding", "br")]).await;
    let plain = get(&s.url("/order/"), &[]).await;
    let etag = header(&br, "etag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "strong ETag: {etag}");
    assert_ne!(etag, header(&plain, "etag"));
    let again = get(&s.url("/order/"), &[("accept-encoding", "br"), ("if-none-match", &etag)]).await;
    assert_eq!(again.status(), 304);
    assert_eq!(header(&again, "etag"), etag);
    assert!(again.bytes().await.unwrap().is_empty());
    let weak =
        get(&s.url("/order/"), &[("accept-encoding", "br"), ("if-none-match", &format!("\"x\", W/{etag}"))]).await;
    assert_eq!(weak.status(), 304);
    let other = get(&s.url("/order/"), &[("if-none-match", &etag)]).await;
    assert_eq!(other.status(), 200, "the identity representation has another ETag");
}

#[tokio::test]
async fn fingerprinted_assets_are_immutable_and_html_is_short_lived() {
    let (site, s) = served();
    let m = cofferdam::manifest::Manifest::load(&site.path().join("dist")).unwrap();
    let css = m.assets["style.css"].clone();
    let r = get(&s.url(&format!("/{css}")), &[("accept-encoding", "gzip")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-control"), "public, max-age=31536000, immutable");
    assert_eq!(header(&r, "content-type"), "text/css; charset=utf-8");
    assert_eq!(header(&r, "content-encoding"), "gzip");
    let html = get(&s.url("/order/"), &[]).await;
    assert_eq!(header(&html, "cache-control"), "public, max-age=60");
    let svg = get(&s.url(&format!("/{}", m.assets["lamp.svg"])), &[]).await;
    assert_eq!(header(&svg, "content-type"), "image/svg+xml");
}

#[tokio::test]
async fn head_has_no_body_and_the_same_length() {
    let (_site, s) = served();
    let g = get(&s.url("/"), &[("accept-encoding", "br")]).await;
    let len = header(&g, "content-length").to_string();
    let h = client().head(s.url("/")).header("accept-encoding", "br").send().await.unwrap();
    assert_eq!(h.status(), 200);
    assert_eq!(header(&h, "content-length"), len);
    assert!(h.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn in_memory_files_answer_a_range_of_the_negotiated_representation() {
    let (site, s) = served();
    let dist = site.path().join("dist");
    let index = std::fs::read(dist.join("index.html")).unwrap();
    let r = get(&s.url("/"), &[("range", "bytes=0-14")]).await;
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range"), format!("bytes 0-14/{}", index.len()));
    assert_eq!(header(&r, "accept-ranges"), "bytes");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &index[..15]);
    // A range counts in the bytes actually sent: here the brotli twin's.
    let br = std::fs::read(dist.join("index.html.br")).unwrap();
    let r = get(&s.url("/"), &[("accept-encoding", "br"), ("range", "bytes=-20")]).await;
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-encoding"), "br");
    assert_eq!(header(&r, "content-range"), format!("bytes {}-{}/{}", br.len() - 20, br.len() - 1, br.len()));
    assert_eq!(r.bytes().await.unwrap().as_ref(), &br[br.len() - 20..]);
    let r = get(&s.url("/no/such/page"), &[("range", "bytes=0-9")]).await;
    assert_eq!(r.status(), 404, "an error page is never sliced");
    assert!(r.bytes().await.unwrap().len() > 10);
}

#[tokio::test]
async fn unknown_path_gets_the_sites_404_page_and_bad_methods_405() {
    let (site, s) = served();
    let r = get(&s.url("/no/such/page"), &[]).await;
    assert_eq!(r.status(), 404);
    let body = r.text().await.unwrap();
    assert_eq!(body, std::fs::read_to_string(site.path().join("dist/404.html")).unwrap());
    let r = client().delete(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(header(&r, "allow"), "GET, HEAD");
    let r = get(&s.url("/submit/order"), &[]).await;
    assert_eq!(r.status(), 405, "the form endpoint takes only POST");
    let r = get(&s.url("/thanks"), &[]).await;
    assert_eq!(r.status(), 308);
    assert_eq!(header(&r, "location"), "/thanks/");
}

#[tokio::test]
async fn every_response_has_security_headers_and_no_server_header() {
    let (site, s) = served();
    let css = cofferdam::manifest::Manifest::load(&site.path().join("dist")).unwrap().assets["style.css"].clone();
    for path in ["/", "/nope", "/thanks", &format!("/{css}")] {
        let r = get(&s.url(path), &[]).await;
        assert!(r.headers().get("server").is_none(), "{path}: Server header");
        let csp = header(&r, "content-security-policy");
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header(&r, "x-frame-options"), "DENY", "{path}");
        assert_eq!(header(&r, "referrer-policy"), "strict-origin-when-cross-origin", "{path}");
        assert!(r.headers().get("strict-transport-security").is_none(), "HSTS only when configured");
    }
    let r = client().post(s.url("/submit/order")).body("x").send().await.unwrap();
    assert!(r.headers().get("server").is_none());
    assert_eq!(header(&r, "x-frame-options"), "DENY");
    let body = r.text().await.unwrap();
    assert!(!body.contains(site.path().to_str().unwrap()) && !body.contains("cofferdam 0."), "{body}");
}

fn raw(port: u16, request: &[u8]) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn oversize_header_gets_431() {
    let (_site, s) = served();
    let big = "a".repeat(20_000);
    let answer = raw(s.port, format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.200}");
    assert!(!answer.to_ascii_lowercase().contains("server:"));
}

#[test]
fn malformed_request_gets_400_without_details() {
    let (_site, s) = served();
    let answer = raw(s.port, b"GARBAGE\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:.200}");
}

#[test]
fn slow_header_connection_is_closed() {
    let site = example_site();
    edit(site.path(), "cofferdam.toml", "header_timeout_ms = 5000", "header_timeout_ms = 500");
    build(site.path());
    let s = Server::start(site.path());
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    // Closed by the server (after its 500 ms), not by our 10 s read timeout.
    assert!(started.elapsed() < Duration::from_secs(5), "connection stayed open");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
}

#[tokio::test]
async fn admin_listener_answers_health_and_prometheus_metrics() {
    let (_site, s) = served();
    get(&s.url("/"), &[]).await;
    get(&s.url("/missing"), &[]).await;
    let health = get(&format!("http://127.0.0.1:{}/healthz", s.admin), &[]).await;
    assert_eq!(health.status(), 200);
    let metrics = get(&format!("http://127.0.0.1:{}/metrics", s.admin), &[]).await.text().await.unwrap();
    assert!(metrics.contains("cofferdam_http_requests_total{route=\"static\",status=\"200\"} 1"), "{metrics}");
    assert!(metrics.contains("cofferdam_http_requests_total{route=\"static\",status=\"404\"} 1"), "{metrics}");
    assert!(metrics.contains("cofferdam_connections_open"), "{metrics}");
    let public = get(&s.url("/metrics"), &[]).await;
    assert_eq!(public.status(), 404, "metrics are not on the public address");
}

#[test]
fn sigterm_exits_zero() {
    let (_site, mut s) = served();
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(15).success());
    assert!(TcpStream::connect(("127.0.0.1", s.port)).is_err(), "still accepting after exit");
}

#[test]
fn sigterm_lets_a_post_in_flight_finish_and_closes_idle_connections() {
    let (site, mut s) = served();
    // A keep-alive connection that has had its answer and waits for its next request.
    let mut idle = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    idle.write_all(b"HEAD /robots.txt HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut first = Vec::new();
    while !first.ends_with(b"\r\n\r\n") {
        let mut chunk = [0u8; 4096];
        let n = idle.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before its answer");
        first.extend_from_slice(&chunk[..n]);
    }
    assert!(first.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&first));
    // A post whose head is in and whose body is still coming when the server is told to stop.
    let body = order_body("Mid Shutdown");
    let mut busy = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    busy.write_all(order_head(s.port, &body, "keep-alive").as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));

    // The idle connection is closed at once, without an answer to a request it never sent.
    let (rest, took) = until_closed(&mut idle);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(took < Duration::from_secs(5), "an idle connection held the shutdown for {took:?}");
    // The post in flight is still taken, answered and recorded, and its connection then closed.
    busy.write_all(body.as_bytes()).unwrap();
    let (answer, _) = until_closed(&mut busy);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer:.300}");
    assert!(s.wait_exit(15).success());
    assert_eq!(recorded_names(site.path()), ["Mid Shutdown"]);
}

#[tokio::test]
async fn sighup_swaps_in_a_new_build() {
    let (site, s) = served();
    edit(site.path(), "content/thanks.md", "# Thank you, your order is in!", "# Thanks, reloaded");
    build(site.path());
    s.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let body = get(&s.url("/thanks/"), &[]).await.text().await.unwrap();
        if body.contains("Thanks, reloaded") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the new build was not served after SIGHUP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn behind_a_proxy_each_client_has_its_own_rate_limit_and_posts_count_too() {
    let site = example_site();
    let limits = "max_connections = 20000\nrate_limit_per_ip = 3\nclient_ip_header = \"X-Forwarded-For\"";
    edit(site.path(), "cofferdam.toml", "max_connections = 20000", limits);
    build(site.path());
    let s = Server::start(site.path());
    // Everyone comes through the one proxy (127.0.0.1); the header tells them apart.
    for client in ["203.0.113.7", "198.51.100.9"] {
        for _ in 0..3 {
            let r = get(&s.url("/"), &[("x-forwarded-for", &format!("{client}, 10.0.0.1"))]).await;
            assert_eq!(r.status(), 200, "{client} is within its own limit");
        }
    }
    let order = |ip: &'static str| {
        client()
            .post(s.url("/submit/order"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", s.origin())
            .header("x-forwarded-for", ip)
            .body(order_body("Limited"))
            .send()
    };
    assert_eq!(order("203.0.113.7").await.unwrap().status(), 429, "a post over the limit");
    assert_eq!(order("192.0.2.44").await.unwrap().status(), 303);
    let recs = records(&site.path().join("collected"));
    assert_eq!(recs.len(), 1, "the post over the limit was not stored");
    assert_eq!(recs[0].meta.ip.as_deref(), Some("192.0.2.44"));
}

#[tokio::test]
async fn per_ip_rate_limit_answers_429() {
    let site = example_site();
    edit(site.path(), "cofferdam.toml", "max_connections = 20000", "max_connections = 20000\nrate_limit_per_ip = 5");
    build(site.path());
    let s = Server::start(site.path());
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(get(&s.url("/"), &[]).await.status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|&&c| c == 200).count(), 5, "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn metrics_show_stock_and_health_from_start_up_and_count_no_admin_connection() {
    let (_site, s) = served();
    let url = format!("http://127.0.0.1:{}/metrics", s.admin);
    // The readiness probe's public connection may take a moment to be seen closed.
    let mut text = String::new();
    for _ in 0..100 {
        text = get(&url, &[]).await.text().await.unwrap();
        if text.contains("cofferdam_connections_open 0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(text.contains("cofferdam_connections_open 0\n"), "the scrape's own connection counted:\n{text}");
    assert!(text.contains("cofferdam_stock_remaining{sku=\"AURORA-EB\"} 5000\n"), "{text}");
    assert!(text.contains("cofferdam_stock_remaining{sku=\"BULB-2PK\"} 3000\n"), "{text}");
    assert!(text.contains("cofferdam_collect_healthy 1\n"), "{text}");
}

/// A site served with a 500 ms header deadline.
fn served_with_short_header_timeout() -> (tempfile::TempDir, Server) {
    let site = example_site();
    edit(site.path(), "cofferdam.toml", "header_timeout_ms = 5000", "header_timeout_ms = 500");
    build(site.path());
    let server = Server::start(site.path());
    (site, server)
}

/// The head of an order post of `body` to the server on `port`, sent apart from its body.
fn order_head(port: u16, body: &str, connection: &str) -> String {
    format!(
        "POST /submit/order HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        body.len()
    )
}

/// Reads until the server closes `c` (or our 10 s read timeout); returns what came and when.
fn until_closed(c: &mut TcpStream) -> (Vec<u8>, Duration) {
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    (buf, started.elapsed())
}

#[test]
fn silent_connection_is_closed() {
    let (_site, s) = served_with_short_header_timeout();
    // Connects and never sends a byte: it must not hold a socket (and a slot) for ever.
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let (answer, elapsed) = until_closed(&mut c);
    assert!(elapsed < Duration::from_secs(3), "still open after {elapsed:?} (header timeout 500 ms)");
    assert!(elapsed >= Duration::from_millis(450), "closed before the header timeout: {elapsed:?}");
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
}

#[test]
fn idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let (_site, s) = served_with_short_header_timeout();
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n").unwrap();
    // The whole answer (head, then Content-Length bytes), and the connection stays open.
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let complete = |a: &[u8]| {
        let text = String::from_utf8_lossy(a);
        let Some(end) = text.find("\r\n\r\n") else { return false };
        let length = text[..end]
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.parse::<usize>().unwrap()))
            .expect("a Content-Length");
        a.len() >= end + 4 + length
    };
    while !complete(&answer) {
        let n = c.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before the answer was complete: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&chunk[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    // Then silence: the server closes the idle connection once the next head is overdue.
    let (rest, elapsed) = until_closed(&mut c);
    assert!(elapsed < Duration::from_secs(3), "still open after {elapsed:?} (header timeout 500 ms)");
    assert!(elapsed >= Duration::from_millis(450), "closed before the header timeout: {elapsed:?}");
    assert!(rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"), "{}", String::from_utf8_lossy(&rest));
}

#[test]
fn a_post_whose_body_comes_after_the_header_timeout_is_answered() {
    let (site, s) = served_with_short_header_timeout();
    // The head is complete at once; the body comes 1.2 s later, past the 500 ms head deadline
    // but well within the body's own (10 s): the request is being answered, not waiting for a
    // head, so the connection must not be dropped.
    let body = order_body("Late Body");
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.write_all(order_head(s.port, &body, "close").as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    c.write_all(body.as_bytes()).unwrap();
    let (answer, _) = until_closed(&mut c);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer:.300}");
    assert_eq!(recorded_names(site.path()), ["Late Body"]);
}

#[test]
fn a_request_sent_a_byte_at_a_time_is_answered() {
    let (_site, s) = served();
    // 'P' is also how the HTTP/2 preface starts: the server must not take it for HTTP/2.
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_nodelay(true).unwrap();
    for byte in b"PUT / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" {
        c.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let (answer, _) = until_closed(&mut c);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer:.200}");
}
