//! A real browser with JavaScript off: headless Chromium, driven over chromedriver, orders from
//! the example site served by `cofferdam serve`, takes the one-time offer on the thank-you page,
//! and both records are on disk, linked by the signed cookie.

use crate::support::*;
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The browser's tools, or why the test cannot run. Under CI a missing browser is a failure,
/// since `.ci/run` installs it; elsewhere the test says it skipped, loudly.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let find = |fixed: &str, name: &str| -> Option<PathBuf> {
        if Path::new(fixed).exists() {
            return Some(fixed.into());
        }
        std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.exists())
    };
    match (find(CHROMIUM, "chromium"), find(CHROMEDRIVER, "chromedriver")) {
        (Some(c), Some(d)) => Some((c, d)),
        _ => {
            let why = "skipped: chromium and chromedriver are not installed \
                       (apt-get install -y chromium chromium-driver)";
            assert!(std::env::var_os("CI").is_none(), "{why}; under CI .ci/run installs them, so this is a failure");
            println!("{why}");
            eprintln!("{why}");
            None
        }
    }
}

/// chromedriver on a free loopback port; killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(path: &Path) -> Driver {
        let port = free_port();
        let child = Command::new(path)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on {port} within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(chromium: &Path, driver: &Driver, profile: &Path) -> Client {
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": { "profile.managed_default_content_settings.javascript": 2 },
        },
    });
    let serde_json::Value::Object(caps) = caps else { unreachable!() };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a chromedriver session")
}

/// Picks `value` in the `<select>` `#id` by clicking its option, as a person would.
async fn choose(c: &Client, id: &str, value: &str) {
    c.find(Locator::Css(&format!("#{id} option[value=\"{value}\"]"))).await.unwrap().click().await.unwrap();
}

async fn type_into(c: &Client, id: &str, text: &str) {
    c.find(Locator::Id(id)).await.unwrap().send_keys(text).await.unwrap();
}

async fn path_of(c: &Client) -> String {
    c.current_url().await.unwrap().path().to_string()
}

/// The path the browser ends up on after a click: a click on a submit button can return before
/// the form's navigation (POST, 303, GET) has committed, so wait (bounded) for it to leave
/// `from`.
async fn arrived_from(c: &Client, from: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let path = path_of(c).await;
        if path != from || std::time::Instant::now() > deadline {
            return path;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn order_and_offer_in_chromium_with_javascript_off() {
    let Some((chromium, chromedriver)) = tools() else {
        return;
    };
    let site = example_site();
    build(site.path());
    let server = Server::start(site.path());
    let driver = Driver::start(&chromedriver);
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&chromium, &driver, profile.path()).await;
    let result = tokio::time::timeout(Duration::from_secs(90), walk(&c, &server, site.path())).await;
    let _ = c.close().await;
    result.expect("the browser walk finished within 90 s");
}

async fn walk(c: &Client, server: &Server, site: &Path) {
    // JavaScript is really off: a script would set the title; the <noscript> shows instead.
    c.goto("data:text/html,<title>off</title><script>document.title='on'</script><noscript>no script</noscript>")
        .await
        .unwrap();
    assert_eq!(c.title().await.unwrap(), "off", "JavaScript must be disabled in this browser");

    c.goto(&server.url("/")).await.unwrap();
    assert!(c.title().await.unwrap().starts_with("Aurora"), "the landing page");
    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-landing.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    std::fs::write(&shot, c.screenshot().await.unwrap()).unwrap();
    println!("landing page screenshot: {}", shot.display());

    // landing → order form, by the call to action.
    c.find(Locator::Css("a.cta")).await.unwrap().click().await.unwrap();
    assert_eq!(arrived_from(c, "/").await, "/order/");
    type_into(c, "order-name", "Ada Browser").await;
    type_into(c, "order-email", "ada@example.org").await;
    choose(c, "order-country", "DE").await;
    type_into(c, "order-street", "Hauptstr. 1").await;
    type_into(c, "order-postcode", "10115").await;
    type_into(c, "order-city", "Berlin").await;
    choose(c, "order-sku", "AURORA-EB").await;
    c.find(Locator::Css("#form-order button[type=submit]")).await.unwrap().click().await.unwrap();
    assert_eq!(arrived_from(c, "/order/").await, "/thanks/", "the 303 lands on the thank-you page");
    let body = c.find(Locator::Css("h1")).await.unwrap().text().await.unwrap();
    assert!(body.contains("Thank you"), "{body}");

    // The one-time offer on the thank-you page, linked to the order by the cookie.
    choose(c, "offer-sku", "BULB-2PK").await;
    c.find(Locator::Css("#form-offer button[type=submit]")).await.unwrap().click().await.unwrap();
    assert_eq!(arrived_from(c, "/thanks/").await, "/offer-thanks/");

    let records = records(&site.join("collected"));
    assert_eq!(records.len(), 2, "{records:?}");
    let order = records.iter().find(|r| r.form == "order").expect("the order record");
    let offer = records.iter().find(|r| r.form == "offer").expect("the offer record");
    assert_eq!(order.fields["name"], "Ada Browser");
    assert_eq!(order.fields["country"], "DE");
    assert_eq!(order.total_cents, Some(8900), "priced from the catalog");
    assert_eq!(offer.parent_ref.as_ref(), Some(&order.reference), "the offer follows this order");
    assert_eq!(offer.lines[0].sku, "BULB-2PK");
}
