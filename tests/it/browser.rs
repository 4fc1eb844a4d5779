//! A real browser with JavaScript off: headless Chromium, driven over chromedriver, walks the
//! example site served by `cofferdam serve` as a buyer: a refused post comes back as the filled
//! form, the order goes to a payment page (a stand-in served by this test, which confirms the
//! payment to `/hook/stripe` as Stripe would) and back to the thank-you page with the receipt,
//! the one-time offer joins it, and a second browser without the cookie sees no receipt.
//! Then the operator's admin page shows those orders. Screenshots of every page, on a desktop
//! and a 390 px phone, go to `target/screenshots/`.

use crate::payments::{completed, now, paying_site, signature, start, SECRET};
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
async fn a_buyer_orders_pays_and_sees_the_receipt_in_chromium_with_javascript_off() {
    let Some((chromium, chromedriver)) = tools() else {
        return;
    };
    let stand_in = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pay_origin = format!("http://{}", stand_in.local_addr().unwrap());
    let site = paying_site(&pay_origin);
    let server = start(site.path());
    tokio::spawn(payment_page(stand_in, server.origin()));
    let driver = Driver::start(&chromedriver);
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&chromium, &driver, profile.path()).await;
    let result = tokio::time::timeout(Duration::from_secs(120), async {
        walk(&c, &server, site.path()).await;
        admin_page(&c, &server).await;
    })
    .await;
    let _ = c.close().await;
    result.expect("the buyer's walk finished within 120 s");

    // A second browser, without the first one's cookies, sees the generic thank-you page.
    let other_profile = tempfile::tempdir().unwrap();
    let c = browser(&chromium, &driver, other_profile.path()).await;
    let result = tokio::time::timeout(Duration::from_secs(60), async {
        c.goto(&server.url("/thanks/")).await.unwrap();
        let source = c.source().await.unwrap();
        assert!(!source.contains("cd-receipt") && !source.contains("n1-1"), "another buyer's receipt: {source}");
        assert!(source.contains("Its reference and total come with the confirmation e-mail"), "{source}");
        shots(&c, "thank-you").await;
    })
    .await;
    let _ = c.close().await;
    result.expect("the second browser finished within 60 s");
}

/// Where the screenshots go: `target/screenshots/` (or under `CARGO_TARGET_DIR`).
fn shot_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(&tmp).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `NAME-desktop.png` (1280 px wide) and `NAME-phone.png` (390 px) of the page as it is.
async fn shots(c: &Client, name: &str) {
    for (device, width, height) in [("desktop", 1280, 1400), ("phone", 390, 1700)] {
        c.set_window_size(width, height).await.unwrap();
        let path = shot_dir().join(format!("{name}-{device}.png"));
        std::fs::write(&path, c.screenshot().await.unwrap()).unwrap();
        println!("screenshot: {}", path.display());
    }
    c.set_window_size(1280, 1400).await.unwrap();
}

async fn value_of(c: &Client, id: &str) -> String {
    c.find(Locator::Id(id)).await.unwrap().prop("value").await.unwrap().unwrap_or_default()
}

async fn walk(c: &Client, server: &Server, site: &Path) {
    // JavaScript is really off: a script would set the title; the <noscript> shows instead.
    c.goto("data:text/html,<title>off</title><script>document.title='on'</script><noscript>no script</noscript>")
        .await
        .unwrap();
    assert_eq!(c.title().await.unwrap(), "off", "JavaScript must be disabled in this browser");

    c.goto(&server.url("/")).await.unwrap();
    assert!(c.title().await.unwrap().starts_with("Aurora"), "the landing page");
    shots(c, "landing").await;

    // landing → order form, by the call to action.
    c.find(Locator::Css("a.cta")).await.unwrap().click().await.unwrap();
    assert_eq!(arrived_from(c, "/").await, "/order/");
    shots(c, "order").await;

    // An address the browser takes and the server does not: the form comes back, filled.
    type_into(c, "order-name", "Ada Browser").await;
    type_into(c, "order-email", "ada@localhost").await;
    choose(c, "order-country", "DE").await;
    type_into(c, "order-street", "Hauptstr. 1").await;
    type_into(c, "order-postcode", "10115").await;
    type_into(c, "order-city", "Berlin").await;
    c.find(Locator::Id("order-sku-AURORA-EB")).await.unwrap().click().await.unwrap();
    let quantity = c.find(Locator::Id("order-quantity")).await.unwrap();
    quantity.clear().await.unwrap();
    quantity.send_keys("2").await.unwrap();
    c.find(Locator::Css("#form-order button[type=submit]")).await.unwrap().click().await.unwrap();
    assert_eq!(arrived_from(c, "/order/").await, "/submit/order", "the 422 answers the post itself");
    let error = c.find(Locator::Id("order-email-error")).await.unwrap().text().await.unwrap();
    assert_eq!(error, "Not an e-mail address");
    assert_eq!(value_of(c, "order-name").await, "Ada Browser", "what was typed is still there");
    assert_eq!(value_of(c, "order-street").await, "Hauptstr. 1");
    assert_eq!(value_of(c, "order-postcode").await, "10115");
    assert_eq!(value_of(c, "order-city").await, "Berlin");
    assert_eq!(value_of(c, "order-quantity").await, "2");
    assert_eq!(value_of(c, "order-country").await, "DE");
    shots(c, "invalid").await;

    // Corrected, the order goes to the payment page with its reference.
    let email = c.find(Locator::Id("order-email")).await.unwrap();
    email.clear().await.unwrap();
    email.send_keys("ada@example.org").await.unwrap();
    c.find(Locator::Css("#form-order button[type=submit]")).await.unwrap().click().await.unwrap();
    assert_eq!(arrived_from(c, "/submit/order").await, "/pay", "the 303 goes to the payment page");
    let reference = c.find(Locator::Id("ref")).await.unwrap().text().await.unwrap();
    assert_eq!(reference, "n1-1");
    assert_eq!(c.find(Locator::Id("amount")).await.unwrap().text().await.unwrap(), "17800");
    shots(c, "payment").await;

    // Paid: the provider confirms it to the hook and sends the buyer back.
    c.find(Locator::Css("button")).await.unwrap().click().await.unwrap();
    assert_eq!(arrived_from(c, "/pay").await, "/thanks/", "back on the thank-you page");
    let receipt = c.find(Locator::Css(".cd-receipt")).await.unwrap().text().await.unwrap();
    assert!(receipt.contains("Your order n1-1"), "{receipt}");
    assert!(receipt.contains("Aurora lamp — early bird") && receipt.contains("€178.00"), "{receipt}");
    shots(c, "receipt").await;

    // The one-time offer (its only product chosen already) joins the order.
    c.find(Locator::Css("#form-offer button[type=submit]")).await.unwrap().click().await.unwrap();
    assert_eq!(arrived_from(c, "/thanks/").await, "/offer-thanks/");
    let receipt = c.find(Locator::Css(".cd-receipt")).await.unwrap().text().await.unwrap();
    assert!(receipt.contains("Spare daylight bulbs (2-pack)") && receipt.contains("€197.00"), "{receipt}");
    shots(c, "offer-receipt").await;

    let records = records(&site.join("collected"));
    assert_eq!(records.len(), 2, "{records:?}");
    let order = records.iter().find(|r| &*r.form == "order").expect("the order record");
    let offer = records.iter().find(|r| &*r.form == "offer").expect("the offer record");
    assert_eq!(order.fields["name"], "Ada Browser");
    assert_eq!(order.fields["country"], "DE");
    assert_eq!(order.total_cents, Some(17800), "priced from the catalog");
    assert_eq!(offer.parent_ref.as_ref(), Some(&order.reference), "the offer follows this order");
    assert_eq!(&*offer.lines[0].sku, "BULB-2PK");
    let stats = stdout(&run(site, &["stats"]));
    assert!(stats.contains("order            paid        1  unpaid        0"), "{stats}");
}

/// The admin page, once its sampler (one sample a second) has seen the order and the offer.
async fn admin_page(c: &Client, server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        c.goto(&format!("http://127.0.0.1:{}/", server.admin)).await.unwrap();
        let orders = c.find(Locator::Id("orders-order")).await.unwrap().text().await.unwrap();
        let offers = c.find(Locator::Id("orders-offer")).await.unwrap().text().await.unwrap();
        if (orders.as_str(), offers.as_str()) == ("1", "1") {
            break;
        }
        assert!(Instant::now() < deadline, "the admin page shows {orders} orders and {offers} offers, not 1 and 1");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(c.title().await.unwrap().ends_with("cofferdam admin"));
    for chart in ["chart-requests", "chart-orders", "chart-latency", "chart-stock", "chart-disk"] {
        c.find(Locator::Id(chart)).await.unwrap_or_else(|e| panic!("{chart}: {e}"));
    }
    shots(c, "admin").await;
}

/// The stand-in for the provider's hosted payment page: shows the order it was sent, and on
/// "Pay" confirms the payment to cofferdam's hook (signed as Stripe signs) before sending the
/// buyer back to the thank-you page, as a Payment Link's confirmation redirect does.
async fn payment_page(listener: tokio::net::TcpListener, shop: String) {
    use axum::extract::{Form, Query, State};
    use axum::response::{Html, Redirect};
    use std::collections::HashMap;
    async fn show(Query(q): Query<HashMap<String, String>>) -> Html<String> {
        let (r, amount, email) = (&q["client_reference_id"], &q["amount"], &q["prefilled_email"]);
        Html(format!(
            "<!doctype html><title>Pay</title><h1>Stand-in payment page</h1><p>Order <b id=ref>{r}</b> for {email}:              <b id=amount>{amount}</b> cents</p><form method=post action=/pay><input type=hidden name=ref value={r}>             <input type=hidden name=amount value={amount}><button>Pay</button></form>"
        ))
    }
    async fn pay(State(shop): State<String>, Form(f): Form<HashMap<String, String>>) -> Redirect {
        let body = completed(&format!("evt_{}", f["ref"]), &f["ref"], f["amount"].parse().unwrap(), "paid");
        let r = client()
            .post(format!("{shop}/hook/stripe"))
            .header("stripe-signature", signature(SECRET, now(), &body))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the hook took the payment");
        Redirect::to(&format!("{shop}/thanks/"))
    }
    let app = axum::Router::new().route("/pay", axum::routing::get(show).post(pay)).with_state(shop);
    axum::serve(listener, app).await.unwrap();
}
